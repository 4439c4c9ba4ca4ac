//! JWT bearer tokens (RFC 7519, RFC 6750), verified by `jsonwebtoken` over ring.
//!
//! Algorithm confusion is closed by construction: every key is pinned to one algorithm (from
//! the file, or a JWKS key's `alg` / key type within `algorithms`), and a token is verified
//! only with a key whose algorithm equals the token's `alg`. So `alg: none` (which the parser
//! refuses outright), an algorithm outside the list, or `HS256` presented against an RSA
//! public key (the classic trick of signing with the public key as an HMAC secret) all fail
//! before any signature is computed. `exp` is required; `exp` and `nbf` are checked with the
//! configured leeway; `iss` and `aud` when configured.
//!
//! Keys come from files, or from a JWKS document on disk or at an HTTP(S) URL (fetched with
//! `ureq` on the blocking pool, within [`FETCH_TIMEOUT`]): a token naming an unknown `kid`
//! triggers one re-read, at most every [`REFETCH_EVERY`], which that request waits for; if the
//! read fails the last good set stays. A URL is first fetched in the background at start, so an
//! identity provider that is down does not stop the balancer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use lb_core::config::auth::{JwtAlgorithm, JwtAuth};

use super::{Denial, Verdict};
use crate::clock;

/// The shortest time between two reads of a JWKS document.
pub const REFETCH_EVERY: Duration = Duration::from_secs(10);
/// The longest a JWKS fetch over HTTP may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest JWKS document read.
const MAX_JWKS_BYTES: u64 = 1024 * 1024;

#[derive(Clone)]
struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?}, {:?})", self.kid, self.algorithm)
    }
}

/// Where a JWKS document is read from.
#[derive(Debug, Clone)]
enum Source {
    File(String),
    Url(String),
}

impl Source {
    /// Reads the document (blocking: run it on the blocking pool) and keeps the keys allowed.
    fn load(&self, allowed: &[Algorithm]) -> Result<Vec<Key>, String> {
        let bytes = match self {
            Source::File(file) => {
                std::fs::read(file).map_err(|e| format!("cannot read {file}: {e}"))?
            }
            Source::Url(url) => fetch(url)?,
        };
        parse_jwks(&bytes, allowed).map_err(|e| format!("{}: {e}", self.name()))
    }

    fn name(&self) -> &str {
        match self {
            Source::File(name) | Source::Url(name) => name,
        }
    }
}

/// One `GET` of a JWKS URL: status 200, at most [`MAX_JWKS_BYTES`], within [`FETCH_TIMEOUT`].
fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("cannot fetch {url}: {e}"))?;
    if response.status() != 200 {
        return Err(format!("{url} answered {}", response.status()));
    }
    (response
        .body_mut()
        .with_config()
        .limit(MAX_JWKS_BYTES)
        .read_to_vec())
    .map_err(|e| format!("cannot read {url}: {e}"))
}

#[derive(Debug)]
struct Jwks {
    source: Source,
    /// The last good key set, and when an unknown `kid` last made the document be read again.
    state: Mutex<(Vec<Key>, Option<Instant>)>,
}

/// One JWT scheme.
#[derive(Debug)]
pub struct Jwt {
    keys: Vec<Key>,
    jwks: Option<Arc<Jwks>>,
    allowed: Vec<Algorithm>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    claims: Vec<(String, HeaderName)>,
    challenge: HeaderValue,
    invalid: HeaderValue,
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
    }
}

