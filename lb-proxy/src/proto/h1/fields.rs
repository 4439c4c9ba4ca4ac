//! Field names the codec treats specially, and the `Connection` header's tokens.
//!
//! One classifier serves both directions: a request head going to a backend and a response
//! head going to a client leave out the same hop-by-hop set (RFC 9110 §7.6.1), the fields that
//! `Connection` names, and the framing fields, which the balancer always writes itself.

/// What a field name means to the codec, decided by length first and then compared without
/// regard to case, since it runs for every line of every head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `Connection`: hop-by-hop, and names further hop-by-hop fields.
    Connection,
    /// `Content-Length`: framing, written by the balancer from the body it sends.
    ContentLength,
    /// `Transfer-Encoding`: framing, written by the balancer.
    TransferEncoding,
    /// `Host`.
    Host,
    /// `Expect`: answered by the balancer (100-continue), not forwarded.
    Expect,
    /// `Date`.
    Date,
    /// `Upgrade`: hop-by-hop, forwarded only with a well-formed upgrade request and its `101`.
    Upgrade,
    /// `Keep-Alive`, `TE`, `Trailer`, `Proxy-Connection` or any `Proxy-*` field.
    HopByHop,
    /// `X-Forwarded-For`.
    ForwardedFor,
    /// `X-Forwarded-Proto`.
    ForwardedProto,
    /// `X-Forwarded-Host`.
    ForwardedHost,
    /// Any other field: end to end.
    Other,
}

impl FieldKind {
    /// Classifies a field name as it came off the wire, in any case.
    #[inline]
    pub fn of(name: &[u8]) -> FieldKind {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        // Length and first letter first: most names are neither, and leave after two compares.
        let first = name.first().map_or(0, |byte| byte | 0x20);
        match (name.len(), first) {
            (2, b't') if is(b"te") => FieldKind::HopByHop,
            (4, b'h') if is(b"host") => FieldKind::Host,
            (4, b'd') if is(b"date") => FieldKind::Date,
            (6, b'e') if is(b"expect") => FieldKind::Expect,
            (7, b't') if is(b"trailer") => FieldKind::HopByHop,
            (7, b'u') if is(b"upgrade") => FieldKind::Upgrade,
            (10, b'c') if is(b"connection") => FieldKind::Connection,
            (10, b'k') if is(b"keep-alive") => FieldKind::HopByHop,
            (14, b'c') if is(b"content-length") => FieldKind::ContentLength,
            (15, b'x') if is(b"x-forwarded-for") => FieldKind::ForwardedFor,
            (16, b'x') if is(b"x-forwarded-host") => FieldKind::ForwardedHost,
            (17, b't') if is(b"transfer-encoding") => FieldKind::TransferEncoding,
            (17, b'x') if is(b"x-forwarded-proto") => FieldKind::ForwardedProto,
            (6.., b'p') if name[..6].eq_ignore_ascii_case(b"proxy-") => FieldKind::HopByHop,
            _ => FieldKind::Other,
        }
    }

    /// Whether the field is hop-by-hop by itself (RFC 9110 §7.6.1): never forwarded.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            FieldKind::Connection
                | FieldKind::TransferEncoding
                | FieldKind::HopByHop
                | FieldKind::Upgrade
        )
    }
}

/// What the `Connection` lines of a head say: `close`, `keep-alive`, and the names of further
/// fields that are hop-by-hop for this message.
#[derive(Debug, Default, Clone)]
pub struct ConnectionTokens<'a> {
    /// `close` was listed.
    pub close: bool,
    /// `keep-alive` was listed.
    pub keep_alive: bool,
    /// `upgrade` was listed: the message asks for (or agrees to) a protocol switch.
    pub upgrade: bool,
    /// Other listed names, as sent; empty in the usual case, so nothing is allocated.
    names: Vec<&'a [u8]>,
}

impl<'a> ConnectionTokens<'a> {
    /// Reads one `Connection` line's comma-separated tokens.
    pub fn read(&mut self, line: &'a [u8]) {
        // The usual lines hold one token.
        if line.eq_ignore_ascii_case(b"close") {
            self.close = true;
            return;
        }
        if line.eq_ignore_ascii_case(b"keep-alive") {
            self.keep_alive = true;
            return;
        }
        if line.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade = true;
            return;
        }
        for token in line.split(|&byte| byte == b',') {
            let token = token.trim_ascii();
            if token.is_empty() {
                continue;
            }
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else {
                self.names.push(token);
            }
        }
    }

    /// Whether `Connection` named the field `name` (compared without case).
    pub fn names(&self, name: &[u8]) -> bool {
        self.names
            .iter()
            .any(|listed| listed.eq_ignore_ascii_case(name))
    }

    /// Whether any field name was listed beyond `close` and `keep-alive`.
    pub fn names_any(&self) -> bool {
        !self.names.is_empty()
    }
}

