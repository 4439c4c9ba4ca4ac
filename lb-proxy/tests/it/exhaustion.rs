//! Load and exhaustion: the client-connection limit, slowloris, stalled bodies. Bounded counts,
//! loopback only.

use std::time::Duration;

use crate::support::fake_backend::read_until_closed;
use crate::support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn excess_connections_wait_while_metrics_stay_responsive() {
    let fleet = backends(1).await;
    let daemon = balancer(
        &fleet,
        "server:\n  max_client_connections: 4\n  header_read_timeout: 30s\n",
    )
    .await;
    // Four clients that connect and say nothing hold every slot.
    let mut holders = Vec::new();
    for _ in 0..4 {
        holders.push(TcpStream::connect(daemon.listen_addr).await.unwrap());
    }
    let all_held = eventually(Duration::from_secs(5), || async {
        metric_sum(&scrape(&daemon).await, "lb_client_connections", &[]) == 4.0
    })
    .await;
    assert!(all_held);

    // The fifth waits in the backlog; meanwhile the metrics port keeps answering.
    let addr = daemon.listen_addr;
    let waiting = tokio::spawn(async move { get(&client(), addr, "/").await.status });
    for _ in 0..10 {
        let metrics = scrape(&daemon).await;
        assert_eq!(
            metric_sum(&metrics, "lb_client_connections_accepted_total", &[]),
            4.0,
            "a fifth connection was admitted"
        );
        assert!(!waiting.is_finished(), "served past the limit");
    }

    // A slot frees up: the waiting client is served.
    drop(holders.pop());
    let status = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting client was never served")
        .unwrap();
    assert_eq!(status, 200);
    daemon.shutdown().await;
}

#[tokio::test]
async fn slowloris_connections_do_not_starve_a_normal_client() {
    const SLOW: usize = 500;
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "server:\n  header_read_timeout: 2s\n").await;
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: slow\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    let all_in = eventually(Duration::from_secs(10), || async {
        metric_sum(&scrape(&daemon).await, "lb_client_connections", &[]) >= SLOW as f64
    })
    .await;
    assert!(all_in, "the slow connections were not all accepted");

    // Trickle one header byte per connection in rounds while a normal client is served.
    let trickle = tokio::spawn(async move {
        let mut ended = 0;
        for _ in 0..40 {
            for stream in &mut slow {
                if stream.write_all(b"x").await.is_err() {
                    ended += 1;
                }
            }
            tokio::task::yield_now().await;
        }
        (slow, ended)
    });
    let client = client();
    for _ in 0..20 {
        assert_eq!(get(&client, daemon.listen_addr, "/").await.status, 200);
    }

    // header_read_timeout cuts every one of them, trickle or not.
    let (mut slow, _) = trickle.await.unwrap();
    let mut served = 0;
    for stream in &mut slow {
        let answer = read_until_closed(stream, Duration::from_secs(10)).await;
        assert!(
            answer.closed,
            "a slowloris connection outlived its deadline"
        );
        if answer.text().contains(" 200 ") {
            served += 1;
        }
    }
    assert_eq!(served, 0, "an incomplete head was served");
    // The normal client's keep-alive connection would otherwise live until idle_timeout.
    drop(client);
    let drained = eventually(Duration::from_secs(5), || async {
        metric_sum(&scrape(&daemon).await, "lb_client_connections", &[]) == 0.0
    })
    .await;
    assert!(drained);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_stalled_small_body_gets_408_and_a_stalled_stream_is_cut_by_idle_timeout() {
    let fleet = backends(1).await;
    let daemon = balancer(
        &fleet,
        "server:\n  request_timeout: 400ms\n  idle_timeout: 400ms\n",
    )
    .await;
    // A small declared body is read before forwarding, under request_timeout.
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten..")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.closed);
    assert_eq!(answer.status(), 408, "{}", answer.text());

    // A chunked body streams to the backend; when it stalls, idle_timeout ends the connection
    // (within read_until_closed's 5 s: the configured 400 ms, not the 60 s default).
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.closed, "a stalled upload was never cut off");
    assert!(!answer.text().contains(" 200 "), "{}", answer.text());
    assert!(drained(&daemon).await, "{}", scrape(&daemon).await);
    daemon.shutdown().await;
}
