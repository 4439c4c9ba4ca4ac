//! The pure parts: decoding each answer (tables of bodies and what they give), paths, URLs.

use serde_json::{Value, json};

use super::*;

/// The contract's example backend.
fn b1() -> Value {
    json!({"name": "b1", "address": "127.0.0.1:8001", "weight": 5, "configured_weight": 1,
        "max_connections": 1000, "health": "healthy", "breaker": "closed", "in_flight": 3,
        "drained": false, "drain_done": false, "overrides": ["weight"]})
}

/// `b1()` with `key` set to `value` (or removed when `value` is `None`).
fn b1_with(key: &str, value: Option<Value>) -> Value {
    let mut backend = b1();
    let object = backend.as_object_mut().expect("an object");
    match value {
        Some(value) => object.insert(key.to_owned(), value),
        None => object.remove(key),
    };
    backend
}

#[test]
fn backends_decode() {
    let expected_b1 = BackendStatus {
        name: "b1".into(),
        pool: None,
        address: "127.0.0.1:8001".into(),
        weight: 5,
        configured_weight: 1,
        max_connections: 1000,
        health: Health::Healthy,
        breaker: BreakerState::Closed,
        in_flight: 3,
        drained: false,
        drain_done: false,
        overrides: vec![Override::Weight],
    };
    assert_eq!(types::backend(b1()).unwrap(), expected_b1);
    assert!(expected_b1.weight_overridden());
    let list = types::backends(json!({"backends": [b1(), b1_with("name", Some(json!("b2")))]}));
    assert_eq!(list.unwrap().len(), 2);
    assert_eq!(types::backends(json!({"backends": []})).unwrap(), vec![]);
}

/// What a decoded backend must satisfy.
type Check = fn(&BackendStatus) -> bool;

#[test]
fn states_decode_and_unknown_words_are_kept() {
    let cases: [(&str, Value, Check); 9] = [
        ("health", json!("unhealthy"), |b| {
            b.health == Health::Unhealthy
        }),
        ("health", json!("degraded"), |b| {
            b.health == Health::Other("degraded".into())
        }),
        ("breaker", json!("open"), |b| {
            b.breaker == BreakerState::Open
        }),
        ("breaker", json!("half_open"), |b| {
            b.breaker == BreakerState::HalfOpen && b.breaker.label() == "half-open"
        }),
        ("breaker", json!("disabled"), |b| {
            b.breaker == BreakerState::Disabled
        }),
        ("breaker", json!("ajar"), |b| b.breaker.label() == "ajar"),
        ("overrides", json!(["drain", "weight", "cap"]), |b| {
            b.overrides
                == [
                    Override::Drain,
                    Override::Weight,
                    Override::Other("cap".into()),
                ]
        }),
        ("overrides", json!([]), |b| !b.weight_overridden()),
        // A field from a newer daemon is ignored.
        ("zone", json!("eu-west"), |b| b.name == "b1"),
    ];
    for (key, value, check) in cases {
        let backend = types::backend(b1_with(key, Some(value.clone())))
            .unwrap_or_else(|e| panic!("{key}: {value}: {e}"));
        assert!(check(&backend), "{key}: {value}: {backend:?}");
    }
}

#[test]
fn wrong_shapes_are_errors_that_say_what() {
    // (the body, a word the error must contain)
    let cases = [
        (b1_with("weight", None), "missing field `weight`"),
        (b1_with("drain_done", None), "missing field `drain_done`"),
        (b1_with("weight", Some(json!("five"))), "invalid type"),
        (b1_with("weight", Some(json!(-1))), "invalid value"),
        (
            b1_with("weight", Some(json!(5_000_000_000_u64))),
            "invalid value",
        ),
        (b1_with("in_flight", Some(json!(1.5))), "invalid type"),
        (b1_with("health", Some(json!(1))), "invalid type"),
        (b1_with("overrides", Some(json!("weight"))), "invalid type"),
        (b1_with("drained", Some(Value::Null)), "invalid type"),
        (json!([]), "invalid length 0"),
        (json!(null), "invalid type"),
        (json!("b1"), "invalid type"),
    ];
    for (body, want) in cases {
        let error = types::backend(body.clone()).expect_err(&body.to_string());
        assert!(error.to_string().contains(want), "{body}: {error}");
    }
    for body in [
        json!({}),
        json!({"backends": {}}),
        json!({"backends": [1]}),
        json!([b1()]),
    ] {
        assert!(types::backends(body.clone()).is_err(), "{body}");
    }
}

