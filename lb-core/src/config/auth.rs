//! `auth`: named authentication schemes that routes require.
//!
//! Three kinds: HTTP Basic against password hashes (argon2 or bcrypt; a plaintext password is
//! refused), API keys stored as SHA-256 digests (read from a header or a query parameter),
//! and JWT bearer tokens checked against keys each pinned to one algorithm. Secrets are never
//! written in the clear: the file holds hashes, and JWT keys are files the daemon reads.

use std::time::Duration;

use serde::{Serialize, Serializer};

use super::duration;
use super::node::{Node, Spanned};
use super::pools::named_entries;
use super::walk::{Problem, Section, Walker, duration, text};

/// One named scheme.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthConfig {
    /// The name routes use; also the `auth` label of its metrics.
    #[serde(skip)]
    pub name: String,
    /// What it checks.
    #[serde(flatten)]
    pub scheme: AuthScheme,
}

/// The kinds of scheme.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthScheme {
    /// HTTP Basic.
    Basic(BasicAuth),
    /// API keys.
    ApiKey(ApiKeyAuth),
    /// JWT bearer tokens.
    Jwt(JwtAuth),
}

/// `basic`: users and their password hashes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BasicAuth {
    /// The realm named in `WWW-Authenticate`.
    pub realm: String,
    /// (user, PHC or bcrypt hash), in file order.
    #[serde(serialize_with = "pairs")]
    pub users: Vec<(String, String)>,
}

/// `api_key`: where the key is read and the digests of the keys accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKeyAuth {
    /// The header holding the key (lower-case); `x-api-key` unless `query` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The query parameter holding the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// (client name, SHA-256 of the key as 64 hex digits).
    #[serde(serialize_with = "pairs")]
    pub keys: Vec<(String, String)>,
}

/// A JWT signature algorithm the balancer accepts; each key is pinned to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 over a shared secret.
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

impl JwtAlgorithm {
    const ALL: [JwtAlgorithm; 3] = [Self::HS256, Self::RS256, Self::ES256];

    /// The name in a token's header and in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
        }
    }
}

/// One verification key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JwtKey {
    /// The `kid` tokens name it by; a key without one is tried for tokens without a `kid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The one algorithm this key verifies.
    pub algorithm: JwtAlgorithm,
    /// A PEM public key (RS256, ES256) or the raw secret (HS256), read by the daemon.
    pub file: String,
}

/// `jwt`: keys and the claims every token must carry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JwtAuth {
    /// Keys from files.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<JwtKey>,
    /// A JWKS document on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<String>,
    /// A JWKS document fetched over HTTP(S).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// The algorithms a JWKS key may use (its `alg`, or the one its key type allows).
    pub algorithms: Vec<JwtAlgorithm>,
    /// The `iss` every token must carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// An `aud` every token must carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(serialize_with = "duration::serialize")]
    pub leeway: Duration,
    /// (claim, header): string or number claims copied into request headers.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "pairs")]
    pub claims_to_headers: Vec<(String, String)>,
}

fn pairs<S: Serializer>(pairs: &[(String, String)], serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(pairs.len()))?;
    for (k, v) in pairs {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

/// Writes `auth` as a mapping from name to scheme.
pub(crate) fn serialize<S: Serializer>(
    all: &[AuthConfig],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(all.len()))?;
    for auth in all {
        map.serialize_entry(&auth.name, auth)?;
    }
    map.end()
}

/// Whether `hash` is a password hash the daemon can verify: argon2 (PHC) or bcrypt.
pub fn is_password_hash(hash: &str) -> bool {
    let argon2 = ["$argon2id$", "$argon2i$", "$argon2d$"]
        .iter()
        .any(|p| hash.starts_with(p))
        && hash.split('$').count() >= 5;
    let bcrypt = ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) && hash.len() == 60;
    argon2 || bcrypt
}

