//! gRPC's fields: any bytes as a `grpc-timeout` give a duration or none, never a panic, and a
//! duration only for 1 to 8 digits and a unit, worth exactly what they say; any bytes as a
//! `grpc-message` encode to printable ASCII that decodes back to the trimmed text; as a
//! `grpc-status`, a code only for 1 to 3 digits worth at most 255; as a
//! `grpc-retry-pushback-ms`, a wait only for digits (surrounding blanks aside), worth exactly
//! what they say, and "do not retry" for anything else.

use lb_proxy::proto::grpc::{
    Pushback, encode_message, parse_pushback, parse_status, parse_timeout,
};

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
    if let Some(code) = parse_status(data) {
        assert!((1..=3).contains(&data.len()), "{data:?}");
        let value: u16 = std::str::from_utf8(data).unwrap().parse().unwrap();
        assert_eq!(u16::from(code), value);
    }
    match parse_pushback(data) {
        Pushback::Wait(wait) => {
            let digits = data.trim_ascii();
            assert!(digits.iter().all(u8::is_ascii_digit), "{data:?}");
            let millis: u128 = std::str::from_utf8(digits).unwrap().parse().unwrap();
            assert_eq!(wait.as_millis(), millis);
        }
        Pushback::Stop => {
            let digits = data.trim_ascii();
            assert!(
                digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit),
                "{data:?}"
            );
        }
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
