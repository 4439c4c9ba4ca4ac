//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2): the header a layer-4
//! balancer puts before a connection's first byte to say which client it relays. Pure: bytes in,
//! a typed verdict out.
//!
//! [`parse`] reads the start of a connection and says whether it holds no header at all (the
//! bytes are the client's own: [`Parsed::NotProxy`]), part of one ([`Parsed::Partial`]), or a
//! whole one with its length ([`Parsed::Complete`]). A verdict other than `Partial` never changes
//! when more bytes arrive, so the reader can stop at the first one. A header is refused when it
//! breaks the grammar, names an address family its command cannot carry, or is longer than
//! [`V1_MAX_BYTES`] (the specification's bound for v1) or [`V2_MAX_BYTES`] (ours for v2: the
//! address block and the TLVs balancers send fit in far less).
//!
//! [`write_v2`] writes the v2 header the balancer sends to backends that ask for it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v1 header's longest form, its `\r\n` included (specification §2.1).
pub const V1_MAX_BYTES: usize = 107;
/// The longest v2 header read (16 bytes of fixed part, then addresses and TLVs).
pub const V2_MAX_BYTES: usize = 4096;
/// The v2 signature: no HTTP request, TLS record or v1 header starts with it.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";

/// What the start of a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// No PROXY header: the bytes are the client's own.
    NotProxy,
    /// The start of a header: more bytes are needed.
    Partial,
    /// A whole header of `length` bytes.
    Complete {
        /// What it says.
        header: ProxyHeader,
        /// Its length; the client's own bytes follow.
        length: usize,
    },
}

/// What a whole header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The balancer relays the client at `source`, which connected to `destination`.
    Proxied {
        /// The client's address.
        source: SocketAddr,
        /// The address the client connected to.
        destination: SocketAddr,
    },
    /// The balancer speaks for itself (v2 `LOCAL`, its own health checks): the connection's
    /// own addresses stand.
    Local,
    /// The balancer could not say (v1 `UNKNOWN`, v2 `UNSPEC` or a Unix socket): the
    /// connection's own addresses stand.
    Unknown,
}

/// Why a header is refused; the connection is then closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// A v1 header with no `\r\n` within 107 bytes, or a v2 header over [`V2_MAX_BYTES`].
    #[error("the PROXY header is too long")]
    TooLong,
    /// A v1 header that breaks the grammar (`PROXY TCP4 <ip> <ip> <port> <port>\r\n`).
    #[error("malformed PROXY v1 header: {0}")]
    V1(&'static str),
    /// A v2 header that breaks the format.
    #[error("malformed PROXY v2 header: {0}")]
    V2(&'static str),
}

/// Reads the start of a connection: see the module's documentation.
///
/// # Errors
///
/// A header that can never become valid, however many bytes follow.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ProxyError> {
    if starts(bytes, &V2_SIGNATURE) {
        return match bytes.len() >= V2_SIGNATURE.len() {
            true => parse_v2(bytes),
            false => Ok(Parsed::Partial),
        };
    }
    if starts(bytes, V1_PREFIX) {
        return match bytes.len() >= V1_PREFIX.len() {
            true => parse_v1(bytes),
            false => Ok(Parsed::Partial),
        };
    }
    Ok(Parsed::NotProxy)
}

/// Whether `bytes` and `prefix` agree on their common length (an empty input agrees).
fn starts(bytes: &[u8], prefix: &[u8]) -> bool {
    let common = bytes.len().min(prefix.len());
    bytes[..common] == prefix[..common]
}

fn parse_v1(bytes: &[u8]) -> Result<Parsed, ProxyError> {
    let window = &bytes[..bytes.len().min(V1_MAX_BYTES)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        return match bytes.len() >= V1_MAX_BYTES {
            true => Err(ProxyError::TooLong),
            false => Ok(Parsed::Partial),
        };
    };
    let line = window[..newline]
        .strip_suffix(b"\r")
        .ok_or(ProxyError::V1("the line must end with \\r\\n"))?;
    let line = std::str::from_utf8(&line[V1_PREFIX.len()..])
        .map_err(|_| ProxyError::V1("the line is not ASCII"))?;
    let header = v1_fields(line)?;
    Ok(Parsed::Complete {
        header,
        length: newline + 1,
    })
}

