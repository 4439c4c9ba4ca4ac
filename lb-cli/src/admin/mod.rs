//! The admin verbs: `backends`, `drain`, `enable`, `weight`, `breaker-reset` and `reload`, each
//! one call to a running daemon's admin API through `lb-observe`'s client.
//!
//! Each verb prints a short text result (or, with `--json`, the daemon's JSON answer
//! pretty-printed, once it has been checked to be of the right shape) and maps every failure to one line on
//! stderr and an exit code a script can branch on: 3 for a backend that does not exist, 4 for a
//! token the daemon refuses, 2 for a bad URL or token file, 1 for anything else. The texts are
//! built in [`render`], which does no IO.

pub mod render;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use lb_observe::admin::{self, AdminClient, AdminError, Call, ErrorKind, printable, types};

use crate::cli::{EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_UNAUTHORIZED, EXIT_USAGE};

/// Where the admin API is, how to authenticate, how long to wait, how to print.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The daemon's admin API (its `admin.listen`).
    #[arg(long = "admin", value_name = "URL", env = admin::URL_ENV,
          default_value = admin::DEFAULT_URL)]
    pub url: String,
    /// A file holding the bearer token; without it, $LB_ADMIN_TOKEN when set.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Longest wait for the answer (connecting takes at most 2s of it).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Print the daemon's JSON answer instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `lb_core`'s durations (`500ms`, `5s`), between 100 ms and 10 minutes.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let duration = lb_core::config::parse_duration(text)?;
    if (Duration::from_millis(100)..=Duration::from_secs(600)).contains(&duration) {
        Ok(duration)
    } else {
        Err("expected between 100ms and 10m".to_owned())
    }
}

/// One admin verb and its operands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// Every backend, or the one named.
    Backends(Option<String>),
    /// Drain a backend.
    Drain(String),
    /// End a drain.
    Enable(String),
    /// Set (or with `None` remove) a weight override.
    Weight(String, Option<u32>),
    /// Reset a breaker.
    BreakerReset(String),
    /// Reload the configuration.
    Reload,
}

impl Verb {
    /// The admin API call it makes.
    fn call(&self) -> Call<'_> {
        match self {
            Self::Backends(None) => Call::Backends,
            Self::Backends(Some(name)) => Call::Backend(name),
            Self::Drain(name) => Call::Drain(name),
            Self::Enable(name) => Call::Enable(name),
            Self::Weight(name, weight) => Call::SetWeight(name, *weight),
            Self::BreakerReset(name) => Call::ResetBreaker(name),
            Self::Reload => Call::Reload,
        }
    }

    /// How an error line starts: the verb as typed, e.g. `drain b9`.
    fn context(&self) -> String {
        let call = self.call();
        let verb = match self {
            Self::Backends(_) => "backends",
            Self::Drain(_) => "drain",
            Self::Enable(_) => "enable",
            Self::Weight(..) => "weight",
            Self::BreakerReset(_) => "breaker-reset",
            Self::Reload => "reload",
        };
        match call.backend() {
            Some(name) => format!("{verb} {}", printable(name)),
            None => verb.to_owned(),
        }
    }
}

/// The client `args` describe.
///
/// # Errors
/// One line: the token file cannot be read, the token or the URL is malformed.
pub fn client(args: &AdminArgs) -> Result<AdminClient, String> {
    let token = admin::token::token(
        args.token_file.as_deref(),
        std::env::var_os(admin::TOKEN_ENV),
    )
    .map_err(|e| e.to_string())?;
    let options = admin::Options {
        timeout: args.timeout,
        connect_timeout: args.timeout.min(admin::DEFAULT_CONNECT_TIMEOUT),
        ..admin::Options::default()
    };
    AdminClient::with_options(&args.url, token, options).map_err(|e| e.to_string())
}

