//! The sections that say how the daemon is operated while it runs: `admin` (the admin API's
//! listener and its bearer token) and `reload` (watching the configuration file).
//!
//! The token itself is never in the configuration: only where to read it (a file, or an
//! environment variable), which the daemon reads when it starts and on every reload.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Serialize;

use super::duration;
use super::validate::clash;
use super::walk::{Got, Problem, Section, Walker, address, boolean, text};

/// `admin`: the admin API on its own listener, off unless configured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdminConfig {
    /// Whether the admin API is served; true as soon as the `admin` section is written.
    pub enabled: bool,
    /// Its own listener, apart from client traffic and metrics.
    pub listen: SocketAddr,
    /// Where the bearer token is read from; required when `listen` is beyond loopback.
    #[serde(flatten)]
    pub token: Option<TokenSource>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9091)),
            token: None,
        }
    }
}

/// Where the admin API's bearer token comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TokenSource {
    /// A file holding the token (surrounding whitespace is ignored).
    #[serde(rename = "token_file")]
    File(String),
    /// An environment variable holding the token.
    #[serde(rename = "token_env")]
    Env(String),
}

/// `reload`: how configuration changes reach the running daemon besides `SIGHUP` and the
/// admin API's `POST /reload`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReloadConfig {
    /// Reload when the configuration file changes.
    pub watch: bool,
    /// Changes closer together than this are one reload.
    #[serde(serialize_with = "duration::serialize")]
    pub debounce: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            watch: false,
            debounce: Duration::from_millis(500),
        }
    }
}

/// Reads `admin`. It may not share a port with the proxy or the metrics listener, and beyond
/// loopback it needs a token.
pub(super) fn admin(
    w: &mut Walker<'_>,
    top: &Section<'_>,
    others: &[(&str, &Got<SocketAddr>)],
) -> AdminConfig {
    let d = AdminConfig::default();
    let present = top.get("admin").is_some();
    let s = w.section(
        top.get("admin"),
        "admin",
        &["enabled", "listen", "token_file", "token_env"],
    );
    let enabled = w.get(&s, "enabled", present, boolean).value;
    let listen = w.get(&s, "listen", d.listen, address);
    let file = w.get(&s, "token_file", String::new(), text);
    let env = w.get(&s, "token_env", String::new(), env_name);
    let token = match (file.value.is_empty(), env.value.is_empty()) {
        (true, true) => None,
        (false, true) => Some(TokenSource::File(file.value)),
        (true, false) => Some(TokenSource::Env(env.value)),
        (false, false) => {
            let problem = Problem::new("give the token in one place, a file or a variable")
                .hint("remove token_file or token_env");
            w.report(env.pos, "admin.token_env", problem);
            None
        }
    };
    if enabled && listen.ok {
        for (name, other) in others {
            if other.ok && clash(listen.value, other.value) {
                let problem = Problem::new(format!("{} clashes with {name}", listen.value))
                    .hint("give the admin API its own port");
                w.report(listen.pos.or(s.pos), "admin.listen", problem);
            }
        }
        if token.is_none() && !listen.value.ip().is_loopback() {
            let problem = Problem::new(format!(
                "the admin API listens beyond loopback ({}) without a token",
                listen.value
            ))
            .hint("set admin.token_file or admin.token_env, or listen on 127.0.0.1");
            w.report(listen.pos.or(s.pos), "admin.listen", problem);
        }
    }
    AdminConfig {
        enabled,
        listen: listen.value,
        token,
    }
}

/// An environment variable's name: letters, digits and `_`, not starting with a digit.
fn env_name(node: &super::node::Node) -> Result<String, Problem> {
    let name = text(node)?;
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(name)
    } else {
        Err(
            Problem::new(format!("\"{name}\" is not an environment variable's name"))
                .hint("like LB_ADMIN_TOKEN"),
        )
    }
}

/// Reads `reload`.
pub(super) fn reload(w: &mut Walker<'_>, top: &Section<'_>) -> ReloadConfig {
    let d = ReloadConfig::default();
    let s = w.section(top.get("reload"), "reload", &["watch", "debounce"]);
    ReloadConfig {
        watch: w.get(&s, "watch", d.watch, boolean).value,
        debounce: w
            .get(&s, "debounce", d.debounce, super::walk::duration(true))
            .value,
    }
}
