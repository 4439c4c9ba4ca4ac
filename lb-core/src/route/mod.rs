//! Routes: which pool and which policies a request gets, from its host, path, method and
//! headers.
//!
//! A configuration lists routes in order; the first that matches wins (never a hidden
//! ranking), and a route without conditions is the default. Matching is pure: the path is
//! first normalised ([`normalize_path`], the rules in [`path`]) so that `/public/../admin`
//! or `%2F` tricks cannot slip past a route's policy; the [`RouteTable`] built once per
//! configuration then finds the first match without testing every route.
//!
//! # Layout
//! - [`path`]: path normalisation and its rules.
//! - [`spec`]: what a route matches on, and when an earlier route shadows a later one.
//! - [`table`]: the compiled lookup.

pub mod path;
pub mod spec;
pub mod table;
#[cfg(test)]
mod tests;

pub use path::{EncodedSlashes, PathError, PathRules, normalize_path};
pub use spec::{HeaderCondition, HeaderMatch, HostPattern, PathPattern, RouteMatch};
pub use table::{HeaderSource, HostKey, RouteRequest, RouteTable};