/// The fields after `PROXY `: single spaces between them, nothing else.
fn v1_fields(line: &str) -> Result<ProxyHeader, ProxyError> {
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or_default();
    let v4 = match family {
        "TCP4" => true,
        "TCP6" => false,
        // Whatever follows UNKNOWN is to be ignored (specification §2.1).
        "UNKNOWN" => return Ok(ProxyHeader::Unknown),
        _ => return Err(ProxyError::V1("the protocol must be TCP4, TCP6 or UNKNOWN")),
    };
    let mut next = || fields.next().ok_or(ProxyError::V1("a field is missing"));
    let (source, destination) = (next()?, next()?);
    let (source_port, destination_port) = (next()?, next()?);
    if fields.next().is_some() {
        return Err(ProxyError::V1("there are fields after the ports"));
    }
    let ip = |text: &str| -> Result<IpAddr, ProxyError> {
        match v4 {
            true => text.parse::<Ipv4Addr>().map(IpAddr::V4),
            false => text.parse::<Ipv6Addr>().map(IpAddr::V6),
        }
        .map_err(|_| ProxyError::V1("an address is not of the family named"))
    };
    let port = |text: &str| -> Result<u16, ProxyError> {
        let canonical = !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        match canonical {
            true => text
                .parse()
                .map_err(|_| ProxyError::V1("a port is over 65535")),
            false => Err(ProxyError::V1("a port is not a decimal number")),
        }
    };
    Ok(ProxyHeader::Proxied {
        source: SocketAddr::new(ip(source)?, port(source_port)?),
        destination: SocketAddr::new(ip(destination)?, port(destination_port)?),
    })
}

const V2_FIXED: usize = 16;
const LOCAL: u8 = 0x0;
const PROXY: u8 = 0x1;
const UNSPEC: u8 = 0x0;
const INET: u8 = 0x1;
const INET6: u8 = 0x2;
const UNIX: u8 = 0x3;
const STREAM: u8 = 0x1;

fn parse_v2(bytes: &[u8]) -> Result<Parsed, ProxyError> {
    // Each byte of the fixed part is judged as soon as it is there: a bad header is refused
    // without waiting for the length it announces.
    if let Some(&version_command) = bytes.get(12) {
        if version_command >> 4 != 2 {
            return Err(ProxyError::V2("the version must be 2"));
        }
        if !matches!(version_command & 0xf, LOCAL | PROXY) {
            return Err(ProxyError::V2("the command must be LOCAL or PROXY"));
        }
    }
    if let Some(&family_protocol) = bytes.get(13) {
        let (family, protocol) = (family_protocol >> 4, family_protocol & 0xf);
        if family > UNIX || protocol > 2 {
            return Err(ProxyError::V2("unknown address family or protocol"));
        }
    }
    if bytes.len() < V2_FIXED {
        return Ok(Parsed::Partial);
    }
    let announced = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let length = V2_FIXED + announced;
    if length > V2_MAX_BYTES {
        return Err(ProxyError::TooLong);
    }
    if bytes.len() < length {
        return Ok(Parsed::Partial);
    }
    let block = &bytes[V2_FIXED..length];
    let (family, protocol) = (bytes[13] >> 4, bytes[13] & 0xf);
    let header = match bytes[12] & 0xf {
        // The balancer's own connection: its addresses, if any, say nothing of a client.
        LOCAL => ProxyHeader::Local,
        _ => match (family, protocol) {
            (UNSPEC, _) | (UNIX, _) | (_, UNSPEC) => ProxyHeader::Unknown,
            (_, STREAM) => v2_addresses(family, block)?,
            _ => {
                return Err(ProxyError::V2(
                    "a TCP listener relays stream connections only",
                ));
            }
        },
    };
    Ok(Parsed::Complete { header, length })
}

fn v2_addresses(family: u8, block: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let short = ProxyError::V2("the address block is shorter than its family needs");
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    let (source, destination) = match family {
        INET => {
            if block.len() < 12 {
                return Err(short);
            }
            let ip = |at: usize| {
                IpAddr::from(<[u8; 4]>::try_from(&block[at..at + 4]).unwrap_or_default())
            };
            (
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            )
        }
        INET6 => {
            if block.len() < 36 {
                return Err(short);
            }
            let ip = |at: usize| {
                IpAddr::from(<[u8; 16]>::try_from(&block[at..at + 16]).unwrap_or_default())
            };
            (
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            )
        }
        _ => return Err(ProxyError::V2("unknown address family")),
    };
    Ok(ProxyHeader::Proxied {
        source,
        destination,
    })
}

/// Appends a v2 header to `out`: `PROXY` from `source` to `destination` (both IPv4 or both IPv6;
/// a mixed pair is written as IPv6, IPv4 mapped), or `LOCAL` when `addresses` is `None` (a
/// health check of the balancer's own).
pub fn write_v2(out: &mut Vec<u8>, addresses: Option<(SocketAddr, SocketAddr)>) {
    out.extend_from_slice(&V2_SIGNATURE);
    let Some((source, destination)) = addresses else {
        out.extend_from_slice(&[0x20 | LOCAL, UNSPEC << 4, 0, 0]);
        return;
    };
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            out.extend_from_slice(&[0x20 | PROXY, INET << 4 | STREAM, 0, 12]);
            out.extend_from_slice(&from.octets());
            out.extend_from_slice(&to.octets());
        }
        (from, to) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.extend_from_slice(&[0x20 | PROXY, INET6 << 4 | STREAM, 0, 36]);
            out.extend_from_slice(&v6(from).octets());
            out.extend_from_slice(&v6(to).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
}

#[cfg(test)]
mod tests;
