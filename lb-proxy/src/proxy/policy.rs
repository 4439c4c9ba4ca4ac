//! A route's policies, applied once the route is known and before the body is read, in this
//! order: the rate limit (cheapest, and it shields what follows), authentication, then the
//! route's own answer (a redirect or a fixed response) or the changes to the request (headers,
//! path prefix, `Host`). The changes to the response are handed back, to be applied to
//! whatever the request is answered with.
//!
//! Only routes with a policy come here (`RouteRuntime::has_policy`); a plain route costs
//! nothing more than its lookup.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderName, HeaderValue};
use lb_core::config::transform::{HeaderRules, Part, Template, Variable};
use lb_core::ratelimit::{Decision, Gcra};

use super::reply::{Extra, Reply};
use super::route::{close_if_body, set_path};
use super::{ClientInfo, ClientRequest, respond};
use crate::metrics::MethodLabel;
use crate::metrics::route::{AuthLabels, LimitLabels};
use crate::policy::auth::{Auth, Verdict};
use crate::policy::limit::Limiter;
use crate::runtime::{RouteRuntime, Runtime, Shared};

/// The `Host` sent upstream when a route rewrites it; the client's own goes in
/// `X-Forwarded-Host`. Carried in the request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamHost(pub HeaderValue);

/// What templates read from the request.
struct Values<'a> {
    client: IpAddr,
    host: &'a [u8],
    request_id: String,
    path: &'a str,
    query: Option<&'a str>,
}

impl Values<'_> {
    fn render(&self, template: &Template) -> Option<HeaderValue> {
        let mut out = String::new();
        for part in &template.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(Variable::ClientIp) => out.push_str(&self.client.to_string()),
                Part::Var(Variable::Host) => out.push_str(std::str::from_utf8(self.host).ok()?),
                Part::Var(Variable::RequestId) => out.push_str(&self.request_id),
                Part::Var(Variable::Path) => out.push_str(self.path),
                Part::Var(Variable::Query) => {
                    if let Some(query) = self.query {
                        out.push('?');
                        out.push_str(query);
                    }
                }
            }
        }
        HeaderValue::try_from(out).ok()
    }
}

fn request_id(request: &ClientRequest) -> String {
    match request
        .parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        Some(id) => id.to_owned(),
        None => format!("{:032x}", rand::RngExt::random::<u128>(&mut rand::rng())),
    }
}

