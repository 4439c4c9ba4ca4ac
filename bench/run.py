#!/usr/bin/env python3
"""Side-by-side benchmark of `lb`, HAProxy and nginx on one machine.

Each proxy runs ONE worker pinned to core 0; the shared backend (nginx answering a fixed 200 on
three ports) and the load generator (wrk) share core 1. All proxies stay up for the whole run;
each round of a scenario gives each proxy one slice, in an order that rotates from round to
round, and medians are reported, with lb's ratio to the better peer paired round by round. CPU per request is the proxy process's utime+stime from
/proc/PID/stat divided by the requests it served. Loopback only; every run is bounded in time.

With `--lb-pgo BINARY` (a profile-guided build from `bench/pgo.py`) that build runs as a fourth
proxy, `lb-pgo`, beside the plain one, and gets its own ratios.

Usage: bench/run.py [--rounds N] [--duration SECS] [--quick] [--lb-pgo BINARY] [--out FILE]
"""
import argparse
import asyncio
import datetime
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LB = os.path.join(ROOT, "target", "release", "lb")
# The lb builds under test, by proxy name: `main` adds `lb-pgo` when asked to.
LB_BUILDS = {"lb": LB}
BACKEND_PORTS = [18101, 18102, 18103]
PROXY_PORT = {"lb": 18180, "haproxy": 18181, "nginx": 18182, "lb-pgo": 18183}
LB_METRICS_PORT = 18190
LB_METRICS_PORTS = {"lb": LB_METRICS_PORT, "lb-pgo": 18193}
PROXY_CORE, LOAD_CORE = "0", "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
HAPROXY_MAXCONN = 9990


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, text=True, capture_output=True, **kw).stdout


