//! Request routing and the endpoint handlers.
//!
//! The path is parsed once into a [`Route`] (a pure function with table tests), then each endpoint
//! is a small async function. Every response goes through [`Shared::respond`], which adds the
//! `x-backend` header from a precomputed `HeaderValue`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::Shared;
use crate::body::{Fnv1a64, ResponseBody};

/// Longest `/delay/{ms}` accepted.
pub const MAX_DELAY_MS: u64 = 60_000;
/// Largest `/bytes/{n}` accepted (1 GiB).
pub const MAX_BYTES: u64 = 1 << 30;
/// Largest request body `/echo` buffers; `/echo/body` and `/count` stream and have no limit.
pub const MAX_ECHO_BODY: usize = 16 << 20;

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const OCTETS: HeaderValue = HeaderValue::from_static("application/octet-stream");

/// What a request path asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/` and every path not reserved below: a balancer in front may route any path here
    /// (`/api/test`), and the answer should say which backend got it, not 404.
    Identity,
    Health,
    Status(StatusCode),
    Delay(Duration),
    Echo,
    EchoBody,
    Count,
    Bytes(u64),
    /// `/ws`: the WebSocket echo.
    WebSocket,
    /// A recognised endpoint with an unusable parameter; the message says what is allowed.
    BadRequest(&'static str),
}

impl Route {
    pub(crate) fn parse(path: &str) -> Route {
        match path {
            "/health" => return Route::Health,
            "/echo" => return Route::Echo,
            "/echo/body" => return Route::EchoBody,
            "/count" => return Route::Count,
            "/ws" => return Route::WebSocket,
            _ => {}
        }
        if let Some(code) = path.strip_prefix("/status/") {
            return match code.parse::<u16>() {
                Ok(c @ 200..=599) => StatusCode::from_u16(c).map_or(
                    Route::BadRequest("status must be 200..=599\n"),
                    Route::Status,
                ),
                _ => Route::BadRequest("status must be 200..=599\n"),
            };
        }
        if let Some(ms) = path.strip_prefix("/delay/") {
            return match ms.parse::<u64>() {
                Ok(ms) if ms <= MAX_DELAY_MS => Route::Delay(Duration::from_millis(ms)),
                _ => Route::BadRequest("delay must be 0..=60000 milliseconds\n"),
            };
        }
        if let Some(n) = path.strip_prefix("/bytes/") {
            return match n.parse::<u64>() {
                Ok(n) if n <= MAX_BYTES => Route::Bytes(n),
                _ => Route::BadRequest("byte count must be 0..=1073741824\n"),
            };
        }
        Route::Identity
    }
}

/// Serves one request. Never fails: every problem becomes a status code.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    if crate::grpc::is_grpc(req.uri().path()) {
        let response = crate::grpc::serve(shared.clone(), req).await;
        let mut response = response.map(ResponseBody::Grpc);
        (response.headers_mut()).insert(crate::X_BACKEND, shared.header.clone());
        return Ok(response);
    }
    let route = Route::parse(req.uri().path());
    if route == Route::Health {
        // Before fault injection and the counters: a health check is never slowed or failed.
        return Ok(health(&shared));
    }

    let _in_flight = shared.stats.begin(req.method() == Method::POST);
    if shared.log_requests {
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-");
        println!("{} {} {id}", req.method(), req.uri().path());
    }
    if let Some(latency) = shared.latency() {
        tokio::time::sleep(latency).await;
    }
    if shared.should_fail() {
        shared.stats.injected_failures.fetch_add(1, Relaxed);
        return Ok(shared.respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            "injected failure\n".into(),
        ));
    }

    let text = |status, body: ResponseBody| shared.respond(status, TEXT, body);
    let response = match route {
        Route::Identity => {
            drain(req.into_body()).await;
            text(StatusCode::OK, ResponseBody::full(shared.identity.clone()))
        }
        Route::Status(status) => {
            drain(req.into_body()).await;
            let body = match status.as_u16() {
                204 | 205 | 304 => ResponseBody::empty(),
                code => format!("{code}\n").into(),
            };
            text(status, body)
        }
        Route::Delay(wait) => {
            drain(req.into_body()).await;
            tokio::time::sleep(wait).await;
            text(
                StatusCode::OK,
                format!("delayed {} ms\n", wait.as_millis()).into(),
            )
        }
        Route::Echo => echo(&shared, req).await,
        Route::EchoBody => {
            shared.respond(StatusCode::OK, OCTETS, ResponseBody::Echo(req.into_body()))
        }
        Route::Count => count(&shared, req.into_body()).await,
        Route::Bytes(n) => shared.respond(StatusCode::OK, OCTETS, ResponseBody::pattern(n)),
        Route::WebSocket => crate::websocket::upgrade(&shared, req),
        Route::BadRequest(why) => text(StatusCode::BAD_REQUEST, why.into()),
        // Answered above; the same answer keeps this match total without a panic.
        Route::Health => health(&shared),
    };
    Ok(response)
}

