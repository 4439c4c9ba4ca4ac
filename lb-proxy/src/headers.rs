//! Header rewriting between client and backend: hop-by-hop removal (RFC 9110 §7.6.1) and the
//! `X-Forwarded-*` family.
//!
//! Hop-by-hop headers are removed *before* the balancer adds its own, so a client cannot name
//! `X-Forwarded-For` in `Connection` to make the balancer drop it.

use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::upstream::h1::{push_field, start_head};

/// The standard hop-by-hop headers (RFC 9110 §7.6.1, RFC 9112), besides any `Proxy-*` header.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("proxy-connection"),
];

/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes every header named in `Connection`, then the standard hop-by-hop set and `Proxy-*`.
///
/// Allocation-free in the common cases (this runs twice per request): one pass over the names
/// finds which hop-by-hop headers are present, names listed in `Connection` are removed by
/// `&str` (parsed on the stack), and only the present ones of the fixed set are removed.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u8;
    let mut proxy = false;
    for name in headers.keys() {
        // Standard names compare as enum tags.
        if let Some(index) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present |= 1 << index;
        } else if is_proxy_header(name) {
            proxy = true;
        }
    }
    if present == 0 && !proxy {
        return;
    }
    // Names listed in Connection are connection-specific (RFC 9110 §7.6.1). Its lines are taken
    // out of the map first (each a reference-counted value, not a copy), so that the names can
    // then be removed from the map.
    if let http::header::Entry::Occupied(entry) = headers.entry(header::CONNECTION) {
        let (_, lines) = entry.remove_entry_mult();
        let mut first = [None, None];
        let mut more = Vec::new();
        for (index, line) in lines.enumerate() {
            match first.get_mut(index) {
                Some(slot) => *slot = Some(line),
                None => more.push(line),
            }
        }
        for line in first.iter().flatten().chain(&more) {
            remove_listed(headers, line);
        }
    }
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
    if proxy {
        let names: Vec<HeaderName> = headers
            .keys()
            .filter(|name| is_proxy_header(name))
            .cloned()
            .collect();
        for name in names {
            headers.remove(name);
        }
    }
}

/// Removes the headers one `Connection` line names.
fn remove_listed(headers: &mut HeaderMap, line: &HeaderValue) {
    let Ok(text) = line.to_str() else {
        return;
    };
    for token in text.split(',').map(str::trim) {
        // `close` and `keep-alive` are the usual tokens and name no header to remove beyond the
        // fixed set; Host is end-to-end and required by HTTP/1.1: a client cannot make us drop it.
        if token.is_empty()
            || token.eq_ignore_ascii_case("close")
            || token.eq_ignore_ascii_case("keep-alive")
            || token.eq_ignore_ascii_case("host")
        {
            continue;
        }
        // By `&str`: no allocation, and a token that is no valid name matches nothing.
        headers.remove(token);
    }
}

fn is_proxy_header(name: &HeaderName) -> bool {
    name.as_str().starts_with("proxy-")
}

/// Whether `name` is hop-by-hop by itself: the standard set or a `Proxy-*` header.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || is_proxy_header(name)
}

/// A hop-by-hop header, as [`hop_by_hop_kind`] tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopByHop {
    /// `Connection`.
    Connection,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// Any other of the set, or a `Proxy-*` header.
    Other,
}

/// [`is_hop_by_hop`] for a name as it came off the wire, in any case: which hop-by-hop header
/// it is, or `None` for an end-to-end one. Decided by length first, since it runs for every
/// line of every response head.
pub fn hop_by_hop_kind(name: &[u8]) -> Option<HopByHop> {
    let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
    let kind = match name.len() {
        2 if is(b"te") => HopByHop::Other,
        7 if is(b"trailer") || is(b"upgrade") => HopByHop::Other,
        10 if is(b"connection") => HopByHop::Connection,
        10 if is(b"keep-alive") => HopByHop::Other,
        17 if is(b"transfer-encoding") => HopByHop::TransferEncoding,
        _ if name.len() >= 6 && name[..6].eq_ignore_ascii_case(b"proxy-") => HopByHop::Other,
        _ => return None,
    };
    Some(kind)
}

/// Whether the `Connection` lines name no header to remove (only `close`, `keep-alive`, or
/// nothing), so that dropping the hop-by-hop set is all [`strip_hop_by_hop`] would do.
pub fn connection_names_no_header<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> bool {
    lines.into_iter().all(|line| {
        line.split(|&byte| byte == b',').all(|token| {
            let token = token.trim_ascii();
            token.is_empty()
                || token.eq_ignore_ascii_case(b"close")
                || token.eq_ignore_ascii_case(b"keep-alive")
                || token.eq_ignore_ascii_case(b"host")
        })
    })
}

