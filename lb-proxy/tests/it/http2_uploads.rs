//! HTTP/2 uploads that must never reach an HTTP/1.1 backend as a request that looks whole, nor
//! leave its connection waiting for the rest: a body the client resets (security.md H9), one
//! that ends short of its `content-length` after part of it went upstream, and one over
//! `server.max_request_body_bytes` (H14). The backend is a fake that parses what it receives
//! with its own framing, as a backend that trusts the balancer would.

use std::time::Duration;

use tokio::net::TcpStream;

use crate::support::fake_backend::{Behaviour, FakeBackend};
use crate::support::*;

/// A fake backend answering `ok`, a balancer with `h2c` (and `server_extra` under `server:`)
/// and one attempt per request in front of it, and an HTTP/2 client connected to it.
async fn h2c_to_fake(
    server_extra: &str,
) -> (
    FakeBackend,
    lb_proxy::Daemon,
    h2::client::SendRequest<bytes::Bytes>,
) {
    let fake = FakeBackend::start(vec![Behaviour::Respond("ok")]).await;
    let yaml = config_yaml(
        &[fake.spec("fake")],
        &format!("server:\n  h2c: true\n{server_extra}retry:\n  max_attempts: 1\n"),
    );
    let daemon = lb_proxy::Daemon::start(parse(&yaml)).await.unwrap();
    let stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let (client, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    (fake, daemon, client)
}

/// Starts `POST path` (with `content-length: length` when given) on `client` and sends `first`,
/// returning once the fake has received it: the request's answer to come and its body stream.
async fn upload_started(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    fake: &FakeBackend,
    path: &str,
    length: Option<u64>,
    first: &'static [u8],
) -> (h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>) {
    let mut request = http::Request::post(path);
    if let Some(length) = length {
        request = request.header("content-length", length);
    }
    *client = client.clone().ready().await.unwrap();
    let (response, mut upload) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    upload
        .send_data(bytes::Bytes::from_static(first), false)
        .unwrap();
    let text = String::from_utf8_lossy(first).into_owned();
    assert!(
        eventually(Duration::from_secs(5), || async {
            fake.received_text().contains(&text)
        })
        .await,
        "the first bytes never reached the backend: {:?}",
        fake.received_text()
    );
    (response, upload)
}

/// Waits until the balancer has ended the backend request, then gives the heads of whatever
/// reached the fake as a whole request meanwhile (what the balancer sent is on its way to the
/// fake, which parses it).
async fn whole_requests_once_ended(daemon: &lb_proxy::Daemon, fake: &FakeBackend) -> Vec<String> {
    assert!(
        eventually(Duration::from_secs(5), || async {
            metric_sum(&scrape(daemon).await, "lb_active_connections", &[]) == 0.0
        })
        .await,
        "the backend request never ended"
    );
    eventually(Duration::from_millis(300), || async {
        !fake.requests().is_empty()
    })
    .await;
    fake.requests().into_iter().map(|(head, _)| head).collect()
}

#[tokio::test]
async fn an_upload_the_client_cancels_never_reaches_the_backend_as_a_whole_request() {
    let (fake, daemon, mut client) = h2c_to_fake("").await;
    let addr = daemon.listen_addr;
    for reason in [h2::Reason::CANCEL, h2::Reason::NO_ERROR] {
        // No length: the upload goes to the backend chunked, where a quiet end of the body
        // would be its last chunk.
        let (_response, mut upload) = upload_started(
            &mut client,
            &fake,
            &format!("http://{addr}/upload"),
            None,
            b"part of it",
        )
        .await;
        upload.send_reset(reason);
        let whole = whole_requests_once_ended(&daemon, &fake).await;
        assert!(
            whole.is_empty(),
            "a {reason:?} upload reached the backend as a whole request: {whole:?}"
        );
    }
    daemon.shutdown().await;
}

/// A body that ends short of its `content-length` after part of it went upstream: h2 finds the
/// mismatch only at the end, when the backend already has the head and some bytes. The backend
/// connection must be dropped, not pooled: the next request on it would be read as the rest
/// of the body (a desync). The length is over what the balancer reads in full before it
/// sends (64 KiB), so that the body streams.
#[tokio::test]
async fn an_upload_that_ends_short_of_its_length_never_desyncs_the_backend() {
    let (fake, daemon, mut client) = h2c_to_fake("").await;
    let addr = daemon.listen_addr;
    let path = format!("http://{addr}/upload");
    let (response, mut upload) =
        upload_started(&mut client, &fake, &path, Some(100_000), b"first part").await;
    upload.send_data(bytes::Bytes::new(), true).unwrap();
    let answer = response.await.map(|response| response.status());
    assert!(
        !matches!(answer, Ok(status) if status.is_success()),
        "a short upload was answered {answer:?}"
    );
    // The next request reaches the backend as itself, on a connection of its own.
    client = client.ready().await.unwrap();
    let request = http::Request::get(format!("http://{addr}/next"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].0.starts_with("GET /next "), "{requests:?}");
    assert_eq!(fake.connection_count(), 2);
    daemon.shutdown().await;
}

/// `server.max_request_body_bytes` holds for HTTP/2 uploads as for HTTP/1.1 ones: a declared
/// length over it is refused with 413 before anything is sent; an upload without a length that
/// crosses it is cut, and never reaches the backend as a whole request.
#[tokio::test]
async fn an_http2_upload_over_the_body_limit_never_reaches_the_backend_whole() {
    let (fake, daemon, mut client) = h2c_to_fake("  max_request_body_bytes: 100000\n").await;
    let addr = daemon.listen_addr;

    let declared = http::Request::post(format!("http://{addr}/declared"))
        .header("content-length", "100001")
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let (response, _upload) = client.send_request(declared, false).unwrap();
    assert_eq!(response.await.unwrap().status(), 413);

    let streamed = http::Request::post(format!("http://{addr}/streamed"))
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let (response, mut upload) = client.send_request(streamed, false).unwrap();
    let chunk = bytes::Bytes::from(vec![b'a'; 10_000]);
    let mut sent = 0;
    let writer = async {
        // 15 chunks of 10,000 bytes, as the window lets them go; the 11th crosses the limit.
        while sent < 150_000 {
            upload.reserve_capacity(chunk.len());
            let capacity = std::future::poll_fn(|cx| upload.poll_capacity(cx)).await;
            match capacity {
                Some(Ok(room)) if room >= chunk.len() => {}
                Some(Ok(_)) => continue,
                _ => return,
            }
            if upload.send_data(chunk.clone(), false).is_err() {
                return;
            }
            sent += chunk.len();
        }
        // The end, should the balancer still take it: without the limit, a whole request.
        let _ = upload.send_data(bytes::Bytes::new(), true);
    };
    let (answer, ()) = tokio::join!(response, writer);
    let answer = answer.map(|response| response.status());
    assert!(
        !matches!(answer, Ok(status) if status.is_success()),
        "an upload over the limit was answered {answer:?}"
    );
    let whole = whole_requests_once_ended(&daemon, &fake).await;
    assert!(whole.is_empty(), "{whole:?}");
    assert!(!fake.received_text().contains("/declared"));
    daemon.shutdown().await;
}

/// Small bodies with a known length are read in full before a backend is picked, so that a
/// retry can send them again; on one connection, at most `server.http2.max_buffered_body_bytes`
/// of them at once. Past it a body streams through, as a larger one does: a client's unfinished
/// uploads cannot make the balancer hold a body per stream (security.md H16).
#[tokio::test]
async fn small_bodies_past_the_connections_buffer_room_stream_through() {
    let room = "  http2:\n    max_buffered_body_bytes: 100000\n";
    let (fake, daemon, mut client) = h2c_to_fake(room).await;
    let addr = daemon.listen_addr;
    let path = format!("http://{addr}/upload");
    // 60,000 declared: read in full first, so its first bytes stay with the balancer.
    client = client.ready().await.unwrap();
    let request = http::Request::post(&path).header("content-length", 60_000);
    let (held_response, mut held) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    let first = bytes::Bytes::from_static(b"held-by-the-balancer");
    held.send_data(first.clone(), false).unwrap();
    // 60,000 more do not fit the 40,000 left: this one streams to the backend at once.
    let (_streamed_response, mut streamed) =
        upload_started(&mut client, &fake, &path, Some(60_000), b"streamed-at-once").await;
    assert!(
        !fake.received_text().contains("held-by-the-balancer"),
        "the first body went upstream before it was whole"
    );
    // The first ends: it reaches the backend whole.
    let rest = vec![b'x'; 60_000 - first.len()];
    held.send_data(rest.into(), true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), held_response)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(response.status(), 200);
    let whole = fake.requests();
    assert!(
        whole
            .iter()
            .any(|(head, body)| head.contains("content-length: 60000")
                && body.starts_with(b"held-by-the-balancer")
                && body.len() == 60_000),
        "{:?}",
        whole
            .iter()
            .map(|(head, body)| (head, body.len()))
            .collect::<Vec<_>>()
    );
    streamed.send_reset(h2::Reason::CANCEL);
    daemon.shutdown().await;
}
