//! The upstream request head from any header section (one `name: value` per line, invalid lines
//! skipped): no hop-by-hop field and nothing `Connection` names survives; `Host`, the framing
//! field and `X-Forwarded-*` are the balancer's, once each, whatever `Connection` lists; at the
//! edge exactly our `X-Forwarded-For` remains, behind a trusted proxy it is appended to; the
//! client address is the peer or an address from the list; and the head parses back to the
//! framing that was written.

use std::net::{IpAddr, Ipv4Addr};

use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use lb_core::net::{Cidr, client_address};
use lb_proxy::proto::h1::framing::Framing;
use lb_proxy::proto::h1::request::{Limits, parse};
use lb_proxy::proto::h1::write::{Forwarded, FramingField, UpstreamHead, write_request_head};

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
    let headers = header_section(data);
    let named: Vec<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| HeaderName::from_bytes(token.as_bytes()).is_ok())
        .collect();
    let trusted: Vec<Cidr> = ["10.0.0.0/8", "127.0.0.1", "::1"]
        .iter()
        .filter_map(|text| text.parse().ok())
        .collect();
    let peer = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let lines: Vec<String> = headers
        .get_all("x-forwarded-for")
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

    let framings = [
        FramingField::None,
        FramingField::Length(0),
        FramingField::Length(7),
        FramingField::Chunked,
    ];
    for (index, framing) in framings.into_iter().enumerate() {
        let append = index % 2 == 1;
        let head = write_request_head(&UpstreamHead {
            method: &Method::POST,
            target: b"/t",
            host: b"backend.test",
            client_host: Some(b"client.test"),
            headers: &headers,
            framing,
            forwarded: Forwarded {
                peer: b"192.0.2.1",
                append,
                proto: b"http",
            },
            upgrade: None,
            request_id: None,
            // As for a request that came over HTTP/2: its `Cookie` fields joined.
            join_cookies: index >= 2,
        });
        let written = header_section(&head);
        for name in HOP_BY_HOP
            .iter()
            .filter(|name| **name != "transfer-encoding")
        {
            assert!(!written.contains_key(*name), "{name} survived");
        }
        // The framing field is the one written, once, whatever the client sent.
        let codings: Vec<_> = written.get_all("transfer-encoding").iter().collect();
        let lengths: Vec<_> = written.get_all("content-length").iter().collect();
        match framing {
            FramingField::None => assert!(codings.is_empty() && lengths.is_empty()),
            FramingField::Length(length) => {
                assert!(codings.is_empty());
                assert_eq!(lengths, [length.to_string().as_str()]);
            }
            FramingField::Chunked => {
                assert_eq!(codings, ["chunked"]);
                assert!(lengths.is_empty());
            }
        }
        for name in &named {
            let ours = matches!(
                name.as_str(),
                "host"
                    | "content-length"
                    | "transfer-encoding"
                    | "x-forwarded-for"
                    | "x-forwarded-proto"
                    | "x-forwarded-host"
            );
            if !ours {
                assert!(
                    !written.contains_key(name.as_str()),
                    "{name}, named in Connection, survived"
                );
            }
        }
        assert!(
            written
                .keys()
                .all(|name| !name.as_str().starts_with("proxy-"))
        );
        assert_eq!(
            written.get_all("host").iter().collect::<Vec<_>>(),
            ["backend.test"]
        );
        assert_eq!(
            written
                .get_all("x-forwarded-host")
                .iter()
                .collect::<Vec<_>>(),
            ["client.test"]
        );
        assert_eq!(
            written
                .get_all("x-forwarded-proto")
                .iter()
                .collect::<Vec<_>>(),
            ["http"]
        );
        let forwarded: Vec<_> = written.get_all("x-forwarded-for").iter().collect();
        assert_eq!(forwarded.len(), 1);
        if append {
            assert!(forwarded[0].as_bytes().ends_with(b"192.0.2.1"));
        } else {
            assert_eq!(
                forwarded[0], "192.0.2.1",
                "the edge must replace X-Forwarded-For"
            );
        }
        // The head parses back, as our own codec reads requests, to the framing written.
        let limits = Limits {
            max_head_bytes: usize::MAX,
            max_target_bytes: usize::MAX,
        };
        let parsed = parse(&head, &limits)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&head)))
            .expect("a complete head");
        let expected = match framing {
            FramingField::None => Framing::NONE,
            FramingField::Length(length) => Framing::Length(length),
            FramingField::Chunked => Framing::Chunked,
        };
        assert_eq!(parsed.meta.body, expected);
        assert_eq!(parsed.length, head.len());
    }
}

/// A header section read leniently: one `name: value` per line, lines that are not skipped.
fn header_section(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    headers
}
