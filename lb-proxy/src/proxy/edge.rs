//! What a listener at the edge answers before a request reaches a backend: the redirect
//! listener's `308 Permanent Redirect` to HTTPS (save for the exempt paths, ACME's challenges
//! by default, which are proxied), and `421 Misdirected Request` for a request on a TLS
//! connection whose `Host` belongs to another certificate than the SNI name it was opened for
//! (RFC 9110 §15.5.20): a client must not reach one site over a connection authenticated for
//! another. A `Host` covered by a certificate the SNI name also selects is served, so clients
//! that share a connection across names of one certificate are not refused.

use http::StatusCode;
use http::header::HeaderValue;

use super::client::{Edge, TlsSession};
use super::reply::{Reply, ReplyHead};
use super::{ClientRequest, respond};
use crate::metrics::MethodLabel;
use crate::proto::h1::response;
use crate::runtime::Shared;
use lb_core::config::RedirectConfig;

/// The redirect listener's settings.
#[derive(Debug)]
pub struct Redirect {
    /// The HTTPS port named in `Location`; left out when 443.
    pub https_port: u16,
    /// Path prefixes proxied instead of redirected.
    pub exempt_paths: Vec<String>,
}

impl Redirect {
    /// The redirect of `config`.
    pub fn new(config: &RedirectConfig) -> Self {
        Self {
            https_port: config.https_port,
            exempt_paths: config.exempt_paths.clone(),
        }
    }
}

/// The host of a `Host` value, without its port (`[::1]:8080` gives `[::1]`).
fn host_only(host: &[u8]) -> &[u8] {
    if host.starts_with(b"[") {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

/// The answer the edge gives instead of a backend, if any.
pub(crate) fn intercept(shared: &Shared, edge: &Edge, request: &ClientRequest) -> Option<Reply> {
    if let Some(redirect) = &edge.redirect {
        return redirect_reply(shared, redirect, request);
    }
    let tls = edge.tls.as_ref()?;
    let host = request.meta.host.as_ref()?;
    misdirected(tls, host).then(|| {
        tracing::debug!(
            sni = tls.sni.as_deref().unwrap_or(""), version = tls.version, host = ?host,
            "421: a request for another site than the connection's"
        );
        respond::refuse(
            shared,
            &respond::none_label(),
            MethodLabel::of(&request.parts.method),
            StatusCode::MISDIRECTED_REQUEST,
            "421 misdirected request: this connection was opened for another site's \
             certificate; open a new one for this host\n",
        )
    })
}

/// Whether `host` belongs to another site than the SNI name of `tls`.
fn misdirected(tls: &TlsSession, host: &HeaderValue) -> bool {
    let Some(sni) = tls.sni.as_deref() else {
        // Without SNI the client chose no site: the default one answers whatever it asks.
        return false;
    };
    let Ok(host) = std::str::from_utf8(host_only(host.as_bytes())) else {
        return true;
    };
    if host.eq_ignore_ascii_case(sni) {
        return false;
    }
    let by_sni = tls.store.site(Some(sni));
    let by_host = tls.store.site(Some(host));
    !by_sni.iter().any(|slot| by_host.contains(slot))
}

fn redirect_reply(shared: &Shared, redirect: &Redirect, request: &ClientRequest) -> Option<Reply> {
    let parts = &request.parts;
    let path = parts.uri.path();
    if (redirect.exempt_paths.iter()).any(|prefix| path.starts_with(prefix.as_str())) {
        return None;
    }
    let method = MethodLabel::of(&parts.method);
    let Some(host) = request.meta.host.as_ref() else {
        let text = "400 bad request: a redirect to HTTPS needs a Host header\n";
        return Some(
            respond::refuse(
                shared,
                &respond::none_label(),
                method,
                StatusCode::BAD_REQUEST,
                text,
            )
            .closing(),
        );
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |target| target.as_str());
    let mut location = b"https://".to_vec();
    location.extend_from_slice(host_only(host.as_bytes()));
    if redirect.https_port != 443 {
        location.extend_from_slice(format!(":{}", redirect.https_port).as_bytes());
    }
    location.extend_from_slice(target.as_bytes());
    let location = String::from_utf8_lossy(&location).into_owned();
    let text = format!("308 permanent redirect: {location}\n");
    // The head is written as a backend's would be and read back by the codec, so a redirect
    // needs no head type of its own; the host and target passed the codec's rules already.
    let head = format!(
        "HTTP/1.1 308 Permanent Redirect\r\nlocation: {location}\r\n\
         content-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\r\n",
        text.len()
    );
    let parsed = response::parse(head.as_bytes(), true, head.len()).ok()??;
    let head = parsed.into_head(bytes::Bytes::from(head));
    let reply = respond::refuse(
        shared,
        &respond::none_label(),
        method,
        StatusCode::PERMANENT_REDIRECT,
        text,
    );
    Some(Reply {
        head: ReplyHead::Backend(head),
        ..reply
    })
}

#[cfg(test)]
mod tests {
    use super::host_only;

    #[test]
    fn hosts_lose_their_port() {
        for (host, want) in [
            ("example.com", "example.com"),
            ("example.com:8080", "example.com"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("10.0.0.1:80", "10.0.0.1"),
        ] {
            assert_eq!(host_only(host.as_bytes()), want.as_bytes());
        }
    }
}
