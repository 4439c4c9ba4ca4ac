//! Request heads: any bytes give a verdict, never a panic; a head that is accepted keeps every
//! rule (no `CONNECT`, at most one `Host` and one on HTTP/1.1, `chunked` wins over a length and
//! then closes the connection); the verdict is the same whatever follows the head and however
//! the head is cut; the head forwarded upstream parses back to the framing written; and the
//! rules on a head another codec parsed (`check_parts`, for h2's and hyper's) accept it alike.

use http::Method;
use lb_proxy::proto::h1::framing::Framing;
use lb_proxy::proto::h1::request::{Limits, RequestHead, check_parts, parse};
use lb_proxy::proto::h1::write::{Forwarded, FramingField, UpstreamHead, write_request_head};

const LIMITS: Limits = Limits {
    max_head_bytes: 2048,
    max_target_bytes: 512,
};

/// Checks one input; panics on a violated property.
pub fn check(data: &[u8]) {
    let verdict = parse(data, &LIMITS);
    let Ok(Some(head)) = verdict else {
        return;
    };
    let text = String::from_utf8_lossy(&data[..head.length]).to_ascii_lowercase();
    assert_ne!(head.parts.method, Method::CONNECT);
    if head.parts.version == http::Version::HTTP_11 {
        assert!(
            head.meta.host.is_some(),
            "HTTP/1.1 without a host: {text:?}"
        );
    }
    assert!(head.parts.headers.get_all("host").iter().count() <= 1);
    if head.parts.headers.contains_key("transfer-encoding") {
        assert_eq!(head.meta.body, Framing::Chunked);
        if head.parts.headers.contains_key("content-length") {
            assert!(!head.meta.keep_alive, "CL and TE must close: {text:?}");
        }
    }
    // Every cut of the head is incomplete or refused, never a different head.
    for cut in [0, head.length / 2, head.length.saturating_sub(1)] {
        if let Ok(Some(shorter)) = parse(&data[..cut], &LIMITS) {
            panic!(
                "a head of {} bytes inside one of {}",
                shorter.length, head.length
            );
        }
    }
    // What follows the head does not change it.
    let mut followed = data[..head.length].to_vec();
    followed.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    let again = parse(&followed, &LIMITS)
        .expect("still valid")
        .expect("still complete");
    assert_eq!(again.length, head.length);
    assert_eq!(again.meta.body, head.meta.body);
    forwarded_head_parses_back(&head);
    let checked = check_parts(&head.parts, &LIMITS, head.meta.body).unwrap_or_else(|error| {
        panic!("check_parts refused ({error}) what parse accepted: {text:?}")
    });
    assert_eq!(checked.body, head.meta.body);
    assert_eq!(checked.host, head.meta.host);
}

/// The upstream head written for `head` is one valid request whose framing is the one written.
fn forwarded_head_parses_back(head: &RequestHead) {
    let target = head
        .parts
        .uri
        .path_and_query()
        .map_or(&b"/"[..], |target| target.as_str().as_bytes());
    let host = head.meta.host.as_ref().map(|host| host.as_bytes());
    let framing = match head.meta.body {
        Framing::Length(length) => FramingField::Length(length),
        Framing::Chunked => FramingField::Chunked,
        Framing::UntilClose => FramingField::None,
    };
    let written = write_request_head(&UpstreamHead {
        method: &head.parts.method,
        target,
        host: host.unwrap_or(b"192.0.2.9:80"),
        client_host: host,
        headers: &head.parts.headers,
        framing,
        forwarded: Forwarded {
            peer: b"192.0.2.1",
            append: false,
            proto: b"http",
        },
        // As the request path sends it: the client's Upgrade only for a well-formed upgrade.
        upgrade: head
            .meta
            .upgrade
            .then(|| head.parts.headers.get(http::header::UPGRADE))
            .flatten()
            .map(|value| value.as_bytes()),
        request_id: None,
        join_cookies: false,
    });
    // An upgrade is forwarded only for a well-formed upgrade request, and then once.
    let text = String::from_utf8_lossy(&written).to_ascii_lowercase();
    let upgrades = text.matches("\r\nupgrade:").count();
    assert_eq!(upgrades, usize::from(head.meta.upgrade), "{text}");
    if head.meta.upgrade {
        assert!(head.meta.body.is_empty() && head.meta.keep_alive);
    }
    // Read back by httparse (hyper's parser) with room for the fields the balancer adds: the
    // upstream head holds up to five more than the client's, so a backend's own limit on the
    // count, not ours, applies to it.
    let mut slots = [httparse::EMPTY_HEADER; 256];
    let mut parsed = httparse::Request::new(&mut slots);
    let status = parsed
        .parse(&written)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&written)));
    assert_eq!(
        status,
        httparse::Status::Complete(written.len()),
        "one head, nothing after it"
    );
    assert_eq!(parsed.method, Some(head.parts.method.as_str()));
    assert_eq!(parsed.version, Some(1));
    let values = |name: &str| -> Vec<&[u8]> {
        parsed
            .headers
            .iter()
            .filter(|field| field.name.eq_ignore_ascii_case(name))
            .map(|field| field.value)
            .collect()
    };
    assert_eq!(values("host").len(), 1);
    let lengths = values("content-length");
    let codings = values("transfer-encoding");
    match head.meta.body {
        Framing::Length(0) => assert!(codings.is_empty() && lengths.len() <= 1),
        Framing::Length(length) => {
            assert!(codings.is_empty());
            assert_eq!(lengths, [length.to_string().as_bytes()]);
        }
        Framing::Chunked => {
            assert!(lengths.is_empty());
            assert_eq!(codings, [&b"chunked"[..]]);
        }
        Framing::UntilClose => unreachable!("a request is never delimited by the close"),
    }
}
