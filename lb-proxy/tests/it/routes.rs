//! Routes and pools on live traffic: hosts and paths reach the right pool, paths are
//! normalised before matching (the attacks of the issue), routes answer themselves, rewrite
//! requests and responses, and per-route rate limits answer 429 with their fields.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use lb_proxy::Daemon;
use test_backend::RunningBackend;
use tokio::net::TcpStream;

use crate::support::raw::{ask, get_on};
use crate::support::{backends, client, get, metric_sum, parse, scrape, send, tally};

/// A configuration of pools (name, backends) and `rest` (routes, limits...), on port 0.
pub fn pooled(pools: &[(&str, &[RunningBackend])], rest: &str) -> String {
    let mut yaml = String::from(
        "server:\n  listen: 127.0.0.1:0\nmetrics:\n  listen: 127.0.0.1:0\n\
         health_check:\n  enabled: false\nretry:\n  max_attempts: 1\npools:\n",
    );
    for (name, fleet) in pools {
        yaml.push_str(&format!("  {name}:\n    backends:\n"));
        for backend in *fleet {
            yaml.push_str(&format!(
                "      - name: {}\n        address: {}\n",
                backend.name(),
                backend.addr()
            ));
        }
    }
    yaml.push_str(rest);
    yaml
}

async fn start(yaml: &str) -> Daemon {
    Daemon::start(parse(yaml)).await.expect("balancer starts")
}

pub async fn get_host(daemon: &Daemon, host: &str, path: &str) -> crate::support::Answer {
    let request = Request::get(format!("http://{}{path}", daemon.listen_addr))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&client(), request).await
}

