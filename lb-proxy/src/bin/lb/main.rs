//! `lb`: the load balancer daemon. This file is its table of contents: arguments → the
//! configuration (a file, or the demo fleet) → the async runtime → serve until a signal.

mod allocator;
#[cfg(feature = "demo")]
mod demo;
mod startup;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use lb_core::config::Config;
use lb_proxy::Daemon;

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
    /// Run a self-contained demo: three in-process backends behind the balancer.
    #[arg(long, conflicts_with = "check")]
    demo: bool,
    /// Validate the configuration and exit (0 valid, 2 invalid).
    #[arg(long)]
    check: bool,
    /// Log level or filter (overrides RUST_LOG), e.g. `debug` or `lb_proxy=debug`.
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
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
    let config = match args.demo {
        true => None,
        false => match startup::load(&args.config) {
            Ok(config) => Some(config),
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    if let (true, Some(config)) = (args.check, &config) {
        println!(
            "{}: ok: {}",
            args.config.display(),
            startup::summary(config)
        );
        return ExitCode::SUCCESS;
    }
    let workers = config.as_ref().map_or(0, |config| config.server.workers);
    match startup::runtime(workers) {
        Ok(runtime) => runtime.block_on(serve(config, &args)),
        Err(error) => {
            eprintln!("lb: cannot start the async runtime: {error}");
            ExitCode::from(EXIT_START)
        }
    }
}

/// Serves `config` (or the demo fleet when `None`) until SIGTERM or Ctrl-C, then drains.
async fn serve(config: Option<Config>, args: &Args) -> ExitCode {
    let (mut config, fleet) = match config {
        Some(config) => (config, None),
        None => match startup::demo_fleet().await {
            Ok((config, fleet)) => (config, Some(fleet)),
            Err((code, message)) => {
                eprintln!("lb: {message}");
                return ExitCode::from(code);
            }
        },
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(listen) = args.metrics_listen {
        config.metrics.listen = listen;
    }
    let summary = startup::summary(&config);
    let daemon = match Daemon::start(config).await {
        Ok(daemon) => daemon,
        Err(error) => {
            eprintln!("lb: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    startup::announce(&daemon, &summary);
    let traffic = fleet.as_ref().map(|fleet| fleet.show(&daemon));
    let stopper = daemon.stopper();
    tokio::spawn(async move {
        startup::wait_for_signal().await;
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
