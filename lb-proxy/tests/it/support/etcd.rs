//! A real `etcd` for the discovery tests: loopback ports, a temporary data directory, killed by
//! its PID when dropped; plain HTTP or TLS (with client certificates required), and etcd's JSON
//! gateway (`/v3/...` on the client port) to write keys and manage users, so that the test and
//! `lb` do not share a gRPC mistake.
//!
//! Needs `etcd` (Debian's `etcd-server`); without it the tests say so and pass, unless
//! `LB_REQUIRE_ETCD=1` (CI sets it) makes its absence a failure.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;

use super::process::OwnedChild;
use super::tls::TestCa;

pub fn etcd_binary() -> Option<PathBuf> {
    super::process::tool("etcd", "LB_REQUIRE_ETCD", "etcd-server", "etcd discovery")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// TLS on etcd's client port: its certificate for `localhost` and 127.0.0.1, client
/// certificates from `ca` required (`--client-cert-auth`), and the gateway client's settings.
#[derive(Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// Trusts `ca`, presents a client certificate it signed (CN `root`), no ALPN.
    pub client: Arc<ClientConfig>,
}

impl ServerTls {
    /// Writes etcd's certificate, its key and `ca`'s certificate into `dir`.
    pub fn new(ca: &TestCa, dir: &Path) -> ServerTls {
        let server = ca.leaf(&["localhost", "127.0.0.1"]);
        let client = ca.leaf(&["root"]);
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in lb_tls::parse_chain(ca.pem.as_bytes()).unwrap() {
            roots.add(cert).unwrap();
        }
        let chain = lb_tls::parse_chain(client.cert.as_bytes()).unwrap();
        let key = lb_tls::parse_key(client.key.as_bytes()).unwrap();
        let client = ClientConfig::builder_with_provider(lb_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        ServerTls {
            cert: write("etcd.pem", &server.cert),
            key: write("etcd.key", &server.key),
            ca: write("etcd-ca.pem", &ca.pem),
            client: Arc::new(client),
        }
    }
}

/// How an etcd is started and reached.
#[derive(Clone, Default)]
pub struct Options {
    pub tls: Option<ServerTls>,
    /// More flags (`--auth-token-ttl 1`).
    pub args: Vec<String>,
    /// The root user's name and password, once authentication is on.
    pub root: Option<(String, String)>,
}

/// An etcd on two loopback ports, its data in a temporary directory; killed (by its PID) when
/// dropped.
pub struct Etcd {
    pub child: OwnedChild,
    pub client_port: u16,
    pub peer_port: u16,
    pub dir: PathBuf,
    pub options: Options,
}

impl Etcd {
    /// Starts etcd on the given ports (0: free ones) over `dir/data`; free ports that another
    /// test took meanwhile are replaced by others.
    pub async fn start(binary: &Path, dir: &Path, client_port: u16, peer_port: u16) -> Etcd {
        Self::start_with(binary, dir, client_port, peer_port, Options::default()).await
    }

    /// [`Etcd::start`] with `options`.
    pub async fn start_with(
        binary: &Path,
        dir: &Path,
        client_port: u16,
        peer_port: u16,
        options: Options,
    ) -> Etcd {
        for _ in 0..5 {
            let pick = |port: u16| if port == 0 { free_port() } else { port };
            let (client, peer) = (pick(client_port), pick(peer_port));
            let started = Self::try_start(binary, dir, client, peer, options.clone()).await;
            if let Some(etcd) = started {
                return etcd;
            }
        }
        panic!("etcd did not start");
    }

