//! The state of the policies routes apply, built with the runtime snapshot: rate limiters
//! ([`limit`]) and authentication schemes ([`auth`]). The request path (`proxy::route`) asks
//! them for decisions; the decisions themselves are lb-core's (GCRA) or the schemes' own
//! verification.

pub(crate) mod auth;
pub(crate) mod limit;
pub(crate) mod limit_redis;
