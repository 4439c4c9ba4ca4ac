//! The admin client against a fake admin API on 127.0.0.1: what it sends (method, path, bearer
//! token, body) and what it makes of each answer (typed values, the daemon's message and status
//! kept, garbage and hangs turned into typed errors).

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use lb_observe::admin::{
    AdminClient, AdminError, BreakerState, ErrorKind, Health, Options, Override,
};

use crate::support::{Answer, Server, closed_port_url, json, status};

/// Far beyond any timeout set here: only a call that never returns reaches it.
const HANG: Duration = Duration::from_secs(60);

const B1: &str = r#"{"name": "b1", "address": "127.0.0.1:8001", "weight": 5,
    "configured_weight": 1, "max_connections": 1000, "health": "healthy", "breaker": "closed",
    "in_flight": 3, "drained": false, "drain_done": false, "overrides": ["weight"]}"#;

const B2_DRAINED: &str = r#"{"name": "b2", "address": "127.0.0.1:8002", "weight": 1,
    "configured_weight": 1, "max_connections": 1000, "health": "unhealthy", "breaker": "half_open",
    "in_flight": 0, "drained": true, "drain_done": true, "overrides": ["drain"]}"#;

fn client(server: &Server, token: Option<&str>) -> AdminClient {
    AdminClient::new(&server.base(), token.map(str::to_owned)).expect("a good URL")
}

/// Runs `call` on its own thread, failing the test if it never returns.
fn bounded<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(call());
    });
    receiver
        .recv_timeout(HANG)
        .expect("the call returned instead of hanging")
}

