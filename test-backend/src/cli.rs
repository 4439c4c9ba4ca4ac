//! The `test-backend` command line: serves the test backend on one or more ports until Ctrl-C.
//! The binary and `cargo run --example test_backend` (at the workspace root) both run it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::{BackendOptions, RunningBackend, spawn};
use clap::Parser;
use tokio::net::TcpListener;

/// A configurable HTTP backend for demos, tests and benchmarks of the `lb` balancer.
#[derive(Parser, Debug)]
#[command(name = "test-backend", version)]
struct Args {
    /// Name reported in `x-backend` and by `GET /` [default: backend-PORT; NAME-PORT with several ports]
    #[arg(long)]
    name: Option<String>,
    /// Flip /health between 200 and 503 every SECS seconds (fractions allowed)
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    toggle_health: Option<Duration>,
    /// Fraction of non-health requests answered 500, 0.0..=1.0
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = parse_rate)]
    fail_rate: f64,
    /// Delay added to every non-health request, in milliseconds
    #[arg(long, value_name = "MS")]
    latency: Option<u64>,
    /// Address to bind
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Print `METHOD PATH X-REQUEST-ID` on stdout for every non-health request
    #[arg(long)]
    log_requests: bool,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key)
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this PEM CA (mTLS; needs --tls-cert)
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Serve HTTP/2 only: cleartext prior knowledge (h2c), or ALPN h2 alone with --tls-cert
    #[arg(long)]
    http2_only: bool,
    /// Streams a client may open at once on one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    h2_max_streams: Option<u32>,
    /// Do not offer WebSocket over HTTP/2 (RFC 8441 extended CONNECT)
    #[arg(long)]
    no_h2_websocket: bool,
    /// Tokio worker threads [default: the CPUs this process may run on]
    #[arg(long)]
    threads: Option<usize>,
    /// Ports to serve (0 picks a free one)
    #[arg(value_name = "PORT", required = true)]
    ports: Vec<u16>,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{s}` must be a positive number of seconds"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` must be a fraction between 0.0 and 1.0")),
    }
}

/// Parses the command line and serves until Ctrl-C or SIGTERM; the process's exit code.
pub fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("test-backend: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

/// The HTTPS configuration the arguments ask for, if any.
fn tls(args: &Args) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, String> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let client_ca = args.tls_client_ca.as_ref().map(read).transpose()?;
    crate::tls_config(&read(cert)?, &read(key)?, client_ca.as_deref()).map(Some)
}

async fn run(args: Args) -> ExitCode {
    let tls = match tls(&args) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("test-backend: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut backends: Vec<RunningBackend> = Vec::with_capacity(args.ports.len());
    for &port in &args.ports {
        let addr = SocketAddr::new(args.host, port);
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("test-backend: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Named after the bound port, so `0` gives the port actually chosen.
        let port = listener.local_addr().map_or(port, |a| a.port());
        let name = match (&args.name, args.ports.len()) {
            (Some(name), 1) => name.clone(),
            (Some(name), _) => format!("{name}-{port}"),
            (None, _) => format!("backend-{port}"),
        };
        if http::HeaderValue::from_str(&name).is_err() {
            eprintln!("test-backend: name {name:?} is not a valid HTTP header value");
            return ExitCode::FAILURE;
        }
        let options = BackendOptions {
            name,
            toggle_health: args.toggle_health,
            fail_rate: args.fail_rate,
            latency: args.latency.map(Duration::from_millis),
            log_requests: args.log_requests,
            tls: tls.clone(),
            http2_only: args.http2_only,
            h2_max_streams: args.h2_max_streams,
            h2_websocket: !args.no_h2_websocket,
        };
        let backend = spawn(listener, options).await;
        println!(
            "test-backend {} listening on {scheme}://{}",
            backend.name(),
            backend.addr()
        );
        backends.push(backend);
    }

    wait_for_stop_signal().await;
    for backend in backends {
        backend.shutdown().await;
    }
    ExitCode::SUCCESS
}

/// Ctrl-C, or SIGTERM on Unix (what scripts and `kill` send).
async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
