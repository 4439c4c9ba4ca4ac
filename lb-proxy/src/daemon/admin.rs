//! The admin API: JSON over HTTP on its own listener. It reads the live backends and changes
//! runtime state only through the daemon's control ([`Control`]), the same door a reload takes.
//!
//! Every request needs `Authorization: Bearer <token>` when a token is configured; the token is
//! compared in constant time. Errors are JSON `{"error": "..."}`; an unknown backend is 404.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use lb_core::breaker::BreakerState;
use lb_core::health::HealthStatus;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::control::{Control, ReloadError};
use super::source::LoadError;
use crate::clock;
use crate::shutdown::Shutdown;
use crate::side_listener::{self, SideResponse};
use crate::upstream::backend::Backend;

/// The largest request body the API reads.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a request body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest weight the API sets (the file's own bound).
const MAX_WEIGHT: u64 = 1_000_000;

/// Serves the API on `listener` until `stop` starts.
pub(crate) async fn serve(listener: Arc<TcpListener>, control: Weak<Control>, stop: Arc<Shutdown>) {
    let handle = move |request: Request<Incoming>| answer(request, control.clone());
    side_listener::serve(listener, stop, "admin", handle).await;
}

/// The API's routes.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Backends,
    Backend(String),
    Drain(String),
    Enable(String),
    Weight(String),
    BreakerReset(String),
    Config,
    Reload,
}

impl Route {
    /// The route of a path, its segments percent-decoded.
    fn of(path: &str) -> Option<Route> {
        let segments: Vec<String> = path
            .strip_prefix('/')?
            .trim_end_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        Some(match segments.as_slice() {
            ["backends"] => Route::Backends,
            ["backends", name] => Route::Backend((*name).to_owned()),
            ["backends", name, "drain"] => Route::Drain((*name).to_owned()),
            ["backends", name, "enable"] => Route::Enable((*name).to_owned()),
            ["backends", name, "weight"] => Route::Weight((*name).to_owned()),
            ["backends", name, "breaker", "reset"] => Route::BreakerReset((*name).to_owned()),
            ["config"] => Route::Config,
            ["reload"] => Route::Reload,
            _ => return None,
        })
    }

    /// The one method the route answers.
    fn method(&self) -> Method {
        match self {
            Route::Backends | Route::Backend(_) | Route::Config => Method::GET,
            Route::Weight(_) => Method::PUT,
            Route::Drain(_) | Route::Enable(_) | Route::BreakerReset(_) | Route::Reload => {
                Method::POST
            }
        }
    }
}

async fn answer(request: Request<Incoming>, control: Weak<Control>) -> SideResponse {
    let Some(control) = control.upgrade() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    };
    if !authorized(&request, &control) {
        let mut response = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
        let challenge = header::HeaderValue::from_static("Bearer");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
        return response;
    }
    let Some(route) = Route::of(request.uri().path()) else {
        return error(
            StatusCode::NOT_FOUND,
            "no such endpoint; see docs/admin-api.md",
        );
    };
    let allowed = route.method();
    let method = request.method();
    if *method != allowed && !(*method == Method::HEAD && allowed == Method::GET) {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{} takes {allowed}", request.uri().path()),
        );
        let allow = header::HeaderValue::from_str(allowed.as_str());
        if let Ok(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        return response;
    }
    match route {
        Route::Backends => {
            let now = clock::now();
            let runtime = control.shared.runtime.load();
            let backends: Vec<Value> = (runtime.backends.iter())
                .map(|backend| backend_json(backend, now))
                .collect();
            reply(StatusCode::OK, &json!({ "backends": backends }))
        }
        Route::Backend(name) => on_backend(&control, &name, false, |_| ()).await,
        Route::Drain(name) => {
            on_backend(&control, &name, false, |backend| {
                backend.set_drained(true);
                tracing::info!(backend = %backend.name(), "drained through the admin API");
            })
            .await
        }
        Route::Enable(name) => {
            on_backend(&control, &name, false, |backend| {
                backend.set_drained(false);
                tracing::info!(backend = %backend.name(), "enabled through the admin API");
            })
            .await
        }
        Route::Weight(name) => {
            let weight = match read_weight(request.into_body()).await {
                Ok(weight) => weight,
                Err((status, message)) => return error(status, &message),
            };
            on_backend(&control, &name, true, |backend| {
                backend.set_weight_override(weight);
                tracing::info!(backend = %backend.name(), weight = ?weight, "weight set through the admin API");
            })
            .await
        }
        Route::BreakerReset(name) => on_backend(&control, &name, false, |backend| {
            if backend.reset_breaker(clock::now()) {
                tracing::info!(backend = %backend.name(), "breaker reset through the admin API");
            }
        })
        .await,
        Route::Config => {
            let config = control.shared.runtime.load().config.clone();
            let mut value = serde_json::to_value(&*config).unwrap_or(Value::Null);
            redact(&mut value);
            reply(StatusCode::OK, &value)
        }
        Route::Reload => match control.reload().await {
            Ok(report) => reply(
                StatusCode::OK,
                &json!({
                    "result": "success",
                    "changes": report.changes,
                    "needs_restart": report.needs_restart,
                    "notes": report.notes,
                    "hash": report.hash,
                }),
            ),
            Err(failure) => {
                let status = match &failure {
                    ReloadError::Load(LoadError::Invalid(_))
                    | ReloadError::Token(_)
                    | ReloadError::Auth(_)
                    | ReloadError::Discovery(_)
                    | ReloadError::AccessLog { .. }
                    | ReloadError::Tls(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    ReloadError::Load(LoadError::Read { .. }) | ReloadError::Tracing(_) => {
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
                    ReloadError::Bind { .. } | ReloadError::NoSource => StatusCode::CONFLICT,
                };
                error(status, &failure.to_string())
            }
        },
    }
}

/// Runs `change` on the backend named `name` under the control's lock and answers its state.
async fn on_backend(
    control: &Control,
    name: &str,
    resnapshot: bool,
    change: impl FnOnce(&Arc<Backend>),
) -> SideResponse {
    let view = control
        .with_backend(name, resnapshot, |backend| {
            change(backend);
            backend_json(backend, clock::now())
        })
        .await;
    match view {
        Some(view) => reply(StatusCode::OK, &view),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("no backend named {}", json!(name)),
        ),
    }
}