impl Jwt {
    /// The scheme of `config` (named `name`), its key files read.
    ///
    /// # Errors
    /// A key file that cannot be read or parsed, in one sentence naming it.
    pub fn new(config: &JwtAuth, name: &str) -> Result<Jwt, String> {
        let mut keys = Vec::new();
        for key in &config.keys {
            let bytes =
                std::fs::read(&key.file).map_err(|e| format!("cannot read {}: {e}", key.file))?;
            let decoding = match key.algorithm {
                // A secret file may end with a newline an editor added.
                JwtAlgorithm::HS256 => DecodingKey::from_secret(bytes.trim_ascii_end()),
                JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(&bytes)
                    .map_err(|e| format!("{} is not an RSA public key in PEM: {e}", key.file))?,
                JwtAlgorithm::ES256 => DecodingKey::from_ec_pem(&bytes)
                    .map_err(|e| format!("{} is not a P-256 public key in PEM: {e}", key.file))?,
            };
            keys.push(Key {
                kid: key.kid.clone(),
                algorithm: algorithm(key.algorithm),
                key: decoding,
            });
        }
        let allowed: Vec<Algorithm> = config.algorithms.iter().copied().map(algorithm).collect();
        let jwks = match (&config.jwks_file, &config.jwks_url) {
            (Some(file), _) => {
                let source = Source::File(file.clone());
                let set = source.load(&allowed)?;
                Some(Arc::new(Jwks {
                    source,
                    state: Mutex::new((set, None)),
                }))
            }
            (None, Some(url)) => {
                let jwks = Arc::new(Jwks {
                    source: Source::Url(url.clone()),
                    state: Mutex::new((Vec::new(), None)),
                });
                // The first fetch in the background: a provider that is down stops nothing.
                if tokio::runtime::Handle::try_current().is_ok() {
                    let (jwks, allowed) = (jwks.clone(), allowed.clone());
                    tokio::spawn(async move { jwks.reload(&allowed).await });
                }
                Some(jwks)
            }
            (None, None) => None,
        };
        let header = |text: String| {
            HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
        };
        Ok(Jwt {
            keys,
            jwks,
            allowed,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway.as_secs(),
            claims: (config.claims_to_headers.iter())
                .filter_map(|(claim, header)| {
                    Some((claim.clone(), HeaderName::try_from(header.as_str()).ok()?))
                })
                .collect(),
            challenge: header(format!("Bearer realm=\"{name}\"")),
            invalid: header(format!("Bearer realm=\"{name}\", error=\"invalid_token\"")),
        })
    }

