//! The `--demo` fleet: three in-process test backends (the third toggles its health every few
//! seconds so health checks and breakers can be watched at work) and a configuration that
//! balances over them.

use std::net::SocketAddr;

use lb_core::config::{Config, ConfigErrors, Format};
use test_backend::{BackendOptions, RunningBackend};

/// How often the demo's third backend flips its health.
pub const TOGGLE_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// Starts the three demo backends on loopback ports chosen by the OS.
pub async fn start_backends() -> std::io::Result<Vec<RunningBackend>> {
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
/// retries on, the proxy on 127.0.0.1:8080 and metrics on 127.0.0.1:9090.
pub fn config(backends: &[RunningBackend]) -> Result<Config, ConfigErrors> {
    let mut yaml = String::from(
        "server:\n  listen: 127.0.0.1:8080\n  shutdown_grace: 5s\n\
         load_balancer:\n  algorithm: round_robin\n\
         health_check:\n  interval: 1s\n  timeout: 500ms\n  unhealthy_threshold: 2\n  healthy_threshold: 2\n\
         circuit_breaker:\n  failure_threshold: 5\n  open_duration: 10s\n\
         metrics:\n  listen: 127.0.0.1:9090\n\
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
pub fn banner(
    listen: SocketAddr,
    metrics: Option<SocketAddr>,
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
    text.push_str("  try:\n");
    text.push_str(&format!(
        "    for i in $(seq 6); do curl -s http://{listen}/; done\n"
    ));
    text.push_str(&format!("    curl -s http://{listen}/echo\n"));
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
    text.push_str("\n  Ctrl-C stops the demo.\n");
    text
}
