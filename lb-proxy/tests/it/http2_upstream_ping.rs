//! PINGs to HTTP/2 backends (`upstream.http2.keepalive_interval`, `keepalive_timeout`): a
//! backend of the `h2` crate that answers its first connection's request with a head and then
//! goes silent (it stops reading its connection, so its PING acknowledgements never come) has
//! that connection closed after interval + timeout: the request fails, the close is counted,
//! and the next request succeeds on a new connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::support::*;

/// An h2c backend: on its first connection, a 200 head for the first request and then
/// silence (the connection is held open but never read again); on later ones, `fine` for
/// every request. The count of connections it accepted.
async fn going_silent_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let first = counter.fetch_add(1, Relaxed) == 0;
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((_request, mut respond))) = connection.accept().await {
                    let response = http::Response::new(());
                    if first {
                        let _stream = respond.send_response(response, false).unwrap();
                        // One poll writes the head out; then nothing reads the connection
                        // again, so a PING is never acknowledged.
                        std::future::poll_fn(|cx| {
                            let _ = connection.poll_accept(cx);
                            Poll::Ready(())
                        })
                        .await;
                        let never: std::convert::Infallible = std::future::pending().await;
                        match never {}
                    }
                    let mut body = respond.send_response(response, false).unwrap();
                    body.send_data(Bytes::from_static(b"fine"), true).unwrap();
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_backend_that_stops_answering_pings_loses_its_connection_and_the_next_request_a_new_one()
{
    let (addr, accepted) = going_silent_backend().await;
    let extra = "upstream:\n  protocol: h2c\n  http2:\n    keepalive_interval: 200ms\n    \
                 keepalive_timeout: 200ms\nretry:\n  max_attempts: 1\n";
    let yaml = config_yaml(&[("silent".to_owned(), addr, 1)], extra);
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let client = crate::support::client();

    // The head arrives; the body never does: the connection is closed under it.
    let request = http::Request::get(format!("http://{}/stuck", daemon.listen_addr))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.expect("the head");
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .expect("the body ends within the ping's bounds, not at the request timeout");
    assert!(body.is_err(), "the body was cut off");

    let timeouts = || async {
        let metrics = scrape(&daemon).await;
        metric_sum(
            &metrics,
            "lb_upstream_http2_ping_timeouts_total",
            &["backend=\"silent\""],
        )
    };
    assert!(
        eventually(Duration::from_secs(5), || async { timeouts().await == 1.0 }).await,
        "the close is counted"
    );

    // The closed connection left the pool: the next request opens another, and succeeds.
    let answer = get(&client, daemon.listen_addr, "/next").await;
    assert_eq!(
        (answer.status.as_u16(), answer.text().as_str()),
        (200, "fine")
    );
    assert_eq!(accepted.load(Relaxed), 2);
    assert_eq!(timeouts().await, 1.0);
}
