use super::*;
use proptest::prelude::*;

const MAX: usize = 1000;

fn head(text: &str, expect_body: bool) -> Result<ResponseHead, ResponseError> {
    let parsed = parse(text.as_bytes(), expect_body, MAX)?.expect("a complete head");
    let bytes = Bytes::copy_from_slice(&text.as_bytes()[..parsed.length]);
    Ok(parsed.into_head(bytes))
}

fn names(head: &ResponseHead) -> Vec<String> {
    head.fields()
        .map(|(name, _)| String::from_utf8_lossy(name).into_owned())
        .collect()
}

#[test]
fn framing_follows_rfc_9112() {
    use Framing::*;
    let cases: &[(&str, bool, Framing, bool, Option<u64>)] = &[
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            true,
            Length(5),
            true,
            Some(5),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 005\r\n\r\n",
            true,
            Length(5),
            true,
            Some(5),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            false,
            Framing::NONE,
            true,
            Some(5),
        ),
        (
            "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            true,
            Framing::NONE,
            true,
            Some(5),
        ),
        (
            "HTTP/1.1 304 Not Modified\r\n\r\n",
            true,
            Framing::NONE,
            true,
            None,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            true,
            Chunked,
            true,
            None,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            true,
            Chunked,
            false,
            None,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
            true,
            Length(5),
            false,
            Some(5),
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n",
            true,
            Length(5),
            true,
            Some(5),
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n",
            true,
            Length(5),
            false,
            Some(5),
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", true, UntilClose, false, None),
        (
            "HTTP/1.1 100 Continue\r\n\r\n",
            true,
            Framing::NONE,
            true,
            None,
        ),
    ];
    for (text, expect_body, body, reusable, declared) in cases {
        let head = head(text, *expect_body).unwrap();
        assert_eq!(
            (head.body, head.reusable, head.declared_length),
            (*body, *reusable, *declared),
            "{text:?}"
        );
    }
}

#[test]
fn unusable_heads_are_errors_of_their_kind() {
    use ResponseError::*;
    let many: String = (0..=MAX_FIELDS).map(|i| format!("x-{i}: 1\r\n")).collect();
    let cases: Vec<(String, ResponseError)> = vec![
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".into(),
            ContentLength(ContentLengthError::Differing),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n".into(),
            ContentLength(ContentLengthError::Differing),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n".into(),
            ContentLength(ContentLengthError::Invalid),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n".into(),
            ContentLength(ContentLengthError::Invalid),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n".into(),
            ContentLength(ContentLengthError::Invalid),
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(),
            UnsupportedCoding,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n".into(),
            UnsupportedCoding,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n".into(),
            UnsupportedCoding,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                .into(),
            UnsupportedCoding,
        ),
        (
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
            CodingOnHttp10,
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n".into(),
            UnaskedSwitch,
        ),
        (
            "HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n".into(),
            Malformed("not an HTTP/1.x response head"),
        ),
        (
            "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n".into(),
            Malformed("not an HTTP/1.x response head"),
        ),
        (
            "\x00\x01SSH-2.0-nope\r\n\r\n".into(),
            Malformed("not an HTTP/1.x response head"),
        ),
        (format!("HTTP/1.1 200 OK\r\n{many}\r\n"), TooManyFields),
        (
            format!("HTTP/1.1 200 OK\r\nx: {}\r\n\r\n", "a".repeat(MAX)),
            HeadTooLarge,
        ),
    ];
    for (text, want) in cases {
        assert_eq!(
            parse(text.as_bytes(), true, MAX).unwrap_err(),
            want,
            "{text:?}"
        );
    }
    let partial = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX));
    assert_eq!(
        parse(partial.as_bytes(), true, MAX).unwrap_err(),
        HeadTooLarge
    );
    assert!(matches!(parse(b"HTTP/1.1 200 OK\r\n", true, MAX), Ok(None)));
}