/// Applies `route`'s policies to `request`: the refusal or the route's own answer, or the
/// changes to make to the response (`None` for none).
pub(crate) async fn apply(
    shared: &Shared,
    runtime: &Runtime,
    route: &RouteRuntime,
    client: &ClientInfo,
    request: &mut ClientRequest,
) -> Result<Option<Box<Extra>>, Reply> {
    let method = MethodLabel::of(&request.parts.method);
    let client_ip = client.address(
        &request.parts.headers,
        &runtime.config.server.trusted_proxies,
    );
    if let Some(limiter) = &route.limit {
        let key = limiter.key(client_ip, &request.parts.headers);
        let decision = limiter.check(key).await;
        if !decision.allowed {
            return Err(too_many(shared, route, limiter, &decision, request));
        }
    }
    if let Some(auth) = &route.auth {
        authenticate(shared, route, auth.as_deref(), request).await?;
    }
    let config = &route.config;
    let transforms = config.redirect.is_some()
        || config.respond.is_some()
        || config.rewrite.is_some()
        || !config.request_headers.is_empty()
        || !config.response_headers.is_empty();
    if !transforms {
        // A limit or auth alone: nothing of the request to copy for templates.
        return Ok(None);
    }
    let uses = |var| {
        config.request_headers.uses(var)
            || config.response_headers.uses(var)
            || config
                .redirect
                .as_ref()
                .is_some_and(|r| r.location.uses(var))
    };
    let id = match uses(Variable::RequestId) {
        true => request_id(request),
        false => String::new(),
    };
    let host = request.meta.host.clone();
    let path = request.parts.uri.path().to_owned();
    let query = request.parts.uri.query().map(str::to_owned);
    let values = Values {
        client: client_ip,
        host: host.as_ref().map_or(&b""[..], HeaderValue::as_bytes),
        request_id: id,
        path: &path,
        query: query.as_deref(),
    };
    if let Some(redirect) = &config.redirect {
        let status = StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::FOUND);
        let location = values
            .render(&redirect.location)
            .unwrap_or_else(|| HeaderValue::from_static("/"));
        let text = format!("{} redirect\n", status.as_u16());
        let mut reply = respond::refuse(shared, &route.name, method, status, text);
        reply.extra().set(header::LOCATION, location);
        response_rules(&config.response_headers, &values, reply.extra());
        return Err(close_if_body(reply, request));
    }
    if let Some(answer) = &config.respond {
        let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
        let mut reply = respond::refuse(
            shared,
            &route.name,
            method,
            status,
            Bytes::from(answer.body.clone()),
        );
        if let Ok(content_type) = HeaderValue::from_str(&answer.content_type) {
            reply.extra().set(header::CONTENT_TYPE, content_type);
        }
        response_rules(&config.response_headers, &values, reply.extra());
        return Err(close_if_body(reply, request));
    }
    edit_headers(&config.request_headers, &values, &mut request.parts.headers);
    if let Some(rewrite) = &config.rewrite {
        if let Some(prefix) = &rewrite.replace_prefix
            && let Some(rest) = path.strip_prefix(prefix.from.as_str())
        {
            let mut rewritten = format!("{}{rest}", prefix.to);
            if !rewritten.starts_with('/') {
                rewritten.insert(0, '/');
            }
            set_path(&mut request.parts.uri, &rewritten);
        }
        if let Some(host) = &rewrite.host
            && let Ok(value) = HeaderValue::from_str(host)
        {
            request.parts.extensions.insert(UpstreamHost(value));
        }
    }
    if config.response_headers.is_empty() {
        return Ok(None);
    }
    let mut extra = Box::<Extra>::default();
    response_rules(&config.response_headers, &values, &mut extra);
    Ok(Some(extra))
}

/// The route's limit alone, when it is all the route has and it lives in memory
/// (`RouteRuntime::local_limit_only`): decided here, without the boxed future of [`apply`].
pub(crate) fn limit_only(
    shared: &Shared,
    runtime: &Runtime,
    route: &RouteRuntime,
    client: &ClientInfo,
    request: &ClientRequest,
) -> Option<Reply> {
    let limiter = route.limit.as_ref()?;
    let trusted = &runtime.config.server.trusted_proxies;
    let client_ip = client.address(&request.parts.headers, trusted);
    let key = limiter.key(client_ip, &request.parts.headers);
    let decision = limiter.check_local(key);
    (!decision.allowed).then(|| too_many(shared, route, limiter, &decision, request))
}

/// The 429 of a refused request, counted, with `Retry-After` and the `RateLimit` fields.
fn too_many(
    shared: &Shared,
    route: &RouteRuntime,
    limiter: &Limiter,
    decision: &Decision,
    request: &ClientRequest,
) -> Reply {
    let labels = LimitLabels {
        route: route.name.clone(),
        limit: limiter.name.clone(),
    };
    shared
        .metrics
        .policy
        .rate_limited
        .get_or_create(&labels)
        .inc();
    let method = MethodLabel::of(&request.parts.method);
    let status = StatusCode::TOO_MANY_REQUESTS;
    let mut reply = respond::refuse(
        shared,
        &route.name,
        method,
        status,
        "429 too many requests\n",
    );
    limit_fields(reply.extra(), &limiter.name, limiter.gcra(), decision);
    close_if_body(reply, request)
}

