//! `lb`: the load balancer daemon. Wiring only: arguments, logging, the tokio runtime, signals.

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

/// mimalloc instead of glibc's malloc: a connection allocates and frees its buffers, task and
/// state once each, and glibc spent about 8,500 instructions per new connection on that
/// (docs/performance.md, item 13). Only the daemon binary sets it; `lb-proxy` as a library
/// leaves the choice to its user.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log.as_deref());
    if args.demo {
        return run(None, &args);
    }
    let config = match load(&args.config) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check {
        println!(
            "{}: ok: listen {}, {} over {} backend(s)",
            args.config.display(),
            config.server.listen,
            config.load_balancer.algorithm.as_str(),
            config.backends.len()
        );
        return ExitCode::SUCCESS;
    }
    run(Some(config), &args)
}

fn load(path: &std::path::Path) -> Result<Config, String> {
    let bytes = std::fs::read(path)
        .map_err(|error| format!("lb: cannot read {}: {error}", path.display()))?;
    lb_core::config::parse_bytes(&bytes, path)
        .map_err(|errors| errors.to_string().trim_end().to_owned())
}

fn init_logging(filter: Option<&str>) {
    let filter = match filter {
        Some(filter) => tracing_subscriber::EnvFilter::new(filter),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    // Logs go to stderr: stdout carries the one machine-readable "listening on" line.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(config: Option<Config>, args: &Args) -> ExitCode {
    let workers = config.as_ref().map_or(0, |config| config.server.workers);
    let runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if workers > 1 {
            builder.worker_threads(workers);
        }
        builder.enable_all().build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("lb: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    runtime.block_on(serve(config, args))
}

async fn serve(config: Option<Config>, args: &Args) -> ExitCode {
    let mut demo_backends = Vec::new();
    let mut config = match config {
        Some(config) => config,
        None => {
            demo_backends = match lb_proxy::demo::start_backends().await {
                Ok(backends) => backends,
                Err(error) => {
                    eprintln!("lb: cannot start the demo backends: {error}");
                    return ExitCode::from(EXIT_START);
                }
            };
            match lb_proxy::demo::config(&demo_backends) {
                Ok(config) => config,
                Err(errors) => {
                    eprintln!("lb: the demo configuration is invalid (a bug):\n{errors}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
        }
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(listen) = args.metrics_listen {
        config.metrics.listen = listen;
    }
    let algorithm = config.load_balancer.algorithm.as_str();
    let backends: Vec<String> = config
        .backends
        .iter()
        .map(|backend| format!("{}={}", backend.name, backend.address))
        .collect();
    let daemon = match Daemon::start(config).await {
        Ok(daemon) => daemon,
        Err(error) => {
            eprintln!("lb: {error}");
            return ExitCode::from(EXIT_START);
        }
    };
    tracing::info!(
        listen = %daemon.listen_addr,
        metrics = %daemon.metrics_addr.map_or_else(|| "off".to_owned(), |addr| addr.to_string()),
        algorithm,
        backends = %backends.join(","),
        "lb started"
    );
    // One machine-readable line on stdout, so scripts and tests using port 0 learn the ports.
    match daemon.metrics_addr {
        Some(metrics) => println!("listening on {} metrics on {}", daemon.listen_addr, metrics),
        None => println!("listening on {}", daemon.listen_addr),
    }
    if !demo_backends.is_empty() {
        println!(
            "{}",
            lb_proxy::demo::banner(daemon.listen_addr, daemon.metrics_addr, &demo_backends)
        );
    }
    let demo_traffic =
        (!demo_backends.is_empty()).then(|| lb_proxy::demo::drive_traffic(daemon.listen_addr));
    let stopper = daemon.stopper();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received: draining");
        if let Some(traffic) = demo_traffic {
            traffic.abort();
        }
        let _ = stopper.send(true);
    });
    daemon.wait().await;
    for backend in demo_backends {
        backend.shutdown().await;
    }
    tracing::info!("lb stopped");
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