    /// The keys that may verify a token naming `kid` with `alg`; `Err` with the reason when
    /// there is none. A `kid` no key has makes the JWKS document be read again, at most every
    /// [`REFETCH_EVERY`], and this request waits for it.
    async fn keys_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Vec<Key>, &'static str> {
        let named = |keys: &[Key]| -> Vec<Key> {
            keys.iter()
                .filter(|k| k.kid.as_deref() == kid)
                .cloned()
                .collect()
        };
        let mut found = named(&self.keys);
        if let Some(jwks) = &self.jwks {
            let (from_set, due) = {
                let mut state = jwks.state.lock().unwrap_or_else(|p| p.into_inner());
                let from_set = named(&state.0);
                let now = clock::now();
                let due = found.is_empty()
                    && from_set.is_empty()
                    && kid.is_some()
                    && state
                        .1
                        .is_none_or(|last| now.saturating_duration_since(last) >= REFETCH_EVERY);
                if due {
                    state.1 = Some(now);
                }
                (from_set, due)
            };
            found.extend(from_set);
            if due {
                jwks.reload(&self.allowed).await;
                let state = jwks.state.lock().unwrap_or_else(|p| p.into_inner());
                found.extend(named(&state.0));
            }
        }
        if found.is_empty() {
            return Err("unknown_key");
        }
        found.retain(|k| k.algorithm == alg);
        match found.is_empty() {
            true => Err("algorithm"),
            false => Ok(found),
        }
    }

    /// Checks the bearer token in `headers`.
    pub async fn check(&self, headers: &http::HeaderMap) -> Verdict {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Denial::unauthorized("missing", &self.challenge);
        };
        let token = std::str::from_utf8(value.as_bytes()).ok().and_then(|text| {
            let (scheme, token) = text.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        let Some(token) = token else {
            return Denial::unauthorized("malformed", &self.challenge);
        };
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            // Also `alg: none` and any algorithm the library does not know.
            return Denial::unauthorized("malformed", &self.invalid);
        };
        let keys = match self.keys_for(header.kid.as_deref(), header.alg).await {
            Ok(keys) => keys,
            Err(reason) => return Denial::unauthorized(reason, &self.invalid),
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        let mut last = "signature";
        for key in keys {
            type Claims = serde_json::Map<String, serde_json::Value>;
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return Verdict::Allowed(self.claim_fields(&data.claims)),
                Err(error) => {
                    let (status, reason) = match error.kind() {
                        ErrorKind::ExpiredSignature => (StatusCode::UNAUTHORIZED, "expired"),
                        ErrorKind::ImmatureSignature => (StatusCode::UNAUTHORIZED, "not_yet_valid"),
                        ErrorKind::InvalidAudience => (StatusCode::FORBIDDEN, "audience"),
                        ErrorKind::InvalidIssuer => (StatusCode::FORBIDDEN, "issuer"),
                        ErrorKind::InvalidSignature => (StatusCode::UNAUTHORIZED, "signature"),
                        ErrorKind::InvalidAlgorithm => (StatusCode::UNAUTHORIZED, "algorithm"),
                        _ => (StatusCode::UNAUTHORIZED, "malformed"),
                    };
                    if status == StatusCode::FORBIDDEN {
                        return Verdict::Denied(Denial {
                            status,
                            reason,
                            challenge: None,
                        });
                    }
                    last = reason;
                }
            }
        }
        Denial::unauthorized(last, &self.invalid)
    }

    /// The request fields the claims set; a claim that is absent (or not a string or number)
    /// removes the field, so that the client's own value never passes for the token's.
    fn claim_fields(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<(HeaderName, Option<HeaderValue>)> {
        (self.claims.iter())
            .map(|(claim, header)| {
                let value = match claims.get(claim) {
                    Some(serde_json::Value::String(text)) => {
                        HeaderValue::try_from(text.as_str()).ok()
                    }
                    Some(serde_json::Value::Number(number)) => {
                        HeaderValue::try_from(number.to_string()).ok()
                    }
                    _ => None,
                };
                (header.clone(), value)
            })
            .collect()
    }
}

impl Jwks {
    /// Reads the document again on the blocking pool; a failure keeps the last good set.
    async fn reload(&self, allowed: &[Algorithm]) {
        let (source, allowed) = (self.source.clone(), allowed.to_vec());
        let loaded = tokio::task::spawn_blocking(move || source.load(&allowed)).await;
        match loaded {
            Ok(Ok(keys)) => {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                state.0 = keys;
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "JWKS read failed; the last good key set stays")
            }
            Err(error) => tracing::warn!(%error, "JWKS read failed; the last good key set stays"),
        }
    }
}

/// The keys of a JWKS document whose algorithm (its `alg`, or the one its key type implies) is
/// in `allowed`; others are left out.
fn parse_jwks(bytes: &[u8], allowed: &[Algorithm]) -> Result<Vec<Key>, String> {
    let set: JwkSet =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let implied = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Some(Algorithm::ES256)
            }
            AlgorithmParameters::OctetKey(_) => Some(Algorithm::HS256),
            _ => None,
        };
        let stated = match jwk.common.key_algorithm {
            None => implied,
            Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
            Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
            Some(KeyAlgorithm::HS256) => Some(Algorithm::HS256),
            Some(_) => None,
        };
        // A stated algorithm must fit the key's type: an RSA key is never an HMAC secret.
        let Some(algorithm) = stated.filter(|a| Some(*a) == implied && allowed.contains(a)) else {
            continue;
        };
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwks_file_gives_its_keys_within_the_allowed_algorithms() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/jwks.json");
        let source = Source::File(file.to_owned());
        let keys = source.load(&[Algorithm::RS256]).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("rsa-jwks"));
        assert!(source.load(&[Algorithm::ES256]).unwrap().is_empty());
        assert!(Source::File("/nonexistent.json".into()).load(&[]).is_err());
        assert!(parse_jwks(b"{}", &[]).is_err());
    }
}