#[tokio::test]
async fn three_routes_and_two_pools_send_each_host_and_path_to_its_pool() {
    let fleet = backends(3).await;
    let (api, web) = fleet.split_at(2);
    let routes = "routes:\n\
        \x20 - name: api\n    match: {host: api.localhost}\n    pool: api\n\
        \x20 - name: static\n    match: {path_segment_prefix: /static}\n    pool: api\n\
        \x20 - name: web\n    pool: web\n";
    let daemon = start(&pooled(&[("api", api), ("web", web)], routes)).await;
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(get_host(&daemon, "API.localhost:8080", "/").await);
    }
    assert_eq!(tally(&answers).get("b0"), Some(&3), "{:?}", tally(&answers));
    assert_eq!(tally(&answers).get("b1"), Some(&3));
    for (host, path, want) in [
        ("www.localhost", "/", "b2"),
        ("www.localhost", "/static/app.js", "b"),
        ("www.localhost", "/staticfoo", "b2"),
        ("other", "/static", "b"),
    ] {
        let answer = get_host(&daemon, host, path).await;
        assert_eq!(answer.status, 200, "{host}{path}");
        assert!(
            answer.backend().starts_with(want),
            "{host}{path}: {}",
            answer.backend()
        );
        if want == "b" {
            assert_ne!(answer.backend(), "b2", "{host}{path}");
        }
    }
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(&metrics, "lb_requests_total", &["route=\"api\""]),
        6.0
    );
    assert_eq!(
        metric_sum(&metrics, "lb_requests_total", &["route=\"static\""]),
        2.0
    );
    assert_eq!(
        metric_sum(&metrics, "lb_requests_total", &["route=\"web\""]),
        2.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "lb_request_duration_seconds_count",
            &["route=\"web\"", "backend=\"b2\""]
        ),
        2.0
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn normalised_paths_keep_tricks_off_a_protected_route() {
    let fleet = backends(1).await;
    let routes = "routes:\n\
        \x20 - name: admin\n    match: {path_segment_prefix: /admin}\n    respond: {status: 403, body: \"forbidden\\n\"}\n\
        \x20 - name: public\n    pool: web\n";
    let daemon = start(&pooled(&[("web", &fleet)], routes)).await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    for (path, want) in [
        ("/public/../admin", 403),
        ("/public/%2e%2e/admin/x", 403),
        ("//admin", 403),
        ("/public/./../ADMIN", 200),
        ("/admin/", 403),
        ("/administrator", 200),
    ] {
        let response = get_on(&mut stream, path).await;
        assert_eq!(response.status, want, "{path}: {}", response.head);
    }
    // Refused outright, and the connection is not reused after a refusal with a body.
    for path in [
        "/public%2F..%2Fadmin",
        "/public/..;/admin",
        "/x%00",
        "/a%zz",
    ] {
        let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
        let response = get_on(&mut stream, path).await;
        assert_eq!(response.status, 400, "{path}");
    }
    // What the backend sees is the normalised path, query kept.
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let response = get_on(&mut stream, "/x/../echo?a=1").await;
    let body = String::from_utf8_lossy(&response.body).into_owned();
    assert!(body.starts_with("GET /echo?a=1 "), "{body}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn routes_answer_redirect_and_rewrite() {
    let fleet = backends(1).await;
    let routes = "routes:\n\
        \x20 - name: old\n    match: {path_segment_prefix: /old}\n    redirect: {location: \"https://${host}/new${path}${query}\", status: 308}\n\
        \x20 - name: ping\n    match: {path: /ping, methods: [GET]}\n    respond: {status: 200, body: \"pong\\n\", content_type: text/plain}\n\
        \x20 - name: api\n    match: {path_segment_prefix: /api}\n    pool: web\n\
        \x20   rewrite: {strip_prefix: /api, host: internal.svc}\n\
        \x20   request_headers: {set: {x-client: \"${client_ip}\"}, remove: [x-secret]}\n\
        \x20   response_headers: {set: {x-served-by: lb}, remove: [x-backend]}\n";
    let daemon = start(&pooled(&[("web", &fleet)], routes)).await;
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let response = get_on(&mut stream, "/old/page?q=2").await;
    assert_eq!(response.status, 308);
    assert!(
        response
            .head
            .contains("location: https://test/new/old/page?q=2\r\n"),
        "{}",
        response.head
    );
    let response = get_on(&mut stream, "/ping").await;
    assert_eq!((response.status, &response.body[..]), (200, &b"pong\n"[..]));
    let (response, _) = ask(
        &mut stream,
        b"GET /api/echo HTTP/1.1\r\nHost: front.example\r\nX-Secret: s3cr3t\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 200);
    let body = String::from_utf8_lossy(&response.body).into_owned();
    assert!(body.starts_with("GET /echo "), "{body}");
    assert!(body.contains("host: internal.svc\n"), "{body}");
    assert!(body.contains("x-forwarded-host: front.example\n"), "{body}");
    assert!(body.contains("x-client: 127.0.0.1\n"), "{body}");
    assert!(!body.contains("s3cr3t"), "{body}");
    assert!(
        response.head.contains("x-served-by: lb\r\n"),
        "{}",
        response.head
    );
    assert!(!response.head.contains("x-backend"), "{}", response.head);
    // A request no route matches.
    let response = get_on(&mut stream, "/elsewhere").await;
    assert_eq!(response.status, 404);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_route_rate_limit_answers_429_with_its_fields() {
    let fleet = backends(1).await;
    let rest = "rate_limits:\n  per-client:\n    requests: 3\n    per: 1m\n\
        routes:\n  - name: limited\n    match: {path_segment_prefix: /limited}\n    pool: web\n    rate_limit: per-client\n\
        \x20 - name: other\n    match: {path_prefix: /other}\n    pool: web\n    rate_limit: per-client\n\
        \x20 - name: free\n    pool: web\n";
    let daemon = start(&pooled(&[("web", &fleet)], rest)).await;
    let client = client();
    let mut statuses = Vec::new();
    for path in ["/limited/", "/limited/a", "/other"] {
        statuses.push(get(&client, daemon.listen_addr, path).await.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200]);
    // Both routes name the limit: one budget, now spent.
    for path in ["/limited/", "/other"] {
        let answer = get(&client, daemon.listen_addr, path).await;
        assert_eq!(answer.status, 429, "{path}");
        let field = |name: &str| {
            answer
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let retry: u64 = field("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(
            field("ratelimit-policy").as_deref(),
            Some("\"per-client\";q=3;w=60")
        );
        assert!(
            field("ratelimit")
                .unwrap()
                .starts_with("\"per-client\";r=0;t=")
        );
    }
    assert_eq!(get(&client, daemon.listen_addr, "/free").await.status, 200);
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(&metrics, "lb_rate_limited_total", &["limit=\"per-client\""]),
        2.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "lb_requests_total",
            &["status=\"429\"", "route=\"limited\""]
        ),
        1.0
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn the_shipped_routes_example_does_what_it_says() {
    let fleet = backends(3).await;
    let mut yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/examples/routes.yaml"
    ))
    .expect("the example");
    // The example's backends and listener, moved to this test's ports.
    for (port, backend) in [8001, 8002, 8003].into_iter().zip(&fleet) {
        yaml = yaml.replace(&format!("127.0.0.1:{port}"), &backend.addr().to_string());
    }
    yaml = yaml.replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:0");
    yaml.push_str("metrics:\n  listen: 127.0.0.1:0\n");
    let daemon = start(&yaml).await;
    for _ in 0..4 {
        let answer = get_host(&daemon, "api.localhost", "/").await;
        assert!(
            ["b0", "b1"].contains(&answer.backend().as_str()),
            "{}",
            answer.backend()
        );
    }
    assert_eq!(
        get_host(&daemon, "www.localhost", "/").await.backend(),
        "b2"
    );
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            get_host(&daemon, "www.localhost", "/limited/")
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(&statuses[..5], [200; 5], "{statuses:?}");
    assert!(
        statuses[5..].contains(&429),
        "5 per second per client: {statuses:?}"
    );
    daemon.shutdown().await;
}

/// The admitted rate of a limit shared by every client stays within 5 % of the limit while
/// many clients on two worker threads ask for far more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::disallowed_methods)] // the limit is measured against the wall clock it runs on
async fn a_global_limit_admits_its_rate_within_five_percent_across_workers() {
    let fleet = backends(1).await;
    let rest = "rate_limits:\n  all:\n    requests: 100\n    per: 1s\n    burst: 10\n    key: global\n\
                routes:\n  - pool: web\n    rate_limit: all\n";
    let daemon = start(&pooled(&[("web", &fleet)], rest)).await;
    let addr = daemon.listen_addr;
    let started = std::time::Instant::now();
    let until = started + std::time::Duration::from_secs(2);
    let clients: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn(async move {
                let client = client();
                let mut admitted = 0u32;
                while std::time::Instant::now() < until {
                    admitted += u32::from(get(&client, addr, "/").await.status == 200);
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0u32;
    for task in clients {
        admitted += task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    // 100 a second over the time taken, plus the burst of 10 (which also absorbs the moments a
    // budget waits unused between a request and the next).
    let want = 100.0 * elapsed + 10.0;
    let error = (f64::from(admitted) - want).abs() / want;
    assert!(
        error <= 0.05,
        "admitted {admitted} in {elapsed:.3} s, want {want:.0} ± 5 %"
    );
    daemon.shutdown().await;
}
