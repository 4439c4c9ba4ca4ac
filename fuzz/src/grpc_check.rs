//! gRPC's fields: any bytes as a `grpc-timeout` give a duration or none, never a panic, and a
//! duration only for 1 to 8 digits and a unit, worth exactly what they say; any bytes as a
//! `grpc-message` encode to printable ASCII that decodes back to the trimmed text.

use lb_proxy::proto::grpc::{encode_message, parse_timeout};

/// Checks one input; panics on a violated property.
pub fn check(data: &[u8]) {
    if let Some(duration) = parse_timeout(data) {
        let (unit, digits) = data.split_last().expect("a timeout has a unit");
        assert!((1..=8).contains(&digits.len()), "{data:?}");
        assert!(digits.iter().all(u8::is_ascii_digit), "{data:?}");
        let amount: u128 = std::str::from_utf8(digits).unwrap().parse().unwrap();
        let nanos = match unit {
            b'H' => 3_600_000_000_000,
            b'M' => 60_000_000_000,
            b'S' => 1_000_000_000,
            b'm' => 1_000_000,
            b'u' => 1_000,
            b'n' => 1,
            other => panic!("unit {other}"),
        };
        assert_eq!(duration.as_nanos(), amount * nanos);
    }
    let encoded = encode_message(data);
    let encoded = encoded.as_bytes();
    assert!(encoded.iter().all(|b| (0x20..=0x7e).contains(b)));
    let mut decoded = Vec::new();
    let mut at = 0;
    while at < encoded.len() {
        if encoded[at] == b'%' {
            let hex = std::str::from_utf8(&encoded[at + 1..at + 3]).unwrap();
            decoded.push(u8::from_str_radix(hex, 16).unwrap());
            at += 3;
        } else {
            decoded.push(encoded[at]);
            at += 1;
        }
    }
    assert_eq!(decoded, data.trim_ascii());
}
