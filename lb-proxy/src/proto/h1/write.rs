//! The head writers: the request head the balancer sends a backend, the response head it sends
//! a client, and the pieces both use (one field writer, one status line, one number formatter).
//!
//! Neither writer copies a peer's framing, `Connection` or other hop-by-hop fields: the framing
//! field is written from the body the balancer actually sends, and the request writer sets
//! `Host` and `X-Forwarded-*` itself, after the peer's fields, so no `Connection` token can
//! remove them.

use http::header::{self, HeaderMap};
use http::{Method, StatusCode, Version};

use super::fields::{ConnectionTokens, FieldKind};
use super::framing::Framing;

/// Appends one `name: value` field line.
#[inline]
pub fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `value` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, value: u64) {
    push_radix(out, value, 10);
}

/// Appends `value` in lower-case hexadecimal.
pub fn push_hex(out: &mut Vec<u8>, value: u64) {
    push_radix(out, value, 16);
}

fn push_radix(out: &mut Vec<u8>, mut value: u64, radix: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b"0123456789abcdef"[(value % radix) as usize];
        value /= radix;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends a status line: the version, the code, and the reason phrase (the standard one when
/// the code has one, else `reason` as the backend sent it).
pub fn push_status_line(out: &mut Vec<u8>, version: Version, status: StatusCode, reason: &[u8]) {
    if version == Version::HTTP_11 && status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    match status.canonical_reason() {
        Some(canonical) => out.extend_from_slice(canonical.as_bytes()),
        None => out.extend_from_slice(reason),
    }
    out.extend_from_slice(b"\r\n");
}

/// The framing field a head carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingField {
    /// No framing field.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl FramingField {
    fn push(self, out: &mut Vec<u8>) {
        match self {
            FramingField::None => {}
            FramingField::Length(length) => {
                out.extend_from_slice(b"content-length: ");
                push_decimal(out, length);
                out.extend_from_slice(b"\r\n");
            }
            FramingField::Chunked => push_field(out, b"transfer-encoding", b"chunked"),
        }
    }

    /// The field for a body of this framing; close-delimited bodies have none.
    pub fn of(framing: Framing) -> FramingField {
        match framing {
            Framing::Length(length) => FramingField::Length(length),
            Framing::Chunked => FramingField::Chunked,
            Framing::UntilClose => FramingField::None,
        }
    }
}

/// The `X-Forwarded-*` fields the balancer sets on a request it forwards.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    /// The peer's address, as text.
    pub peer: &'a [u8],
    /// Whether the peer is a trusted proxy: its `X-Forwarded-For` list is kept and the peer
    /// appended; otherwise the list is replaced by the peer.
    pub append: bool,
    /// `http` or `https`: the listener the request came in on.
    pub proto: &'a [u8],
}

/// A request head as forwarded to a backend.
#[derive(Debug)]
pub struct UpstreamHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The target in origin form (or `*`).
    pub target: &'a [u8],
    /// The `Host` to send: the client's effective host, or the backend's address.
    pub host: &'a [u8],
    /// The client's host when it named one: sent as `X-Forwarded-Host`.
    pub client_host: Option<&'a [u8]>,
    /// The client's fields, as received.
    pub headers: &'a HeaderMap,
    /// The framing of the body sent.
    pub framing: FramingField,
    /// The forwarding fields.
    pub forwarded: Forwarded<'a>,
    /// The client's `Upgrade` value, for a well-formed upgrade request only: sent with
    /// `Connection: upgrade`, the two fields the balancer otherwise drops as hop-by-hop.
    pub upgrade: Option<&'a [u8]>,
    /// The request id: its field's name (lower case) and value, written in place of any field
    /// of that name the client sent.
    pub request_id: Option<(&'a [u8], &'a [u8])>,
    /// The request came over HTTP/2, whose clients may split `Cookie` into one field per
    /// cookie: they are joined with `; ` into one field (RFC 9113 §8.2.3), as HTTP/1.1 has it.
    pub join_cookies: bool,
}

