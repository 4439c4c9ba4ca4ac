//! Authentication on routes: HTTP Basic against bcrypt hashes, API keys by digest, and JWT
//! bearer tokens with the attacks of the issue (expired, wrong audience, `alg: none`, HS256
//! signed with the RSA public key, a tampered signature, an unknown `kid` found by a JWKS
//! re-read). Failures answer 401 with `WWW-Authenticate` or 403, counted by reason.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::routes::pooled;
use crate::support::{Answer, backends, client, metric_sum, parse, scrape, send};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn ask(daemon: &lb_proxy::Daemon, path: &str, authorization: Option<String>) -> Answer {
    let mut request = Request::get(format!("http://{}{path}", daemon.listen_addr));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request = request.header("x-user", "spoofed");
    send(&client(), request.body(Full::new(Bytes::new())).unwrap()).await
}

fn token(
    alg: Algorithm,
    kid: Option<&str>,
    key: &EncodingKey,
    claims: serde_json::Value,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, key).expect("token")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn jwt_tokens_each_get_the_right_answer() {
    let fleet = backends(1).await;
    let jwks = std::env::temp_dir().join(format!("lb-jwks-{}.json", std::process::id()));
    std::fs::write(&jwks, "{\"keys\": []}").unwrap();
    let rest = format!(
        "auth:\n  sso:\n    jwt:\n      keys:\n\
         \x20       - {{kid: rsa-1, algorithm: RS256, file: {rsa}}}\n\
         \x20       - {{kid: ec-1, algorithm: ES256, file: {ec}}}\n\
         \x20     jwks_file: {jwks}\n      algorithms: [RS256]\n\
         \x20     issuer: https://issuer.example\n      audience: lb-tests\n      leeway: 5s\n\
         \x20     claims_to_headers: {{sub: x-user}}\n\
         routes:\n  - name: private\n    match: {{path_segment_prefix: /private}}\n    pool: web\n    auth: sso\n\
         \x20   rewrite: {{strip_prefix: /private}}\n\
         \x20 - name: public\n    pool: web\n",
        rsa = fixture("rsa-public.pem").display(),
        ec = fixture("ec-public.pem").display(),
        jwks = jwks.display(),
    );
    let daemon = lb_proxy::Daemon::start(parse(&pooled(&[("web", &fleet)], &rest)))
        .await
        .expect("balancer starts");
    let rsa = EncodingKey::from_rsa_pem(&read("rsa-private.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(&read("ec-private.pem")).unwrap();
    let good = json!({"sub": "alice", "iss": "https://issuer.example", "aud": "lb-tests", "exp": now() + 600});
    let bearer = |t: String| Some(format!("Bearer {t}"));

    // Valid, with RS256 and with ES256: the claim replaces the client's own x-user.
    for valid in [
        token(Algorithm::RS256, Some("rsa-1"), &rsa, good.clone()),
        token(Algorithm::ES256, Some("ec-1"), &ec, good.clone()),
    ] {
        let answer = ask(&daemon, "/private/echo", bearer(valid)).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert!(
            answer.text().contains("x-user: alice\n"),
            "{}",
            answer.text()
        );
        assert!(!answer.text().contains("spoofed"), "{}", answer.text());
    }

    // An unknown kid makes the JWKS file be read again: a key added there is found.
    std::fs::copy(fixture("jwks.json"), &jwks).unwrap();
    let from_jwks = token(Algorithm::RS256, Some("rsa-jwks"), &rsa, good.clone());
    let answer = ask(&daemon, "/private/", bearer(from_jwks)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    // That re-read counts: for ten seconds an unknown kid reads nothing more.
    std::fs::write(&jwks, "{\"keys\": []}").unwrap();
    let again = token(Algorithm::RS256, Some("rsa-jwks"), &rsa, good.clone());
    assert_eq!(
        ask(&daemon, "/private/", bearer(again)).await.status,
        200,
        "the last good set stays"
    );

    let mut expired = good.clone();
    expired["exp"] = json!(now() - 60);
    let mut early = good.clone();
    early["nbf"] = json!(now() + 600);
    let mut other_audience = good.clone();
    other_audience["aud"] = json!("someone-else");
    let valid = token(Algorithm::RS256, Some("rsa-1"), &rsa, good.clone());
    let (head, rest) = valid.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let mut tampered_payload = good.clone();
    tampered_payload["sub"] = json!("admin");
    let tampered = format!(
        "{head}.{}.{signature}",
        b64(tampered_payload.to_string().as_bytes())
    );
    let mut flipped = signature.as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let bad_signature = format!("{head}.{payload}.{}", String::from_utf8(flipped).unwrap());
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#),
        b64(good.to_string().as_bytes())
    );
    // HS256 "signed" with the RSA public key as the secret: the classic confusion.
    let public_as_secret = EncodingKey::from_secret(&read("rsa-public.pem"));
    let confused = token(
        Algorithm::HS256,
        Some("rsa-1"),
        &public_as_secret,
        good.clone(),
    );

    let cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("missing", None, 401, "missing"),
        ("not bearer", Some("Basic YTpi".into()), 401, "malformed"),
        (
            "expired",
            bearer(token(Algorithm::RS256, Some("rsa-1"), &rsa, expired)),
            401,
            "expired",
        ),
        (
            "not yet valid",
            bearer(token(Algorithm::RS256, Some("rsa-1"), &rsa, early)),
            401,
            "not_yet_valid",
        ),
        (
            "wrong audience",
            bearer(token(Algorithm::RS256, Some("rsa-1"), &rsa, other_audience)),
            403,
            "audience",
        ),
        ("tampered payload", bearer(tampered), 401, "signature"),
        (
            "tampered signature",
            bearer(bad_signature),
            401,
            "signature",
        ),
        ("alg none", bearer(none), 401, "malformed"),
        (
            "HS256 with the RSA public key",
            bearer(confused),
            401,
            "algorithm",
        ),
        (
            "unknown kid",
            bearer(token(Algorithm::RS256, Some("nope"), &rsa, good.clone())),
            401,
            "unknown_key",
        ),
    ];
    for (case, authorization, status, reason) in cases {
        let answer = ask(&daemon, "/private/", authorization).await;
        assert_eq!(answer.status, status, "{case}");
        if status == 401 {
            let challenge = answer.headers.get("www-authenticate").expect("a challenge");
            assert!(
                challenge
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer realm=\"sso\""),
                "{case}"
            );
        }
        let metrics = scrape(&daemon).await;
        let counted = metric_sum(
            &metrics,
            "lb_auth_failures_total",
            &[&format!("reason=\"{reason}\"")],
        );
        assert!(counted >= 1.0, "{case}: {reason} not counted");
        assert!(!metrics.contains("eyJ"), "a token leaked into the metrics");
    }
    // The public route needs nothing.
    assert_eq!(ask(&daemon, "/", None).await.status, 200);

    daemon.shutdown().await;
    let _ = std::fs::remove_file(&jwks);
}