#[test]
fn backends_are_listed_with_the_bearer_token() {
    let body = format!(r#"{{"backends": [{B1}, {B2_DRAINED}]}}"#);
    let server = Server::start(vec![json(200, &body)]);
    let backends = client(&server, Some("s3cret")).backends().unwrap();
    let request = server.request();
    assert!(
        request.head.starts_with("GET /backends HTTP/1.1\r\n"),
        "{}",
        request.head
    );
    let head = request.head.to_ascii_lowercase();
    assert!(
        head.contains("\r\nauthorization: bearer s3cret\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\naccept: application/json\r\n"), "{head}");
    assert_eq!(backends.len(), 2);
    let (b1, b2) = (&backends[0], &backends[1]);
    assert_eq!(
        (b1.name.as_str(), b1.weight, b1.configured_weight),
        ("b1", 5, 1)
    );
    assert!(b1.weight_overridden() && !b1.drained);
    assert_eq!(b2.health, Health::Unhealthy);
    assert_eq!(b2.breaker, BreakerState::HalfOpen);
    assert!(b2.drained && b2.drain_done);
    assert_eq!(b2.overrides, [Override::Drain]);
}

#[test]
fn without_a_token_no_authorization_is_sent() {
    let server = Server::start(vec![json(200, B1)]);
    client(&server, None).backend("b1").unwrap();
    let head = server.head();
    assert!(head.starts_with("get /backends/b1 http/1.1\r\n"), "{head}");
    assert!(!head.contains("authorization"), "{head}");
}

#[test]
fn each_call_sends_its_method_path_and_body() {
    let reload = r#"{"result": "success", "changes": [], "needs_restart": []}"#;
    let server = Server::start(vec![
        json(200, B2_DRAINED),
        json(200, B1),
        json(200, B1),
        json(200, B1),
        json(200, B1),
        json(200, reload),
        json(200, r#"{"server": {"listen": "127.0.0.1:8080"}}"#),
        json(200, B1),
    ]);
    let admin = client(&server, None);
    assert!(admin.drain("b2").unwrap().drained);
    admin.enable("b1").unwrap();
    admin.set_weight("b1", Some(5)).unwrap();
    admin.set_weight("b1", None).unwrap();
    admin.reset_breaker("b1").unwrap();
    assert_eq!(admin.reload().unwrap().result, "success");
    let config = admin.config().unwrap();
    assert_eq!(config["server"]["listen"], "127.0.0.1:8080");
    admin.drain("pool a/b").unwrap();
    let expected = [
        ("POST /backends/b2/drain ", ""),
        ("POST /backends/b1/enable ", ""),
        ("PUT /backends/b1/weight ", r#"{"weight":5}"#),
        ("PUT /backends/b1/weight ", r#"{"weight":null}"#),
        ("POST /backends/b1/breaker/reset ", ""),
        ("POST /reload ", ""),
        ("GET /config ", ""),
        ("POST /backends/pool%20a%2Fb/drain ", ""),
    ];
    for (line, body) in expected {
        let request = server.request();
        assert!(request.head.starts_with(line), "{line}: {}", request.head);
        assert_eq!(request.body, body, "{line}");
        let head = request.head.to_ascii_lowercase();
        if body.is_empty() {
            // A POST says it has no body, so a strict server need not wait for one.
            assert!(
                line.starts_with("GET") || head.contains("\r\ncontent-length: 0\r\n"),
                "{head}"
            );
        } else {
            assert!(
                head.contains("\r\ncontent-type: application/json\r\n"),
                "{head}"
            );
        }
    }
}

#[test]
fn a_404_keeps_the_daemons_message() {
    let server = Server::start(vec![json(404, r#"{"error": "no backend named \"b9\""}"#)]);
    let error = client(&server, None).drain("b9").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
    assert_eq!(error.status(), Some(404));
    assert_eq!(error.message(), Some("no backend named \"b9\""));
    assert_eq!(
        error.to_string(),
        format!(
            "no backend named \"b9\" (HTTP 404 from POST {}/backends/b9/drain)",
            server.base()
        )
    );
}

#[test]
fn a_401_is_unauthorized_with_the_message() {
    let server = Server::start(vec![Answer::Bytes(
        b"HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer\r\ncontent-type: application/json\r\n\
          connection: close\r\ncontent-length: 27\r\n\r\n{\"error\": \"bad token (no)\"}"
            .to_vec(),
    )]);
    let error = client(&server, Some("wrong")).backends().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthorized, "{error}");
    assert_eq!(error.message(), Some("bad token (no)"));
    assert!(
        !error.to_string().contains("wrong"),
        "the token is not shown: {error}"
    );
}

#[test]
fn refused_reloads_say_why() {
    let message = "config.yaml:7:13: backends[1].weight: must be at least 1, found 0";
    let server = Server::start(vec![
        json(422, &format!(r#"{{"error": "{message}"}}"#)),
        json(
            409,
            r#"{"error": "cannot bind 0.0.0.0:80: permission denied"}"#,
        ),
        json(500, r#"{"error": "internal"}"#),
    ]);
    let admin = client(&server, None);
    let invalid = admin.reload().unwrap_err();
    assert_eq!(
        (invalid.kind(), invalid.status()),
        (ErrorKind::Rejected, Some(422))
    );
    assert_eq!(invalid.message(), Some(message));
    let bind = admin.reload().unwrap_err();
    assert_eq!(
        (bind.kind(), bind.status()),
        (ErrorKind::Rejected, Some(409))
    );
    assert_eq!(admin.reload().unwrap_err().kind(), ErrorKind::Server);
}

#[test]
fn garbage_is_a_typed_error_never_a_panic() {
    let cases: Vec<(Answer, ErrorKind, &str)> = vec![
        (
            json(200, "<html>hello</html>"),
            ErrorKind::Protocol,
            "not the admin API's JSON",
        ),
        (
            json(200, r#"{"backends": [{"name": "b1"}]}"#),
            ErrorKind::Protocol,
            "missing field",
        ),
        (json(200, r#"{"backends": "#), ErrorKind::Protocol, "EOF"),
        (json(200, ""), ErrorKind::Protocol, "EOF"),
        (
            json(200, &"[".repeat(10_000)),
            ErrorKind::Protocol,
            "recursion limit",
        ),
        (
            json(200, "\u{0}\u{1b}[31m"),
            ErrorKind::Protocol,
            "not the admin API's JSON",
        ),
        (
            status(502, "Bad Gateway"),
            ErrorKind::Protocol,
            "HTTP status 502 without",
        ),
        (
            json(404, "not json"),
            ErrorKind::Protocol,
            "is this the admin listener?",
        ),
        (
            json(400, r#"{"error": 42}"#),
            ErrorKind::Protocol,
            "HTTP status 400",
        ),
        (
            Answer::Bytes(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()),
            ErrorKind::Unreachable,
            "",
        ),
    ];
    let answers = cases.iter().map(|(answer, ..)| answer.clone()).collect();
    let server = Server::start(answers);
    let admin = client(&server, None);
    for (answer, kind, words) in &cases {
        let admin = admin.clone();
        let error = bounded(move || admin.backends()).expect_err("garbage refused");
        assert_eq!(error.kind(), *kind, "{answer:?}: {error}");
        assert!(error.to_string().contains(words), "{answer:?}: {error}");
        assert!(
            error.to_string().starts_with("GET http://")
                || error.to_string().starts_with("http://"),
            "names the URL: {error}"
        );
    }
}

#[test]
fn a_hostile_message_is_one_printable_line() {
    let server = Server::start(vec![json(
        400,
        r#"{"error": "bad\nweight\u001b[2J\u202e"}"#,
    )]);
    let error = client(&server, None).set_weight("b1", Some(0)).unwrap_err();
    assert_eq!(error.message(), Some("bad\\nweight\\u{1b}[2J\\u{202e}"));
    assert!(!error.to_string().chars().any(char::is_control), "{error}");
}

#[test]
fn redirects_are_not_followed() {
    let server = Server::start(vec![Answer::Bytes(
        b"HTTP/1.1 307 Moved\r\nlocation: http://elsewhere.invalid/\r\nconnection: close\r\n\
          content-length: 0\r\n\r\n"
            .to_vec(),
    )]);
    let error = client(&server, Some("s3cret")).reload().unwrap_err();
    assert!(
        matches!(error, AdminError::Status { status: 307, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("a redirect"), "{error}");
}

#[test]
fn a_closed_port_is_refused_naming_the_url() {
    let url = closed_port_url().trim_end_matches("/metrics").to_owned();
    let error = AdminClient::new(&url, None)
        .unwrap()
        .backends()
        .unwrap_err();
    assert!(matches!(error, AdminError::Refused { .. }), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Unreachable);
    assert!(
        error
            .to_string()
            .starts_with(&format!("{url}/backends: connection refused")),
        "{error}"
    );
}

#[test]
fn a_silent_daemon_times_out() {
    let server = Server::start(vec![Answer::Stall(Vec::new())]);
    let options = Options {
        connect_timeout: Duration::from_millis(300),
        timeout: Duration::from_millis(300),
        ..Options::default()
    };
    let admin = AdminClient::with_options(&server.base(), None, options).unwrap();
    let error = bounded(move || admin.drain("b1")).unwrap_err();
    assert!(matches!(error, AdminError::Timeout { .. }), "{error:?}");
    assert!(
        error.to_string().contains("no answer within 300ms"),
        "{error}"
    );
}

#[test]
fn an_answer_over_the_limit_is_refused() {
    let big = format!(r#"{{"backends": [], "pad": "{}"}}"#, "x".repeat(10_000));
    let server = Server::start(vec![json(200, &big)]);
    let options = Options {
        max_body_bytes: 1_000,
        ..Options::default()
    };
    let admin = AdminClient::with_options(&server.base(), None, options).unwrap();
    let error = admin.backends().unwrap_err();
    assert!(
        matches!(error, AdminError::TooLarge { limit: 1_000, .. }),
        "{error:?}"
    );
}

#[test]
fn a_path_prefix_is_kept() {
    let server = Server::start(vec![json(200, B1)]);
    let admin = AdminClient::new(&format!("{}/lb/admin/", server.base()), None).unwrap();
    admin.enable("b1").unwrap();
    assert!(
        server
            .head()
            .starts_with("post /lb/admin/backends/b1/enable ")
    );
}
