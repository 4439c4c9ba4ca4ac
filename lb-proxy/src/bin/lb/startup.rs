//! What the daemon does before it serves: logging, the configuration, the async runtime, the
//! "listening on" line, and the demo fleet when asked for; and the signals it stops on.

use lb_core::config::Config;
use lb_proxy::{Daemon, Reloader};

/// Logs to stderr, with `filter` or `RUST_LOG` (default `info`): stdout carries the one
/// machine-readable "listening on" line.
pub(crate) fn init_logging(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(filter) => EnvFilter::new(with_quiet_peers(filter)),
        None => std::env::var("RUST_LOG")
            .ok()
            .and_then(|text| EnvFilter::try_new(with_quiet_peers(&text)).ok())
            .unwrap_or_else(|| EnvFilter::new(with_quiet_peers("info"))),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Libraries that log at `warn` for what a peer sends, per frame or per connection: h2 for
/// every `PING` acknowledgement it did not ask for (a line per 17 bytes a client sends), rustls
/// for a client's renegotiation or a malformed hello. What they warn of the balancer logs and
/// counts itself (HTTP/2 closes, TLS handshake failures), so by default they log errors only.
const QUIET_LIBRARIES: [&str; 2] = ["h2", "rustls"];

/// `filter` with `LIBRARY=error` added for each of [`QUIET_LIBRARIES`] it does not name itself.
fn with_quiet_peers(filter: &str) -> String {
    let named = |library: &str| {
        filter.split(',').any(|directive| {
            let target = directive.trim().split(['=', '[']).next().unwrap_or("");
            target == library
                || target
                    .strip_prefix(library)
                    .is_some_and(|rest| rest.starts_with("::"))
        })
    };
    let mut out = filter.trim().to_owned();
    for library in QUIET_LIBRARIES
        .into_iter()
        .filter(|library| !named(library))
    {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(library);
        out.push_str("=error");
    }
    out
}

/// The access log's target named on the command line: `-` is stdout, anything else a file.
pub(crate) fn access_log_target(flag: &std::path::Path) -> lb_core::config::AccessLogTarget {
    use lb_core::config::AccessLogTarget;
    match flag.as_os_str() == "-" {
        true => AccessLogTarget::Stdout,
        false => AccessLogTarget::File(flag.to_path_buf()),
    }
}

/// One line on what a configuration serves.
pub(crate) fn summary(config: &Config) -> String {
    if !config.pools.is_empty() {
        let pools: Vec<String> = (config.pool_list().iter())
            .map(|pool| {
                let algorithm = pool.load_balancer.algorithm.as_str();
                format!(
                    "{} ({algorithm}, {} backend(s))",
                    pool.name,
                    pool.backends.len()
                )
            })
            .collect();
        let routes = config.routes.len().max(1);
        return format!(
            "listen {}, {routes} route(s) over {} pool(s): {}",
            config.server.listen,
            pools.len(),
            pools.join(", ")
        );
    }
    let backends: Vec<String> = config
        .backends
        .iter()
        .map(|backend| format!("{}={}", backend.name, backend.address))
        .collect();
    format!(
        "listen {}, {} over {} backend(s): {}",
        config.server.listen,
        config.load_balancer.algorithm.as_str(),
        config.backends.len(),
        backends.join(",")
    )
}

/// The async runtime: `server.workers: 1` is a single-threaded runtime, which costs less per
/// request when one core is all the balancer gets; 0 is one worker per core.
pub(crate) fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers == 1 {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 1 {
        builder.worker_threads(workers);
    }
    builder.enable_all().build()
}

/// Logs the start, and prints the one machine-readable line on stdout, so that scripts and
/// tests using port 0 learn the ports: `listening on ADDR[ metrics on ADDR][ admin on ADDR]`.
pub(crate) fn announce(daemon: &Daemon, summary: &str) {
    let metrics = daemon
        .metrics_addr
        .map_or_else(|| "off".to_owned(), |addr| addr.to_string());
    let admin = daemon
        .admin_addr
        .map_or_else(|| "off".to_owned(), |addr| addr.to_string());
    tracing::info!(listen = %daemon.listen_addr, %metrics, %admin, %summary, "lb started");
    let mut line = format!("listening on {}", daemon.listen_addr);
    if let Some(metrics) = daemon.metrics_addr {
        line.push_str(&format!(" metrics on {metrics}"));
    }
    if let Some(admin) = daemon.admin_addr {
        line.push_str(&format!(" admin on {admin}"));
    }
    println!("{line}");
}

/// Starts the demo fleet, and its configuration; on failure, the exit code and why.
#[cfg(feature = "demo")]
pub(crate) async fn demo_fleet() -> Result<(Config, super::demo::Fleet), (u8, String)> {
    super::demo::Fleet::start().await
}

/// This build has no demo.
#[cfg(not(feature = "demo"))]
pub(crate) async fn demo_fleet() -> Result<(Config, NoFleet), (u8, String)> {
    Err((
        super::EXIT_START,
        "this lb was built without the demo (cargo feature `demo`)".to_owned(),
    ))
}

/// The demo fleet of a build without one: never made.
#[cfg(not(feature = "demo"))]
pub(crate) enum NoFleet {}

#[cfg(not(feature = "demo"))]
impl NoFleet {
    pub(crate) fn show(&self, _: &Daemon, _: bool) -> tokio::task::JoinHandle<()> {
        match *self {}
    }

    pub(crate) async fn stop(self) {
        match self {}
    }
}

/// The signals the daemon acts on, registered before it announces itself: a signal sent as
/// soon as the "listening on" line is out must find its handler (else `SIGTERM` and `SIGHUP`
/// would end the process at once).
pub(crate) struct Signals {
    stop: [Option<tokio::signal::unix::Signal>; 2],
    hangup: Option<tokio::signal::unix::Signal>,
    user1: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Registers `SIGTERM`, `SIGINT`, `SIGHUP` and `SIGUSR1`.
    pub(crate) fn register() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let register = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::error!(%error, "cannot handle {name}");
                None
            }
        };
        Self {
            stop: [
                register(SignalKind::terminate(), "SIGTERM"),
                register(SignalKind::interrupt(), "SIGINT"),
            ],
            hangup: register(
                SignalKind::hangup(),
                "SIGHUP (reload through the admin API)",
            ),
            user1: register(
                SignalKind::user_defined1(),
                "SIGUSR1 (no access-log reopen)",
            ),
        }
    }

    /// Reloads the configuration on every `SIGHUP`, on a task of its own; the outcome is logged
    /// (and counted) by the reload itself. Reopens the access log's file on every `SIGUSR1`
    /// (logrotate). Resolves on `SIGTERM` or `SIGINT`.
    pub(crate) async fn serve(self, reloader: Reloader) {
        if let Some(mut user1) = self.user1 {
            let reloader = reloader.clone();
            tokio::spawn(async move {
                while user1.recv().await.is_some() {
                    tracing::info!("SIGUSR1: reopening the access log");
                    reloader.reopen_logs();
                }
            });
        }
        if let Some(mut hangups) = self.hangup {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the configuration");
                    let _ = reloader.reload().await;
                }
            });
        }
        match self.stop {
            [Some(mut term), Some(mut int)] => {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_driven_libraries_are_quiet_unless_the_filter_names_them() {
        let cases = [
            ("info", "info,h2=error,rustls=error"),
            ("", "h2=error,rustls=error"),
            ("debug", "debug,h2=error,rustls=error"),
            (
                "lb_proxy=debug,hyper=warn",
                "lb_proxy=debug,hyper=warn,h2=error,rustls=error",
            ),
            ("h2=debug", "h2=debug,rustls=error"),
            ("info,h2::proto=trace", "info,h2::proto=trace,rustls=error"),
            ("h2[conn]=debug", "h2[conn]=debug,rustls=error"),
            ("h2,rustls=warn", "h2,rustls=warn"),
            ("rustls::server=debug", "rustls::server=debug,h2=error"),
            ("h2c=debug", "h2c=debug,h2=error,rustls=error"),
            ("rustlsx=debug", "rustlsx=debug,h2=error,rustls=error"),
        ];
        for (given, used) in cases {
            assert_eq!(with_quiet_peers(given), used, "{given:?}");
            assert!(
                tracing_subscriber::EnvFilter::try_new(used).is_ok(),
                "{used:?}"
            );
        }
    }
}
