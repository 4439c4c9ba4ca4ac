//! HTTP/2 connections kept open by control frames alone (`PING`, `SETTINGS`): whether their
//! client reads the answers or not, the connection is closed at `server.idle_timeout`; the one
//! that never reads is the attack of a peer that never reads, and is counted as such.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::http2_attacks::{
    END_HEADERS, END_STREAM, HEADERS, PING, PREFACE, SETTINGS, closed, frame, frames_in, goaway_in,
    raw_h2, request_block, served_meanwhile,
};
use crate::support::*;

/// Sends a PING every 10 s on `stream` until it is closed (within 300 s); the bytes read, and
/// when it closed.
async fn ping_until_closed(stream: &mut TcpStream) -> (Vec<u8>, tokio::time::Instant) {
    let pinging = pings_until_closed(stream);
    (tokio::time::timeout(Duration::from_secs(300), pinging).await).expect("still open at 300 s")
}

async fn pings_until_closed(stream: &mut TcpStream) -> (Vec<u8>, tokio::time::Instant) {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        if stream
            .write_all(&frame(PING, 0, 0, b"12345678"))
            .await
            .is_err()
        {
            return (bytes, tokio::time::Instant::now());
        }
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        while let Ok(read) = tokio::time::timeout_at(until, stream.read(&mut chunk)).await {
            match read {
                Ok(read @ 1..) => bytes.extend_from_slice(&chunk[..read]),
                _ => return (bytes, tokio::time::Instant::now()),
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_kept_busy_by_pings_alone_is_closed_at_the_idle_timeout() {
    let fleet = backends(1).await;
    let extra = "server:\n  h2c: true\n  idle_timeout: 40s\n  request_timeout: 120s\n";
    let daemon = balancer(&fleet, extra).await;
    // No stream at all: closed 40-50 s after it opened, whatever its PINGs.
    let started = tokio::time::Instant::now();
    let mut stream = raw_h2(daemon.listen_addr, &[]).await;
    let (bytes, closed) = ping_until_closed(&mut stream).await;
    let took = closed - started;
    assert!(
        took >= Duration::from_secs(40) && took <= Duration::from_secs(50),
        "{took:?}"
    );
    assert_eq!(goaway_in(&bytes), Some(0), "a GOAWAY with NO_ERROR");
    // It read what it was sent: a quiet client, not a peer that never reads.
    assert_eq!(
        super::http2_attacks::closed(&daemon, "flow_control_stall").await,
        0.0
    );

    // A stream open for 60 s keeps it; the count starts again when the stream ends.
    let started = tokio::time::Instant::now();
    let mut stream = raw_h2(daemon.listen_addr, &[]).await;
    let block = request_block(&daemon.listen_addr.to_string(), "/delay/60000");
    let headers = frame(HEADERS, END_HEADERS | END_STREAM, 1, &block);
    stream.write_all(&headers).await.unwrap();
    let (bytes, closed) = ping_until_closed(&mut stream).await;
    let took = closed - started;
    assert!(
        took >= Duration::from_secs(100) && took <= Duration::from_secs(110),
        "{took:?}"
    );
    let answered = (frames_in(&bytes).iter())
        .any(|(kind, stream, block)| (*kind, *stream, block.first()) == (HEADERS, 1, Some(&0x88)));
    assert!(answered, "the response (:status 200) came first");
    assert_eq!(goaway_in(&bytes), Some(0));
    daemon.shutdown().await;
}

/// Floods `frames` (each asking for an answer) on a connection whose client reads nothing and
/// has a small receive buffer, until the balancer cuts it: when it did, and the bytes written.
async fn flood_unread(
    addr: std::net::SocketAddr,
    frames: Vec<u8>,
) -> (tokio::time::Instant, usize) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    stream.write_all(&out).await.unwrap();
    let flood = frames.repeat(512);
    let mut written = 0;
    let writing = async {
        while stream.write_all(&flood).await.is_ok() {
            written += flood.len();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), writing)
        .await
        .expect("still open at 60 s");
    (tokio::time::Instant::now(), written)
}

#[tokio::test]
async fn a_client_flooding_pings_or_settings_without_reading_is_closed_and_counted() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  h2c: true\n  idle_timeout: 1s\n").await;
    let addr = daemon.listen_addr;
    let cases: [(&str, Vec<u8>); 2] = [
        ("PING", frame(PING, 0, 0, b"12345678")),
        // SETTINGS_INITIAL_WINDOW_SIZE 65535: valid, and each one must be acknowledged.
        ("SETTINGS", frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff])),
    ];
    for (count, (name, flood)) in (1..).zip(cases) {
        let started = tokio::time::Instant::now();
        let flooding = tokio::spawn(flood_unread(addr, flood));
        // Others are served while the flood holds its connection.
        served_meanwhile(addr).await;
        // Its answers back up until the balancer stops reading it: nothing moves, and the idle
        // timeout cuts it.
        let (cut, written) = flooding.await.unwrap();
        assert!(
            cut - started >= Duration::from_secs(1),
            "{name}: cut before the idle timeout, {written} bytes written"
        );
        assert_eq!(
            closed(&daemon, "flow_control_stall").await,
            f64::from(count),
            "{name}"
        );
    }
    served_meanwhile(addr).await;
    daemon.shutdown().await;
}