/// A backend as the API shows it.
fn backend_json(backend: &Backend, now: std::time::Instant) -> Value {
    let in_flight = backend.in_flight();
    let drained = backend.is_drained();
    let breaker = backend
        .breaker_state(now)
        .map_or("disabled", BreakerState::as_str);
    let health = match backend.health() {
        HealthStatus::Healthy => "healthy",
        HealthStatus::Unhealthy => "unhealthy",
    };
    let mut overrides = Vec::new();
    if drained {
        overrides.push("drain");
    }
    if backend.weight_override().is_some() {
        overrides.push("weight");
    }
    json!({
        "name": backend.name(),
        "pool": backend.metrics.pool.as_str(),
        "address": backend.addr.to_string(),
        "weight": backend.weight(),
        "configured_weight": backend.configured_weight(),
        "max_connections": backend.max_connections(),
        "health": health,
        "breaker": breaker,
        "in_flight": in_flight,
        "drained": drained,
        "drain_done": drained && in_flight == 0,
        "overrides": overrides,
    })
}

/// Reads `{"weight": N}` (or `null`, to remove the override).
async fn read_weight(body: Incoming) -> Result<Option<u32>, (StatusCode, String)> {
    let collected =
        tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect());
    let bytes = match collected.await {
        Err(_) => return Err((StatusCode::REQUEST_TIMEOUT, "the body took too long".into())),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            let message = format!("the body is over {MAX_BODY_BYTES} bytes");
            return Err((StatusCode::PAYLOAD_TOO_LARGE, message));
        }
        Ok(Err(error)) => return Err((StatusCode::BAD_REQUEST, error.to_string())),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let bad = |message: &str| (StatusCode::BAD_REQUEST, message.to_owned());
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|error| bad(&format!("the body is not JSON: {error}")))?;
    match value.get("weight") {
        Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => match number.as_u64() {
            Some(weight @ 1..=MAX_WEIGHT) => Ok(Some(weight as u32)),
            _ => Err(bad(&format!(
                "weight must be a whole number from 1 to {MAX_WEIGHT}"
            ))),
        },
        _ => Err(bad(r#"expected {"weight": N} or {"weight": null}"#)),
    }
}

/// Whether the request carries the bearer token, when one is configured.
fn authorized(request: &Request<Incoming>, control: &Control) -> bool {
    let Some(token) = control.token.load_full() else {
        return true;
    };
    let presented = (request.headers().get(header::AUTHORIZATION))
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    presented.is_some_and(|presented| constant_time_eq(presented, token.as_bytes()))
}

/// Compares without stopping at the first difference, so timing says nothing of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut differ = a.len() ^ b.len();
    for (index, byte) in b.iter().enumerate() {
        differ |= usize::from(a.get(index).copied().unwrap_or(!byte) ^ byte);
    }
    differ == 0
}

/// Blanks values whose keys name a secret, wherever they are. The token itself is never in the
/// configuration (only where to read it), but other sections may carry secrets.
fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let key = key.to_ascii_lowercase();
                let secret = ["password", "secret", "private_key", "token"].contains(&key.as_str())
                    || key.ends_with("_password")
                    || key.ends_with("_secret");
                match secret {
                    true => *value = Value::String("<redacted>".to_owned()),
                    false => redact(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// `%XX` escapes decoded; anything else as it is.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reply(status: StatusCode, value: &Value) -> SideResponse {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let json = header::HeaderValue::from_static("application/json");
    headers.insert(header::CONTENT_TYPE, json);
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> SideResponse {
    reply(status, &json!({ "error": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let table = [
            ("/backends", Some(Route::Backends)),
            ("/backends/", Some(Route::Backends)),
            ("/backends/b1", Some(Route::Backend("b1".into()))),
            ("/backends/b%201/drain", Some(Route::Drain("b 1".into()))),
            ("/backends/b1/enable", Some(Route::Enable("b1".into()))),
            ("/backends/b1/weight", Some(Route::Weight("b1".into()))),
            (
                "/backends/b1/breaker/reset",
                Some(Route::BreakerReset("b1".into())),
            ),
            ("/config", Some(Route::Config)),
            ("/reload", Some(Route::Reload)),
            ("/", None),
            ("/backends/b1/explode", None),
            ("/reload/now", None),
            ("relative", None),
        ];
        for (path, route) in table {
            assert_eq!(Route::of(path), route, "{path}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        for other in [&b"secreT"[..], b"secre", b"secrets", b"", b"\xff\xff"] {
            assert!(!constant_time_eq(other, b"secret"), "{other:?}");
        }
    }

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let mut value = json!({
            "admin": {"token_file": "/etc/lb/token", "listen": "127.0.0.1:9091"},
            "auth": [{"user": "a", "password": "p"}, {"client_secret": "s"}],
            "token": "t",
        });
        redact(&mut value);
        assert_eq!(value["admin"]["token_file"], "/etc/lb/token");
        assert_eq!(value["auth"][0]["password"], "<redacted>");
        assert_eq!(value["auth"][0]["user"], "a");
        assert_eq!(value["auth"][1]["client_secret"], "<redacted>");
        assert_eq!(value["token"], "<redacted>");
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%2F"), "/");
    }
}
