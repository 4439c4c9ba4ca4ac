//! The PROXY protocol parser: any bytes give a verdict, never a panic; a verdict other than
//! `Partial` holds whatever bytes follow; a header's length never exceeds the input, and every
//! shorter prefix of a whole header is `Partial`; a proxied v2 address pair, written again, reads
//! back the same.

use lb_proxy::proto::proxy_protocol::{Parsed, ProxyHeader, parse, write_v2};

/// Checks one input; panics on a violated property.
pub fn check(data: &[u8]) {
    let verdict = parse(data);
    for end in 0..data.len() {
        let prefix = parse(&data[..end]);
        match (&verdict, &prefix) {
            (_, Ok(Parsed::Partial)) => {}
            (Ok(Parsed::Complete { length, .. }), _) if end >= *length => {
                assert_eq!(prefix, verdict, "prefix {end}")
            }
            (Ok(Parsed::Complete { .. }), _) => panic!("prefix {end} of a header: {prefix:?}"),
            (Ok(Parsed::NotProxy), _) => assert_eq!(prefix, Ok(Parsed::NotProxy), "prefix {end}"),
            (Err(_), _) => assert!(
                prefix.is_err(),
                "prefix {end} of a refused header: {prefix:?}"
            ),
            (Ok(Parsed::Partial), _) => panic!("prefix {end} is final but the whole is partial"),
        }
    }
    if let Ok(Parsed::Complete { header, length }) = verdict {
        assert!(length <= data.len());
        if let ProxyHeader::Proxied {
            source,
            destination,
        } = header
        {
            let mut again = Vec::new();
            write_v2(&mut again, Some((source, destination)));
            let Ok(Parsed::Complete { header: read, .. }) = parse(&again) else {
                panic!("a written header does not read back");
            };
            let ProxyHeader::Proxied {
                source: read_source,
                destination: read_destination,
            } = read
            else {
                panic!("a written header reads as {read:?}");
            };
            let same = |a: std::net::SocketAddr, b: std::net::SocketAddr| {
                a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
            };
            assert!(same(source, read_source) && same(destination, read_destination));
        }
    }
}