#[tokio::test]
async fn basic_and_api_keys() {
    let fleet = backends(1).await;
    let hash = bcrypt::hash("hunter2", 4).unwrap();
    let digest = "e0a5f1d7e4d5f0f2d8b1b2c7c0c3a0e7d2f5b8c9e6a3d0f7e4b1c8a5d2f9e6b3";
    let key = "partner-key-1";
    let key_digest = {
        use sha2::Digest as _;
        format!("{:x}", sha2::Sha256::digest(key.as_bytes()))
    };
    let rest = format!(
        "auth:\n  admins:\n    basic:\n      realm: admin area\n      users: {{alice: \"{hash}\"}}\n\
         \x20 partners:\n    api_key:\n      header: x-api-key\n      keys: {{partner-a: {key_digest}, old: {digest}}}\n\
         routes:\n  - name: admin\n    match: {{path_segment_prefix: /admin}}\n    pool: web\n    auth: admins\n\
         \x20 - name: api\n    match: {{path_segment_prefix: /api}}\n    pool: web\n    auth: partners\n\
         \x20 - name: public\n    pool: web\n"
    );
    let daemon = lb_proxy::Daemon::start(parse(&pooled(&[("web", &fleet)], &rest)))
        .await
        .expect("balancer starts");
    let basic = |user: &str, password: &str| {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Some(format!("Basic {encoded}"))
    };
    assert_eq!(
        ask(&daemon, "/admin/", basic("alice", "hunter2"))
            .await
            .status,
        200
    );
    assert_eq!(
        ask(&daemon, "/admin/", basic("alice", "hunter2"))
            .await
            .status,
        200
    );
    let refused = ask(&daemon, "/admin/", basic("alice", "hunter3")).await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.headers.get("www-authenticate").unwrap(),
        "Basic realm=\"admin area\", charset=\"UTF-8\""
    );
    assert_eq!(
        ask(&daemon, "/admin/", basic("bob", "hunter2"))
            .await
            .status,
        401
    );
    assert_eq!(ask(&daemon, "/admin/", None).await.status, 401);

    let with_key = |value: &str| {
        Request::get(format!("http://{}/api/", daemon.listen_addr))
            .header("x-api-key", value)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(send(&client(), with_key(key)).await.status, 200);
    assert_eq!(send(&client(), with_key("partner-key-2")).await.status, 401);
    assert_eq!(ask(&daemon, "/api/", None).await.status, 401);
    let metrics = scrape(&daemon).await;
    assert_eq!(
        metric_sum(
            &metrics,
            "lb_auth_failures_total",
            &["route=\"admin\"", "reason=\"bad_credentials\""]
        ),
        2.0
    );
    assert!(
        !metrics.contains("hunter"),
        "a password leaked into the metrics"
    );
    daemon.shutdown().await;
}

