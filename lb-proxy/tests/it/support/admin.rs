//! A client for the admin API, and the daemon's configuration written to a file so that a
//! reload can read it.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use super::{client, send};

/// An admin API answer.
#[derive(Debug)]
pub struct AdminAnswer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The JSON body (`Null` when it is not JSON).
    pub json: Value,
}

/// Calls `METHOD path` on the admin API at `addr`, with an optional body and bearer token.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> AdminAnswer {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = Full::new(Bytes::from(body.unwrap_or("").to_owned()));
    let answer = send(&client(), request.body(body).unwrap()).await;
    AdminAnswer {
        status: answer.status,
        json: serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
        headers: answer.headers,
    }
}

/// `GET /backends`, by name.
pub async fn backends(addr: SocketAddr) -> Vec<Value> {
    let answer = call(addr, "GET", "/backends", None, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json);
    answer.json["backends"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `GET /backends/{name}`.
pub async fn backend(addr: SocketAddr, name: &str) -> Value {
    let answer = call(addr, "GET", &format!("/backends/{name}"), None, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json);
    answer.json
}

/// `POST /backends/{name}/{action}` (drain, enable, breaker/reset); the backend after it.
pub async fn act(addr: SocketAddr, name: &str, action: &str) -> Value {
    let answer = call(
        addr,
        "POST",
        &format!("/backends/{name}/{action}"),
        None,
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json);
    answer.json
}

/// `PUT /backends/{name}/weight`.
pub async fn set_weight(addr: SocketAddr, name: &str, weight: Option<u32>) -> Value {
    let body = serde_json::json!({ "weight": weight }).to_string();
    let path = format!("/backends/{name}/weight");
    let answer = call(addr, "PUT", &path, Some(&body), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json);
    answer.json
}

/// A fresh temporary directory for this test.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("lb-it-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to `path` whole: a new file renamed over the old, as editors do, so that a
/// reader never sees half of it.
pub fn write_file(path: &std::path::Path, text: &str) {
    let staged = path.with_extension("tmp");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, path).unwrap();
}