/// `/health`: 200 `ok` or 503 `unhealthy`, counted apart from the other requests.
fn health(shared: &Shared) -> Response<ResponseBody> {
    shared.stats.health_checks.fetch_add(1, Relaxed);
    if shared.healthy.load(Relaxed) {
        shared.respond(StatusCode::OK, TEXT, "ok\n".into())
    } else {
        shared.respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "unhealthy\n".into())
    }
}

/// Reads and discards a request body so the connection stays reusable; a bodiless `GET` returns at
/// once without polling.
async fn drain(mut body: Incoming) {
    use http_body::Body as _;
    if body.is_end_stream() {
        return;
    }
    while let Some(Ok(_)) = body.frame().await {}
}

/// `/echo`: the request line, then one `name: value` line per header, a blank line, and the body.
async fn echo(shared: &Shared, req: Request<Incoming>) -> Response<ResponseBody> {
    let (parts, mut body) = req.into_parts();
    let mut out = Vec::with_capacity(256);
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(format!("{} {} {:?}\n", parts.method, target, parts.version).as_bytes());
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    let header_len = out.len();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return shared.respond(StatusCode::BAD_REQUEST, TEXT, "request body error\n".into());
        };
        if let Some(data) = frame.data_ref() {
            if out.len() - header_len + data.len() > MAX_ECHO_BODY {
                return shared.respond(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    TEXT,
                    "/echo buffers at most 16 MiB; use /echo/body or /count\n".into(),
                );
            }
            out.extend_from_slice(data);
        }
    }
    shared.respond(StatusCode::OK, TEXT, ResponseBody::full(Bytes::from(out)))
}

/// `/count`: consumes the body as it streams in and answers `bytes=N fnv1a64=HHHHHHHHHHHHHHHH`.
async fn count(shared: &Shared, mut body: Incoming) -> Response<ResponseBody> {
    let mut total = 0u64;
    let mut hash = Fnv1a64::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return shared.respond(StatusCode::BAD_REQUEST, TEXT, "request body error\n".into());
        };
        if let Some(data) = frame.data_ref() {
            total += data.len() as u64;
            hash.update(data);
        }
    }
    let report = format!("bytes={total} fnv1a64={:016x}\n", hash.finish());
    shared.respond(StatusCode::OK, TEXT, report.into())
}

impl Shared {
    pub(crate) fn respond(
        &self,
        status: StatusCode,
        content_type: HeaderValue,
        body: ResponseBody,
    ) -> Response<ResponseBody> {
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.reserve(2);
        headers.insert(crate::X_BACKEND, self.header.clone());
        headers.insert(CONTENT_TYPE, content_type);
        response
    }

    fn should_fail(&self) -> bool {
        let p = f64::from_bits(self.fail_rate.load(Relaxed));
        // Skips the RNG entirely in the common p == 0 case.
        p > 0.0 && (p >= 1.0 || rand::random::<f64>() < p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let ok = |ms| Route::Delay(Duration::from_millis(ms));
        let table: &[(&str, Route)] = &[
            ("/", Route::Identity),
            ("/health", Route::Health),
            ("/echo", Route::Echo),
            ("/echo/body", Route::EchoBody),
            ("/count", Route::Count),
            ("/ws", Route::WebSocket),
            (
                "/status/503",
                Route::Status(StatusCode::SERVICE_UNAVAILABLE),
            ),
            ("/status/200", Route::Status(StatusCode::OK)),
            ("/delay/0", ok(0)),
            ("/delay/60000", ok(60_000)),
            ("/bytes/0", Route::Bytes(0)),
            ("/bytes/1073741824", Route::Bytes(MAX_BYTES)),
            // Unreserved paths, prefixes of reserved ones included, are the identity.
            ("/api/test", Route::Identity),
            ("/nope", Route::Identity),
            ("/health/x", Route::Identity),
            ("/status", Route::Identity),
            ("/echo/x", Route::Identity),
            ("", Route::Identity),
        ];
        for (path, want) in table {
            assert_eq!(Route::parse(path), *want, "path {path:?}");
        }
        for bad in [
            "/status/199",
            "/status/600",
            "/status/abc",
            "/status/",
            "/delay/60001",
            "/delay/-1",
            "/bytes/1073741825",
            "/bytes/x",
        ] {
            assert!(
                matches!(Route::parse(bad), Route::BadRequest(_)),
                "path {bad:?}"
            );
        }
    }
}
