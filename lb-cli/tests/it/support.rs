//! Helpers shared by the modules: the binary run from the repository root, a test backend,
//! and one plain `GET` through the balancer.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use test_backend::{BackendOptions, RunningBackend};

/// The repository root: `lb-cli` runs from there, so the paths in its output are the docs'.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_owned()
}

/// Runs the real `lb-cli` binary with `args` from the repository root.
pub fn lb_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lb-cli"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("lb-cli runs")
}

/// A test backend on 127.0.0.1 port 0.
pub async fn backend(options: BackendOptions) -> RunningBackend {
    test_backend::bind_and_spawn(([127, 0, 0, 1], 0).into(), options)
        .await
        .expect("backend starts")
}

/// One `GET path` with `Connection: close` through the balancer at `proxy`: the status, or 0
/// when the exchange itself failed.
pub async fn get(proxy: SocketAddr, path: &'static str) -> u16 {
    tokio::task::spawn_blocking(move || {
        let exchange = || -> std::io::Result<u16> {
            let mut stream = std::net::TcpStream::connect(proxy)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            let request = format!("GET {path} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes())?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response)?;
            let head = String::from_utf8_lossy(&response);
            Ok(head
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or(0))
        };
        exchange().unwrap_or(0)
    })
    .await
    .unwrap_or(0)
}