/// `auth`.
pub(crate) fn read(w: &mut Walker<'_>, top: &Section<'_>) -> Vec<AuthConfig> {
    let mut out = Vec::new();
    for (name, pos, node) in named_entries(w, top.get("auth"), "auth", "scheme") {
        let path = format!("auth.{name}");
        let s = w.section(Some(node), &path, &["basic", "api_key", "jwt"]);
        let kinds: Vec<&str> = ["basic", "api_key", "jwt"]
            .into_iter()
            .filter(|k| s.get(k).is_some())
            .collect();
        if kinds.len() != 1 {
            let problem = Problem::new(format!(
                "needs exactly one of basic, api_key or jwt, found {}",
                kinds.len()
            ));
            w.report(node.pos.or(pos), &path, problem);
            continue;
        }
        let field = s.field(kinds[0]);
        let inner = s.get(kinds[0]);
        let scheme = match kinds[0] {
            "basic" => AuthScheme::Basic(basic(w, inner, &field, &name)),
            "api_key" => AuthScheme::ApiKey(api_key(w, inner, &field)),
            _ => AuthScheme::Jwt(jwt(w, inner, &field)),
        };
        out.push(AuthConfig { name, scheme });
    }
    out
}

/// A mapping of names to text values at `node`, each value checked by `check`.
fn string_map(
    w: &mut Walker<'_>,
    node: Option<&Spanned>,
    path: &str,
    check: impl Fn(&str) -> Result<(), Problem>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let Some(node) = node else {
        w.report(None, path, Problem::new("missing required field"));
        return out;
    };
    let Node::Map(entries) = &node.node else {
        w.report(
            node.pos,
            path,
            Problem::new(format!("expected a mapping, found {}", node.node.kind())),
        );
        return out;
    };
    for (key, value) in entries {
        let Node::Str(name) = &key.node else {
            w.report(key.pos, path, Problem::new("expected a name"));
            continue;
        };
        let field = format!("{path}.{name}");
        if out.iter().any(|(n, _)| n == name) {
            w.report(key.pos, &field, Problem::new("duplicate entry"));
            continue;
        }
        match text(&value.node).and_then(|v| check(&v).map(|()| v)) {
            Ok(v) => out.push((name.clone(), v)),
            Err(problem) => w.report(value.pos, &field, problem),
        }
    }
    if out.is_empty() && entries.is_empty() {
        w.report(node.pos, path, Problem::new("must list at least one entry"));
    }
    out
}

fn basic(w: &mut Walker<'_>, node: Option<&Spanned>, path: &str, name: &str) -> BasicAuth {
    let s = w.section(node, path, &["realm", "users"]);
    let realm = w.get(&s, "realm", name.to_owned(), |n| {
        let realm = text(n)?;
        match realm
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ')
        {
            true => Ok(realm),
            false => Err(Problem::new(
                "a realm holds printable ASCII without quotes or backslashes",
            )),
        }
    });
    let users = string_map(w, s.get("users"), &s.field("users"), |hash| {
        if is_password_hash(hash) {
            return Ok(());
        }
        Err(Problem::new(
            "is not an argon2 or bcrypt hash; passwords are never written in the clear",
        )
        .hint("make one with `htpasswd -nbB user PASSWORD` (bcrypt) or `argon2`"))
    });
    BasicAuth {
        realm: realm.value,
        users,
    }
}

fn api_key(w: &mut Walker<'_>, node: Option<&Spanned>, path: &str) -> ApiKeyAuth {
    let s = w.section(node, path, &["header", "query", "keys"]);
    let header = w
        .get(&s, "header", None, |n| {
            text(n).map(|h| Some(h.to_ascii_lowercase()))
        })
        .value;
    let query = w.get(&s, "query", None, |n| text(n).map(Some)).value;
    let keys = string_map(w, s.get("keys"), &s.field("keys"), |digest| {
        match digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => Ok(()),
            false => Err(
                Problem::new("expected the SHA-256 of the key, as 64 hex digits")
                    .hint("make one with `printf %s KEY | sha256sum`"),
            ),
        }
    });
    let keys = keys
        .into_iter()
        .map(|(n, d)| (n, d.to_ascii_lowercase()))
        .collect();
    let header = match (&header, &query) {
        (None, None) => Some("x-api-key".to_owned()),
        _ => header,
    };
    ApiKeyAuth {
        header,
        query,
        keys,
    }
}

fn algorithm(node: &Node) -> Result<JwtAlgorithm, Problem> {
    let name = text(node)?;
    JwtAlgorithm::ALL
        .into_iter()
        .find(|a| a.as_str() == name)
        .ok_or_else(|| {
            let problem = Problem::new(format!("algorithm \"{name}\" is not accepted"));
            if name.eq_ignore_ascii_case("none") {
                problem.hint("unsigned tokens are never accepted")
            } else {
                problem.hint("use HS256, RS256 or ES256")
            }
        })
}

