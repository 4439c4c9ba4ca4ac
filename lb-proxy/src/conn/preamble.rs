//! What a connection goes through before HTTP on a listener with TLS or the PROXY protocol: the
//! PROXY header, read from trusted peers only, then the TLS handshake. Both run on the
//! connection's own task (an accept loop never waits on a client) and must end within
//! `server.header_read_timeout` from the accept, which the first request head shares: a client
//! that stalls or trickles its handshake holds nothing but its connection permit, until then.
//!
//! A peer in `server.trusted_proxies` may start with a v1 or v2 header; its source address then
//! stands for the client (`X-Forwarded-For`, `ip_hash`, logs), and a v2 `LOCAL` or v1 `UNKNOWN`
//! header leaves the socket's. A peer that is not trusted and sends one is cut off: the header
//! would otherwise let anyone pick their own address. A malformed, oversized or late header
//! closes the connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use lb_core::net::Cidr;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::proto::proxy_protocol::{self, Parsed, ProxyHeader, V2_MAX_BYTES};
use crate::proxy::ClientInfo;
use crate::proxy::client::{Edge, TlsSession};
use crate::proxy::edge::Redirect;
use crate::tls::prefixed::Prefixed;
use crate::tls::{ServerStream, ServerTls, handshake_reason, version_label};

/// What a listener does before HTTP.
#[derive(Debug)]
pub(crate) struct Preamble {
    /// The TLS terminator, on an HTTPS listener.
    pub tls: Option<Arc<ServerTls>>,
    /// Whether trusted peers may send a PROXY header.
    pub proxy_protocol: bool,
    /// The peers trusted to (`server.trusted_proxies`).
    pub trusted_proxies: Vec<Cidr>,
    /// The redirect to HTTPS, on the redirect listener.
    pub redirect: Option<Arc<Redirect>>,
    /// Whether the address the client connected to is needed (backends are sent PROXY headers).
    pub want_local: bool,
    /// The time from the accept to the end of the first request head.
    pub header_read_timeout: Duration,
}

/// A connection ready for HTTP.
pub(crate) enum Opened {
    /// Plain, with the client's bytes already read behind a PROXY header.
    Plain(TcpStream, BytesMut),
    /// TLS, handshake done. Boxed: rustls's connection state is large.
    Tls(Box<ServerStream>),
}

/// The start of a connection on a PROXY-protocol listener.
struct Start {
    /// The client's address and the one it connected to, from a header.
    addresses: Option<(SocketAddr, SocketAddr)>,
    /// The client's own bytes read with it.
    read: BytesMut,
}

impl Preamble {
    /// Reads the PROXY header and does the TLS handshake, as configured, by `accepted` plus the
    /// header read timeout; `None` when the connection is to be closed (counted and logged).
    pub(crate) async fn open(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        accepted: Instant,
        metrics: &Metrics,
    ) -> Option<(Opened, ClientInfo)> {
        let deadline = accepted + self.header_read_timeout;
        let start = match self.proxy_protocol {
            true => {
                self.read_header(&mut stream, peer, deadline, metrics)
                    .await?
            }
            false => Start {
                addresses: None,
                read: BytesMut::new(),
            },
        };
        let (client, local) = match start.addresses {
            Some((source, destination)) => (source, Some(destination)),
            None if self.want_local => (peer, stream.local_addr().ok()),
            None => (peer, None),
        };
        let mut info = ClientInfo::new(client, &self.trusted_proxies);
        let mut edge = Edge {
            tls: None,
            redirect: self.redirect.clone(),
            addresses: local.map(|local| (client, local)),
        };
        let opened = match &self.tls {
            None => Opened::Plain(stream, start.read),
            Some(tls) => {
                let (stream, session) = handshake(
                    tls,
                    Prefixed::new(start.read, stream),
                    peer,
                    deadline,
                    metrics,
                )
                .await?;
                edge.tls = Some(session);
                Opened::Tls(Box::new(stream))
            }
        };
        let needed = edge.tls.is_some() || edge.redirect.is_some() || edge.addresses.is_some();
        info.edge = needed.then(|| Box::new(edge));
        Some((opened, info))
    }

    /// Reads what a connection starts with, until it is known whether it is a PROXY header.
    async fn read_header(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        deadline: Instant,
        metrics: &Metrics,
    ) -> Option<Start> {
        let trusted = lb_core::net::is_trusted(&self.trusted_proxies, peer.ip());
        let mut read = BytesMut::with_capacity(512);
        let refuse = |result: &'static str, detail: &dyn std::fmt::Display| {
            metrics.tls.proxy_header(result);
            tracing::debug!(%peer, result, %detail, "connection closed at its PROXY header");
            None
        };
        let verdict = loop {
            match proxy_protocol::parse(&read) {
                Ok(Parsed::Partial) => {}
                Ok(verdict) => break verdict,
                Err(error) => return refuse("malformed", &error),
            }
            if read.len() >= V2_MAX_BYTES {
                return refuse("malformed", &"the header is too long");
            }
            read.reserve(512);
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut read)).await {
                Err(_) => return refuse("timeout", &"no whole header within header_read_timeout"),
                Ok(Ok(0)) => return refuse("closed", &"the peer closed before a header"),
                Ok(Err(error)) => return refuse("closed", &error),
                Ok(Ok(_)) => {}
            }
        };
        let (header, length) = match verdict {
            Parsed::NotProxy => {
                metrics.tls.proxy_header(match trusted {
                    true => "absent",
                    false => "none_untrusted",
                });
                return Some(Start {
                    addresses: None,
                    read,
                });
            }
            Parsed::Complete { header, length } => (header, length),
            Parsed::Partial => unreachable!("the loop ends on a final verdict"),
        };
        if !trusted {
            return refuse(
                "untrusted",
                &"a PROXY header from a peer outside server.trusted_proxies",
            );
        }
        let _ = read.split_to(length);
        let addresses = match header {
            ProxyHeader::Proxied {
                source,
                destination,
            } => {
                metrics.tls.proxy_header("proxied");
                Some((source, destination))
            }
            ProxyHeader::Local => {
                metrics.tls.proxy_header("local");
                None
            }
            ProxyHeader::Unknown => {
                metrics.tls.proxy_header("unknown");
                None
            }
        };
        Some(Start { addresses, read })
    }
}

/// The TLS handshake, by `deadline`; counted and, on failure, logged.
async fn handshake(
    tls: &ServerTls,
    stream: Prefixed<TcpStream>,
    peer: SocketAddr,
    deadline: Instant,
    metrics: &Metrics,
) -> Option<(ServerStream, TlsSession)> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
    let result = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    };
    match result {
        Ok(stream) => {
            let connection = stream.get_ref().1;
            let version = version_label(connection.protocol_version());
            let sni = connection.server_name().map(Box::from);
            metrics.tls.handshake(Ok(version));
            tracing::debug!(%peer, version, sni = sni.as_deref().unwrap_or(""), "TLS handshake done");
            let session = TlsSession {
                sni,
                version,
                store: tls.store(),
            };
            Some((stream, session))
        }
        Err(error) => {
            let reason = handshake_reason(&error);
            metrics.tls.handshake(Err(reason));
            tracing::debug!(%peer, reason, %error, "TLS handshake failed");
            None
        }
    }
}
