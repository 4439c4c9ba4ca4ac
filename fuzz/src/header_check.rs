//! Header sanitising: from any header section (one `name: value` per line, invalid lines
//! skipped), hop-by-hop removal leaves no hop-by-hop header and nothing `Connection` named but `Host`;
//! at the edge exactly our `X-Forwarded-For` remains; behind a trusted proxy the client address
//! is the peer or an address from the header; the transfer-coding check never panics; and the
//! request head written straight from the client's headers is the one the map path writes.

use std::net::{IpAddr, Ipv4Addr};

use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use lb_core::net::{Cidr, client_address};
use lb_proxy::headers::{
    X_FORWARDED_FOR, add_forwarded, connection_names_no_header, encode_forwarded_head,
    strip_hop_by_hop,
};
use lb_proxy::upstream::h1::encode_head;
use lb_proxy::validate::check_transfer_encoding;

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
];

/// Checks one input; panics on a violated property.
pub fn check(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(trim(&line[colon + 1..])),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let _ = check_transfer_encoding(&headers);

    let named: Vec<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| HeaderName::from_bytes(token.as_bytes()).is_ok())
        // Host is end-to-end: kept even when named in Connection.
        .filter(|token| token != "host")
        .collect();
    let trusted: Vec<Cidr> = ["10.0.0.0/8", "127.0.0.1", "::1"]
        .iter()
        .filter_map(|text| text.parse().ok())
        .collect();
    let peer = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let lines: Vec<String> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok().map(str::to_owned))
        .collect();
    let client = client_address(peer, lines.iter().map(String::as_str), &trusted);
    let listed: Vec<IpAddr> = lines
        .iter()
        .flat_map(|line| line.split(','))
        .filter_map(|entry| entry.trim().parse().ok())
        .collect();
    assert!(
        client == peer || listed.contains(&client),
        "client {client} is neither the peer nor in {lines:?}"
    );

    let ours = HeaderValue::from_static("192.0.2.1");
    if connection_names_no_header(
        headers
            .get_all("connection")
            .iter()
            .map(HeaderValue::as_bytes),
    ) {
        for append in [false, true] {
            let direct = encode_forwarded_head(&Method::GET, "/", &headers, &ours, append, "http");
            let mut rewritten = headers.clone();
            strip_hop_by_hop(&mut rewritten);
            add_forwarded(&mut rewritten, &ours, append, "http");
            let via_map = encode_head(&Method::GET, "/", &rewritten);
            assert_eq!(
                sorted_lines(&direct),
                sorted_lines(&via_map),
                "append={append}"
            );
        }
    }

    let mut edge = headers.clone();
    strip_hop_by_hop(&mut edge);
    for name in HOP_BY_HOP.iter().map(|n| n.to_string()).chain(named) {
        assert!(!edge.contains_key(name.as_str()), "{name} survived");
    }
    assert!(edge.keys().all(|name| !name.as_str().starts_with("proxy-")));
    let mut trusting = edge.clone();
    add_forwarded(&mut edge, &ours, false, "http");
    let all: Vec<_> = edge.get_all(&X_FORWARDED_FOR).iter().collect();
    assert_eq!(all, [&ours], "the edge must replace X-Forwarded-For");

    add_forwarded(&mut trusting, &ours, true, "http");
    let all: Vec<_> = trusting.get_all(&X_FORWARDED_FOR).iter().collect();
    assert_eq!(all.len(), 1);
    assert!(all[0].as_bytes().ends_with(b"192.0.2.1"));
}

/// A head's request line, then its header lines sorted: the order of fields is not meaning.
fn sorted_lines(head: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = head.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    lines[1..].sort();
    lines
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}
