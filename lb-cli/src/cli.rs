//! The command line: clap definitions and [`run`], which maps each command to an exit code.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::admin::{self, AdminArgs, Verb};
use crate::check::{self, FileReport};
use crate::init::{self, InitError};
use crate::render;
use crate::show::{self, ShowFormat};
use crate::simulate::{self, SimulateFormat};

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: a file is invalid, a check failed, or the command could not do its work.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: a usage error (clap's own code), or an admin URL or token file that cannot work.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the admin API has no backend by that name.
pub const EXIT_NOT_FOUND: u8 = 3;
/// Exit status: the admin API refused the token (401 or 403).
pub const EXIT_UNAUTHORIZED: u8 = 4;

const EXIT_CODES: &str = "\
Exit codes:
  0  success: every file is valid (and, with --strict, has no warnings)
  1  a file is invalid, unreadable, or fails --strict; or the command failed
  2  usage error (unknown option, missing argument, bad --admin URL or token file)
  3  admin verbs: no backend by that name
  4  admin verbs: the daemon refused the token";

/// Said under each admin verb's help.
const ADMIN_HELP: &str = "\
The daemon serves its admin API when its configuration has an `admin` section. The token, when
the daemon wants one, comes from --token-file PATH or else $LB_ADMIN_TOKEN (never an argument:
the process list shows those).

Exit codes:
  0  success
  1  the daemon is unreachable, refused the request (a reload of an invalid file: nothing
     changed), or answered something that is not the admin API
  2  usage error (unknown option, missing argument, bad --admin URL or token file)
  3  no backend by that name
  4  the daemon refused the token";

/// Check, print and create configuration files for the `lb` load balancer.
#[derive(Debug, Parser)]
#[command(name = "lb-cli", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate configuration files: every error with line:col and a caret, plus warnings.
    #[command(after_help = EXIT_CODES)]
    Check {
        /// Files to check (.yaml, .yml or .json).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Fail (exit 1) on warnings too.
        #[arg(long)]
        strict: bool,
        /// Output format; json prints one document for all files.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Print the effective configuration with every default filled in.
    #[command(after_help = EXIT_CODES)]
    Show {
        /// The configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ShowFormat::Yaml)]
        format: ShowFormat,
    },
    /// Write a commented starter configuration.
    #[command(after_help = EXIT_CODES)]
    Init {
        /// Where to write it.
        #[arg(default_value = "lb.yaml", value_name = "PATH")]
        path: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print a running daemon's backends (health, breaker, in-flight, requests, errors, weight).
    #[command(after_help = EXIT_CODES)]
    Status {
        /// The daemon's metrics URL.
        #[arg(long, value_name = "URL", default_value = lb_observe::scrape::DEFAULT_URL)]
        metrics: String,
    },
    /// List a running daemon's backends through its admin API: address, weight, health,
    /// breaker, requests in flight, drain.
    #[command(after_help = ADMIN_HELP)]
    Backends {
        /// Only this backend.
        #[arg(value_name = "NAME")]
        name: Option<String>,
        /// Where the admin API is, and how to call it.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Drain a backend: it gets no new requests; those in flight finish.
    #[command(after_help = ADMIN_HELP)]
    Drain {
        /// The backend's name.
        #[arg(value_name = "NAME")]
        name: String,
        /// Where the admin API is, and how to call it.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Enable a drained backend: it takes new requests again.
    #[command(after_help = ADMIN_HELP)]
    Enable {
        /// The backend's name.
        #[arg(value_name = "NAME")]
        name: String,
        /// Where the admin API is, and how to call it.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Set a backend's weight at runtime (kept across reloads that leave it alone), or
    /// --reset it to the file's.
    #[command(after_help = ADMIN_HELP)]
    Weight {
        /// The backend's name.
        #[arg(value_name = "NAME")]
        name: String,
        /// The new weight, 1 to 1000000.
        #[arg(value_name = "N", required_unless_present = "reset",
              value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        weight: Option<u32>,
        /// Remove the runtime weight: back to the configuration file's.
        #[arg(long, conflicts_with = "weight")]
        reset: bool,
        /// Where the admin API is, and how to call it.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Reset a backend's circuit breaker: closed, its failures forgotten.
    #[command(after_help = ADMIN_HELP)]
    BreakerReset {
        /// The backend's name.
        #[arg(value_name = "NAME")]
        name: String,
        /// Where the admin API is, and how to call it.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Reload the daemon's configuration file (as SIGHUP does); prints what changed and what
    /// needs a restart. An invalid file changes nothing.
    #[command(after_help = ADMIN_HELP)]
    Reload {
        /// Where the admin API is, and how to call it.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// See what a configuration does to traffic: run it on a scenario in virtual time.
    #[command(after_help = EXIT_CODES)]
    Simulate {
        /// The configuration to simulate.
        #[arg(value_name = "CONFIG")]
        config: PathBuf,
        /// The scenario: traffic, and how each backend behaves over time (.yaml or .json).
        #[arg(long, value_name = "FILE")]
        scenario: PathBuf,
        /// Also run this configuration on the same scenario and seed, and compare.
        #[arg(long, value_name = "OTHER_CONFIG")]
        against: Option<PathBuf>,
        /// The random seed (default: the scenario's `seed`, else 1).
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// Output format; json is for scripts.
        #[arg(long, value_enum, default_value_t = SimulateFormat::Text)]
        format: SimulateFormat,
    },
}

/// Output of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// Compiler-style diagnostics.
    Text,
    /// One JSON document on stdout.
    Json,
}

/// Runs `cli`, writing results to `out` and failures of the command itself to `err`;
/// returns the exit code. Write errors (a closed pipe) are ignored: the exit code still
/// tells the verdict.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match cli.command {
        Command::Check {
            files,
            strict,
            format,
        } => run_check(&files, strict, format, out),
        Command::Show { file, format } => run_show(&file, format, out, err),
        Command::Init { path, force } => run_init(&path, force, out, err),
        Command::Status { metrics } => crate::status::run(&metrics, out, err),
        Command::Simulate {
            config,
            scenario,
            against,
            seed,
            format,
        } => {
            let request = simulate::Request {
                config,
                scenario,
                against,
                seed,
                format,
            };
            simulate::run(&request, out, err)
        }
        Command::Backends { name, admin } => admin::run(&Verb::Backends(name), &admin, out, err),
        Command::Drain { name, admin } => admin::run(&Verb::Drain(name), &admin, out, err),
        Command::Enable { name, admin } => admin::run(&Verb::Enable(name), &admin, out, err),
        Command::Weight {
            name,
            weight,
            reset: _,
            admin,
        } => {
            // clap makes `N` and `--reset` exclusive and one of them required: no `N` is a reset.
            admin::run(&Verb::Weight(name, weight), &admin, out, err)
        }
        Command::BreakerReset { name, admin } => {
            admin::run(&Verb::BreakerReset(name), &admin, out, err)
        }
        Command::Reload { admin } => admin::run(&Verb::Reload, &admin, out, err),
    }
}

fn run_check(files: &[PathBuf], strict: bool, format: CheckFormat, out: &mut dyn Write) -> u8 {
    let reports: Vec<FileReport> = files.iter().map(|f| check::check_path(f)).collect();
    let _ = match format {
        CheckFormat::Text => reports
            .iter()
            .try_for_each(|r| out.write_all(render::text(r, strict).as_bytes())),
        CheckFormat::Json => writeln!(out, "{:#}", render::json(&reports, strict)),
    };
    if reports.iter().all(|r| r.passes(strict)) {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

fn run_show(file: &Path, format: ShowFormat, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let report = check::check_path(file);
    let Some(config) = &report.config else {
        let _ = err.write_all(render::text(&report, false).as_bytes());
        return EXIT_FAILED;
    };
    match show::render(config, format) {
        Ok(text) => {
            let _ = out.write_all(text.as_bytes());
            EXIT_OK
        }
        Err(error) => {
            let _ = writeln!(err, "{}: error: cannot serialize: {error}", file.display());
            EXIT_FAILED
        }
    }
}

fn run_init(path: &Path, force: bool, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match init::init(path, force) {
        Ok(()) => {
            let _ = writeln!(
                out,
                "wrote {}; edit its backends, then run `lb-cli check {}`",
                path.display(),
                path.display()
            );
            EXIT_OK
        }
        Err(error @ (InitError::Exists(_) | InitError::Write(..))) => {
            let _ = writeln!(err, "error: {error}");
            EXIT_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn weight_takes_a_number_or_reset() {
        let parse = |args: &[&str]| Cli::try_parse_from(["lb-cli", "weight"].iter().chain(args));
        assert!(matches!(
            parse(&["b1", "5"]).map(|c| c.command),
            Ok(Command::Weight {
                weight: Some(5),
                reset: false,
                ..
            })
        ));
        assert!(matches!(
            parse(&["b1", "--reset"]).map(|c| c.command),
            Ok(Command::Weight {
                weight: None,
                reset: true,
                ..
            })
        ));
        for bad in [
            &["b1"][..],
            &["b1", "0"],
            &["b1", "1000001"],
            &["b1", "5", "--reset"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("Exit codes:") && help.contains("2  usage error"),
            "{help}"
        );
    }
}
