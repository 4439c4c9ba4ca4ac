//! The `lb` binary as a child process: started on port 0, its ports read from its first line,
//! stopped by the PID the test started.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually;

/// A child process killed, and waited for, when dropped: the servers tests start (lb, redis,
/// dnsmasq, etcd) never outlive them.
#[derive(Debug)]
pub struct OwnedChild(pub Child);

impl std::ops::Deref for OwnedChild {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for OwnedChild {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for OwnedChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn lb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lb"))
}

pub fn write_config(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lb-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts the binary and reads the "listening on ADDR metrics on ADDR" line.
pub fn spawn(config: &std::path::Path) -> (Child, SocketAddr, SocketAddr) {
    let (child, words) = launch(config, &[], None);
    (child, words[2].parse().unwrap(), words[5].parse().unwrap())
}

/// Starts `lb CONFIG ARGS...` and returns it with the words of its first line. Its log (at
/// `warn`, or at `info` into `log` when given) goes to the test's stderr or to that file.
fn launch(
    config: &std::path::Path,
    args: &[&str],
    log: Option<&std::path::Path>,
) -> (Child, Vec<String>) {
    let (level, stderr) = match log {
        None => ("warn", Stdio::inherit()),
        Some(path) => ("info", Stdio::from(std::fs::File::create(path).unwrap())),
    };
    let mut child = lb()
        .arg(config)
        .args(args)
        .env("RUST_LOG", level)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    assert_eq!(
        words.first().map(String::as_str),
        Some("listening"),
        "unexpected first line: {line}"
    );
    (child, words)
}

/// Waits (bounded) for `child` to exit and returns its exit code; `None` if it did not exit.
pub async fn exit_code(child: &mut Child) -> Option<i32> {
    let exited = eventually(Duration::from_secs(10), || {
        let done = child.try_wait().ok().flatten().is_some();
        async move { done }
    })
    .await;
    if !exited {
        let _ = child.kill();
        return None;
    }
    child.wait().ok().and_then(|status| status.code())
}

/// A running `lb` child and the addresses its first line named.
#[derive(Debug)]
pub struct Lb {
    /// The process.
    pub child: OwnedChild,
    /// The proxy's address.
    pub listen: SocketAddr,
    /// The metrics endpoint, when on.
    pub metrics: Option<SocketAddr>,
    /// The admin API, when on.
    pub admin: Option<SocketAddr>,
}

impl Lb {
    /// Starts `lb CONFIG ARGS...` and reads its addresses.
    pub fn start(config: &std::path::Path, args: &[&str]) -> Lb {
        Lb::launched(launch(config, args, None))
    }

    /// `lb CONFIG`, its log at `info` written to `log` ([`LoggedLb`]).
    pub async fn start_logged(config: &std::path::Path, log: &std::path::Path) -> LoggedLb {
        let (config, path) = (config.to_path_buf(), log.to_path_buf());
        let lb =
            tokio::task::spawn_blocking(move || Lb::launched(launch(&config, &[], Some(&path))))
                .await
                .unwrap();
        LoggedLb {
            lb,
            log: log.to_path_buf(),
        }
    }

    fn launched((child, words): (Child, Vec<String>)) -> Lb {
        let after = |key: &str| {
            let at = words.iter().position(|word| word == key)?;
            words.get(at + 2)?.parse().ok()
        };
        Lb {
            child: OwnedChild(child),
            listen: words[2].parse().unwrap(),
            metrics: after("metrics"),
            admin: after("admin"),
        }
    }

    /// [`Lb::start`] off the async workers (its start blocks on reading the first line).
    pub async fn start_async(config: &std::path::Path, args: &[&str]) -> Lb {
        let config = config.to_path_buf();
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Lb::start(&config, &args)
        })
        .await
        .unwrap()
    }

    /// Sends `signal` (`HUP`, `TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// A running `lb` whose log goes to a file.
#[derive(Debug)]
pub struct LoggedLb {
    /// The process and its addresses.
    pub lb: Lb,
    log: std::path::PathBuf,
}

impl LoggedLb {
    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the log comes to hold `text` within 20 s.
    pub async fn logs(&self, text: &str) -> bool {
        eventually(Duration::from_secs(20), || async {
            self.log().contains(text)
        })
        .await
    }
}

/// The installed program `name` (on `PATH` or in the usual system directories), or `None`: the
/// test that needs it then says so and passes, unless the environment variable `require` is `1`
/// (CI sets it) and makes its absence a failure. `package` is the Debian package that brings
/// it, `what` what goes untested without it.
pub fn tool(name: &str, require: &str, package: &str, what: &str) -> Option<std::path::PathBuf> {
    let system = ["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/bin"].map(std::path::PathBuf::from);
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain(system)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        assert!(
            std::env::var(require).as_deref() != Ok("1"),
            "{require}=1 but {name} is not installed (apt-get install {package})"
        );
        eprintln!("SKIPPED: {name} is not installed; {what} is not tested");
    }
    found
}
