//! The request id: every request carries one to its backend, back to its client and into the
//! access log. A trusted client's (`server.trusted_proxies`, the trust `X-Forwarded-For` gets)
//! is kept when it is one short token of safe characters ([`lb_core::config::is_request_id`]);
//! anyone else's is replaced, so that a client cannot forge ids into the logs of the backends
//! or inject text into ours.
//!
//! A new id is 32 hex digits: a random 64-bit prefix drawn once per process, then a counter.
//! Unique within the process by the counter, and across restarts and processes by the prefix
//! (two processes share a prefix with a chance of one in 2^64). Making one is an atomic
//! increment and 32 digits written on the stack; the header value is the only allocation.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The per-process prefix and the counter.
struct Generator {
    prefix: u64,
    next: AtomicU64,
}

fn generator() -> &'static Generator {
    static GENERATOR: OnceLock<Generator> = OnceLock::new();
    GENERATOR.get_or_init(|| Generator {
        prefix: rand::random(),
        next: AtomicU64::new(0),
    })
}

/// A new id.
pub(crate) fn generate() -> HeaderValue {
    let generator = generator();
    let count = generator.next.fetch_add(1, Ordering::Relaxed);
    let mut text = [0u8; 32];
    write_hex(generator.prefix, &mut text[..16]);
    write_hex(count, &mut text[16..]);
    // Hex digits are always a valid field value.
    let mut id = HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("0"));
    // Never indexed by HPACK: a value that is new on every response would only churn each
    // HTTP/2 connection's dynamic table (an insertion and an eviction per response).
    id.set_sensitive(true);
    id
}

fn write_hex(value: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (index, slot) in out.iter_mut().enumerate() {
        let shift = 60 - 4 * index;
        *slot = DIGITS[((value >> shift) & 15) as usize];
    }
}

/// The request's id under header `name`: the client's when `trusted` and it sent exactly one
/// valid id, else a new one. The head writer sends it upstream in place of whatever the client
/// sent under that name ([`crate::proto::h1::write::UpstreamHead::request_id`]): the client's
/// header map is left as it is, which spares it a field (and often a reallocation).
pub(crate) fn resolve(headers: &HeaderMap, name: &HeaderName, trusted: bool) -> HeaderValue {
    if trusted {
        let mut sent = headers.get_all(name).iter();
        if let (Some(id), None) = (sent.next(), sent.next())
            && lb_core::config::is_request_id(id.as_bytes())
        {
            return id.clone();
        }
    }
    generate()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> HeaderName {
        HeaderName::from_static("x-request-id")
    }

    #[test]
    fn new_ids_are_never_indexed_by_hpack() {
        assert!(generate().is_sensitive());
    }

    #[test]
    fn new_ids_are_32_hex_digits_with_one_prefix_and_a_counter() {
        let ids: Vec<String> = (0..1000)
            .map(|_| generate().to_str().unwrap().to_owned())
            .collect();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert_eq!(id[..16], ids[0][..16]);
        }
    }

    #[test]
    fn a_trusted_clients_valid_id_is_kept_and_any_other_replaced() {
        let cases: [(&[&str], bool, bool); 7] = [
            (&["abc-123"], true, true),
            (&["abc-123"], false, false),
            (&[], true, false),
            (&["a b"], true, false),
            (&["a", "b"], true, false),
            (&[&"x".repeat(65)], true, false),
            (&[&"x".repeat(64)], true, true),
        ];
        for (sent, trusted, kept) in cases {
            let mut headers = HeaderMap::new();
            for value in sent {
                headers.append(name(), HeaderValue::from_str(value).unwrap());
            }
            let id = resolve(&headers, &name(), trusted);
            match kept {
                true => assert_eq!(id, sent[0]),
                false => assert_eq!(id.len(), 32, "{sent:?} {trusted}"),
            }
        }
    }

    #[test]
    fn hex_is_written_most_significant_first() {
        let mut out = [0u8; 16];
        write_hex(0x0123_4567_89ab_cdef, &mut out);
        assert_eq!(&out, b"0123456789abcdef");
    }
}
