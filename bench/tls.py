#!/usr/bin/env python3
"""HTTPS side by side: `lb`, HAProxy and nginx terminating TLS with the same ECDSA P-256
certificate, one worker each pinned to core 0, behind the same plain backend as bench/run.py
(nginx answering a fixed 200 on three ports), wrk over HTTPS on core 1.

Scenarios:
- `tls-keepalive`: `wrk -t1 -c64` over HTTPS, keep-alive: CPU µs per request with the record
  layer's encryption but no handshakes (after the first 64);
- `tls-handshake`: `wrk -t1 -c32 -H 'Connection: close'` over HTTPS: a new TCP connection and a
  full TLS 1.3 handshake per request. Session resumption is off on all three (no tickets, no
  session cache), so no client can resume: CPU µs per request is CPU µs per handshake.

All three accept TLS 1.3 only, with their default suites (AES-GCM first) and X25519 first; the
certificate is made here with openssl (`prime256v1`). As in run.py the proxies stay up for the
whole run and each round rotates their order; medians are reported with lb's ratio to the better
peer, paired round by round.

Usage: bench/tls.py [--rounds N] [--duration SECS] [--quick] [--lb BINARY] [--out FILE]
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the shared helpers of the side-by-side benchmark)

PORT = {"lb": 18280, "haproxy": 18281, "nginx": 18282}
LB_METRICS = 18290
SCENARIOS = ["tls-keepalive", "tls-handshake"]


def make_certificate(tmp):
    """An ECDSA P-256 certificate for 127.0.0.1 and localhost: (cert, key, cert+key) paths."""
    key, cert, both = (os.path.join(tmp, name) for name in ("key.pem", "cert.pem", "both.pem"))
    run.sh(f"openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out {key}")
    run.sh(f"openssl req -x509 -new -key {key} -sha256 -days 2 -subj /CN=localhost "
           f"-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -out {cert}")
    run.write(both, open(cert).read() + open(key).read())
    return cert, key, both


def lb_config(tmp, cert, key):
    backends = "\n".join(f"  - address: 127.0.0.1:{p}" for p in run.BACKEND_PORTS)
    return run.write(os.path.join(tmp, "lb-tls.yaml"), f"""
server:
  listen: 127.0.0.1:{PORT['lb']}
  workers: 1
  max_client_connections: 20000
  tls:
    certificates: [{{cert: {cert}, key: {key}}}]
    min_version: "1.3"
    session_tickets: false
    watch: false
metrics:
  listen: 127.0.0.1:{LB_METRICS}
upstream:
  pool_max_idle_per_backend: 256
backends:
{backends}
""")


def haproxy_config(tmp, both):
    frontend = (f"frontend fe\n  bind 127.0.0.1:{PORT['haproxy']} ssl crt {both} alpn http/1.1\n"
                "  default_backend be\n")
    return run.write(os.path.join(tmp, "haproxy-tls.cfg"), run.haproxy_text(frontend, tls=True))


def nginx_config(tmp, cert, key):
    servers = "\n".join(f"    server 127.0.0.1:{p};" for p in run.BACKEND_PORTS)
    return run.write(os.path.join(tmp, "nginx-tls.conf"), f"""
daemon off; master_process off; worker_processes 1; error_log {tmp}/nginx-tls-error.log crit; pid {tmp}/nginx-tls.pid;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  upstream be {{
{servers}
    keepalive 256;
  }}
  server {{
    listen 127.0.0.1:{PORT['nginx']} ssl backlog=4096;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    ssl_session_tickets off;
    ssl_session_cache off;
    keepalive_requests 1000000;
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""")


def start(name, tmp, lb, cert, key, both):
    env = None
    if name == "lb":
        cmd = [lb, lb_config(tmp, cert, key)]
        env = dict(os.environ, RUST_LOG="warn")
    elif name == "haproxy":
        cmd = ["haproxy", "-db", "-f", haproxy_config(tmp, both)]
    else:
        cmd = ["nginx", "-c", nginx_config(tmp, cert, key)]
    proc = subprocess.Popen(["taskset", "-c", run.PROXY_CORE] + cmd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    run.wait_port(PORT[name])
    return proc


def wrk(name, scenario, duration):
    args = ["taskset", "-c", run.LOAD_CORE, "wrk", "-t1", "--latency", "-d", f"{duration}s"]
    if scenario == "tls-keepalive":
        args += ["-c64"]
    else:
        args += ["-c32", "-H", "Connection: close"]
    out = subprocess.run(args + [f"https://127.0.0.1:{PORT[name]}/"], check=True, text=True,
                         capture_output=True).stdout
    return run.parse_wrk(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s: proves the script works")
    parser.add_argument("--lb", default=run.LB, help="the lb binary (default: target/release/lb)")
    parser.add_argument("--out", default=os.path.join(run.ROOT, "docs", "performance-tls-run.md"))
    parser.add_argument("--proxies", default="lb,haproxy,nginx")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 2
    if not shutil.which("openssl"):
        sys.exit("tls.py: openssl is missing (Debian: openssl)")
    run.ensure_tools(build_lb=args.lb == run.LB)
    proxies = args.proxies.split(",")
    tmp = tempfile.mkdtemp(prefix="lb-bench-tls-")
    cert, key, both = make_certificate(tmp)
    backend = subprocess.Popen(["taskset", "-c", run.LOAD_CORE, "nginx", "-c", run.backend_config(tmp)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {(p, s): [] for p in proxies for s in SCENARIOS}
    procs = {}
    try:
        for port in run.BACKEND_PORTS:
            run.wait_port(port)
        for name in proxies:
            procs[name] = start(name, tmp, args.lb, cert, key, both)
            wrk(name, "tls-keepalive", 1)  # warm the upstream pool
        for scenario in SCENARIOS:
            for round_index in range(args.rounds):
                order = proxies[round_index % len(proxies):] + proxies[:round_index % len(proxies)]
                for name in order:
                    proc = procs[name]
                    t0 = run.cpu_ticks(proc.pid)
                    requests, rps, p50, p99, errors = wrk(name, scenario, args.duration)
                    cpu_us = (run.cpu_ticks(proc.pid) - t0) / run.CLK_TCK * 1e6 / max(requests, 1)
                    results[(name, scenario)].append(dict(rps=rps, p50=p50, p99=p99, errors=errors, cpu=cpu_us))
                    print(f"round {round_index + 1} {name:8} {scenario:13} {rps:9.0f} req/s p50 {p50:6.2f} ms "
                          f"p99 {p99:6.2f} ms cpu {cpu_us:6.1f} us/req errors {errors}", flush=True)
    finally:
        for proc in procs.values():
            run.stop_proxy(proc)
        backend.send_signal(signal.SIGTERM)
        backend.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    report(args, proxies, results)


def report(args, proxies, results):
    run.report_rounds(args.out, [
        f"# TLS benchmark run: `bench/tls.py --rounds {args.rounds} --duration {args.duration}`",
        "",
        "One worker each, TLS 1.3 only, one ECDSA P-256 certificate, no resumption.",
    ], SCENARIOS, proxies, results, "errors", "errors")


if __name__ == "__main__":
    sys.exit(main())
