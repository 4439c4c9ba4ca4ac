use super::*;
use proptest::prelude::*;

const LIMITS: Limits = Limits {
    max_head_bytes: 1000,
    max_target_bytes: 100,
};

fn verdict(bytes: &[u8]) -> Result<Option<RequestHead>, RequestError> {
    parse(bytes, &LIMITS)
}

fn complete(bytes: &[u8]) -> RequestHead {
    match verdict(bytes) {
        Ok(Some(head)) => head,
        other => panic!("{}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn a_plain_head_is_parsed_whole() {
    let bytes = b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next";
    let head = complete(bytes);
    assert_eq!(head.length, bytes.len() - b"GET /next".len());
    assert_eq!(head.parts.method, Method::GET);
    assert_eq!(head.parts.uri, "/a?b=c");
    assert_eq!(head.parts.version, Version::HTTP_11);
    let twos: Vec<_> = head.parts.headers.get_all("x-two").iter().collect();
    assert_eq!(twos, ["1", "2"]);
    assert_eq!(head.meta.host.unwrap(), "x");
    assert_eq!(head.meta.body, Framing::NONE);
    assert!(head.meta.keep_alive && !head.meta.declares_body && !head.meta.expect_continue);
}

#[test]
fn an_incomplete_head_waits_within_the_limit() {
    assert!(matches!(
        verdict(b"GET / HTTP/1.1\r\nHost: x\r\n"),
        Ok(None)
    ));
    assert!(matches!(verdict(b""), Ok(None)));
    let long = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(LIMITS.max_head_bytes));
    assert_eq!(
        verdict(long.as_bytes()).unwrap_err(),
        RequestError::HeadTooLarge
    );
}

/// A head of exactly `size` bytes.
fn head_of(size: usize) -> Vec<u8> {
    let start = b"GET / HTTP/1.1\r\nHost: x\r\nx: ";
    let mut head = start.to_vec();
    head.resize(size - 4, b'a');
    head.extend_from_slice(b"\r\n\r\n");
    head
}

#[test]
fn the_head_limit_is_exact() {
    assert!(matches!(
        verdict(&head_of(LIMITS.max_head_bytes)),
        Ok(Some(_))
    ));
    assert_eq!(
        verdict(&head_of(LIMITS.max_head_bytes + 1)).unwrap_err(),
        RequestError::HeadTooLarge
    );
    // A body behind a head within the limit does not count against it.
    let mut with_body = head_of(LIMITS.max_head_bytes);
    with_body.extend_from_slice(&[b'b'; 5000]);
    assert!(matches!(verdict(&with_body), Ok(Some(_))));
}

#[test]
fn keep_alive_follows_the_version_and_connection_tokens() {
    let cases: [(&[u8], bool); 7] = [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: te, close\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        ),
    ];
    for (bytes, keep_alive) in cases {
        assert_eq!(
            complete(bytes).meta.keep_alive,
            keep_alive,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn bodies_are_framed_by_their_declaration() {
    let cases: [(&[u8], Framing, bool); 6] = [
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n", Framing::Length(5), true),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 005, 5\r\n\r\n", Framing::Length(5), true),
        (b"DELETE / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", Framing::NONE, true),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", Framing::Chunked, true),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n",
            Framing::Chunked,
            true,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", Framing::NONE, false),
    ];
    for (bytes, framing, declared) in cases {
        let head = complete(bytes);
        assert_eq!(
            head.meta.body,
            framing,
            "{}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(
            head.meta.declares_body,
            declared,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn the_host_is_the_absolute_targets_authority_or_the_host_field() {
    let head = complete(b"GET http://a.test:81/x?y HTTP/1.1\r\nHost: b.test\r\n\r\n");
    assert_eq!(head.meta.host.unwrap(), "a.test:81");
    assert_eq!(head.parts.uri.path_and_query().unwrap(), "/x?y");
    let head = complete(b"GET http://a.test HTTP/1.1\r\nHost: a.test\r\n\r\n");
    assert_eq!(head.meta.host.unwrap(), "a.test");
    let head = complete(b"GET / HTTP/1.0\r\n\r\n");
    assert!(head.meta.host.is_none());
    let head = complete(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(head.parts.uri, "*");
}

#[test]
fn expect_100_continue_is_noted_and_other_expectations_refused() {
    let head = complete(
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
    );
    assert!(head.meta.expect_continue);
    let head = complete(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
    assert!(
        !head.meta.expect_continue,
        "HTTP/1.0 does not know 100 Continue"
    );
    assert_eq!(
        verdict(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n").unwrap_err(),
        RequestError::Expectation
    );
}

#[test]
fn only_a_well_formed_upgrade_request_is_an_upgrade() {
    let upgrade = |head: &str| complete(head.as_bytes()).meta.upgrade;
    let ws = "Upgrade: websocket\r\nSec-WebSocket-Key: k\r\n";
    assert!(upgrade(&format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n{ws}\r\n"
    )));
    assert!(upgrade(&format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, upgrade\r\n{ws}\r\n"
    )));
    let not = [
        // No `upgrade` in Connection, or no Upgrade field.
        format!("GET / HTTP/1.1\r\nHost: x\r\n{ws}\r\n"),
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n".to_string(),
        // HTTP/1.0 has no upgrades.
        format!("GET / HTTP/1.0\r\nHost: x\r\nConnection: upgrade\r\n{ws}\r\n"),
        // Two Upgrade lines, an empty one, h2c.
        format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n{ws}Upgrade: b\r\n\r\n"),
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: \r\n\r\n".to_string(),
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n".to_string(),
        // A declared body (any: its bytes and a tunnel's could not be told apart).
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n{ws}Content-Length: 0\r\n\r\n"
        ),
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n{ws}Transfer-Encoding: chunked\r\n\r\n"
        ),
        // A connection that closes.
        format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\n{ws}\r\n"),
    ];
    for head in not {
        assert!(!upgrade(&head), "{head}");
    }
}

/// Every refusal, with the verdict it must get: the table `docs/security.md` points to.
#[test]
fn hostile_heads_are_refused_with_their_verdict() {
    use RequestError::*;
    let many_fields: String = (0..=MAX_FIELDS).map(|i| format!("x-{i}: 1\r\n")).collect();
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100));
    let cases: Vec<(&str, Vec<u8>, RequestError)> = vec![
        ("no Host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), MissingHost),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n".to_vec(), DuplicateHost),
        ("two Hosts on 1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(), DuplicateHost),
        ("empty Host", b"GET / HTTP/1.1\r\nHost: \r\n\r\n".to_vec(), InvalidHost),
        ("Host with space", b"GET / HTTP/1.1\r\nHost: a b/c@d\r\n\r\n".to_vec(), InvalidHost),
        ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n".to_vec(), InvalidHost),
        ("Host with control", b"GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n".to_vec(), InvalidHost),
        ("Host with obs-text", b"GET / HTTP/1.1\r\nHost: \xe9.test\r\n\r\n".to_vec(), InvalidHost),
        ("invalid Host on 1.0", b"GET / HTTP/1.0\r\nHost: a/b\r\n\r\n".to_vec(), InvalidHost),
        ("invalid Host beside an absolute target", b"GET http://a/ HTTP/1.1\r\nHost: a b\r\n\r\n".to_vec(), InvalidHost),
        ("authority form for GET", b"GET example.com:80 HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec(), InvalidTarget),
        ("CONNECT", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec(), Connect),
        ("asterisk for GET", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), InvalidTarget),
        ("relative target", b"GET a/b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), InvalidTarget),
        ("fragment", b"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), InvalidTarget),
        ("ftp target", b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), InvalidTarget),
        ("userinfo in target", b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), InvalidTarget),
        ("target over the limit", long_target.into_bytes(), TargetTooLong),
        ("differing lengths", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".to_vec(), ContentLength(ContentLengthError::Differing)),
        ("length list", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n".to_vec(), ContentLength(ContentLengthError::Differing)),
        ("signed length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n".to_vec(), ContentLength(ContentLengthError::Invalid)),
        ("hex length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n".to_vec(), ContentLength(ContentLengthError::Invalid)),
        ("empty length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n".to_vec(), ContentLength(ContentLengthError::Invalid)),
        ("gzip", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), InvalidCoding),
        ("xchunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n".to_vec(), InvalidCoding),
        ("chunked, gzip", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n".to_vec(), InvalidCoding),
        ("gzip, chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(), UnsupportedCoding),
        ("chunked twice", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n".to_vec(), InvalidCoding),
        ("chunked on two lines", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), InvalidCoding),
        ("empty coding", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n".to_vec(), InvalidCoding),
        ("coding on 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), CodingOnHttp10),
        ("space before colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n".to_vec(), Malformed("invalid field name")),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n".to_vec(), Malformed("invalid field name")),
        ("NUL in a value", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n".to_vec(), Malformed("invalid field value")),
        ("bare CR", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n".to_vec(), Malformed("invalid field value")),
        ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(), Version),
        ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: x\r\n\r\n".to_vec(), Version),
        ("too many fields", format!("GET / HTTP/1.1\r\nHost: x\r\n{many_fields}\r\n").into_bytes(), TooManyFields),
        ("space in the target", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), Version),
    ];
    let mut failures = Vec::new();
    for (name, bytes, want) in cases {
        match verdict(&bytes) {
            Err(got) if got == want => {}
            other => failures.push(format!(
                "{name}: want {want:?}, got {:?}",
                other.map(|head| head.map(|h| h.parts))
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn verdicts_map_to_their_statuses() {
    use RequestError::*;
    assert_eq!(Connect.status(), 501);
    assert_eq!(UnsupportedCoding.status(), 501);
    assert_eq!(HeadTooLarge.status(), 431);
    assert_eq!(TooManyFields.status(), 431);
    assert_eq!(TargetTooLong.status(), 414);
    assert_eq!(Version.status(), 505);
    assert_eq!(Expectation.status(), 417);
    assert_eq!(MissingHost.status(), 400);
}

/// A head built from parts that are each valid or not, for the properties below.
fn arbitrary_head() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec!["GET", "POST", "HEAD", "OPTIONS", "CONNECT", "PUT"]);
    let target = prop::sample::select(vec![
        "/",
        "/a?b",
        "*",
        "http://a.test/x",
        "a.test:80",
        "http://u@a/",
        "/#f",
    ]);
    let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0"]);
    let field = prop::sample::select(vec![
        "Host: a.test",
        "Host: b.test:8080",
        "Host: a b",
        "Content-Length: 5",
        "Content-Length: 6",
        "Content-Length: 05",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: gzip, chunked",
        "Connection: close",
        "Connection: keep-alive, x-a",
        "Expect: 100-continue",
        "Expect: nope",
        "X-A: 1",
        "Connection: upgrade",
        "Upgrade: websocket",
    ]);
    (method, target, version, prop::collection::vec(field, 0..6)).prop_map(
        |(method, target, version, fields)| {
            let mut head = format!("{method} {target} {version}\r\n");
            for field in fields {
                head.push_str(field);
                head.push_str("\r\n");
            }
            head.push_str("\r\n");
            head.into_bytes()
        },
    )
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_parser(wire in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = verdict(&wire);
    }

    #[test]
    fn the_verdict_does_not_depend_on_what_follows_the_head(
        head in arbitrary_head(),
        rest in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let alone = verdict(&head).map(|head| head.map(|head| (head.length, head.meta.body, head.meta.keep_alive)));
        let mut followed = head.clone();
        followed.extend_from_slice(&rest);
        let with_rest = verdict(&followed).map(|head| head.map(|head| (head.length, head.meta.body, head.meta.keep_alive)));
        prop_assert_eq!(alone, with_rest);
    }

    #[test]
    fn a_valid_head_keeps_the_rules(head in arbitrary_head()) {
        if let Ok(Some(parsed)) = verdict(&head) {
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            prop_assert!(parsed.parts.method != Method::CONNECT);
            prop_assert!(text.matches("\r\nhost:").count() <= 1);
            if parsed.parts.version == Version::HTTP_11 {
                prop_assert!(parsed.meta.host.is_some());
            }
            if text.contains("transfer-encoding") {
                prop_assert_eq!(parsed.meta.body, Framing::Chunked);
                if text.contains("content-length") {
                    prop_assert!(!parsed.meta.keep_alive);
                }
            }
            // An upgrade is never a request with a body, nor one whose connection closes.
            if parsed.meta.upgrade {
                prop_assert!(parsed.meta.body.is_empty() && !parsed.meta.declares_body);
                prop_assert!(parsed.meta.keep_alive && parsed.parts.version == Version::HTTP_11);
                prop_assert!(text.contains("\r\nupgrade:") && text.contains("upgrade\r\n"));
            }
            // Every prefix is incomplete: no head is valid before its end.
            for cut in 0..head.len() {
                prop_assert!(matches!(verdict(&head[..cut]), Ok(None) | Err(_)));
            }
        }
    }

    #[test]
    fn hyper_parsed_parts_get_the_same_verdict(head in arbitrary_head()) {
        // What hyper hands over for an HTTP/1 head: the parts as parsed. Only heads httparse
        // accepted are compared; `check_parts` never sees the others.
        if let Ok(Some(parsed)) = verdict(&head) {
            let again = check_parts(&parsed.parts, &LIMITS, parsed.meta.body).unwrap();
            prop_assert_eq!(again.host, parsed.meta.host);
            prop_assert_eq!(again.body, parsed.meta.body);
            prop_assert_eq!(again.keep_alive, parsed.meta.keep_alive);
            prop_assert_eq!(again.expect_continue, parsed.meta.expect_continue);
            prop_assert_eq!(again.upgrade, parsed.meta.upgrade);
        }
    }
}

#[test]
fn an_http2_asterisk_is_for_options_only() {
    // h2 hands over `:scheme`, `:authority` and `:path` as one URI.
    let parts = |method: Method, path: &str| {
        let uri = http::Uri::builder()
            .scheme("http")
            .authority("a.example")
            .path_and_query(path)
            .build()
            .unwrap();
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = method;
        parts.uri = uri;
        parts.version = Version::HTTP_2;
        parts
    };
    let cases = [
        (Method::OPTIONS, "*", true),
        (Method::GET, "*", false),
        (Method::POST, "*", false),
        (Method::GET, "/", true),
    ];
    for (method, path, accepted) in cases {
        let verdict = check_parts(&parts(method.clone(), path), &LIMITS, Framing::Length(0));
        assert_eq!(verdict.is_ok(), accepted, "{method} {path}: {verdict:?}");
    }
}

#[test]
fn an_http2_host_must_agree_with_the_authority_and_one_must_be_there() {
    use RequestError::*;
    let parts = |authority: Option<&str>, host: Option<&str>| {
        let uri = match authority {
            Some(authority) => format!("http://{authority}/x"),
            None => "/x".to_owned(),
        };
        let mut request = http::Request::get(uri).version(http::Version::HTTP_2);
        if let Some(host) = host {
            request = request.header(http::header::HOST, host);
        }
        request.body(()).unwrap().into_parts().0
    };
    let cases = [
        (Some("a.example"), None, Ok(())),
        (Some("a.example"), Some("A.Example"), Ok(())),
        (None, Some("h.example"), Ok(())),
        (Some("a.example"), Some("b.example"), Err(HostNotAuthority)),
        (
            Some("a.example:8443"),
            Some("a.example"),
            Err(HostNotAuthority),
        ),
        (None, None, Err(MissingHost)),
    ];
    for (authority, host, expected) in cases {
        let verdict = check_parts(&parts(authority, host), &LIMITS, Framing::Length(0));
        assert_eq!(verdict.map(|_| ()), expected, "{authority:?} {host:?}");
    }
}

/// A field value of an HTTP/2 head starts and ends with a visible byte (RFC 9113 §8.2.1);
/// whitespace inside is kept.
#[test]
fn an_http2_field_value_with_whitespace_at_an_end_is_malformed() {
    let cases = [
        ("a", true),
        ("a b", true),
        ("a\tb", true),
        ("", true),
        (" a", false),
        ("a ", false),
        ("\ta", false),
        ("a\t", false),
        (" ", false),
    ];
    for (value, valid) in cases {
        let parts = http::Request::get("http://a.example/x")
            .version(http::Version::HTTP_2)
            .header("x-a", value)
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let verdict = check_parts(&parts, &LIMITS, Framing::Length(0));
        assert_eq!(verdict.is_ok(), valid, "{value:?}: {verdict:?}");
    }
}

/// An HTTP/2 head may have no more field lines than an HTTP/1.1 head; cookie crumbs, one field
/// upstream, count once.
#[test]
fn an_http2_head_has_at_most_max_fields_and_cookie_crumbs_count_once() {
    let head = |fields: usize, crumbs: usize| {
        let mut request = http::Request::get("http://a.example/x").version(http::Version::HTTP_2);
        for i in 0..fields {
            request = request.header(format!("x-{i}"), "1");
        }
        for i in 0..crumbs {
            request = request.header(http::header::COOKIE, format!("c{i}=1"));
        }
        request.body(()).unwrap().into_parts().0
    };
    let cases = [
        (MAX_FIELDS, 0, Ok(())),
        (MAX_FIELDS + 1, 0, Err(RequestError::TooManyFields)),
        (MAX_FIELDS - 1, 1, Ok(())),
        (MAX_FIELDS - 1, 300, Ok(())),
        (MAX_FIELDS, 1, Err(RequestError::TooManyFields)),
        (0, 1_000, Ok(())),
    ];
    for (fields, crumbs, expected) in cases {
        let verdict = check_parts(&head(fields, crumbs), &LIMITS, Framing::Length(0));
        assert_eq!(
            verdict.map(|_| ()),
            expected,
            "{fields} fields, {crumbs} crumbs"
        );
    }
}
