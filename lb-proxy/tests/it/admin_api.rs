//! The admin API as a client (and an intruder) sees it: the bearer token, JSON errors, drain
//! and enable, weights, breaker reset, the effective configuration.

use std::time::Duration;

use http::StatusCode;
use lb_proxy::Daemon;
use tokio::net::TcpStream;

use crate::support::admin::{self, call, temp_dir};
use crate::support::fake_backend::{Behaviour, FakeBackend};
use crate::support::*;

const ADMIN: &str = "admin:\n  listen: 127.0.0.1:0\n";

async fn with_admin(backends: &[test_backend::RunningBackend], extra: &str) -> Daemon {
    balancer(backends, &format!("{ADMIN}{extra}")).await
}

#[tokio::test]
async fn a_configured_token_is_required_on_every_endpoint() {
    let fleet = backends(1).await;
    let dir = temp_dir("token");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let extra = format!("  token_file: {}\n", token_file.display());
    let daemon = with_admin(&fleet, &extra).await;
    let admin = daemon.admin_addr.unwrap();
    for (method, path) in [
        ("GET", "/backends"),
        ("GET", "/config"),
        ("POST", "/backends/b0/drain"),
        ("POST", "/reload"),
        ("GET", "/nowhere"),
    ] {
        for token in [
            None,
            Some("wrong"),
            Some("s3cret-toke"),
            Some("s3cret-tokenX"),
            Some(""),
        ] {
            let answer = call(admin, method, path, None, token).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            assert_eq!(answer.headers["www-authenticate"], "Bearer");
            assert!(answer.json["error"].is_string());
        }
    }
    let answer = call(admin, "GET", "/backends", None, Some("s3cret-token")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json["backends"][0]["name"], "b0");
    // Nothing was drained by the refused calls.
    assert_eq!(answer.json["backends"][0]["drained"], false);
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_token_that_cannot_be_read_stops_the_start() {
    let fleet = backends(1).await;
    let missing = temp_dir("no-token").join("absent");
    for source in [
        "  token_env: LB_IT_NO_SUCH_VARIABLE\n".to_owned(),
        format!("  token_file: {}\n", missing.display()),
    ] {
        let yaml = config_yaml(&specs(&fleet), &format!("{ADMIN}{source}"));
        let error = Daemon::start(parse(&yaml)).await.expect_err("no token");
        let message = error.to_string();
        assert!(
            message.contains("LB_IT_NO_SUCH_VARIABLE") || message.contains("absent"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn errors_are_json_with_a_message() {
    let fleet = backends(1).await;
    let daemon = with_admin(&fleet, "").await;
    let admin = daemon.admin_addr.unwrap();
    let table: &[(&str, &str, Option<&str>, StatusCode, &str)] = &[
        ("GET", "/backends/b9", None, StatusCode::NOT_FOUND, "b9"),
        (
            "POST",
            "/backends/b9/drain",
            None,
            StatusCode::NOT_FOUND,
            "b9",
        ),
        (
            "PUT",
            "/backends/b9/weight",
            Some(r#"{"weight": 2}"#),
            StatusCode::NOT_FOUND,
            "b9",
        ),
        ("GET", "/nowhere", None, StatusCode::NOT_FOUND, "endpoint"),
        (
            "DELETE",
            "/backends",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "GET",
        ),
        (
            "GET",
            "/backends/b0/drain",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "POST",
        ),
        (
            "PUT",
            "/backends/b0/weight",
            Some("nine"),
            StatusCode::BAD_REQUEST,
            "JSON",
        ),
        (
            "PUT",
            "/backends/b0/weight",
            Some(r#"{"weight": 0}"#),
            StatusCode::BAD_REQUEST,
            "1",
        ),
        (
            "PUT",
            "/backends/b0/weight",
            Some(r#"{"weight": -3}"#),
            StatusCode::BAD_REQUEST,
            "1",
        ),
        (
            "PUT",
            "/backends/b0/weight",
            Some(r#"{"weight": 2.5}"#),
            StatusCode::BAD_REQUEST,
            "1",
        ),
        (
            "PUT",
            "/backends/b0/weight",
            Some(r#"{"weight": 9999999999}"#),
            StatusCode::BAD_REQUEST,
            "1",
        ),
        (
            "PUT",
            "/backends/b0/weight",
            Some(r#"{"heavy": 2}"#),
            StatusCode::BAD_REQUEST,
            "weight",
        ),
        (
            "POST",
            "/reload",
            None,
            StatusCode::CONFLICT,
            "no configuration file",
        ),
    ];
    for (method, path, body, status, says) in table {
        let answer = call(admin, method, path, *body, None).await;
        assert_eq!(
            answer.status, *status,
            "{method} {path} {body:?}: {:?}",
            answer.json
        );
        let message = answer.json["error"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{method} {path}: {message}");
        assert_eq!(answer.headers["content-type"], "application/json");
    }
    let huge = format!(r#"{{"weight": 2, "pad": "{}"}}"#, "x".repeat(100_000));
    let answer = call(admin, "PUT", "/backends/b0/weight", Some(&huge), None).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        admin::backend(admin, "b0").await["weight"],
        1,
        "nothing changed"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn drain_takes_no_new_requests_lets_in_flight_ones_finish_and_says_when_done() {
    let fleet = backends(2).await;
    let daemon = with_admin(&fleet, "").await;
    let admin = daemon.admin_addr.unwrap();
    let addr = daemon.listen_addr;
    // Two slow requests: one lands on each backend.
    let slow: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get(&client(), addr, "/delay/700").await }))
        .collect();
    assert!(
        eventually(Duration::from_secs(5), || async {
            admin::backend(admin, "b1").await["in_flight"] == 1
        })
        .await
    );
    let drained = admin::act(admin, "b1", "drain").await;
    assert_eq!(drained["drained"], true);
    assert_eq!(drained["drain_done"], false, "one request still in flight");
    assert_eq!(drained["overrides"], serde_json::json!(["drain"]));
    let answers: Vec<Answer> = {
        let client = client();
        let mut answers = Vec::new();
        for _ in 0..10 {
            answers.push(get(&client, addr, "/").await);
        }
        answers
    };
    assert!(
        answers.iter().all(|a| a.backend() == "b0"),
        "{:?}",
        tally(&answers)
    );
    let mut finished = Vec::new();
    for request in slow {
        finished.push(request.await.unwrap());
    }
    assert!(finished.iter().all(|a| a.status == StatusCode::OK));
    // The answer from the drained backend asked its client to reconnect.
    let from_b1 = finished.iter().find(|a| a.backend() == "b1").unwrap();
    assert_eq!(from_b1.headers.get("connection").unwrap(), "close");
    let done = admin::backend(admin, "b1").await;
    assert_eq!(
        (done["in_flight"].clone(), done["drain_done"].clone()),
        (0.into(), true.into())
    );
    assert_eq!(
        done["health"], "healthy",
        "health checks go on while drained"
    );
    let metrics = scrape(&daemon).await;
    assert!(metrics.contains("lb_backend_drained{backend=\"b1\"} 1"));

    let enabled = admin::act(admin, "b1", "enable").await;
    assert_eq!(
        (enabled["drained"].clone(), enabled["overrides"].clone()),
        (false.into(), serde_json::json!([]))
    );
    let back = tally(&{
        let client = client();
        let mut answers = Vec::new();
        for _ in 0..10 {
            answers.push(get(&client, addr, "/").await);
        }
        answers
    });
    assert_eq!(back.get("b1"), Some(&5), "{back:?}");
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_kept_alive_client_of_a_drained_backend_is_asked_to_reconnect() {
    let fleet = backends(1).await;
    let daemon = with_admin(&fleet, "").await;
    let admin = daemon.admin_addr.unwrap();
    let mut stream = TcpStream::connect(daemon.listen_addr).await.unwrap();
    let first = raw::get_on(&mut stream, "/delay/300");
    let drain = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        admin::act(admin, "b0", "drain").await
    };
    let (first, _) = tokio::join!(first, drain);
    assert_eq!(first.status, 200);
    assert_eq!(header(&first.head, "connection"), Some("close"));
    daemon.shutdown().await;
}

#[tokio::test]
async fn weight_overrides_change_the_share_and_can_be_removed() {
    let fleet = backends(2).await;
    let daemon = with_admin(
        &fleet,
        "load_balancer:\n  algorithm: weighted_round_robin\n",
    )
    .await;
    let admin = daemon.admin_addr.unwrap();
    let set = admin::set_weight(admin, "b0", Some(3)).await;
    assert_eq!(
        (set["weight"].clone(), set["configured_weight"].clone()),
        (3.into(), 1.into())
    );
    assert_eq!(set["overrides"], serde_json::json!(["weight"]));
    let client = client();
    let mut answers = Vec::new();
    for _ in 0..40 {
        answers.push(get(&client, daemon.listen_addr, "/").await);
    }
    let counts = tally(&answers);
    assert_eq!((counts["b0"], counts["b1"]), (30, 10));
    assert!(
        scrape(&daemon)
            .await
            .contains("lb_backend_weight{backend=\"b0\",pool=\"default\"} 3")
    );
    let removed = admin::set_weight(admin, "b0", None).await;
    assert_eq!(
        (removed["weight"].clone(), removed["overrides"].clone()),
        (1.into(), serde_json::json!([]))
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_breaker_reset_closes_an_open_breaker() {
    let fake = FakeBackend::start(vec![Behaviour::ResetBeforeHead]).await;
    let yaml = config_yaml(
        &[fake.spec("flaky")],
        &format!("{ADMIN}circuit_breaker:\n  failure_threshold: 1\n  open_duration: 60s\n"),
    );
    let daemon = Daemon::start(parse(&yaml)).await.unwrap();
    let admin = daemon.admin_addr.unwrap();
    let answer = get(&client(), daemon.listen_addr, "/").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(admin::backend(admin, "flaky").await["breaker"], "open");
    assert_eq!(
        get(&client(), daemon.listen_addr, "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let reset = admin::act(admin, "flaky", "breaker/reset").await;
    assert_eq!(reset["breaker"], "closed");
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(
            &metrics,
            "lb_circuit_breaker_transitions_total",
            &["flaky", "to=\"closed\""]
        ),
        1.0
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn the_effective_configuration_has_defaults_filled() {
    let fleet = backends(1).await;
    let daemon = with_admin(&fleet, "").await;
    let admin = daemon.admin_addr.unwrap();
    let answer = call(admin, "GET", "/config", None, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    let config = answer.json;
    assert_eq!(config["load_balancer"]["algorithm"], "round_robin");
    assert_eq!(config["backends"][0]["name"], "b0");
    assert!(config["server"]["shutdown_grace"].is_string(), "{config}");
    assert_eq!(config["admin"]["enabled"], true);
    daemon.shutdown().await;
}

#[tokio::test]
async fn the_admin_api_is_off_unless_configured() {
    let fleet = backends(1).await;
    let daemon = balancer(&fleet, "").await;
    assert_eq!(daemon.admin_addr, None);
    daemon.shutdown().await;
}