/// Serialises an upstream request head: the request line, `Host`, the client's end-to-end
/// fields (less hop-by-hop ones, those `Connection` names, framing, `Expect`, `Host`,
/// `X-Forwarded-*` and the request id's), the framing field, `Connection: upgrade` and
/// `Upgrade` when [`UpstreamHead::upgrade`] says so, the request id, then `X-Forwarded-For`,
/// `-Proto` and `-Host`.
pub fn write_request_head(head: &UpstreamHead<'_>) -> Vec<u8> {
    let mut tokens = ConnectionTokens::default();
    for line in head.headers.get_all(header::CONNECTION) {
        tokens.read(line.as_bytes());
    }
    let mut size = head.method.as_str().len() + head.target.len() + head.host.len() + 160;
    for (name, value) in head.headers {
        size += name.as_str().len() + value.len() + 4;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    push_field(&mut out, b"host", head.host);
    let named = tokens.names_any();
    let mut cookies_joined = false;
    for (name, value) in head.headers {
        if head.join_cookies && name == header::COOKIE {
            let dropped = named && tokens.names(b"cookie");
            if !cookies_joined && !dropped {
                push_joined_cookies(&mut out, head.headers);
            }
            cookies_joined = true;
            continue;
        }
        let name = name.as_str().as_bytes();
        let forward = match FieldKind::of(name) {
            FieldKind::Other | FieldKind::Date => {
                !(named && tokens.names(name))
                    && head.request_id.is_none_or(|(id_name, _)| id_name != name)
            }
            _ => false,
        };
        if forward {
            push_field(&mut out, name, value.as_bytes());
        }
    }
    head.framing.push(&mut out);
    if let Some(protocols) = head.upgrade {
        push_field(&mut out, b"connection", b"upgrade");
        push_field(&mut out, b"upgrade", protocols);
    }
    if let Some((name, value)) = head.request_id {
        push_field(&mut out, name, value);
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if head.forwarded.append {
        // Several lines form one list (RFC 9110 §5.3): join them all, then add the peer.
        for line in head.headers.get_all("x-forwarded-for") {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(head.forwarded.peer);
    out.extend_from_slice(b"\r\n");
    push_field(&mut out, b"x-forwarded-proto", head.forwarded.proto);
    if let Some(host) = head.client_host {
        push_field(&mut out, b"x-forwarded-host", host);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// One `Cookie` field of every `Cookie` value in `headers`, in order, joined with `; `.
fn push_joined_cookies(out: &mut Vec<u8>, headers: &HeaderMap) {
    out.extend_from_slice(b"cookie: ");
    for (index, value) in headers.get_all(header::COOKIE).iter().enumerate() {
        if index > 0 {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// What a response head says about the client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionField {
    /// Nothing: HTTP/1.1 keeps the connection.
    None,
    /// `Connection: close`.
    Close,
    /// `Connection: keep-alive`, for an HTTP/1.0 client whose connection stays open.
    KeepAlive,
    /// `Connection: upgrade`, on a `101` that switches the connection to a tunnel.
    Upgrade,
}

/// A response head as sent to a client.
#[derive(Debug)]
pub struct ClientHead<'a, Fields> {
    /// The client's version.
    pub version: Version,
    /// The status.
    pub status: StatusCode,
    /// The reason phrase the backend sent, used when the code has no standard one.
    pub reason: &'a [u8],
    /// The end-to-end fields, already free of hop-by-hop and framing fields.
    pub fields: Fields,
    /// Room the fields take, for one allocation.
    pub fields_size: usize,
    /// The framing field.
    pub framing: FramingField,
    /// The `Connection` field.
    pub connection: ConnectionField,
}

/// Serialises a response head into `out` (cleared first); a `Date` is added when the fields
/// have none.
pub fn write_response_head<'f>(
    out: &mut Vec<u8>,
    head: ClientHead<'_, impl Iterator<Item = (&'f [u8], &'f [u8])>>,
) {
    out.clear();
    out.reserve(head.fields_size + 160);
    push_status_line(out, head.version, head.status, head.reason);
    let mut dated = false;
    for (name, value) in head.fields {
        dated |= name.len() == 4 && name.eq_ignore_ascii_case(b"date");
        push_field(out, name, value);
    }
    head.framing.push(out);
    match head.connection {
        ConnectionField::None => {}
        ConnectionField::Close => push_field(out, b"connection", b"close"),
        ConnectionField::KeepAlive => push_field(out, b"connection", b"keep-alive"),
        ConnectionField::Upgrade => push_field(out, b"connection", b"upgrade"),
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        super::date::push_date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn numbers_are_formatted_exactly() {
        for value in [0u64, 7, 10, 255, 4096, u64::MAX] {
            let (mut decimal, mut hex) = (Vec::new(), Vec::new());
            push_decimal(&mut decimal, value);
            push_hex(&mut hex, value);
            assert_eq!(decimal, value.to_string().as_bytes());
            assert_eq!(hex, format!("{value:x}").as_bytes());
        }
    }

    #[test]
    fn status_lines_use_the_standard_reason_or_the_backends() {
        let line = |version, code, reason: &[u8]| {
            let mut out = Vec::new();
            push_status_line(
                &mut out,
                version,
                StatusCode::from_u16(code).unwrap(),
                reason,
            );
            String::from_utf8(out).unwrap()
        };
        assert_eq!(line(Version::HTTP_11, 200, b"x"), "HTTP/1.1 200 OK\r\n");
        assert_eq!(line(Version::HTTP_10, 200, b""), "HTTP/1.0 200 OK\r\n");
        assert_eq!(
            line(Version::HTTP_11, 502, b""),
            "HTTP/1.1 502 Bad Gateway\r\n"
        );
        assert_eq!(
            line(Version::HTTP_11, 299, b"Custom"),
            "HTTP/1.1 299 Custom\r\n"
        );
        assert_eq!(line(Version::HTTP_11, 299, b""), "HTTP/1.1 299 \r\n");
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn upstream(headers: &HeaderMap, framing: FramingField, append: bool) -> String {
        let head = UpstreamHead {
            method: &Method::POST,
            target: b"/p?q=1",
            host: b"shop.test",
            client_host: Some(b"shop.test"),
            headers,
            framing,
            forwarded: Forwarded {
                peer: b"192.0.2.7",
                append,
                proto: b"http",
            },
            upgrade: None,
            request_id: None,
            join_cookies: false,
        };
        String::from_utf8(write_request_head(&head)).unwrap()
    }

    #[test]
    fn an_upgrade_is_forwarded_only_when_the_head_says_so() {
        let headers = map(&[
            ("host", "a"),
            ("connection", "upgrade"),
            ("upgrade", "evil"),
            ("sec-websocket-key", "k"),
        ]);
        let mut head = UpstreamHead {
            method: &Method::GET,
            target: b"/ws",
            host: b"a",
            client_host: None,
            headers: &headers,
            framing: FramingField::None,
            forwarded: Forwarded {
                peer: b"192.0.2.7",
                append: false,
                proto: b"http",
            },
            upgrade: None,
            request_id: None,
            join_cookies: false,
        };
        let plain = String::from_utf8(write_request_head(&head)).unwrap();
        assert!(!plain.contains("upgrade"), "{plain}");
        assert!(plain.contains("sec-websocket-key: k\r\n"));
        head.upgrade = Some(b"websocket");
        let upgrade = String::from_utf8(write_request_head(&head)).unwrap();
        assert!(upgrade.contains("\r\nconnection: upgrade\r\nupgrade: websocket\r\n"));
        assert_eq!(upgrade.matches("upgrade").count(), 2, "{upgrade}");
    }

    #[test]
    fn an_http2_clients_cookie_crumbs_go_upstream_as_one_field() {
        let crumbs = map(&[
            ("cookie", "a=1"),
            ("accept", "*/*"),
            ("cookie", "b=2"),
            ("cookie", "c=3"),
        ]);
        let cases: [(&HeaderMap, bool, &[&str], usize); 3] = [
            (&crumbs, true, &["cookie: a=1; b=2; c=3\r\n"], 1),
            // HTTP/1's lines stay as the client sent them.
            (&crumbs, false, &["cookie: a=1\r\n", "cookie: b=2\r\n"], 3),
            (
                &map(&[("cookie", "a=1"), ("connection", "cookie")]),
                true,
                &[],
                0,
            ),
        ];
        for (headers, join_cookies, expected, lines) in cases {
            let head = UpstreamHead {
                method: &Method::GET,
                target: b"/",
                host: b"shop.test",
                client_host: None,
                headers,
                framing: FramingField::None,
                forwarded: Forwarded {
                    peer: b"192.0.2.7",
                    append: false,
                    proto: b"https",
                },
                upgrade: None,
                request_id: None,
                join_cookies,
            };
            let written = String::from_utf8(write_request_head(&head)).unwrap();
            for line in expected {
                assert!(written.contains(line), "{written}");
            }
            assert_eq!(written.matches("cookie: ").count(), lines, "{written}");
            let accept = headers.contains_key("accept");
            assert_eq!(written.contains("accept: */*\r\n"), accept, "{written}");
        }
    }

    #[test]
    fn the_request_id_replaces_the_clients_whatever_connection_says() {
        let headers = map(&[
            ("x-request-id", "forged"),
            ("connection", "x-request-id"),
            ("x-request-id", "again"),
            ("accept", "*/*"),
        ]);
        let head = UpstreamHead {
            method: &Method::GET,
            target: b"/",
            host: b"shop.test",
            client_host: None,
            headers: &headers,
            framing: FramingField::None,
            forwarded: Forwarded {
                peer: b"192.0.2.7",
                append: false,
                proto: b"http",
            },
            upgrade: None,
            request_id: Some((b"x-request-id", b"0123abcd")),
            join_cookies: false,
        };
        let written = String::from_utf8(write_request_head(&head)).unwrap();
        assert_eq!(written.matches("x-request-id").count(), 1, "{written}");
        assert!(
            written.contains("\r\nx-request-id: 0123abcd\r\n"),
            "{written}"
        );
        assert!(!written.contains("forged") && !written.contains("again"));
        assert!(written.contains("accept: */*"));
    }

    #[test]
    fn the_upstream_head_is_ours_around_the_clients_fields() {
        let headers = map(&[
            ("host", "shop.test"),
            (
                "connection",
                "keep-alive, x-secret, content-length, host, x-forwarded-for",
            ),
            ("x-secret", "1"),
            ("content-length", "5"),
            ("transfer-encoding", "chunked"),
            ("expect", "100-continue"),
            ("te", "trailers"),
            ("proxy-authorization", "x"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-forwarded-host", "spoof"),
            ("x-forwarded-proto", "https"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
        ]);
        assert_eq!(
            upstream(&headers, FramingField::Length(12), false),
            "POST /p?q=1 HTTP/1.1\r\nhost: shop.test\r\ncookie: a=1\r\ncookie: b=2\r\n\
             content-length: 12\r\nx-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: shop.test\r\n\r\n"
        );
        assert!(upstream(&headers, FramingField::Chunked, true).contains(
            "\r\ntransfer-encoding: chunked\r\n\
                 x-forwarded-for: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\n"
        ));
    }

    /// Field names a `Connection` list may hold: every one the writer sets itself, hop-by-hop
    /// ones, options, odd tokens and ordinary fields.
    fn listed_name() -> impl proptest::strategy::Strategy<Value = &'static str> {
        proptest::sample::select(vec![
            "content-length",
            "Content-Length",
            "transfer-encoding",
            "host",
            "HOST",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "expect",
            "close",
            "keep-alive",
            "upgrade",
            "te",
            "cookie",
            "x-a",
            "",
            " ",
            "not a name!",
            "date",
        ])
    }

    proptest::proptest! {
        #[test]
        fn no_connection_list_removes_what_the_balancer_writes(
            lines in proptest::collection::vec(proptest::collection::vec(listed_name(), 0..6), 1..3),
            chunked in proptest::bool::ANY,
            append in proptest::bool::ANY,
        ) {
            let mut pairs = vec![
                ("host", "shop.test"), ("content-length", "5"), ("transfer-encoding", "chunked"),
                ("x-forwarded-for", "10.0.0.1"), ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "spoof"), ("cookie", "c"), ("x-a", "1"),
            ];
            let joined: Vec<String> = lines.iter().map(|line| line.join(", ")).collect();
            for line in &joined {
                pairs.push(("connection", line));
            }
            let headers = map(&pairs);
            let framing = if chunked { FramingField::Chunked } else { FramingField::Length(12) };
            let head = upstream(&headers, framing, append);
            let count = |prefix: &str| head.matches(prefix).count();
            proptest::prop_assert_eq!(count("\r\nhost: shop.test\r\n"), 1);
            proptest::prop_assert_eq!(count("\r\ncontent-length: 12\r\n"), usize::from(!chunked));
            proptest::prop_assert_eq!(count("\r\ntransfer-encoding: chunked\r\n"), usize::from(chunked));
            proptest::prop_assert_eq!(count("content-length"), usize::from(!chunked));
            proptest::prop_assert_eq!(count("transfer-encoding"), usize::from(chunked));
            proptest::prop_assert_eq!(count("\r\nx-forwarded-for: "), 1);
            proptest::prop_assert!(head.contains("192.0.2.7\r\n"));
            proptest::prop_assert_eq!(count("\r\nx-forwarded-proto: http\r\n"), 1);
            proptest::prop_assert_eq!(count("\r\nx-forwarded-host: shop.test\r\n"), 1);
            proptest::prop_assert!(!head.contains("connection"));
            let listed = |name: &str| lines.iter().flatten().any(|token| token.eq_ignore_ascii_case(name));
            proptest::prop_assert_eq!(head.contains("cookie: c"), !listed("cookie"));
            proptest::prop_assert_eq!(head.contains("x-a: 1"), !listed("x-a"));
        }
    }

    #[test]
    fn response_heads_carry_framing_connection_and_a_date() {
        let mut out = Vec::new();
        let fields = [
            (&b"X-A"[..], &b"1"[..]),
            (b"Date", b"Sun, 06 Nov 1994 08:49:37 GMT"),
        ];
        write_response_head(
            &mut out,
            ClientHead {
                version: Version::HTTP_10,
                status: StatusCode::OK,
                reason: b"",
                fields: fields.into_iter(),
                fields_size: 64,
                framing: FramingField::Length(5),
                connection: ConnectionField::KeepAlive,
            },
        );
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "HTTP/1.0 200 OK\r\nX-A: 1\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             content-length: 5\r\nconnection: keep-alive\r\n\r\n"
        );
        write_response_head(
            &mut out,
            ClientHead {
                version: Version::HTTP_11,
                status: StatusCode::BAD_GATEWAY,
                reason: b"",
                fields: std::iter::empty(),
                fields_size: 0,
                framing: FramingField::Chunked,
                connection: ConnectionField::Close,
            },
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(
                "HTTP/1.1 502 Bad Gateway\r\ntransfer-encoding: chunked\r\nconnection: close\r\ndate: "
            ),
            "{text}"
        );
    }
}
