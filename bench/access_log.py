#!/usr/bin/env python3
"""p50/p99 latency of `lb` with the access log off and on, in alternating rounds on one binary.

The same nginx backend as `run.py` (on ports of its own, so that it can run beside another
benchmark), `lb` with `workers: 1` on core 0, `wrk --latency` on core 1. Each round runs the log
off, then on (a JSON line per request to a file in a temporary directory), so that drift of a
shared machine falls on both alike; the medians over the rounds are reported, with every round.

Usage: bench/access_log.py [--lb PATH] [--rounds N] [--seconds S]
                           [--scenario rate|keepalive] [--target file|syslog]
Wall-clock figures on a shared machine move by 10-25 %: compare only within one run.
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

BACKENDS = [18301, 18302, 18303]
PROXY = 18380
METRICS = 18390


def backend_config(tmp):
    servers = "\n".join(
        f"  server {{ listen 127.0.0.1:{p} reuseport backlog=4096; access_log off; keepalive_requests 1000000;"
        f" location / {{ return 200 'ok'; }} }}" for p in BACKENDS)
    return run.write(os.path.join(tmp, "backend.conf"), f"""
daemon off; master_process off; worker_processes 1; error_log {tmp}/backend-error.log crit; pid {tmp}/backend.pid;
events {{ worker_connections 20000; }}
http {{ access_log off; keepalive_timeout 65; {servers} }}
""")


def lb_config(tmp, log):
    backends = "\n".join(f"  - address: 127.0.0.1:{p}" for p in BACKENDS)
    return run.write(os.path.join(tmp, f"lb-{'on' if log else 'off'}.yaml"), f"""
server:
  listen: 127.0.0.1:{PROXY}
  workers: 1
  max_client_connections: 20000
metrics:
  listen: 127.0.0.1:{METRICS}
load_balancer:
  algorithm: round_robin
upstream:
  pool_max_idle_per_backend: 256
{log}
backends:
{backends}
""")


def scrape(name):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{METRICS}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def one(args, tmp, log):
    config = lb_config(tmp, log)
    lb = subprocess.Popen(["taskset", "-c", run.PROXY_CORE, args.lb, config],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
    try:
        run.wait_port(PROXY, timeout=30)
        run.run_wrk("lb", args.scenario, 2, tmp, port=PROXY)  # warm up
        requests, rps, p50, p99, errors = run.run_wrk("lb", args.scenario, args.seconds, tmp, port=PROXY)
        dropped = scrape("lb_access_log_dropped_total")
        return dict(requests=requests, rps=rps, p50=p50, p99=p99, errors=errors, dropped=dropped)
    finally:
        lb.send_signal(signal.SIGTERM)
        lb.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lb", default=run.LB)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--scenario", choices=["rate", "keepalive"], default="rate")
    parser.add_argument("--target", choices=["file", "syslog"], default="file")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"access_log.py: {tool} is missing (Debian: wrk, nginx)")
    tmp = tempfile.mkdtemp(prefix="lb-access-log-bench-")
    backend = subprocess.Popen(["taskset", "-c", run.LOAD_CORE, "nginx", "-c", backend_config(tmp)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if args.target == "file":
        on = f"access_log:\n  target: file\n  path: {tmp}/access.log\n"
    else:
        import socket
        sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sink.bind(f"{tmp}/log.sock")  # never read: a stalled syslog daemon
        on = f"access_log:\n  target: syslog\n  syslog: {{socket: {tmp}/log.sock}}\n"
    results = {"off": [], "on": []}
    try:
        for port in BACKENDS:
            run.wait_port(port)
        for round_ in range(args.rounds):
            for name, log in (("off", ""), ("on", on)):
                result = one(args, tmp, log)
                results[name].append(result)
                print(f"round {round_ + 1} log {name:3}: {result['rps']:9.0f} req/s  p50 {result['p50']:.3f} ms"
                      f"  p99 {result['p99']:.3f} ms  errors {result['errors']}  dropped {result['dropped']:.0f}",
                      flush=True)
                if name == "on" and args.target == "file":
                    os.remove(f"{tmp}/access.log")
    finally:
        backend.send_signal(signal.SIGTERM)
        backend.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    for name in ("off", "on"):
        rows = results[name]
        print(f"median log {name:3}: {run.med([r['rps'] for r in rows]):9.0f} req/s"
              f"  p50 {run.med([r['p50'] for r in rows]):.3f} ms  p99 {run.med([r['p99'] for r in rows]):.3f} ms"
              f"  (p99 range {min(r['p99'] for r in rows):.3f}-{max(r['p99'] for r in rows):.3f} ms)")


if __name__ == "__main__":
    main()