#[tokio::test]
async fn a_missing_key_file_stops_the_start() {
    let fleet = backends(1).await;
    let rest = "auth:\n  sso:\n    jwt:\n      keys: [{algorithm: RS256, file: /nonexistent/key.pem}]\n\
                routes:\n  - pool: web\n    auth: sso\n";
    let error = lb_proxy::Daemon::start(parse(&pooled(&[("web", &fleet)], rest)))
        .await
        .expect_err("refused");
    assert!(
        error.to_string().contains("/nonexistent/key.pem"),
        "{error}"
    );
}

/// A one-file HTTP server for a JWKS document: 200 with the body while `up`, else 500.
async fn jwks_server(
    body: Vec<u8>,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (body, up) = (body.clone(), up.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = match up.load(std::sync::atomic::Ordering::SeqCst) {
                    true => [format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len()).into_bytes(), body].concat(),
                    false => b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
                };
                let _ = stream.write_all(&answer).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_jwks_url_is_fetched_and_its_last_good_set_stays_when_it_fails() {
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let server = jwks_server(read("jwks.json"), up.clone()).await;
    let fleet = backends(1).await;
    let rest = format!(
        "auth:\n  sso:\n    jwt:\n      jwks_url: http://{server}/jwks.json\n      algorithms: [RS256]\n\
         routes:\n  - pool: web\n    auth: sso\n"
    );
    let daemon = lb_proxy::Daemon::start(parse(&pooled(&[("web", &fleet)], &rest)))
        .await
        .expect("balancer starts");
    let rsa = EncodingKey::from_rsa_pem(&read("rsa-private.pem")).unwrap();
    let claims = json!({"sub": "alice", "exp": now() + 600});
    let bearer = |kid: &str| {
        Some(format!(
            "Bearer {}",
            token(Algorithm::RS256, Some(kid), &rsa, claims.clone())
        ))
    };
    assert_eq!(ask(&daemon, "/", bearer("rsa-jwks")).await.status, 200);
    // The provider fails: an unknown kid finds nothing, and the keys already known still work.
    up.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(ask(&daemon, "/", bearer("rotated")).await.status, 401);
    assert_eq!(ask(&daemon, "/", bearer("rsa-jwks")).await.status, 200);
    daemon.shutdown().await;
}
