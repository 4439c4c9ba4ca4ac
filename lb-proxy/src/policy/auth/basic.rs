//! HTTP Basic (RFC 7617) against argon2 or bcrypt hashes.
//!
//! A password hash costs tens of milliseconds of CPU on purpose, so:
//! - it runs on tokio's blocking pool, never on a worker thread that serves other clients;
//! - a verified (user, password) pair is remembered for [`CACHE_TTL`], keyed by a SHA-256 of
//!   the pair under a random per-process salt (the cache holds no password, and its keys
//!   cannot be precomputed); only successes are remembered, so every wrong guess pays the full
//!   hash, which with a rate limit on the route is what makes guessing slow;
//! - an unknown user is verified against a real hash of the file (the first user's), so that
//!   it takes as long as a known one and timing does not tell which users exist.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::header::{AUTHORIZATION, HeaderValue};
use lb_core::config::auth::BasicAuth;
use sha2::{Digest, Sha256};

use super::{Denial, Verdict};
use crate::clock;

/// How long a verified credential is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Credentials remembered at most.
const CACHE_MAX: usize = 10_000;

/// One Basic scheme.
#[derive(Debug)]
pub struct Basic {
    users: HashMap<String, Arc<str>>,
    /// The hash an unknown user is checked against.
    decoy: Arc<str>,
    challenge: HeaderValue,
    salt: [u8; 32],
    /// Salted digest of (user, password) → when it stops being trusted.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Basic {
    /// The scheme of `config`.
    pub fn new(config: &BasicAuth) -> Self {
        let users: HashMap<String, Arc<str>> = (config.users.iter())
            .map(|(user, hash)| (user.clone(), Arc::from(hash.as_str())))
            .collect();
        let decoy = (config.users.first())
            .map(|(_, hash)| Arc::from(hash.as_str()))
            .unwrap_or_else(|| Arc::from(""));
        let challenge = format!("Basic realm=\"{}\", charset=\"UTF-8\"", config.realm);
        Self {
            users,
            decoy,
            challenge: HeaderValue::try_from(challenge)
                .unwrap_or_else(|_| HeaderValue::from_static("Basic")),
            salt: rand::RngExt::random(&mut rand::rng()),
            verified: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Checks the `Authorization` field of `headers`.
    pub async fn check(&self, headers: &http::HeaderMap) -> Verdict {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Denial::unauthorized("missing", &self.challenge);
        };
        let Some((user, password)) = credentials(value.as_bytes()) else {
            return Denial::unauthorized("malformed", &self.challenge);
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(self.salt)
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        let now = clock::now();
        if self.cache().get(&key).is_some_and(|until| *until > now) {
            return Verdict::Allowed(Vec::new());
        }
        let known = self.users.get(&user).cloned();
        let hash = known.clone().unwrap_or_else(|| self.decoy.clone());
        let verified = tokio::task::spawn_blocking(move || verify(&password, &hash))
            .await
            .unwrap_or(false);
        if !(verified && known.is_some()) {
            return Denial::unauthorized("bad_credentials", &self.challenge);
        }
        let mut cache = self.cache();
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, until| *until > now);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, now + CACHE_TTL);
        Verdict::Allowed(Vec::new())
    }
}

/// `Basic base64(user:password)` → (user, password).
fn credentials(value: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Whether `password` matches `hash` (bcrypt `$2?$`, else argon2 PHC).
pub fn verify(password: &str, hash: &str) -> bool {
    if hash.starts_with("$2") {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    use argon2::PasswordVerifier as _;
    match argon2::PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cheap bcrypt hash of "hunter2" (cost 4), made once.
    fn hash() -> String {
        bcrypt::hash("hunter2", 4).unwrap()
    }

    fn basic(user: &str, password: &str) -> http::HeaderMap {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut headers = http::HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::try_from(format!("Basic {encoded}")).unwrap(),
        );
        headers
    }

    fn reason(verdict: Verdict) -> &'static str {
        match verdict {
            Verdict::Allowed(_) => "ok",
            Verdict::Denied(denial) => denial.reason,
        }
    }

    #[tokio::test]
    async fn users_passwords_and_the_cache() {
        let scheme = Basic::new(&BasicAuth {
            realm: "admin".into(),
            users: vec![("alice".into(), hash())],
        });
        assert_eq!(reason(scheme.check(&basic("alice", "hunter2")).await), "ok");
        assert_eq!(scheme.cache().len(), 1);
        assert_eq!(reason(scheme.check(&basic("alice", "hunter2")).await), "ok");
        assert_eq!(
            reason(scheme.check(&basic("alice", "hunter3")).await),
            "bad_credentials"
        );
        // An unknown user given the known user's password is refused all the same.
        assert_eq!(
            reason(scheme.check(&basic("mallory", "hunter2")).await),
            "bad_credentials"
        );
        assert_eq!(
            reason(scheme.check(&http::HeaderMap::new()).await),
            "missing"
        );
        let mut junk = http::HeaderMap::new();
        junk.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(reason(scheme.check(&junk).await), "malformed");
        assert_eq!(scheme.cache().len(), 1, "failures are never remembered");
    }

    #[test]
    fn argon2_hashes_verify() {
        use argon2::PasswordHasher as _;
        let salt = argon2::password_hash::SaltString::from_b64("c2FsdHNhbHRzYWx0").unwrap();
        let phc = argon2::Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify("correct horse", &phc));
        assert!(!verify("correct horsf", &phc));
        assert!(!verify("x", "not a hash"));
    }
}
