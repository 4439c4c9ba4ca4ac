//! Routing, first thing after the head is read: the path is normalised (lb-core's rules, so
//! that `/public/../admin` or `%2F` cannot slip past a route's policy), the first route that
//! matches is found in the compiled table, and the normalised path replaces the client's in
//! what is sent upstream unless `path_normalization.forward` is `original`.
//!
//! A path the rules refuse is answered 400, a request no route matches 404; both close the
//! connection when the request has a body, which is then never read.
//!
//! The flat form with neither `routes` nor `path_normalization` written behaves as it always
//! did: its one route takes every request, and the path goes upstream as received. There is no
//! route policy for a path trick to slip past, and the common configuration pays nothing.

use std::borrow::Cow;

use http::StatusCode;
use http::uri::{PathAndQuery, Uri};
use lb_core::route::{HeaderMatch, HeaderSource, HostKey, PathError, RouteRequest, normalize_path};

use super::ClientRequest;
use super::reply::Reply;
use super::respond::{self, none_label};
use crate::metrics::MethodLabel;
use crate::runtime::{Runtime, Shared};

/// The request's fields as the route table asks about them.
struct Fields<'a>(&'a http::HeaderMap);

impl HeaderSource for Fields<'_> {
    fn satisfies(&self, name: &str, want: &HeaderMatch) -> bool {
        let mut values = self.0.get_all(name).iter();
        match want {
            HeaderMatch::Equals(text) => values.any(|v| v.as_bytes() == text.as_bytes()),
            HeaderMatch::Present => values.next().is_some(),
            HeaderMatch::Absent => values.next().is_none(),
        }
    }
}

/// Why a request has no route.
#[derive(Debug)]
pub(crate) enum NotRouted {
    /// The path rules refuse its path: 400.
    BadPath(PathError),
    /// No route matches: 404.
    NoRoute,
}

/// The answer to a request without a route.
pub(crate) fn refusal(shared: &Shared, request: &ClientRequest, why: NotRouted) -> Reply {
    let method = MethodLabel::of(&request.parts.method);
    match why {
        NotRouted::BadPath(error) => {
            let text = format!("400 bad request: {error}\n");
            let status = StatusCode::BAD_REQUEST;
            respond::refuse(shared, &none_label(), method, status, text).closing()
        }
        NotRouted::NoRoute => {
            let text = "404 not found: no route for this request\n";
            let reply = respond::refuse(shared, &none_label(), method, StatusCode::NOT_FOUND, text);
            close_if_body(reply, request)
        }
    }
}

/// The index of the route `request` takes, its path normalised in place; or why it has none.
#[inline]
pub(crate) fn find(runtime: &Runtime, request: &mut ClientRequest) -> Result<usize, NotRouted> {
    if runtime.as_before {
        return Ok(0);
    }
    let parts = &request.parts;
    let normal =
        normalize_path(parts.uri.path(), &runtime.path_rules).map_err(NotRouted::BadPath)?;
    let host = match runtime.table.uses_hosts() {
        true => request
            .meta
            .host
            .as_ref()
            .and_then(|host| HostKey::new(host.as_bytes())),
        false => None,
    };
    let found = runtime.table.lookup(&RouteRequest {
        host: host.as_ref().map(HostKey::as_str),
        path: &normal,
        method: parts.method.as_str(),
        headers: &Fields(&parts.headers),
    });
    let changed = match normal {
        Cow::Owned(path) if runtime.forward_normalized => Some(path),
        _ => None,
    };
    let Some(index) = found else {
        return Err(NotRouted::NoRoute);
    };
    if let Some(path) = changed {
        set_path(&mut request.parts.uri, &path);
    }
    Ok(index)
}

/// A reply given before the body was read closes the connection when there is a body.
pub(crate) fn close_if_body(reply: Reply, request: &ClientRequest) -> Reply {
    match request.body.is_some() {
        true => reply.closing(),
        false => reply,
    }
}

/// Replaces the path of `uri`, keeping its query (and its scheme and authority, if any).
pub(crate) fn set_path(uri: &mut Uri, path: &str) {
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let Ok(path_and_query) = PathAndQuery::try_from(target) else {
        return;
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(path_and_query);
    if let Ok(rebuilt) = Uri::from_parts(parts) {
        *uri = rebuilt;
    }
}