#[test]
fn a_101_is_an_answer_only_to_an_upgrade_request() {
    use ResponseError::*;
    let wire = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Accept: a\r\nContent-Length: 5\r\n\r\nframe";
    assert_eq!(parse(wire, true, MAX).unwrap_err(), UnaskedSwitch);
    let parsed = parse_answer(wire, true, MAX, true).unwrap().unwrap();
    assert_eq!(
        parsed.length,
        wire.len() - 5,
        "the bytes after the head are the tunnel's"
    );
    let head = parsed.into_head(Bytes::copy_from_slice(&wire[..wire.len() - 5]));
    assert_eq!(head.status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(head.body, Framing::NONE);
    assert!(!head.reusable);
    assert_eq!(names(&head), ["Upgrade", "Sec-WebSocket-Accept"]);
    for bad in [
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n",
        "HTTP/1.1 101 S\r\nConnection: upgrade\r\nUpgrade: a\r\nUpgrade: b\r\n\r\n",
        "HTTP/1.0 101 S\r\nConnection: upgrade\r\nUpgrade: a\r\n\r\n",
    ] {
        assert!(
            matches!(
                parse_answer(bad.as_bytes(), true, MAX, true),
                Err(Malformed(_))
            ),
            "{bad}"
        );
    }
    // An ordinary answer to an upgrade request is an ordinary response, its Upgrade dropped.
    let refused = b"HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n";
    let parsed = parse_answer(refused, true, MAX, true).unwrap().unwrap();
    let head = parsed.into_head(Bytes::copy_from_slice(refused));
    assert!(head.reusable && names(&head).is_empty());
}

#[test]
fn hop_by_hop_framing_and_named_fields_are_left_out() {
    let head = head(
        "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nKeep-Alive: timeout=5\r\n\
         Proxy-Foo: 1\r\nX-A: 1\r\nx-private: 2\r\nContent-Length: 0\r\nTrailer: x\r\n\
         Upgrade: h2c\r\nDate: d\r\n\r\n",
        true,
    )
    .unwrap();
    assert_eq!(names(&head), ["X-A", "Date"]);
    let mut map = HeaderMap::new();
    head.append_to(&mut map);
    assert_eq!(map.len(), 2);
    assert_eq!(map["x-a"], "1");
}

#[test]
fn the_reason_phrase_is_kept() {
    let head = head(
        "HTTP/1.1 299 Fine Thanks\r\nContent-Length: 0\r\n\r\n",
        true,
    )
    .unwrap();
    assert_eq!(head.reason(), b"Fine Thanks");
    assert_eq!(head.status, 299);
}

#[test]
fn a_reason_phrase_of_obs_text_is_dropped() {
    // A fuzz finding: httparse hands such a phrase out as a "" outside the buffer.
    let wire = b"HTTP/1.1 299 \xff\xfeOK\r\nContent-Length: 0\r\n\r\n".to_vec();
    let parsed = parse(&wire, true, MAX).unwrap().unwrap();
    let length = parsed.length;
    let head = parsed.into_head(Bytes::copy_from_slice(&wire[..length]));
    assert_eq!(head.reason(), b"");
    assert_eq!(head.status, 299);
}

proptest! {
    #[test]
    fn arbitrary_heads_never_panic_the_parser(
        wire in prop::collection::vec(any::<u8>(), 0..512),
        expect_body in any::<bool>(),
    ) {
        if let Ok(Some(parsed)) = parse(&wire, expect_body, MAX) {
            let length = parsed.length;
            let head = parsed.into_head(Bytes::copy_from_slice(&wire[..length]));
            let mut map = HeaderMap::new();
            head.append_to(&mut map);
            for (name, _) in head.fields() {
                let kind = FieldKind::of(name);
                prop_assert!(!kind.is_hop_by_hop() && kind != FieldKind::ContentLength);
            }
        }
    }

    #[test]
    fn no_connection_list_makes_a_forwarded_field_hop_by_hop_or_framing(
        listed in prop::collection::vec(prop::sample::select(vec![
            "content-length", "transfer-encoding", "x-a", "date", "close", "keep-alive", "", "host",
        ]), 0..5),
        chunked in any::<bool>(),
    ) {
        let framing = if chunked { "Transfer-Encoding: chunked" } else { "Content-Length: 3" };
        let text = format!(
            "HTTP/1.1 200 OK\r\nConnection: {}\r\n{framing}\r\nX-A: 1\r\nDate: d\r\n\r\n",
            listed.join(", ")
        );
        let head = head(&text, true).unwrap();
        // The framing comes from the framing fields whatever Connection lists.
        prop_assert_eq!(head.body, if chunked { Framing::Chunked } else { Framing::Length(3) });
        let names = names(&head);
        prop_assert_eq!(names.iter().any(|n| n == "X-A"), !listed.contains(&"x-a"));
        prop_assert_eq!(names.iter().any(|n| n == "Date"), !listed.contains(&"date"));
        prop_assert!(!names.iter().any(|n| n.eq_ignore_ascii_case("connection")));
    }
}

#[test]
fn an_http2_backends_accepted_connect_becomes_a_101_with_the_accept_value() {
    let mut headers = HeaderMap::new();
    headers.insert("x-backend", HeaderValue::from_static("b0"));
    // An accept value of the backend's own (RFC 8441 has none) never reaches the client.
    headers.insert("sec-websocket-accept", HeaderValue::from_static("bogus"));
    headers.insert("sec-websocket-protocol", HeaderValue::from_static("chat"));
    headers.insert("content-length", HeaderValue::from_static("0"));
    let accepted = ResponseHead::from_fields(
        Version::HTTP_2,
        StatusCode::OK,
        &headers,
        None,
        Framing::NONE,
    );
    let switch = accepted.into_switch(b"websocket", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_eq!(switch.status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(switch.version, Version::HTTP_11);
    assert_eq!(switch.body, Framing::NONE);
    assert!(!switch.reusable);
    let fields: Vec<(String, String)> = (switch.fields())
        .map(|(name, value)| {
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            (text(name), text(value))
        })
        .collect();
    let expected = [
        ("x-backend", "b0"),
        ("sec-websocket-protocol", "chat"),
        ("upgrade", "websocket"),
        ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    ];
    let expected: Vec<(String, String)> = (expected.iter())
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    assert_eq!(fields, expected);
}