#[test]
fn reload_outcomes_decode() {
    let full = json!({"result": "success", "changes": ["backend b3 added", "retry"],
        "needs_restart": ["server.workers: 4 -> 8"]});
    let outcome = types::reload(full).unwrap();
    assert_eq!(outcome.result, "success");
    assert_eq!(outcome.changes, ["backend b3 added", "retry"]);
    assert_eq!(outcome.needs_restart, ["server.workers: 4 -> 8"]);
    // No changes and nothing to restart may be left out.
    let bare = types::reload(json!({"result": "success"})).unwrap();
    assert!(bare.changes.is_empty() && bare.needs_restart.is_empty());
    for bad in [
        json!({}),
        json!({"result": 1}),
        json!({"result": "success", "changes": "x"}),
    ] {
        assert!(types::reload(bad.clone()).is_err(), "{bad}");
    }
}

#[test]
fn error_bodies() {
    let cases: [(&[u8], Option<&str>); 7] = [
        (
            br#"{"error": "no backend named \"b9\""}"#,
            Some("no backend named \"b9\""),
        ),
        (br#"{"error": "x", "code": 7}"#, Some("x")),
        (br#"{"message": "x"}"#, None),
        (br#"{"error": 404}"#, None),
        (b"<html>502 Bad Gateway</html>", None),
        (b"", None),
        (b"\xff\xfe", None),
    ];
    for (body, want) in cases {
        assert_eq!(
            types::error_message(body).as_deref(),
            want,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn paths_encode_the_name() {
    let cases = [
        (Call::Backends, "GET", "/backends"),
        (Call::Backend("b1"), "GET", "/backends/b1"),
        (Call::Drain("b1"), "POST", "/backends/b1/drain"),
        (Call::Enable("b1"), "POST", "/backends/b1/enable"),
        (Call::SetWeight("b1", Some(5)), "PUT", "/backends/b1/weight"),
        (
            Call::ResetBreaker("b1"),
            "POST",
            "/backends/b1/breaker/reset",
        ),
        (Call::Reload, "POST", "/reload"),
        (Call::Config, "GET", "/config"),
        (
            Call::Drain("127.0.0.1:8001"),
            "POST",
            "/backends/127.0.0.1:8001/drain",
        ),
        (
            Call::Drain("a/b?c#d"),
            "POST",
            "/backends/a%2Fb%3Fc%23d/drain",
        ),
        (
            Call::Drain("50% off"),
            "POST",
            "/backends/50%25%20off/drain",
        ),
        (Call::Drain(".."), "POST", "/backends/%2E%2E/drain"),
        (Call::Drain("é"), "POST", "/backends/%C3%A9/drain"),
    ];
    for (call, method, path) in cases {
        assert_eq!(call.method(), method, "{call:?}");
        assert_eq!(call.path().unwrap(), path, "{call:?}");
    }
    assert!(matches!(Call::Drain("").path(), Err(AdminError::BadName)));
    assert_eq!(Call::Drain("b1").backend(), Some("b1"));
    assert_eq!(Call::Reload.backend(), None);
    assert_eq!(
        Call::SetWeight("b", Some(7)).body().as_deref(),
        Some(r#"{"weight":7}"#)
    );
    assert_eq!(
        Call::SetWeight("b", None).body().as_deref(),
        Some(r#"{"weight":null}"#)
    );
    assert_eq!(Call::Drain("b").body(), None);
}

#[test]
fn base_urls() {
    for (good, base) in [
        ("http://127.0.0.1:9091", "http://127.0.0.1:9091"),
        ("http://127.0.0.1:9091/", "http://127.0.0.1:9091"),
        ("https://lb.example/admin/", "https://lb.example/admin"),
        ("http://[::1]:9091", "http://[::1]:9091"),
    ] {
        let client = AdminClient::new(good, None).unwrap_or_else(|e| panic!("{good}: {e}"));
        assert_eq!(client.base_url(), base);
    }
    for bad in [
        "",
        "127.0.0.1:9091",
        "ftp://h/",
        "http://u:p@h/",
        "http://h/?x=1",
        "http://h/#top",
    ] {
        let error = AdminClient::new(bad, None).expect_err(bad);
        assert!(matches!(error, AdminError::BadUrl { .. }), "{bad}: {error}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("bad admin URL `{bad}`: ")),
            "{error}"
        );
    }
}

#[test]
fn tokens_are_checked_and_never_shown() {
    let error = AdminClient::new(DEFAULT_URL, Some("two words".into())).unwrap_err();
    assert!(matches!(error, AdminError::BadToken), "{error}");
    assert!(!error.to_string().contains("words"));
    let client = AdminClient::new(DEFAULT_URL, Some("s3cret".into())).unwrap();
    assert!(!format!("{client:?}").contains("s3cret"));
}
