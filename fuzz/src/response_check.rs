//! Response heads from a backend: any bytes give a verdict, never a panic; the fields kept for
//! the client hold nothing hop-by-hop, no framing and nothing `Connection` named; the head
//! written to the client from them parses back to the framing the balancer chose; and the
//! fields an HTTP/2 response gets are those same fields, under the names the `http` crate reads.

use http::{StatusCode, Version};
use lb_proxy::proto::h1::fields::{ConnectionTokens, FieldKind};
use lb_proxy::proto::h1::framing::{Framing, client_framing};
use lb_proxy::proto::h1::response::parse;
use lb_proxy::proto::h1::write::{ClientHead, ConnectionField, FramingField, write_response_head};

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
        check_http2_fields(&head);
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
            // Read back by httparse (hyper's parser) with room for the fields the balancer
            // adds: the head sent holds up to three more than the backend's, so the client's
            // own limit on the count, not ours, applies to it.
            let mut slots = [httparse::EMPTY_HEADER; 256];
            let mut again = httparse::Response::new(&mut slots);
            let status = again
                .parse(&out)
                .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&out)));
            assert_eq!(
                status,
                httparse::Status::Complete(out.len()),
                "one head, nothing after it"
            );
            assert_eq!(again.code, Some(head.status.as_u16()));
            let values = |name: &str| -> Vec<&[u8]> {
                again
                    .headers
                    .iter()
                    .filter(|field| field.name.eq_ignore_ascii_case(name))
                    .map(|field| field.value)
                    .collect()
            };
            let lengths = values("content-length");
            let codings = values("transfer-encoding");
            match framing.field {
                FramingField::None => assert!(lengths.is_empty() && codings.is_empty()),
                FramingField::Length(length) => {
                    assert!(codings.is_empty());
                    assert_eq!(lengths, [length.to_string().as_bytes()]);
                }
                FramingField::Chunked => {
                    assert!(lengths.is_empty());
                    assert_eq!(codings, [&b"chunked"[..]]);
                    assert_eq!(version, Version::HTTP_11, "chunked to an HTTP/1.0 client");
                }
            }
            if framing.body == Framing::UntilClose {
                assert!(framing.close, "a body delimited by the close must close");
            }
            let status_has_body = !(head.status.is_informational()
                || head.status == StatusCode::NO_CONTENT
                || head.status == StatusCode::NOT_MODIFIED);
            if !expect_body || !status_has_body {
                assert_eq!(framing.body, Framing::NONE, "a body where none may be");
            }
        }
    }
}

/// The fields of an HTTP/2 response (`append_to`): every kept line whose name and value the
/// `http` crate accepts, under the name that crate parses (the common names take a
/// shortcut of their own, which must agree with it), and `Date` reported when one is there.
fn check_http2_fields(head: &lb_proxy::proto::h1::response::ResponseHead) {
    let mut map = http::HeaderMap::new();
    let dated = head.append_to(&mut map);
    let expected: Vec<(http::HeaderName, &[u8])> = head
        .fields()
        .filter(|(_, value)| http::HeaderValue::from_bytes(value).is_ok())
        .filter_map(|(name, value)| Some((http::HeaderName::from_bytes(name).ok()?, value)))
        .collect();
    let got: Vec<(&http::HeaderName, &[u8])> = map
        .iter()
        .map(|(name, value)| (name, value.as_bytes()))
        .collect();
    assert_eq!(got.len(), expected.len(), "{got:?} against {expected:?}");
    for (name, value) in &expected {
        let mut values = map.get_all(name).iter();
        assert!(
            values.any(|held| held.as_bytes() == *value),
            "{name}: {value:?} is missing"
        );
    }
    assert_eq!(dated, map.contains_key(http::header::DATE));
}