/// Runs `verb`: its result on `out` and exit 0, or one line on `err` and the exit code of
/// [`exit_code`].
pub fn run(verb: &Verb, args: &AdminArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let client = match client(args) {
        Ok(client) => client,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return EXIT_USAGE;
        }
    };
    match execute(&client, verb, args.json) {
        Ok(text) => {
            let _ = out.write_all(text.as_bytes());
            EXIT_OK
        }
        Err(error) => {
            let _ = writeln!(
                err,
                "error: {}: {error}{}",
                verb.context(),
                hint(verb, &error)
            );
            exit_code(&error)
        }
    }
}

/// The exit code for `error`.
pub fn exit_code(error: &AdminError) -> u8 {
    match error.kind() {
        ErrorKind::NotFound => EXIT_NOT_FOUND,
        ErrorKind::Unauthorized => EXIT_UNAUTHORIZED,
        ErrorKind::Usage => EXIT_USAGE,
        ErrorKind::Unreachable | ErrorKind::Rejected | ErrorKind::Server | ErrorKind::Protocol => {
            EXIT_FAILED
        }
    }
}

/// What to do about `error`, when the command line can say more than the client.
fn hint(verb: &Verb, error: &AdminError) -> &'static str {
    match (error.kind(), verb) {
        (ErrorKind::Unauthorized, _) => {
            "; give the daemon's token with --token-file PATH or $LB_ADMIN_TOKEN"
        }
        (ErrorKind::Rejected, Verb::Reload) => "; the running configuration is unchanged",
        (ErrorKind::NotFound, _) if verb.call().backend().is_some() => {
            "; `lb-cli backends` lists them"
        }
        _ => "",
    }
}

/// Makes the call and renders its answer.
fn execute(client: &AdminClient, verb: &Verb, json: bool) -> Result<String, AdminError> {
    let call = verb.call();
    let (text, value): (String, Value) = match verb {
        Verb::Backends(None) => {
            let (backends, value) = client.call_decoded(call, types::backends)?;
            (render::table(&backends), value)
        }
        Verb::Reload => {
            let (outcome, value) = client.call_decoded(call, types::reload)?;
            (render::reload(&outcome), value)
        }
        _ => {
            let (backend, value) = client.call_decoded(call, types::backend)?;
            let text = match verb {
                Verb::Drain(_) => render::drained(&backend),
                Verb::Enable(_) => render::enabled(&backend),
                Verb::Weight(..) => render::weight_set(&backend),
                Verb::BreakerReset(_) => render::breaker_reset(&backend),
                // `backends NAME`; the two verbs above answer with other shapes.
                Verb::Backends(_) | Verb::Reload => render::table(std::slice::from_ref(&backend)),
            };
            (text, value)
        }
    };
    Ok(if json { format!("{value:#}\n") } else { text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_timeout("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["0", "10ms", "1h", "soon", ""] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn contexts_name_the_verb_and_backend() {
        let cases = [
            (Verb::Backends(None), "backends"),
            (Verb::Backends(Some("b1".into())), "backends b1"),
            (Verb::Drain("b9".into()), "drain b9"),
            (Verb::Weight("b1".into(), None), "weight b1"),
            (Verb::BreakerReset("b\n1".into()), "breaker-reset b\\n1"),
            (Verb::Reload, "reload"),
        ];
        for (verb, context) in cases {
            assert_eq!(verb.context(), context);
        }
    }

    #[test]
    fn exit_codes_and_hints() {
        let api = |status| AdminError::Api {
            method: "POST",
            url: "http://127.0.0.1:9091/reload".into(),
            status,
            message: "m".into(),
        };
        assert_eq!(exit_code(&api(404)), EXIT_NOT_FOUND);
        assert_eq!(exit_code(&api(401)), EXIT_UNAUTHORIZED);
        assert_eq!(exit_code(&api(422)), EXIT_FAILED);
        assert_eq!(exit_code(&AdminError::BadName), EXIT_USAGE);
        assert!(hint(&Verb::Reload, &api(422)).contains("unchanged"));
        assert!(hint(&Verb::Drain("b".into()), &api(401)).contains("--token-file"));
        assert!(hint(&Verb::Drain("b".into()), &api(404)).contains("lb-cli backends"));
        assert_eq!(hint(&Verb::Drain("b".into()), &api(422)), "");
    }
}
