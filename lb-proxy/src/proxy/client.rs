//! What a connection knows about its client, computed once per connection: the peer (or the
//! client a trusted PROXY header names), its address as `X-Forwarded-For` text, whether it is a
//! trusted proxy, and, on listeners with TLS, a redirect or the PROXY protocol, the rest
//! ([`Edge`]): a plain listener without them carries nothing more.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::HeaderValue;

use super::edge::Redirect;
use crate::tls::store::CertStore;

/// What a connection knows about its client, computed once per connection.
#[derive(Debug)]
pub struct ClientInfo {
    /// The peer's socket address.
    pub peer: SocketAddr,
    /// The peer's IP, ready for `X-Forwarded-For`.
    pub forwarded_for: HeaderValue,
    /// Whether the peer is in `server.trusted_proxies`: its `X-Forwarded-For` is then believed
    /// and appended to; otherwise it is replaced and the peer is the client.
    pub trusted: bool,
    /// TLS, redirect and addressing facts; `None` on a plain listener that needs none.
    pub edge: Option<Box<Edge>>,
}

/// What a connection knows beyond its peer.
#[derive(Debug, Default)]
pub struct Edge {
    /// What the TLS handshake agreed, on a TLS listener.
    pub tls: Option<TlsSession>,
    /// The redirect to HTTPS, on the redirect listener.
    pub redirect: Option<Arc<Redirect>>,
    /// The client and the address it connected to (from a PROXY header, or the socket when a
    /// backend is sent PROXY headers).
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// What a client's TLS handshake agreed, for the request path and logs.
#[derive(Debug)]
pub struct TlsSession {
    /// The SNI name the client sent.
    pub sni: Option<Box<str>>,
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// The certificates the handshake chose from, to tell which site a `Host` belongs to.
    pub store: Arc<CertStore>,
}

impl ClientInfo {
    /// Describes the client at `peer`, trusted when it lies in one of `trusted_proxies`.
    pub fn new(peer: SocketAddr, trusted_proxies: &[lb_core::net::Cidr]) -> Self {
        let forwarded_for = HeaderValue::from_bytes(IpText::new(peer.ip()).as_bytes())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            peer,
            forwarded_for,
            trusted: lb_core::net::is_trusted(trusted_proxies, peer.ip()),
            edge: None,
        }
    }

    /// `X-Forwarded-Proto`: `https` on a TLS connection.
    pub fn proto(&self) -> &'static [u8] {
        match &self.edge {
            Some(edge) if edge.tls.is_some() => b"https",
            _ => b"http",
        }
    }

    /// The (client, destination) pair a PROXY header to a backend names, when known.
    pub fn addresses(&self) -> Option<&(SocketAddr, SocketAddr)> {
        self.edge.as_ref()?.addresses.as_ref()
    }

    /// The client's address for a request with these headers: the peer, or for a trusted peer
    /// the right-most untrusted address of `X-Forwarded-For` ([`lb_core::net::client_address`]).
    pub fn address(
        &self,
        headers: &http::HeaderMap,
        trusted_proxies: &[lb_core::net::Cidr],
    ) -> IpAddr {
        if !self.trusted {
            return self.peer.ip();
        }
        let lines = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|line| line.to_str().ok());
        lb_core::net::client_address(self.peer.ip(), lines, trusted_proxies)
    }
}

/// An IP address as text, on the stack: formatting into a `String` cost a few reallocations
/// per client connection.
struct IpText {
    bytes: [u8; 45],
    len: usize,
}

impl IpText {
    fn new(ip: IpAddr) -> Self {
        let mut text = IpText {
            bytes: [0; 45],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (index, octet) in v4.octets().into_iter().enumerate() {
                    if index > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write as _;
                let mut cursor = std::io::Cursor::new(&mut text.bytes[..]);
                // 45 bytes hold the longest form ("ffff:...:255.255.255.255").
                let _ = write!(cursor, "{v6}");
                text.len = cursor.position() as usize;
            }
        }
        text
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_formats_like_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.100.99.9",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_bytes(), ip.to_string().as_bytes());
        }
    }
}