    async fn try_start(
        binary: &Path,
        dir: &Path,
        client_port: u16,
        peer_port: u16,
        options: Options,
    ) -> Option<Etcd> {
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let client = format!("{scheme}://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut command = Command::new(binary);
        command
            .args(["--name", "lbtest", "--data-dir"])
            .arg(dir.join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("lbtest={peer}")])
            .args(["--log-level", "error"])
            .args(&options.args);
        if let Some(tls) = &options.tls {
            command
                .arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        let mut etcd = Etcd {
            child: OwnedChild(child),
            client_port,
            peer_port,
            dir: dir.to_path_buf(),
            options,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            if etcd.client().put("/probe", "x").await.is_ok() {
                return Some(etcd);
            }
            if etcd.child.try_wait().ok().flatten().is_some() {
                // It could not bind a port: the caller tries others.
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// A gateway client, as root once authentication is on.
    pub fn client(&self) -> Kv {
        Kv {
            addr: SocketAddr::from(([127, 0, 0, 1], self.client_port)),
            tls: self.options.tls.as_ref().map(|tls| tls.client.clone()),
            root: self.options.root.clone(),
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Stops this etcd (by its PID) and starts it again on the same ports and data.
    pub async fn restart(self, binary: &Path) -> Etcd {
        let (dir, client_port, peer_port) = (self.dir.clone(), self.client_port, self.peer_port);
        let options = self.options.clone();
        drop(self);
        Etcd::start_with(binary, &dir, client_port, peer_port, options).await
    }
}

/// A client of etcd's JSON gateway: keys and values go base64-encoded; one connection per call.
pub struct Kv {
    addr: SocketAddr,
    tls: Option<Arc<ClientConfig>>,
    root: Option<(String, String)>,
}

impl Kv {
    /// Puts `key`; the store's revision after it.
    pub async fn put(&self, key: impl AsRef<str>, value: impl AsRef<str>) -> Result<i64, String> {
        let body = serde_json::json!({
            "key": BASE64.encode(key.as_ref()),
            "value": BASE64.encode(value.as_ref()),
        });
        let answer = self.call("kv/put", body).await?;
        let revision = answer["header"]["revision"].as_str().unwrap_or("0");
        revision
            .parse()
            .map_err(|_| format!("revision {revision:?}"))
    }

    pub async fn delete(&self, key: impl AsRef<str>) -> Result<(), String> {
        let body = serde_json::json!({"key": BASE64.encode(key.as_ref())});
        self.call("kv/deleterange", body).await.map(drop)
    }

    /// Compacts the history up to `revision`, physically (the watch cannot resume below it).
    pub async fn compact(&self, revision: i64) -> Result<(), String> {
        let body = serde_json::json!({"revision": revision.to_string(), "physical": true});
        self.call("kv/compaction", body).await.map(drop)
    }

    /// Turns authentication on: a `root` user, a role reading `prefix`, and `user` with it.
    pub async fn enable_auth(
        &self,
        root_password: &str,
        user: &str,
        password: &str,
        prefix: &str,
    ) -> Result<(), String> {
        let end = prefix_end(prefix.as_bytes());
        let calls = [
            (
                "auth/user/add",
                serde_json::json!({"name": "root", "password": root_password}),
            ),
            (
                "auth/user/grant",
                serde_json::json!({"user": "root", "role": "root"}),
            ),
            ("auth/role/add", serde_json::json!({"name": "lb-read"})),
            (
                "auth/role/grant",
                serde_json::json!({"name": "lb-read", "perm": {
                    "permType": "READ",
                    "key": BASE64.encode(prefix),
                    "range_end": BASE64.encode(end),
                }}),
            ),
            (
                "auth/user/add",
                serde_json::json!({"name": user, "password": password}),
            ),
            (
                "auth/user/grant",
                serde_json::json!({"user": user, "role": "lb-read"}),
            ),
            ("auth/enable", serde_json::json!({})),
        ];
        for (method, body) in calls {
            self.call(method, body).await?;
        }
        Ok(())
    }

    /// Changes `user`'s password: etcd forgets the user's tokens.
    pub async fn change_password(&self, user: &str, password: &str) -> Result<(), String> {
        let body = serde_json::json!({"name": user, "password": password});
        self.call("auth/user/changepw", body).await.map(drop)
    }

    async fn call(&self, method: &str, body: Value) -> Result<Value, String> {
        let mut headers = Vec::new();
        if let Some((name, password)) = &self.root {
            let body = serde_json::json!({"name": name, "password": password});
            let answer = self.post("auth/authenticate", body, &[]).await?;
            let token = answer["token"].as_str().unwrap_or_default().to_owned();
            headers.push(("authorization", token));
        }
        self.post(method, body, &headers).await
    }

    async fn post(
        &self,
        method: &str,
        body: Value,
        headers: &[(&str, String)],
    ) -> Result<Value, String> {
        let mut request = Request::post(format!("/v3/{method}"))
            .header("host", self.addr.to_string())
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let exchange = async {
            let tcp = TcpStream::connect(self.addr)
                .await
                .map_err(|e| e.to_string())?;
            match &self.tls {
                Some(config) => {
                    let name = ServerName::try_from("localhost").unwrap();
                    let tls = tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|e| e.to_string())?;
                    send(TokioIo::new(tls), request).await
                }
                None => send(TokioIo::new(tcp), request).await,
            }
        };
        let (status, bytes) = tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .map_err(|_| "no answer".to_owned())??;
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
        }
        serde_json::from_slice(&bytes).map_err(|error| error.to_string())
    }
}

async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<(http::StatusCode, Bytes), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = answer.status();
    let bytes = answer
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, bytes.to_bytes()))
}

/// etcd's `WithPrefix` range end (as the source computes it).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&byte| byte < 0xff) {
        Some(at) => {
            let mut end = prefix[..=at].to_vec();
            end[at] += 1;
            end
        }
        None => vec![0],
    }
}
