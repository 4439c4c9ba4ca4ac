//! Authentication schemes a route may require: HTTP Basic against password hashes
//! ([`basic`]), API keys stored as SHA-256 digests, and JWT bearer tokens ([`jwt`]).
//!
//! Every check ends in a [`Verdict`]: allowed (with request fields a scheme sets, such as JWT
//! claims copied into headers), or refused with its status, a reason from a fixed list (the
//! `reason` label of `lb_auth_failures_total`) and the `WWW-Authenticate` challenge. Missing,
//! malformed or wrong credentials are 401; a valid token that was not issued for this service
//! (issuer, audience) is 403. Credentials are never logged or counted by value.

pub(crate) mod basic;
pub(crate) mod jwt;

use std::collections::HashMap;
use std::sync::Arc;

use http::StatusCode;
use http::header::{HeaderName, HeaderValue};
use lb_core::config::AuthConfig;
use lb_core::config::auth::{ApiKeyAuth, AuthScheme};
use sha2::{Digest, Sha256};

/// Why a scheme could not be built (a key file missing or unreadable).
#[derive(Debug, thiserror::Error)]
#[error("auth scheme \"{scheme}\": {message}")]
pub struct AuthError {
    /// The scheme's name.
    pub scheme: String,
    /// What went wrong, naming the file.
    pub message: String,
}

/// The outcome of a check.
#[derive(Debug)]
pub enum Verdict {
    /// Let through; set these request fields (a `None` value removes the field, so that a
    /// client cannot send one the scheme would have set).
    Allowed(Vec<(HeaderName, Option<HeaderValue>)>),
    /// Refused.
    Denied(Denial),
}

/// A refusal.
#[derive(Debug)]
pub struct Denial {
    /// 401 or 403.
    pub status: StatusCode,
    /// The reason label: `missing`, `malformed`, `bad_credentials`, `expired`,
    /// `not_yet_valid`, `algorithm`, `unknown_key`, `signature`, `issuer`, `audience`.
    pub reason: &'static str,
    /// The `WWW-Authenticate` value of a 401.
    pub challenge: Option<HeaderValue>,
}

impl Denial {
    fn unauthorized(reason: &'static str, challenge: &HeaderValue) -> Verdict {
        Verdict::Denied(Denial {
            status: StatusCode::UNAUTHORIZED,
            reason,
            challenge: Some(challenge.clone()),
        })
    }
}

/// One named scheme, ready to check requests.
#[derive(Debug)]
pub struct Auth {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Basic(basic::Basic),
    ApiKey(ApiKeys),
    Jwt(jwt::Jwt),
}

impl Auth {
    /// Builds `config`, reading its key files.
    ///
    /// # Errors
    /// A key file that cannot be read or parsed.
    pub fn new(config: &AuthConfig) -> Result<Auth, AuthError> {
        let error = |message: String| AuthError {
            scheme: config.name.clone(),
            message,
        };
        let kind = match &config.scheme {
            AuthScheme::Basic(basic) => Kind::Basic(basic::Basic::new(basic)),
            AuthScheme::ApiKey(keys) => Kind::ApiKey(ApiKeys::new(keys, &config.name)),
            AuthScheme::Jwt(jwt) => Kind::Jwt(jwt::Jwt::new(jwt, &config.name).map_err(error)?),
        };
        Ok(Auth { kind })
    }

    /// Checks the request whose head is `parts`.
    pub async fn check(&self, parts: &http::request::Parts) -> Verdict {
        match &self.kind {
            Kind::Basic(basic) => basic.check(&parts.headers).await,
            Kind::ApiKey(keys) => keys.check(parts),
            Kind::Jwt(jwt) => jwt.check(&parts.headers).await,
        }
    }
}

/// Builds every scheme of a configuration, to refuse a start whose key files are missing.
///
/// # Errors
/// The first scheme that cannot be built.
pub fn load_all(configs: &[AuthConfig]) -> Result<Vec<Arc<Auth>>, AuthError> {
    configs.iter().map(|c| Auth::new(c).map(Arc::new)).collect()
}

/// API keys: the digests accepted, and where the key is read.
#[derive(Debug)]
struct ApiKeys {
    header: Option<HeaderName>,
    query: Option<String>,
    /// SHA-256 digest → the client's name.
    digests: HashMap<[u8; 32], String>,
    challenge: HeaderValue,
}

impl ApiKeys {
    fn new(config: &ApiKeyAuth, name: &str) -> Self {
        let digests = (config.keys.iter())
            .filter_map(|(client, hex)| Some((from_hex(hex)?, client.clone())))
            .collect();
        let challenge = HeaderValue::try_from(format!("ApiKey realm=\"{name}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("ApiKey"));
        Self {
            header: config
                .header
                .as_deref()
                .and_then(|h| HeaderName::try_from(h).ok()),
            query: config.query.clone(),
            digests,
            challenge,
        }
    }

    fn check(&self, parts: &http::request::Parts) -> Verdict {
        let from_header = (self.header.as_ref())
            .and_then(|name| parts.headers.get(name))
            .map(|value| value.as_bytes().to_vec());
        let from_query = || {
            let wanted = self.query.as_deref()?;
            let query = parts.uri.query()?;
            query.split('&').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                (name == wanted).then(|| percent_decode(value))
            })
        };
        let Some(key) = from_header.or_else(from_query) else {
            return Denial::unauthorized("missing", &self.challenge);
        };
        // The digest is compared, never the key: how long a lookup takes says nothing about
        // any stored key.
        let digest: [u8; 32] = Sha256::digest(&key).into();
        match self.digests.contains_key(&digest) {
            true => Verdict::Allowed(Vec::new()),
            false => Denial::unauthorized("bad_credentials", &self.challenge),
        }
    }
}

fn from_hex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((high * 16 + low) as u8);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_match_by_digest_from_a_header_or_the_query() {
        let digest = format!("{:x}", Sha256::digest(b"s3cret key"));
        let config = ApiKeyAuth {
            header: Some("x-api-key".into()),
            query: Some("api_key".into()),
            keys: vec![("partner".into(), digest)],
        };
        let keys = ApiKeys::new(&config, "partners");
        let check = |uri: &str, header: Option<&str>| {
            let mut request = http::Request::get(uri);
            if let Some(value) = header {
                request = request.header("x-api-key", value);
            }
            let (parts, ()) = request.body(()).unwrap().into_parts();
            match keys.check(&parts) {
                Verdict::Allowed(_) => "ok",
                Verdict::Denied(denial) => denial.reason,
            }
        };
        assert_eq!(check("/", Some("s3cret key")), "ok");
        assert_eq!(check("/?a=1&api_key=s3cret%20key", None), "ok");
        assert_eq!(check("/?api_key=s3cret+key", None), "ok");
        assert_eq!(check("/", Some("s3cret kez")), "bad_credentials");
        assert_eq!(check("/", None), "missing");
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
    }
}