/// Whether a comma-separated field value holds `token`, without regard to case.
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&byte| byte == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

/// The name of a field most responses carry, from its spelling on the wire in any case; `None`
/// for any other name, which then takes the `http` crate's general parse (a copy into lower
/// case, then a search of its standard names), about four times the cost of this match.
#[inline]
pub fn common_response_name(name: &[u8]) -> Option<http::HeaderName> {
    use http::header;
    let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
    let first = name.first().map_or(0, |byte| byte | 0x20);
    Some(match (name.len(), first) {
        (4, b'd') if is(b"date") => header::DATE,
        (4, b'e') if is(b"etag") => header::ETAG,
        (4, b'v') if is(b"vary") => header::VARY,
        (6, b's') if is(b"server") => header::SERVER,
        (7, b'e') if is(b"expires") => header::EXPIRES,
        (8, b'l') if is(b"location") => header::LOCATION,
        (10, b's') if is(b"set-cookie") => header::SET_COOKIE,
        (12, b'c') if is(b"content-type") => header::CONTENT_TYPE,
        (13, b'a') if is(b"accept-ranges") => header::ACCEPT_RANGES,
        (13, b'c') if is(b"cache-control") => header::CACHE_CONTROL,
        (13, b'l') if is(b"last-modified") => header::LAST_MODIFIED,
        (16, b'c') if is(b"content-encoding") => header::CONTENT_ENCODING,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_common_name_is_the_one_the_http_crate_parses(
            name in "(?i)(date|etag|vary|server|expires|location|set-cookie|content-type|\
                accept-ranges|cache-control|last-modified|content-encoding)|[a-zA-Z0-9\\-\\x00-\\xff]{0,20}",
        ) {
            let parsed = http::HeaderName::from_bytes(name.as_bytes()).ok();
            match common_response_name(name.as_bytes()) {
                Some(known) => prop_assert_eq!(Some(known), parsed),
                None => prop_assert!(!matches!(
                    parsed.as_ref().map(http::HeaderName::as_str),
                    Some("date" | "etag" | "vary" | "server" | "expires" | "location"
                        | "set-cookie" | "content-type" | "accept-ranges" | "cache-control"
                        | "last-modified" | "content-encoding")
                ), "{name:?} was missed"),
            }
        }
    }

    #[test]
    fn names_are_classified_in_any_case() {
        let cases: &[(&str, FieldKind)] = &[
            ("Connection", FieldKind::Connection),
            ("CONTENT-LENGTH", FieldKind::ContentLength),
            ("transfer-Encoding", FieldKind::TransferEncoding),
            ("HOST", FieldKind::Host),
            ("Expect", FieldKind::Expect),
            ("date", FieldKind::Date),
            ("TE", FieldKind::HopByHop),
            ("Trailer", FieldKind::HopByHop),
            ("upgrade", FieldKind::Upgrade),
            ("Keep-Alive", FieldKind::HopByHop),
            ("Proxy-Connection", FieldKind::HopByHop),
            ("proxy-authorization", FieldKind::HopByHop),
            ("X-Forwarded-For", FieldKind::ForwardedFor),
            ("x-forwarded-PROTO", FieldKind::ForwardedProto),
            ("X-Forwarded-Host", FieldKind::ForwardedHost),
            ("tea", FieldKind::Other),
            ("trailers", FieldKind::Other),
            ("proxy", FieldKind::Other),
            ("x-proxy-a", FieldKind::Other),
            ("connections", FieldKind::Other),
            ("hosts", FieldKind::Other),
        ];
        for (name, kind) in cases {
            assert_eq!(FieldKind::of(name.as_bytes()), *kind, "{name}");
        }
    }

    #[test]
    fn connection_tokens_separate_options_from_names() {
        let mut tokens = ConnectionTokens::default();
        tokens.read(b"Keep-Alive, X-Secret ,, close");
        tokens.read(b"x-other");
        assert!(tokens.close && tokens.keep_alive);
        assert!(tokens.names(b"x-secret") && tokens.names(b"X-OTHER"));
        assert!(!tokens.names(b"close") && !tokens.names(b"x-third"));
        let mut plain = ConnectionTokens::default();
        plain.read(b" close ");
        assert!(plain.close && !plain.names_any());
        let mut upgrade = ConnectionTokens::default();
        upgrade.read(b"Upgrade");
        assert!(upgrade.upgrade && !upgrade.names_any());
        let mut listed = ConnectionTokens::default();
        listed.read(b"keep-alive, UPGRADE");
        assert!(listed.upgrade && listed.keep_alive && !listed.names_any());
    }

    #[test]
    fn tokens_are_found_in_lists() {
        assert!(has_token(b"gzip, Chunked", b"chunked"));
        assert!(!has_token(b"xchunked", b"chunked"));
    }
}
