//! `lb`: the load balancer daemon. This file is its table of contents: arguments → the
//! configuration (a file, or the demo fleet) → the async runtime → serve (taking the listeners
//! over from a running `lb` when one offers them) → reload on `SIGHUP`, stop on `SIGTERM`.

mod allocator;
#[cfg(feature = "demo")]
mod demo;
mod startup;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use lb_core::config::Config;
use lb_proxy::{ConfigSource, Daemon, StartOptions, UpgradeSocket};

/// An HTTP load balancer.
#[derive(Debug, Parser)]
#[command(name = "lb", version, about)]
struct Args {
    /// Configuration file (.yaml, .yml or .json).
    #[arg(default_value = "config/config.yaml")]
    config: PathBuf,
    /// Listen address for client traffic, overriding `server.listen` (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Listen address for metrics, overriding `metrics.listen`.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Access log target, overriding `access_log.target` and turning the log on: `-` for
    /// stdout, or a file's path.
    #[arg(long, value_name = "TARGET")]
    access_log: Option<PathBuf>,
    /// Run a self-contained demo: three in-process backends behind the balancer.
    #[arg(long, conflicts_with = "check")]
    demo: bool,
    /// Validate the configuration and exit (0 valid, 2 invalid); warnings go to stderr.
    #[arg(long)]
    check: bool,
    /// Log level or filter (overrides RUST_LOG), e.g. `debug` or `lb_proxy=debug` (release
    /// builds compile out `trace`; h2 and rustls log at `error` unless the filter names them).
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
    /// Restarts that drop nothing: take the listening sockets over from the `lb` offering them
    /// on this Unix socket (it then drains and exits), and offer them on it in turn.
    #[arg(long, value_name = "PATH")]
    upgrade_socket: Option<PathBuf>,
}

/// Exit code for an invalid configuration.
const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure to start (port in use, ...).
const EXIT_START: u8 = 1;

#[global_allocator]
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

fn main() -> ExitCode {
    allocator::configure();
    let args = Args::parse();
    startup::init_logging(args.log.as_deref());
    let source = ConfigSource {
        path: args.config.clone(),
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        access_log: args.access_log.as_deref().map(startup::access_log_target),
    };
    let config = match args.demo {
        true => None,
        false => match source.load() {
            Ok(config) => Some(config),
            Err(error) => {
                eprintln!("lb: {error}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    if let (true, Some(config)) = (args.check, &config) {
        // Warnings on stderr, as the daemon logs them at start (systemd's ExecStartPre shows
        // them in the journal); they do not fail the check (`lb-cli check --strict` does).
        for warning in lb_core::config::warnings(config) {
            eprintln!("{}: warning: {warning}", args.config.display());
        }
        println!(
            "{}: ok: {}",
            args.config.display(),
            startup::summary(config)
        );
        return ExitCode::SUCCESS;
    }
    let workers = config.as_ref().map_or(0, |config| config.server.workers);
    match startup::runtime(workers) {
        Ok(runtime) => runtime.block_on(serve(config, source, &args)),
        Err(error) => {
            eprintln!("lb: cannot start the async runtime: {error}");
            ExitCode::from(EXIT_START)
        }
    }
}

/// Serves `config` (or the demo fleet when `None`) until SIGTERM or Ctrl-C, then drains;
/// `SIGHUP` reloads the file.
async fn serve(config: Option<Config>, source: ConfigSource, args: &Args) -> ExitCode {
    let signals = startup::Signals::register();
    let (config, fleet, source) = match config {
        Some(config) => (config, None, Some(source)),
        None => match startup::demo_fleet().await {
            Ok((mut config, fleet)) => {
                source.override_in(&mut config);
                (config, Some(fleet), None)
            }
            Err((code, message)) => {
                eprintln!("lb: {message}");
                return ExitCode::from(code);
            }
        },
    };
    let upgrade = args.upgrade_socket.clone().map(UpgradeSocket::new);
    let takeover = match upgrade.as_ref().map(UpgradeSocket::take_over).transpose() {
        Ok(takeover) => takeover.flatten(),
        Err(error) => {
            eprintln!("lb: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    let summary = startup::summary(&config);
    // The demo's own text then goes to stderr, so stdout holds only the log's lines.
    let log_on_stdout = config.access_log.enabled
        && config.access_log.target == lb_core::config::AccessLogTarget::Stdout;
    let (inherited, handoff) = match takeover {
        Some(takeover) => {
            let (inherited, handoff) = takeover.into_parts();
            (inherited, Some(handoff))
        }
        None => (Default::default(), None),
    };
    let options = StartOptions {
        source,
        inherited,
        ..StartOptions::default()
    };
    let daemon = match Daemon::start_with(config, options).await {
        Ok(daemon) => daemon,
        Err(error) => {
            eprintln!("lb: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    if let Some(handoff) = handoff {
        match handoff.ready() {
            Ok(()) => tracing::info!("took the listeners over: the previous lb drains"),
            Err(error) => tracing::warn!(%error, "the previous lb went away during the takeover"),
        }
    }
    startup::announce(&daemon, &summary);
    if let Some(upgrade) = upgrade {
        drop(daemon.offer_takeover(upgrade));
    }
    let traffic = fleet
        .as_ref()
        .map(|fleet| fleet.show(&daemon, log_on_stdout));
    let stopper = daemon.stopper();
    let reloader = daemon.reloader();
    tokio::spawn(async move {
        signals.serve(reloader).await;
        tracing::info!("shutdown signal received: draining");
        if let Some(traffic) = traffic {
            traffic.abort();
        }
        stopper.stop();
    });
    daemon.wait().await;
    if let Some(fleet) = fleet {
        fleet.stop().await;
    }
    tracing::info!("lb stopped");
    ExitCode::SUCCESS
}