/// Checks the route's scheme; on success sets the fields it names (JWT claims).
async fn authenticate(
    shared: &Shared,
    route: &RouteRuntime,
    auth: Option<&Auth>,
    request: &mut ClientRequest,
) -> Result<(), Reply> {
    let method = MethodLabel::of(&request.parts.method);
    let verdict = match auth {
        Some(auth) => auth.check(&request.parts).await,
        None => {
            let text = "503 service unavailable: authentication is unavailable\n";
            let reply = respond::refuse(
                shared,
                &route.name,
                method,
                StatusCode::SERVICE_UNAVAILABLE,
                text,
            );
            return Err(close_if_body(reply, request));
        }
    };
    let denial = match verdict {
        Verdict::Allowed(fields) => {
            for (name, value) in fields {
                match value {
                    Some(value) => request.parts.headers.insert(name, value),
                    None => request.parts.headers.remove(name),
                };
            }
            return Ok(());
        }
        Verdict::Denied(denial) => denial,
    };
    let labels = AuthLabels {
        route: route.name.clone(),
        reason: denial.reason,
    };
    shared
        .metrics
        .policy
        .auth_failures
        .get_or_create(&labels)
        .inc();
    let text = match denial.status {
        StatusCode::FORBIDDEN => "403 forbidden\n",
        _ => "401 unauthorized\n",
    };
    let mut reply = respond::refuse(shared, &route.name, method, denial.status, text);
    if let Some(challenge) = denial.challenge {
        reply.extra().set(header::WWW_AUTHENTICATE, challenge);
    }
    Err(close_if_body(reply, request))
}

/// The request's fields: removed, set, added.
fn edit_headers(rules: &HeaderRules, values: &Values<'_>, headers: &mut http::HeaderMap) {
    for name in &rules.remove {
        headers.remove(name.as_str());
    }
    for (name, template) in &rules.set {
        if let (Ok(name), Some(value)) =
            (HeaderName::try_from(name.as_str()), values.render(template))
        {
            headers.insert(name, value);
        }
    }
    for (name, template) in &rules.add {
        if let (Ok(name), Some(value)) =
            (HeaderName::try_from(name.as_str()), values.render(template))
        {
            headers.append(name, value);
        }
    }
}

/// The response's field changes, into `extra`.
fn response_rules(rules: &HeaderRules, values: &Values<'_>, extra: &mut Extra) {
    for name in &rules.remove {
        if let Ok(name) = HeaderName::try_from(name.as_str()) {
            extra.remove.push(name);
        }
    }
    for (name, template) in &rules.set {
        if let (Ok(name), Some(value)) =
            (HeaderName::try_from(name.as_str()), values.render(template))
        {
            extra.set(name, value);
        }
    }
    for (name, template) in &rules.add {
        if let (Ok(name), Some(value)) =
            (HeaderName::try_from(name.as_str()), values.render(template))
        {
            extra.add.push((name, value));
        }
    }
}

/// Whole seconds, rounded up, at least 1: what `Retry-After` and the `RateLimit` fields say.
fn seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// `Retry-After` and the IETF `RateLimit-Policy` / `RateLimit` fields
/// (draft-ietf-httpapi-ratelimit-headers): the policy's quota and window, and what remains
/// with when it resets.
pub(crate) fn limit_fields(extra: &mut Extra, name: &str, gcra: &Gcra, decision: &Decision) {
    let window = seconds(gcra.period()).max(1);
    let policy = format!("\"{name}\";q={};w={window}", gcra.requests());
    let state = format!(
        "\"{name}\";r={};t={}",
        decision.remaining,
        seconds(decision.reset_after)
    );
    if !decision.allowed {
        let retry = seconds(decision.retry_after).max(1);
        extra.set(header::RETRY_AFTER, HeaderValue::from(retry));
    }
    for (field, value) in [("ratelimit-policy", policy), ("ratelimit", state)] {
        if let Ok(value) = HeaderValue::try_from(value) {
            extra.set(HeaderName::from_static(field), value);
        }
    }
}
