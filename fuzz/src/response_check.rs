//! Response heads from a backend: any bytes give a verdict, never a panic; the fields kept for
//! the client hold nothing hop-by-hop, no framing and nothing `Connection` named; and the head
//! written to the client from them parses back to the framing the balancer chose.

use http::{StatusCode, Version};
use lb_proxy::proto::h1::fields::{ConnectionTokens, FieldKind};
use lb_proxy::proto::h1::framing::{Framing, client_framing};
use lb_proxy::proto::h1::response::parse;
use lb_proxy::proto::h1::write::{ClientHead, ConnectionField, write_response_head};

/// Checks one input; panics on a violated property.
pub fn check(data: &[u8]) {
    for expect_body in [true, false] {
        let Ok(Some(parsed)) = parse(data, expect_body, 4096) else {
            continue;
        };
        let length = parsed.length;
        let head = parsed.into_head(bytes::Bytes::copy_from_slice(&data[..length]));
        let mut tokens = ConnectionTokens::default();
        let mut source = [httparse::EMPTY_HEADER; 128];
        let mut response = httparse::Response::new(&mut source);
        let _ = response.parse(&data[..length]);
        for field in response.headers.iter() {
            if FieldKind::of(field.name.as_bytes()) == FieldKind::Connection {
                tokens.read(field.value);
            }
        }
        for (name, _) in head.fields() {
            let kind = FieldKind::of(name);
            assert!(!kind.is_hop_by_hop() && kind != FieldKind::ContentLength);
            assert!(!tokens.names(name), "a field Connection named was kept");
        }
        if head.body == Framing::Chunked {
            assert!(head.declared_length.is_none());
        }
        for version in [Version::HTTP_11, Version::HTTP_10] {
            let size = match head.body {
                Framing::Length(0) => None,
                Framing::Length(length) => Some(Some(length)),
                _ => Some(None),
            };
            let framing = client_framing(
                !expect_body,
                head.status,
                version,
                size,
                head.declared_length,
            );
            let mut out = Vec::new();
            write_response_head(
                &mut out,
                ClientHead {
                    version,
                    status: head.status,
                    reason: head.reason(),
                    fields: head.fields(),
                    fields_size: head.size(),
                    framing: framing.field,
                    connection: ConnectionField::Close,
                },
            );
            let again = parse(&out, expect_body, usize::MAX)
                .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&out)))
                .expect("a complete head");
            assert_eq!(again.length, out.len());
            let again = again.into_head(bytes::Bytes::from(out));
            let status_has_body = !(head.status.is_informational()
                || head.status == StatusCode::NO_CONTENT
                || head.status == StatusCode::NOT_MODIFIED);
            if expect_body && status_has_body {
                let close_delimited = framing.body == Framing::UntilClose;
                assert_eq!(again.body, framing.body, "{close_delimited}");
            }
        }
    }
}
