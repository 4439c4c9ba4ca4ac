//! The timers on an in-memory stream with tokio's paused clock: each deadline is checked to
//! the millisecond, without waiting for it.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const IDLE: Duration = Duration::from_secs(60);
const HEAD: Duration = Duration::from_secs(10);
const RELEASE: Duration = Duration::from_secs(1);

fn timed(http1: bool) -> (TimedIo<DuplexStream>, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(1024);
    let timers = http1.then_some(Http1Timers {
        header_read_timeout: HEAD,
        release_after: RELEASE,
    });
    (TimedIo::new(ours, IDLE, timers), theirs)
}

/// Reads one byte; how long it took on the paused clock, and the outcome.
async fn read_one(io: &mut TimedIo<DuplexStream>) -> (Duration, io::Result<usize>) {
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let result = io.read(&mut byte).await;
    (started.elapsed(), result)
}

#[tokio::test(start_paused = true)]
async fn a_quiet_connection_fails_at_the_idle_timeout() {
    let (mut io, _peer) = timed(false);
    let (took, result) = read_one(&mut io).await;
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
    assert_eq!(took, IDLE);
}

#[tokio::test(start_paused = true)]
async fn every_byte_restarts_the_idle_timeout() {
    let (mut io, mut peer) = timed(false);
    let started = Instant::now();
    for _ in 0..3 {
        tokio::time::advance(IDLE - Duration::from_millis(1)).await;
        peer.write_all(b"x").await.unwrap();
        assert_eq!(read_one(&mut io).await.1.unwrap(), 1);
    }
    let (_, result) = read_one(&mut io).await;
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
    assert_eq!(
        started.elapsed(),
        (IDLE - Duration::from_millis(1)) * 3 + IDLE
    );
}

#[tokio::test(start_paused = true)]
async fn the_first_head_is_timed_from_the_accept_and_trickling_does_not_extend_it() {
    let (mut io, mut peer) = timed(true);
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(900)).await;
            if peer.write_all(b"G").await.is_err() {
                break;
            }
        }
    });
    let error = loop {
        if let (_, Err(error)) = read_one(&mut io).await {
            break error;
        }
    };
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), HEAD);
    trickle.abort();
}

#[tokio::test(start_paused = true)]
async fn a_later_head_is_timed_from_its_start_and_not_between_requests() {
    let (mut io, mut peer) = timed(true);
    io.end_head();
    io.set_waiting(true);
    // Between requests only the idle timeout counts: 30 s of quiet is fine.
    tokio::time::advance(Duration::from_secs(30)).await;
    peer.write_all(b"G").await.unwrap();
    assert_eq!(read_one(&mut io).await.1.unwrap(), 1);
    io.set_waiting(false);
    io.start_head();
    let (took, result) = read_one(&mut io).await;
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
    assert_eq!(took, HEAD);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_connection_is_due_for_release_after_the_release_delay() {
    let (mut io, _peer) = timed(true);
    io.end_head();
    io.set_waiting(true);
    let started = Instant::now();
    let mut byte = [0u8; 1];
    std::future::poll_fn(|cx| {
        let mut buf = ReadBuf::new(&mut byte);
        match Pin::new(&mut io).poll_read(cx, &mut buf) {
            Poll::Pending if io.take_release_due() => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => panic!("read {result:?}"),
        }
    })
    .await;
    assert_eq!(started.elapsed(), RELEASE);
}

#[tokio::test(start_paused = true)]
async fn a_busy_connection_is_never_due_for_release() {
    let (mut io, _peer) = timed(true);
    io.end_head();
    let started = Instant::now();
    let error = std::future::poll_fn(|cx| {
        let polled = io.poll_idle(cx);
        assert!(!io.take_release_due(), "released while busy");
        polled
    })
    .await;
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), IDLE);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_wait_is_cut_at_the_idle_timeout_and_a_write_restarts_it() {
    let (mut io, mut peer) = timed(true);
    io.end_head();
    tokio::time::advance(Duration::from_secs(45)).await;
    io.write_all(b"part of a response").await.unwrap();
    let mut sink = [0u8; 64];
    let _ = peer.read(&mut sink).await.unwrap();
    let started = Instant::now();
    let error = std::future::poll_fn(|cx| io.poll_idle(cx)).await;
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), IDLE);
}
