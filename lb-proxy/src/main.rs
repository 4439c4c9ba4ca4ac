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

#[global_allocator]
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

fn main() -> ExitCode {
    allocator::configure();
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

/// The daemon's global allocator: mimalloc instead of glibc's malloc.
///
/// A connection allocates and frees its buffers, task and state once each; glibc spent about
/// 8,500 instructions per new connection on that (docs/performance.md, item 13). The `mimalloc`
/// crate sends every request through `mi_malloc_aligned`, whose fast path covers only blocks up
/// to 1 KiB, so hyper's 8 KiB buffers, the task and the boxed request future took the generic
/// aligned path (about 230 instructions each, 11 per new connection). Every mimalloc block is
/// word-aligned, so layouts that ask for no more go to plain `mi_malloc`. Only the binary sets
/// it: `lb-proxy` as a library leaves the allocator to its user.
mod allocator {
    use std::alloc::{GlobalAlloc, Layout};
    use std::ffi::c_void;

    use libmimalloc_sys as ffi;

    /// The alignment of every block mimalloc hands out (`MI_INTPTR_SIZE`).
    const WORD: usize = std::mem::size_of::<usize>();

    pub struct MiMalloc;

    /// `mi_option_purge_delay` in mimalloc's `mi_option_e` (the Rust bindings do not name it).
    const OPTION_PURGE_DELAY: ffi::mi_option_t = 15;
    /// How long freed pages wait before they go back to the OS, in milliseconds.
    ///
    /// mimalloc's default is 1 s, and it purges only when it is next called: after a burst of
    /// connections that then fell idle, nothing calls it, and the burst's pages stay resident
    /// (5.7–9.9 KB per idle connection in `bench/run.py`'s idle test against 4.7–5.8 KB with
    /// 100 ms). Under load 100 ms costs about 0.03 `madvise` calls per new connection.
    const PURGE_DELAY_MS: std::ffi::c_long = 100;

    /// Sets mimalloc's options; call first thing in `main`.
    pub fn configure() {
        // SAFETY: a plain C call with a valid option and value.
        unsafe { ffi::mi_option_set(OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
    }

    // SAFETY: mimalloc returns blocks of at least the requested size, aligned to `WORD` always
    // and to `layout.align()` through the `_aligned` calls; null on failure, as `GlobalAlloc`
    // requires. `mi_free` and `mi_realloc*` accept any pointer mimalloc returned.
    unsafe impl GlobalAlloc for MiMalloc {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: plain C allocation calls; see the impl's comment.
            unsafe {
                if layout.align() <= WORD {
                    ffi::mi_malloc(layout.size()).cast()
                } else {
                    ffi::mi_malloc_aligned(layout.size(), layout.align()).cast()
                }
            }
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as `alloc`.
            unsafe {
                if layout.align() <= WORD {
                    ffi::mi_zalloc(layout.size()).cast()
                } else {
                    ffi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
                }
            }
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
            // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract).
            unsafe { ffi::mi_free(ptr.cast::<c_void>()) }
        }

        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: `ptr` came from this allocator with `layout` (GlobalAlloc's contract).
            unsafe {
                if layout.align() <= WORD {
                    ffi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
                } else {
                    ffi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn purge_delay_is_the_option_it_is_named_after() {
            // mimalloc's default purge delay is 1,000 ms; no neighbouring option defaults to it.
            // SAFETY: plain C calls with a valid option.
            unsafe {
                assert_eq!(ffi::mi_option_get(OPTION_PURGE_DELAY), 1000);
                configure();
                assert_eq!(ffi::mi_option_get(OPTION_PURGE_DELAY), PURGE_DELAY_MS);
            }
        }

        #[test]
        fn blocks_honour_size_and_alignment_through_realloc() {
            let allocator = MiMalloc;
            for (size, align) in [
                (1, 1),
                (24, 8),
                (24, 16),
                (4096, 8),
                (9000, 128),
                (40, 4096),
            ] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: layouts of non-zero size; each block is freed with its own layout.
                unsafe {
                    let block = allocator.alloc_zeroed(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "{size} bytes aligned to {align}");
                    assert!(
                        std::slice::from_raw_parts(block, size)
                            .iter()
                            .all(|&byte| byte == 0)
                    );
                    block.write_bytes(0xab, size);
                    let grown = allocator.realloc(block, layout, size * 3);
                    assert_eq!(
                        grown as usize % align,
                        0,
                        "grown {size} bytes aligned to {align}"
                    );
                    assert!(
                        std::slice::from_raw_parts(grown, size)
                            .iter()
                            .all(|&byte| byte == 0xab)
                    );
                    allocator.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                }
            }
        }
    }
}
