//! The `--demo` fleet: three in-process test backends (the third toggles its health every few
//! seconds so health checks and breakers can be watched at work) and a configuration that
//! balances over them.

use std::net::SocketAddr;

use lb_core::config::{Config, ConfigErrors, Format};
use test_backend::{BackendOptions, RunningBackend};

/// How often the demo's third backend flips its health.
pub(crate) const TOGGLE_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// Starts the three demo backends on loopback ports chosen by the OS.
pub(crate) async fn start_backends() -> std::io::Result<Vec<RunningBackend>> {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut backends = Vec::with_capacity(3);
    for (name, toggle) in [
        ("demo-1", None),
        ("demo-2", None),
        ("demo-3", Some(TOGGLE_EVERY)),
    ] {
        let options = BackendOptions {
            name: name.to_owned(),
            toggle_health: toggle,
            ..BackendOptions::default()
        };
        backends.push(test_backend::bind_and_spawn(loopback, options).await?);
    }
    Ok(backends)
}

/// The demo configuration over `backends`: round robin, fast health checks, breakers and
/// retries on, the proxy on 127.0.0.1:8080 (HTTP/1.1, and HTTP/2 with prior knowledge, so that
/// `curl --http2-prior-knowledge` works as the README says), metrics on 127.0.0.1:9090 and the
/// admin API on 127.0.0.1:9091 (loopback, so no token).
pub(crate) fn config(backends: &[RunningBackend]) -> Result<Config, ConfigErrors> {
    let mut yaml = String::from(
        "server:\n  listen: 127.0.0.1:8080\n  h2c: true\n  shutdown_grace: 5s\n\
         load_balancer:\n  algorithm: round_robin\n\
         health_check:\n  interval: 1s\n  timeout: 500ms\n  unhealthy_threshold: 2\n  healthy_threshold: 2\n\
         circuit_breaker:\n  failure_threshold: 5\n  open_duration: 10s\n\
         metrics:\n  listen: 127.0.0.1:9090\n\
         admin:\n  listen: 127.0.0.1:9091\n\
         backends:\n",
    );
    for backend in backends {
        yaml.push_str(&format!(
            "  - name: {}\n    address: {}\n",
            backend.name(),
            backend.addr()
        ));
    }
    lb_core::config::parse(&yaml, Format::Yaml, "<demo>")
}

/// What to try, printed once the demo is up.
pub(crate) fn banner(
    listen: SocketAddr,
    metrics: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    backends: &[RunningBackend],
) -> String {
    let mut text = String::new();
    text.push_str("\nlb demo is running.\n\n  backends:\n");
    for backend in backends {
        text.push_str(&format!(
            "    {} on http://{}\n",
            backend.name(),
            backend.addr()
        ));
    }
    text.push_str(&format!(
        "    ({} flips its /health every {}s: watch it leave and rejoin the rotation)\n\n",
        backends.last().map_or("demo-3", |backend| backend.name()),
        TOGGLE_EVERY.as_secs()
    ));
    text.push_str(&format!(
        "  The demo sends itself one request every {}ms and prints where they went every {}s.\n\n",
        TRAFFIC_EVERY.as_millis(),
        REPORT_EVERY.as_secs()
    ));
    text.push_str("  try:\n");
    text.push_str(&format!(
        "    for i in $(seq 6); do curl -s http://{listen}/; done\n"
    ));
    text.push_str(&format!("    curl -s http://{listen}/echo\n"));
    text.push_str(&format!(
        "    curl -s --http2-prior-knowledge -o /dev/null -w '%{{http_code}} over HTTP/%{{http_version}}\\n' http://{listen}/\n"
    ));
    text.push_str(&format!(
        "    curl -s -o /dev/null -w '%{{http_code}}\\n' http://{listen}/status/503\n"
    ));
    if let Some(metrics) = metrics {
        text.push_str(&format!(
            "    curl -s http://{metrics}/metrics | grep ^lb_\n"
        ));
        text.push_str(&format!(
            "    cargo run --release -p lb-tui -- --metrics http://{metrics}/metrics\n"
        ));
    }
    if let (Some(admin), Some(first)) = (admin, backends.first()) {
        let name = first.name();
        text.push_str(&format!("    curl -s http://{admin}/backends\n"));
        text.push_str(&format!(
            "    cargo run --release -p lb-cli -- drain {name}       # and enable {name}, backends\n"
        ));
    }
    text.push_str("\n  Ctrl-C stops the demo.\n");
    text
}

