use std::net::SocketAddr;

use proptest::prelude::*;

use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn complete(bytes: &[u8]) -> (ProxyHeader, usize) {
    match parse(bytes) {
        Ok(Parsed::Complete { header, length }) => (header, length),
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn v1_headers_from_the_specification() {
    let (header, length) =
        complete(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n");
    assert_eq!(length, 47);
    assert_eq!(
        header,
        ProxyHeader::Proxied {
            source: addr("192.168.0.1:56324"),
            destination: addr("192.168.0.11:443"),
        }
    );
    let (header, _) = complete(b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n");
    assert_eq!(
        header,
        ProxyHeader::Proxied {
            source: addr("[2001:db8::1]:65535"),
            destination: addr("[::1]:0"),
        }
    );
    assert_eq!(complete(b"PROXY UNKNOWN\r\n"), (ProxyHeader::Unknown, 15));
    assert_eq!(
        complete(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").0,
        ProxyHeader::Unknown
    );
}

#[test]
fn v1_refusals() {
    let cases: [&[u8]; 13] = [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n",
        b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
    ];
    for case in cases {
        assert!(
            matches!(parse(case), Err(ProxyError::V1(_))),
            "{:?}: {:?}",
            String::from_utf8_lossy(case),
            parse(case)
        );
    }
    let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat();
    assert_eq!(parse(&long), Err(ProxyError::TooLong));
    assert_eq!(parse(&long[..106]), Ok(Parsed::Partial));
}

#[test]
fn not_proxy_and_partial() {
    for own in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"\x16\x03\x01\x02\x00",
        b"\r\nGET /",
        b"P",
        b"PROXX",
    ] {
        let want = if own.len() < 5 && own.starts_with(b"P") {
            Parsed::Partial
        } else {
            Parsed::NotProxy
        };
        assert_eq!(parse(own), Ok(want), "{own:?}");
    }
    assert_eq!(parse(b""), Ok(Parsed::Partial));
    assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Ok(Parsed::Partial));
    assert_eq!(parse(b"\r\n\r\n\0\r\nQU"), Ok(Parsed::Partial));
    // An HTTP request may start with empty lines: it parts from the signature at its fifth byte.
    assert_eq!(parse(b"\r\n\r\nGET"), Ok(Parsed::NotProxy));
}

#[test]
fn v2_headers() {
    for (source, destination) in [
        ("10.1.2.3:40000", "10.0.0.1:443"),
        ("[2001:db8::7]:1", "[::1]:8443"),
    ] {
        let mut wire = Vec::new();
        write_v2(&mut wire, Some((addr(source), addr(destination))));
        let length = wire.len();
        wire.extend_from_slice(b"GET /");
        assert_eq!(
            complete(&wire),
            (
                ProxyHeader::Proxied {
                    source: addr(source),
                    destination: addr(destination)
                },
                length
            )
        );
    }
    let mut local = Vec::new();
    write_v2(&mut local, None);
    assert_eq!(complete(&local), (ProxyHeader::Local, 16));
    // Mixed families are written as IPv6.
    let mut mixed = Vec::new();
    write_v2(&mut mixed, Some((addr("1.2.3.4:5"), addr("[::1]:6"))));
    assert_eq!(
        complete(&mixed).0,
        ProxyHeader::Proxied {
            source: addr("[::ffff:1.2.3.4]:5"),
            destination: addr("[::1]:6")
        }
    );
}

/// A v2 header with the given version/command and family/protocol bytes and address block.
fn v2(version_command: u8, family_protocol: u8, block: &[u8]) -> Vec<u8> {
    let mut wire = V2_SIGNATURE.to_vec();
    wire.extend_from_slice(&[version_command, family_protocol]);
    wire.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    wire.extend_from_slice(block);
    wire
}

#[test]
fn v2_details() {
    // TLVs after the addresses are skipped.
    let mut block = vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 80, 1, 187];
    block.extend_from_slice(&[0x04, 0, 3, b'a', b'b', b'c']);
    let (header, length) = complete(&v2(0x21, 0x11, &block));
    assert_eq!(length, 16 + 18);
    assert_eq!(
        header,
        ProxyHeader::Proxied {
            source: addr("1.2.3.4:80"),
            destination: addr("5.6.7.8:443")
        }
    );
    // LOCAL ignores whatever block it carries; UNSPEC and UNIX stand for the socket.
    assert_eq!(complete(&v2(0x20, 0x11, &block)).0, ProxyHeader::Local);
    assert_eq!(complete(&v2(0x21, 0x00, &[])).0, ProxyHeader::Unknown);
    assert_eq!(complete(&v2(0x21, 0x31, &[0; 216])).0, ProxyHeader::Unknown);
    assert_eq!(complete(&v2(0x21, 0x10, &block)).0, ProxyHeader::Unknown);
    let refused = [
        v2(0x11, 0x11, &block),
        v2(0x22, 0x11, &block),
        v2(0x21, 0x41, &block),
        v2(0x21, 0x12, &block),
        v2(0x21, 0x11, &block[..11]),
        v2(0x21, 0x21, &block),
    ];
    for wire in refused {
        assert!(matches!(parse(&wire), Err(ProxyError::V2(_))), "{wire:?}");
    }
    // A bad version is refused at its byte, before the block.
    assert!(parse(&v2(0x31, 0x11, &block)[..13]).is_err());
    let mut huge = v2(0x21, 0x11, &[]);
    huge[14..16].copy_from_slice(&u16::try_from(V2_MAX_BYTES - 15).unwrap().to_be_bytes());
    assert_eq!(parse(&huge), Err(ProxyError::TooLong));
    let mut large = v2(0x21, 0x11, &block);
    large[14..16].copy_from_slice(&u16::try_from(V2_MAX_BYTES - 16).unwrap().to_be_bytes());
    assert_eq!(parse(&large), Ok(Parsed::Partial));
}

/// Parses `wire` as a reader would: growing one split at a time until a final verdict.
fn parse_split(wire: &[u8], split: usize) -> Result<Parsed, ProxyError> {
    let mut end = 0;
    loop {
        end = (end + split).min(wire.len());
        match parse(&wire[..end])? {
            Parsed::Partial if end < wire.len() => continue,
            verdict => return Ok(verdict),
        }
    }
}

fn any_header() -> impl Strategy<Value = Vec<u8>> {
    let v4 = (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port)));
    let v6 = (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port)));
    prop_oneof![
        (v4.clone(), v4.clone()).prop_map(|(a, b)| {
            format!(
                "PROXY TCP4 {} {} {} {}\r\n",
                a.ip(),
                b.ip(),
                a.port(),
                b.port()
            )
            .into_bytes()
        }),
        (v6.clone(), v6.clone()).prop_map(|(a, b)| {
            format!(
                "PROXY TCP6 {} {} {} {}\r\n",
                a.ip(),
                b.ip(),
                a.port(),
                b.port()
            )
            .into_bytes()
        }),
        (v4, v6).prop_map(|(a, b)| {
            let mut wire = Vec::new();
            write_v2(&mut wire, Some((a, b)));
            wire
        }),
    ]
}