/// Serialises the request head sent to a backend straight from the client's headers: what
/// [`strip_hop_by_hop`], then [`add_forwarded`], then `upstream::h1::encode_head` give, provided
/// [`connection_names_no_header`] holds for the request. Hop-by-hop and `X-Forwarded-*` lines
/// are left out as the head is written and the balancer's own are written after them, so the
/// map is never rewritten: removing from it and inserting into it cost about 1,700
/// instructions per request, and a re-hash of the whole map on a connection's first request.
pub fn encode_forwarded_head(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    peer_ip: &HeaderValue,
    append: bool,
    proto: &'static str,
) -> Bytes {
    let mut head = start_head(method, target, headers, 96 + peer_ip.len());
    let host = headers.get(header::HOST);
    for (name, value) in headers {
        // As `add_forwarded`: a client's X-Forwarded-Host stays only when there is no Host.
        if is_hop_by_hop(name)
            || name == X_FORWARDED_FOR
            || name == X_FORWARDED_PROTO
            || (name == X_FORWARDED_HOST && host.is_some())
        {
            continue;
        }
        push_field(&mut head, name.as_str().as_bytes(), value.as_bytes());
    }
    head.extend_from_slice(b"x-forwarded-for: ");
    if append {
        // Several lines form one list (RFC 9110 §5.3): join them all, then add the peer.
        for line in headers.get_all(&X_FORWARDED_FOR) {
            head.extend_from_slice(line.as_bytes());
            head.extend_from_slice(b", ");
        }
    }
    head.extend_from_slice(peer_ip.as_bytes());
    head.extend_from_slice(b"\r\n");
    push_field(&mut head, b"x-forwarded-proto", proto.as_bytes());
    if let Some(host) = host {
        push_field(&mut head, b"x-forwarded-host", host.as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    Bytes::from(head)
}

/// Adds the balancer's forwarding headers: `X-Forwarded-For` (the peer appended when `append`,
/// that is when the peer is a trusted proxy; otherwise the client's list is replaced by the peer,
/// since an edge cannot believe it), `X-Forwarded-Proto` and `X-Forwarded-Host` (from `Host`,
/// when there is one).
pub fn add_forwarded(
    headers: &mut HeaderMap,
    peer_ip: &HeaderValue,
    append: bool,
    proto: &'static str,
) {
    if append && headers.contains_key(&X_FORWARDED_FOR) {
        // Several lines form one list (RFC 9110 §5.3): join them all, then add the peer.
        let mut joined = Vec::with_capacity(64);
        for line in headers.get_all(&X_FORWARDED_FOR) {
            joined.extend_from_slice(line.as_bytes());
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(peer_ip.as_bytes());
        // Every part is valid header bytes, so the join is too; fall back to the peer alone.
        let value = HeaderValue::from_bytes(&joined).unwrap_or_else(|_| peer_ip.clone());
        headers.insert(X_FORWARDED_FOR.clone(), value);
    } else {
        // `insert` drops every earlier line: at the edge a spoofed list does not survive.
        headers.insert(X_FORWARDED_FOR.clone(), peer_ip.clone());
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_kind_agrees_with_the_header_set_in_any_case() {
        let names = [
            "connection",
            "Keep-Alive",
            "TE",
            "trailer",
            "Transfer-Encoding",
            "UPGRADE",
            "proxy-connection",
            "Proxy-Authorization",
            "proxy-x",
            "host",
            "content-length",
            "date",
            "tea",
            "trailers",
            "proxy",
            "x-proxy-a",
            "connections",
        ];
        for name in names {
            let parsed = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert_eq!(
                hop_by_hop_kind(name.as_bytes()).is_some(),
                is_hop_by_hop(&parsed),
                "{name}"
            );
        }
        assert_eq!(hop_by_hop_kind(b"CONNECTION"), Some(HopByHop::Connection));
        assert_eq!(
            hop_by_hop_kind(b"transfer-ENCODING"),
            Some(HopByHop::TransferEncoding)
        );
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    /// The head as the map path writes it, as a sorted list of lines (order is not meaning).
    fn lines(head: &[u8]) -> Vec<String> {
        let text = String::from_utf8(head.to_vec()).unwrap();
        let mut lines: Vec<String> = text.split("\r\n").map(str::to_owned).collect();
        lines[1..].sort();
        lines
    }

    #[test]
    fn the_direct_encoding_equals_strip_then_add_then_encode() {
        let peer = HeaderValue::from_static("192.0.2.7");
        let requests: [&[(&str, &str)]; 5] = [
            &[("host", "a.test"), ("accept", "*/*")],
            &[
                ("host", "a.test"),
                ("connection", "close"),
                ("keep-alive", "5"),
                ("te", "trailers"),
            ],
            &[
                ("x-forwarded-for", "10.0.0.1"),
                ("x-forwarded-for", "10.0.0.2, 10.0.0.3"),
                ("host", "h"),
            ],
            &[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "spoof"),
                ("proxy-authorization", "x"),
                ("upgrade", "h2c"),
            ],
            &[
                ("connection", "Keep-Alive, close, host"),
                ("cookie", "a=1"),
                ("cookie", "b=2"),
            ],
        ];
        for pairs in requests {
            let headers = map(pairs);
            assert!(connection_names_no_header(
                headers
                    .get_all(header::CONNECTION)
                    .iter()
                    .map(HeaderValue::as_bytes)
            ));
            for append in [false, true] {
                let direct =
                    encode_forwarded_head(&Method::GET, "/x?y", &headers, &peer, append, "http");
                let mut rewritten = headers.clone();
                strip_hop_by_hop(&mut rewritten);
                add_forwarded(&mut rewritten, &peer, append, "http");
                let via_map = crate::upstream::h1::encode_head(&Method::GET, "/x?y", &rewritten);
                assert_eq!(lines(&direct), lines(&via_map), "{pairs:?} append={append}");
            }
        }
    }

    #[test]
    fn connection_tokens_that_name_headers_need_the_map_path() {
        for line in ["x-secret", "close, x-secret", "upgrade"] {
            assert!(!connection_names_no_header([line.as_bytes()]), "{line}");
        }
        for line in ["close", " keep-alive ,close", "", "Host"] {
            assert!(connection_names_no_header([line.as_bytes()]), "{line}");
        }
    }

    #[test]
    fn strips_standard_and_connection_named_headers() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Secret , x-other"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("host", "example.test"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut headers);
        // Removal may reorder the map; only the set of names left matters.
        let mut left: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "host"]);
    }

    #[test]
    fn every_connection_line_is_honoured_and_odd_tokens_are_harmless() {
        let mut headers = map(&[
            ("connection", "Keep-Alive, X-One"),
            ("connection", "x-two,,  , not a name!, close"),
            ("connection", "x-three"),
            ("x-one", "1"),
            ("x-two", "2"),
            ("x-three", "3"),
            ("x-four", "4"),
            ("proxy-authenticate", "Basic"),
        ]);
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
        assert_eq!(left, ["x-four"]);
    }

    #[test]
    fn a_message_without_hop_by_hop_headers_is_left_as_it_is() {
        let mut headers = map(&[("host", "a.test"), ("accept", "*/*"), ("x-id", "7")]);
        let before = headers.clone();
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers, before);
    }

    #[test]
    fn client_cannot_drop_host_through_connection() {
        let mut headers = map(&[
            ("connection", "host, x-a"),
            ("host", "shop.test"),
            ("x-a", "1"),
        ]);
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers[header::HOST], "shop.test");
        assert!(!headers.contains_key("x-a"));
    }

    #[test]
    fn client_cannot_drop_forwarded_for_through_connection() {
        let mut headers = map(&[
            ("connection", "x-forwarded-for"),
            ("x-forwarded-for", "10.0.0.9"),
        ]);
        strip_hop_by_hop(&mut headers);
        add_forwarded(
            &mut headers,
            &HeaderValue::from_static("127.0.0.1"),
            true,
            "http",
        );
        assert_eq!(headers[&X_FORWARDED_FOR], "127.0.0.1");
    }

    #[test]
    fn appends_to_existing_forwarded_for_and_sets_proto_and_host() {
        let mut headers = map(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("host", "shop.test:8080"),
        ]);
        add_forwarded(
            &mut headers,
            &HeaderValue::from_static("127.0.0.1"),
            true,
            "http",
        );
        assert_eq!(headers[&X_FORWARDED_FOR], "203.0.113.7, 127.0.0.1");
        assert_eq!(headers[&X_FORWARDED_PROTO], "http");
        assert_eq!(headers[&X_FORWARDED_HOST], "shop.test:8080");
    }

    #[test]
    fn an_edge_replaces_every_spoofed_forwarded_for_line() {
        let mut headers = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "7.7.7.7, 8.8.8.8"),
        ]);
        add_forwarded(
            &mut headers,
            &HeaderValue::from_static("127.0.0.1"),
            false,
            "http",
        );
        let all: Vec<_> = headers.get_all(&X_FORWARDED_FOR).iter().collect();
        assert_eq!(all, ["127.0.0.1"]);
    }

    #[test]
    fn a_trusted_peer_is_appended_after_every_line() {
        let mut headers = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "7.7.7.7"),
        ]);
        add_forwarded(
            &mut headers,
            &HeaderValue::from_static("10.0.0.1"),
            true,
            "http",
        );
        let all: Vec<_> = headers.get_all(&X_FORWARDED_FOR).iter().collect();
        assert_eq!(all, ["6.6.6.6, 7.7.7.7, 10.0.0.1"]);
    }

    #[test]
    fn no_host_means_no_forwarded_host() {
        let mut headers = HeaderMap::new();
        add_forwarded(
            &mut headers,
            &HeaderValue::from_static("::1"),
            false,
            "http",
        );
        assert!(!headers.contains_key(&X_FORWARDED_HOST));
        assert_eq!(headers[&X_FORWARDED_FOR], "::1");
    }
}