def ensure_tools(build_lb=True):
    missing = [tool for tool in ("wrk", "haproxy", "nginx") if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}")]
    if missing:
        print(f"installing {' '.join(missing)} (Debian packages)", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run("apt-get update -qq", shell=True, check=True, env=env)
        subprocess.run(f"apt-get install -y -qq --no-install-recommends {' '.join(missing)}", shell=True, check=True, env=env)
    if build_lb:
        # Always: an existing target/release/lb may be another checkout's (cargo is a no-op when
        # it is this one's).
        print("building lb (cargo build --release -p lb-proxy)", flush=True)
        subprocess.run("cargo build --release -p lb-proxy", shell=True, check=True, cwd=ROOT)


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def backend_config(tmp, http2=False):
    """The backend nginx: a fixed 200 on BACKEND_PORTS; with `http2`, cleartext HTTP/2 with prior
    knowledge (h2c) instead of HTTP/1.1."""
    listen = " http2" if http2 else ""
    servers = "\n".join(
        f"  server {{ listen 127.0.0.1:{p}{listen} reuseport backlog=4096; access_log off; keepalive_requests 1000000;"
        f" location / {{ return 200 'ok'; }} }}" for p in BACKEND_PORTS)
    return write(os.path.join(tmp, "backend.conf"), f"""
daemon off; master_process off; worker_processes 1; error_log {tmp}/backend-error.log crit; pid {tmp}/backend.pid;
events {{ worker_connections 20000; }}
http {{ access_log off; keepalive_timeout 65; {servers} }}
""")


def lb_config(tmp, port=PROXY_PORT["lb"], metrics_port=LB_METRICS_PORT):
    backends = "\n".join(f"  - address: 127.0.0.1:{p}" for p in BACKEND_PORTS)
    return write(os.path.join(tmp, f"lb-{port}.yaml"), f"""
server:
  listen: 127.0.0.1:{port}
  workers: 1
  max_client_connections: 20000
metrics:
  listen: 127.0.0.1:{metrics_port}
load_balancer:
  algorithm: round_robin
upstream:
  pool_max_idle_per_backend: 256
backends:
{backends}
""")


def haproxy_text(frontends, tls=False):
    """HAProxy's configuration: one thread, `frontends` (their text) in front of the backend `be`
    over BACKEND_PORTS; with `tls`, TLS 1.3 only and no session cache or tickets, so that every
    handshake is a full one."""
    servers = "\n".join(f"  server b{i} 127.0.0.1:{p}" for i, p in enumerate(BACKEND_PORTS))
    tls_lines = "  tune.ssl.cachesize 0\n  ssl-default-bind-options ssl-min-ver TLSv1.3 no-tls-tickets\n"
    return f"""
global
  nbthread 1
  # HAProxy needs two descriptors per connection and this machine's hard limit is 20,000.
  maxconn {HAPROXY_MAXCONN}
{tls_lines if tls else ""}defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 30s
  option http-keep-alive
  http-reuse always
{frontends}backend be
  balance roundrobin
{servers}
"""


def haproxy_config(tmp):
    frontend = f"frontend fe\n  bind 127.0.0.1:{PROXY_PORT['haproxy']}\n  default_backend be\n"
    return write(os.path.join(tmp, "haproxy.cfg"), haproxy_text(frontend))


def nginx_config(tmp):
    servers = "\n".join(f"    server 127.0.0.1:{p};" for p in BACKEND_PORTS)
    return write(os.path.join(tmp, "nginx.conf"), f"""
daemon off; master_process off; worker_processes 1; error_log {tmp}/nginx-error.log crit; pid {tmp}/nginx.pid;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  upstream be {{
{servers}
    keepalive 256;
  }}
  server {{
    listen 127.0.0.1:{PROXY_PORT['nginx']} backlog=4096;
    keepalive_requests 1000000;
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""")


def start_proxy(name, tmp):
    if name in LB_BUILDS:
        cmd = [LB_BUILDS[name], lb_config(tmp, PROXY_PORT[name], LB_METRICS_PORTS[name])]
        env = dict(os.environ, RUST_LOG="warn")
    elif name == "haproxy":
        cmd = ["haproxy", "-db", "-f", haproxy_config(tmp)]
        env = None
    else:
        cmd = ["nginx", "-c", nginx_config(tmp)]
        env = None
    proc = subprocess.Popen(["taskset", "-c", PROXY_CORE] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_port(PROXY_PORT[name])
    return proc


def stop_proxy(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_split(pid):
    """(user, system) clock ticks of `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def cpu_ticks(pid):
    return sum(cpu_split(pid))


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def parse_wrk(out):
    def dur(text):
        match = re.match(r"([\d.]+)(us|ms|s|m)$", text)
        if not match:
            return float("nan")  # wrk prints garbage when a run had no latency samples
        value, unit = match.groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    # Anchored to the latency distribution's lines: "+/- Stdev" columns also end in "50%".
    p50 = dur(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = dur(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    if p50 != p50 or p99 != p99:
        print(f"warning: unparsable latency in wrk output:\n{out}", file=sys.stderr)
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return requests, rps, p50, p99, errors


RATE_LUA = """
-- a fixed rate per connection: each connection waits `delay_ms` before each request
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "4")
function delay() return delay_ms end
"""


def run_wrk(name, scenario, duration, tmp, port=None):
    port = port or (PROXY_PORT[name] if name != "direct" else BACKEND_PORTS[0])
    url = f"http://127.0.0.1:{port}/"
    args = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", "--latency", "-d", f"{duration}s"]
    env = None
    if scenario == "keepalive":
        args += ["-c64"]
    elif scenario == "close":
        args += ["-c32", "-H", "Connection: close"]
    else:  # fixed rate: 32 connections x 250 req/s = 8,000 req/s
        lua = write(os.path.join(tmp, "rate.lua"), RATE_LUA)
        args += ["-c32", "-s", lua]
        env = dict(os.environ, WRK_DELAY_MS="4")
    out = subprocess.run(args + [url], check=True, text=True, capture_output=True, env=env).stdout
    return parse_wrk(out)


async def hold_idle(port, count):
    """Opens `count` keep-alive connections and has each serve one request, one at a time, so
    that each is an idle keep-alive connection that has parsed a request (not a burst of
    `count` concurrent requests, which would measure the peak of a burst instead)."""
    conns = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        await reader.readuntil(b"ok")
        conns.append(writer)
    await asyncio.sleep(0.5)
    return conns


def idle_rss(name, proc, count):
    if name == "haproxy":
        count = min(count, HAPROXY_MAXCONN - 10)
    before = rss_kib(proc.pid)
    loop = asyncio.new_event_loop()
    conns = loop.run_until_complete(hold_idle(PROXY_PORT[name], count))
    time.sleep(1.0)
    after = rss_kib(proc.pid)
    for writer in conns:
        writer.close()
    loop.close()
    return (after - before) * 1024 / count


def bench_direct(duration, tmp):
    return run_wrk("direct", "keepalive", duration, tmp)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--idle", type=int, default=10000, help="idle connections for the RSS test")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s, 1000 idle connections: proves the script works")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "performance-run.md"))
    parser.add_argument("--proxies", default="lb,haproxy,nginx")
    parser.add_argument("--lb-pgo", metavar="BINARY", help="also run this profile-guided lb build (bench/pgo.py) as `lb-pgo`")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.idle = 1, 2, 1000
    # Raise the soft descriptor limit as far as the hard one allows (children inherit it).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ensure_tools()
    proxies = args.proxies.split(",")
    if args.lb_pgo:
        if not os.path.exists(args.lb_pgo):
            sys.exit(f"no such lb build: {args.lb_pgo} (bench/pgo.py makes one)")
        LB_BUILDS["lb-pgo"] = os.path.abspath(args.lb_pgo)
        proxies.insert(proxies.index("lb") + 1 if "lb" in proxies else 0, "lb-pgo")
    scenarios = ["keepalive", "close", "rate"]
    tmp = tempfile.mkdtemp(prefix="lb-bench-")
    backend = subprocess.Popen(["taskset", "-c", LOAD_CORE, "nginx", "-c", backend_config(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {(p, s): [] for p in proxies for s in scenarios}
    idle = {p: [] for p in proxies}
    direct = []
    procs = {}
    try:
        for port in BACKEND_PORTS:
            wait_port(port)
        # All proxies stay up for the whole run (an idle one costs nothing) and the slices of
        # one round rotate through them, so each round compares them seconds apart, under the
        # same machine weather: this shared machine drifts by 20-50 % within minutes.
        for name in proxies:
            procs[name] = start_proxy(name, tmp)
            run_wrk(name, "keepalive", 1, tmp)  # warm the upstream pool
        for scenario in scenarios:
            for round_index in range(args.rounds):
                if scenario == "keepalive":
                    direct.append(bench_direct(args.duration, tmp))
                order = proxies[round_index % len(proxies):] + proxies[:round_index % len(proxies)]
                for name in order:
                    proc = procs[name]
                    t0 = cpu_ticks(proc.pid)
                    requests, rps, p50, p99, errors = run_wrk(name, scenario, args.duration, tmp)
                    cpu_us = (cpu_ticks(proc.pid) - t0) / CLK_TCK * 1e6 / max(requests, 1)
                    results[(name, scenario)].append(dict(rps=rps, p50=p50, p99=p99, errors=errors, cpu=cpu_us, rss=rss_kib(proc.pid, "VmHWM")))
                    print(f"round {round_index + 1} {name:8} {scenario:9} {rps:9.0f} req/s p50 {p50:6.2f} ms p99 {p99:6.2f} ms cpu {cpu_us:5.1f} us/req errors {errors}", flush=True)
        for name, proc in procs.items():
            stop_proxy(proc)
        procs.clear()
        # Idle memory on a fresh process each time: a process that already held the
        # connections once reuses that memory and would show almost nothing.
        for round_index in range(min(args.rounds, 3)):
            for name in proxies:
                proc = start_proxy(name, tmp)
                try:
                    run_wrk(name, "keepalive", 1, tmp)
                    idle[name].append(idle_rss(name, proc, args.idle))
                finally:
                    stop_proxy(proc)
                print(f"round {round_index + 1} {name:8} idle      {idle[name][-1]:9.0f} bytes/connection", flush=True)
    finally:
        for proc in procs.values():
            stop_proxy(proc)
        backend.send_signal(signal.SIGTERM)
        backend.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    report(args, proxies, scenarios, results, idle, direct)


def med(values):
    return statistics.median(values) if values else float("nan")


def report_rounds(out, head, scenarios, proxies, results, failed_key, failed_label):
    """The table of a side-by-side run whose rounds were paired (bench/tls.py, bench/h2.py):
    medians per proxy and scenario, then lb's CPU against the better peer of each round."""
    lines = head + [
        "",
        f"| proxy | scenario | req/s | p50 ms | p99 ms | {failed_label} | CPU µs/req |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for scenario in scenarios:
        for name in proxies:
            rows = results[(name, scenario)]
            lines.append(f"| {name} | {scenario} | {med([r['rps'] for r in rows]):.0f} | "
                         f"{med([r['p50'] for r in rows]):.2f} | {med([r['p99'] for r in rows]):.2f} | "
                         f"{sum(r[failed_key] for r in rows)} | {med([r['cpu'] for r in rows]):.1f} |")
    peers = [p for p in proxies if p != "lb"]
    if "lb" in proxies and peers:
        lines += ["", "lb against the better peer of each round (CPU: lower is better), median and range:", ""]
        for scenario in scenarios:
            rows = results[("lb", scenario)]
            cpu = [rows[i]["cpu"] / min(results[(p, scenario)][i]["cpu"] for p in peers) for i in range(len(rows))]
            lines.append(f"- {scenario}: CPU {med(cpu):.2f}× ({min(cpu):.2f}–{max(cpu):.2f})")
    text = "\n".join(lines) + "\n"
    with open(out, "w") as f:
        f.write(text)
    print(text)


def report(args, proxies, scenarios, results, idle, direct):
    cpu_model = sh("lscpu | sed -n 's/^Model name: *//p'").strip()
    versions = {
        **{name: sh(f"{LB_BUILDS[name]} --version").strip() for name in proxies if name in LB_BUILDS},
        "haproxy": sh("haproxy -v | head -1").strip(),
        "nginx": subprocess.run("nginx -v", shell=True, text=True, capture_output=True).stderr.strip(),
        "wrk": subprocess.run("wrk --version", shell=True, text=True, capture_output=True).stdout.splitlines()[0].strip(),
    }
    lines = [
        f"# Benchmark run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `bench/run.py --rounds {args.rounds} --duration {args.duration} --idle {args.idle}"
        + (f" --lb-pgo {args.lb_pgo}" if args.lb_pgo else "") + f"`; CPU: {cpu_model}, {os.cpu_count()} cores.",
        "Versions: " + "; ".join(f"{k}: {v}" for k, v in versions.items()) + ".",
        f"Direct to the backend (keep-alive, -c64): median {med([d[1] for d in direct]):.0f} req/s.",
        "",
        "| proxy | scenario | req/s | p50 ms | p99 ms | errors | CPU µs/req | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in scenarios:
        for name in proxies:
            rows = results[(name, scenario)]
            lines.append(
                f"| {name} | {scenario} | {med([r['rps'] for r in rows]):.0f} | {med([r['p50'] for r in rows]):.2f} | "
                f"{med([r['p99'] for r in rows]):.2f} | {sum(r['errors'] for r in rows)} | {med([r['cpu'] for r in rows]):.1f} | "
                f"{med([r['rss'] for r in rows]) / 1024:.1f} |")
    lines += ["", f"Idle keep-alive connections ({args.idle}): resident bytes per connection", "",
              "| proxy | bytes/connection |", "|---|---:|"]
    for name in proxies:
        lines.append(f"| {name} | {med(idle[name]):.0f} |")
    peers = [p for p in proxies if p not in LB_BUILDS]
    for build in (p for p in proxies if p in LB_BUILDS):
        if not peers:
            break
        lines += ["", f"Ratios of {build} to the better peer (lower CPU is better, higher req/s is better):", ""]
        for scenario in scenarios:
            lb_cpu = med([r["cpu"] for r in results[(build, scenario)]])
            lb_rps = med([r["rps"] for r in results[(build, scenario)]])
            best_cpu = min(med([r["cpu"] for r in results[(p, scenario)]]) for p in peers)
            best_rps = max(med([r["rps"] for r in results[(p, scenario)]]) for p in peers)
            lines.append(f"- {scenario}: CPU {lb_cpu / best_cpu:.2f}× the better peer, req/s {lb_rps / best_rps:.2f}×")
        lines += ["", f"Paired by round ({build} against the better peer of the same round, seconds apart; the median "
                  "of the rounds' ratios, and their range):", ""]
        for scenario in scenarios:
            rows = results[(build, scenario)]
            rounds = range(len(rows))
            cpu = [rows[i]["cpu"] / min(results[(p, scenario)][i]["cpu"] for p in peers) for i in rounds]
            rps = [rows[i]["rps"] / max(results[(p, scenario)][i]["rps"] for p in peers) for i in rounds]
            p99 = [rows[i]["p99"] / results[("haproxy", scenario)][i]["p99"] for i in rounds] if "haproxy" in peers else []
            line = (f"- {scenario}: CPU {med(cpu):.2f}× ({min(cpu):.2f}–{max(cpu):.2f}), "
                    f"req/s {med(rps):.2f}× ({min(rps):.2f}–{max(rps):.2f})")
            if p99:
                line += f", p99 against HAProxy's {med(p99):.2f}× ({min(p99):.2f}–{max(p99):.2f})"
            lines.append(line)
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
