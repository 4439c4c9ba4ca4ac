//! The metrics endpoint: `GET {metrics.path}` answers the rendered registry.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::Metrics;
use crate::shutdown::Shutdown;
use crate::side_listener::{self, SideResponse};

/// Serves `GET {path}` with the rendered registry until `stop` starts.
pub(crate) async fn serve(
    listener: Arc<TcpListener>,
    path: String,
    metrics: Arc<Metrics>,
    stop: Arc<Shutdown>,
) {
    let path: Arc<str> = path.into();
    let handle = move |request: Request<Incoming>| {
        let response = answer(&request, &path, &metrics);
        std::future::ready(response)
    };
    side_listener::serve(listener, stop, "metrics", handle).await;
}

fn answer(request: &Request<Incoming>, path: &str, metrics: &Metrics) -> SideResponse {
    let plain = |status: StatusCode, body: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != path {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are served elsewhere on this port\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    let mut response = Response::new(Full::new(Bytes::from(metrics.render())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(prometheus_client::encoding::prometheus_text::CONTENT_TYPE),
    );
    response
}