proptest! {
    /// Any header followed by anything is read whole, whatever the reads' sizes, and never
    /// past its own end.
    #[test]
    fn headers_are_read_whole_and_no_further(
        header in any_header(),
        rest in proptest::collection::vec(any::<u8>(), 0..64),
        split in 1usize..40,
    ) {
        let wire = [header.clone(), rest].concat();
        let whole = parse(&wire);
        let read_whole = matches!(whole, Ok(Parsed::Complete { length, .. }) if length == header.len());
        prop_assert!(read_whole, "{:?}", whole);
        prop_assert_eq!(parse_split(&wire, split), whole);
        for end in 0..header.len() {
            prop_assert_eq!(parse(&header[..end]), Ok(Parsed::Partial));
        }
    }

    /// Any bytes give a verdict; a final verdict holds whatever follows; a length never
    /// exceeds the input.
    #[test]
    fn verdicts_are_final(
        bytes in proptest::collection::vec(any::<u8>(), 0..160),
        more in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let verdict = parse(&bytes);
        if let Ok(Parsed::Complete { length, .. }) = verdict {
            prop_assert!(length <= bytes.len());
        }
        let longer = parse(&[bytes.clone(), more].concat());
        match verdict {
            Ok(Parsed::Partial) => {}
            Ok(Parsed::NotProxy) => prop_assert_eq!(longer, Ok(Parsed::NotProxy)),
            Ok(complete @ Parsed::Complete { .. }) => prop_assert_eq!(longer, Ok(complete)),
            Err(_) => prop_assert!(longer.is_err()),
        }
    }
}