fn jwt(w: &mut Walker<'_>, node: Option<&Spanned>, path: &str) -> JwtAuth {
    const FIELDS: [&str; 8] = [
        "keys",
        "jwks_file",
        "jwks_url",
        "algorithms",
        "issuer",
        "audience",
        "leeway",
        "claims_to_headers",
    ];
    let s = w.section(node, path, &FIELDS);
    let mut keys = Vec::new();
    match s.get("keys") {
        None => {}
        Some(Spanned {
            node: Node::Seq(items),
            ..
        }) => {
            for (i, item) in items.iter().enumerate() {
                let k = w.section(
                    Some(item),
                    &format!("{}[{i}]", s.field("keys")),
                    &["kid", "algorithm", "file"],
                );
                let kid = w.get(&k, "kid", None, |n| text(n).map(Some)).value;
                let alg = w.get(&k, "algorithm", JwtAlgorithm::RS256, algorithm);
                let file = w.get(&k, "file", String::new(), text);
                for (got, field) in [(alg.pos, "algorithm"), (file.pos, "file")] {
                    if got.is_none() {
                        w.report(
                            item.pos,
                            &k.field(field),
                            Problem::new("missing required field"),
                        );
                    }
                }
                keys.push(JwtKey {
                    kid,
                    algorithm: alg.value,
                    file: file.value,
                });
            }
        }
        Some(other) => {
            w.report(
                other.pos,
                &s.field("keys"),
                Problem::new("expected a list of keys"),
            );
        }
    }
    let jwks_file = w.get(&s, "jwks_file", None, |n| text(n).map(Some)).value;
    let jwks_url = w.get(&s, "jwks_url", None, |n| {
        let url = text(n)?;
        match url.starts_with("https://") || url.starts_with("http://") {
            true => Ok(Some(url)),
            false => Err(Problem::new(format!("\"{url}\" is not an http(s) URL"))
                .hint("like https://login.example.com/.well-known/jwks.json")),
        }
    });
    if jwks_file.is_some() && jwks_url.value.is_some() {
        let problem = Problem::new("jwks_file and jwks_url cannot both be set")
            .hint("one JWKS source per scheme");
        w.report(jwks_url.pos, &s.field("jwks_url"), problem);
    }
    let jwks_url = jwks_url.value;
    if keys.is_empty() && jwks_file.is_none() && jwks_url.is_none() {
        let problem = Problem::new("a JWT scheme needs `keys`, `jwks_file` or `jwks_url`");
        w.report(s.pos, path, problem);
    }
    let algorithms = match s.get("algorithms") {
        None => vec![JwtAlgorithm::RS256, JwtAlgorithm::ES256],
        Some(Spanned {
            node: Node::Seq(items),
            ..
        }) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match algorithm(&item.node) {
                    Ok(a) => out.push(a),
                    Err(problem) => w.report(
                        item.pos,
                        &format!("{}[{i}]", s.field("algorithms")),
                        problem,
                    ),
                }
            }
            out
        }
        Some(other) => {
            w.report(
                other.pos,
                &s.field("algorithms"),
                Problem::new("expected a list of algorithms"),
            );
            Vec::new()
        }
    };
    let issuer = w.get(&s, "issuer", None, |n| text(n).map(Some)).value;
    let audience = w.get(&s, "audience", None, |n| text(n).map(Some)).value;
    let leeway = w
        .get(&s, "leeway", Duration::from_secs(30), duration(false))
        .value;
    let claims_to_headers = match s.get("claims_to_headers") {
        None => Vec::new(),
        node => string_map(w, node, &s.field("claims_to_headers"), |header| {
            match !header.is_empty()
                && header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                true => Ok(()),
                false => Err(Problem::new(format!("\"{header}\" is not a header name"))),
            }
        }),
    };
    let claims_to_headers = claims_to_headers
        .into_iter()
        .map(|(c, h)| (c, h.to_ascii_lowercase()))
        .collect();
    JwtAuth {
        keys,
        jwks_file,
        jwks_url,
        algorithms,
        issuer,
        audience,
        leeway,
        claims_to_headers,
    }
}

#[cfg(test)]
mod tests {
    use super::is_password_hash;

    #[test]
    fn password_hashes() {
        assert!(is_password_hash(&format!("$2b$12${}", "a".repeat(53))));
        assert!(is_password_hash(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"
        ));
        assert!(!is_password_hash("hunter2"));
        assert!(!is_password_hash("$2b$short"));
    }
}
