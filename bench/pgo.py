#!/usr/bin/env python3
"""Builds a profile-guided (PGO) `lb` into target/pgo/lb.

Three steps, each bounded in time:
1. build `lb` instrumented (`-Cprofile-generate`) into target/pgo-generate;
2. train it behind the benchmark's backend (nginx answering a fixed 200 on three ports) with
   the benchmark's load: keep-alive, a new connection per request, the fixed rate, and small
   POST bodies (so hyper's body path is not laid out as cold code), then bench/h2.py's HTTP/2
   load (h2c and h2 over TLS, when `h2load` is installed), stopping each instance gracefully so
   that it writes its profile;
3. merge the profile (`llvm-profdata` of the same toolchain) and build `lb` with
   `-Cprofile-use` into target/pgo-use; the binary is copied to target/pgo/lb.

The plain `cargo build --release` stays the default build; this is the build an operator can
make for production. PGO changes where code is laid out and what is inlined, never what it
does: the test suite passes on either. Needs what `run.py` needs (wrk, nginx) and the
`llvm-tools` rustup component, which it adds when missing.

Usage: bench/pgo.py [--seconds SECS]   (seconds per training scenario, default 6)
"""
import argparse
import glob
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the shared helpers of the side-by-side benchmark)
import h2  # noqa: E402  (the HTTP/2 load and lb's configuration for it)
import tls  # noqa: E402  (the certificate)

PROFILE_DIR = os.path.join(run.ROOT, "target", "pgo-profiles")
OUT = os.path.join(run.ROOT, "target", "pgo", "lb")

POST_LUA = 'wrk.method = "POST"\nwrk.body = "a small request body"\nwrk.headers["Content-Type"] = "text/plain"\n'


def llvm_profdata():
    """The `llvm-profdata` of the toolchain that builds lb: another LLVM cannot read its profiles."""
    sysroot = run.sh("rustc --print sysroot", cwd=run.ROOT).strip()
    host = next(line.split(": ")[1] for line in run.sh("rustc -vV", cwd=run.ROOT).splitlines() if line.startswith("host: "))
    tool = os.path.join(sysroot, "lib", "rustlib", host, "bin", "llvm-profdata")
    if not os.path.exists(tool):
        print("adding the llvm-tools rustup component (for llvm-profdata)", flush=True)
        subprocess.run(["rustup", "component", "add", "llvm-tools"], check=True, cwd=run.ROOT)
    return tool


def cargo_build(rustflags, target_dir):
    env = dict(os.environ, RUSTFLAGS=rustflags)
    subprocess.run(["cargo", "build", "--release", "-p", "lb-proxy", "--bin", "lb", "--target-dir", target_dir],
                   check=True, cwd=run.ROOT, env=env)
    return os.path.join(target_dir, "release", "lb")


def train(binary, seconds):
    tmp = tempfile.mkdtemp(prefix="lb-pgo-")
    backend = subprocess.Popen(["taskset", "-c", run.LOAD_CORE, "nginx", "-c", run.backend_config(tmp)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run.LB_BUILDS["lb"] = binary
    proxy = None
    try:
        for port in run.BACKEND_PORTS:
            run.wait_port(port)
        proxy = run.start_proxy("lb", tmp)
        for scenario in ("keepalive", "close", "rate"):
            requests, rps, _, _, errors = run.run_wrk("lb", scenario, seconds, tmp)
            print(f"trained {scenario}: {requests} requests ({rps:.0f}/s), {errors} errors", flush=True)
        post = run.write(os.path.join(tmp, "post.lua"), POST_LUA)
        subprocess.run(["taskset", "-c", run.LOAD_CORE, "wrk", "-t1", "-c8", "-d", f"{max(seconds // 3, 1)}s", "-s", post,
                        f"http://127.0.0.1:{run.PROXY_PORT['lb']}/"], check=True, capture_output=True)
        print("trained post", flush=True)
        # A graceful stop: the instrumented binary writes its profile as it exits.
        run.stop_proxy(proxy)
        if proxy.returncode != 0:
            sys.exit(f"the instrumented lb exited with {proxy.returncode}: no profile")
        proxy = None
        train_http2(binary, seconds, tmp)
    finally:
        if proxy is not None:
            run.stop_proxy(proxy)
        backend.send_signal(signal.SIGTERM)
        backend.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def train_http2(binary, seconds, tmp):
    """bench/h2.py's load on the instrumented lb, one instance per scenario (profiles merge)."""
    if not shutil.which("h2load"):
        print("h2load missing (Debian nghttp2-client): HTTP/2 not trained", flush=True)
        return
    cert, key, _ = tls.make_certificate(tmp)
    for scenario, config in h2.lb_config(tmp, cert, key).items():
        proxy = subprocess.Popen(["taskset", "-c", run.PROXY_CORE, binary, config], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
        try:
            run.wait_port(h2.PORT[("lb", scenario)])
            requests, rps, _, _, failed = h2.h2load("lb", scenario, seconds, tmp)
            print(f"trained {scenario}: {requests} requests ({rps:.0f}/s), {failed} failed", flush=True)
        finally:
            run.stop_proxy(proxy)
        if proxy.returncode != 0:
            sys.exit(f"the instrumented lb ({scenario}) exited with {proxy.returncode}: no profile")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=6, help="seconds per training scenario")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    run.ensure_tools(build_lb=False)
    profdata = llvm_profdata()
    shutil.rmtree(PROFILE_DIR, ignore_errors=True)
    os.makedirs(PROFILE_DIR)
    print("1/3 building the instrumented lb", flush=True)
    instrumented = cargo_build(f"-Cprofile-generate={PROFILE_DIR}", os.path.join(run.ROOT, "target", "pgo-generate"))
    print("2/3 training it", flush=True)
    train(instrumented, args.seconds)
    raw = glob.glob(os.path.join(PROFILE_DIR, "*.profraw"))
    if not raw:
        sys.exit(f"no profile written to {PROFILE_DIR}")
    merged = os.path.join(PROFILE_DIR, "lb.profdata")
    subprocess.run([profdata, "merge", "-o", merged] + raw, check=True)
    print("3/3 building lb with the profile", flush=True)
    optimised = cargo_build(f"-Cprofile-use={merged}", os.path.join(run.ROOT, "target", "pgo-use"))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    shutil.copy2(optimised, OUT)
    print(f"built {os.path.relpath(OUT, run.ROOT)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