/// How often the demo's own client sends a request.
pub(crate) const TRAFFIC_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
/// How often the demo prints where its requests went.
pub(crate) const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Sends the demo's own light traffic (`GET /` every [`TRAFFIC_EVERY`]) through the balancer and
/// prints, every [`REPORT_EVERY`], which backend answered how many: the rotation, and a backend
/// leaving and rejoining it, are visible without a second terminal.
pub(crate) fn drive_traffic(listen: SocketAddr, to_stderr: bool) -> tokio::task::JoinHandle<()> {
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    tokio::spawn(async move {
        let client: Client<_, Empty<bytes::Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let uri: http::Uri = match format!("http://{listen}/").parse() {
            Ok(uri) => uri,
            Err(_) => return,
        };
        let mut tally = Tally::default();
        let mut tick = tokio::time::interval(TRAFFIC_EVERY);
        let mut report = tokio::time::interval(REPORT_EVERY);
        report.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match client.get(uri.clone()).await {
                        Ok(response) => {
                            let backend = response
                                .headers()
                                .get("x-backend")
                                .and_then(|value| value.to_str().ok())
                                .unwrap_or("?")
                                .to_owned();
                            tally.record(&backend, response.status().as_u16());
                        }
                        Err(_) => tally.record("?", 0),
                    }
                }
                _ = report.tick() => {
                    match to_stderr {
                        true => eprintln!("{}", tally.line(REPORT_EVERY)),
                        false => println!("{}", tally.line(REPORT_EVERY)),
                    }
                    tally = Tally::default();
                }
            }
        }
    })
}

/// Where the demo's own requests went during one report window.
#[derive(Debug, Default)]
struct Tally {
    by_backend: std::collections::BTreeMap<String, u32>,
    failed: u32,
    total: u32,
}

impl Tally {
    fn record(&mut self, backend: &str, status: u16) {
        self.total += 1;
        if status == 200 {
            *self.by_backend.entry(backend.to_owned()).or_insert(0) += 1;
        } else {
            self.failed += 1;
        }
    }

    fn line(&self, window: std::time::Duration) -> String {
        let spread: Vec<String> = self
            .by_backend
            .iter()
            .map(|(backend, count)| format!("{backend} {count}"))
            .collect();
        let mut line = format!(
            "[demo traffic] last {}s: {} requests -> {}",
            window.as_secs(),
            self.total,
            if spread.is_empty() {
                "none answered".to_owned()
            } else {
                spread.join(", ")
            }
        );
        if self.failed > 0 {
            line.push_str(&format!(" ({} not 200)", self.failed));
        }
        line
    }
}

/// The running demo: its backends.
pub(crate) struct Fleet {
    backends: Vec<RunningBackend>,
}

impl Fleet {
    /// Starts the backends and returns the configuration over them; on failure, the exit
    /// code and why.
    pub(crate) async fn start() -> Result<(Config, Fleet), (u8, String)> {
        let backends = start_backends().await.map_err(|error| {
            (
                super::EXIT_START,
                format!("cannot start the demo backends: {error}"),
            )
        })?;
        let config = config(&backends).map_err(|errors| {
            (
                super::EXIT_CONFIG,
                format!("the demo configuration is invalid (a bug):\n{errors}"),
            )
        })?;
        Ok((config, Fleet { backends }))
    }

    /// Prints what to try, and starts the demo's own light traffic.
    /// `to_stderr`: stdout carries the access log, which the demo's text would interleave.
    pub(crate) fn show(
        &self,
        daemon: &lb_proxy::Daemon,
        to_stderr: bool,
    ) -> tokio::task::JoinHandle<()> {
        let banner = banner(
            daemon.listen_addr,
            daemon.metrics_addr,
            daemon.admin_addr,
            &self.backends,
        );
        match to_stderr {
            true => eprintln!("{banner}"),
            false => println!("{banner}"),
        }
        drive_traffic(daemon.listen_addr, to_stderr)
    }

    /// Stops the backends.
    pub(crate) async fn stop(self) {
        for backend in self.backends {
            backend.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_line_names_each_backend_and_failures() {
        let mut tally = Tally::default();
        for backend in ["demo-2", "demo-1", "demo-2"] {
            tally.record(backend, 200);
        }
        tally.record("demo-3", 503);
        assert_eq!(
            tally.line(REPORT_EVERY),
            "[demo traffic] last 5s: 4 requests -> demo-1 1, demo-2 2 (1 not 200)"
        );
        assert_eq!(
            Tally::default().line(REPORT_EVERY),
            "[demo traffic] last 5s: 0 requests -> none answered"
        );
    }
}
