#!/usr/bin/env python3
"""HTTP/2 from clients side by side: `lb`, HAProxy and nginx serving HTTP/2, one worker each
pinned to core 0, behind the same plain HTTP/1.1 backend as bench/run.py (nginx answering a
fixed 200 on three ports), h2load (Debian `nghttp2-client`) on core 1.

Scenarios, each many streams over few connections (`h2load -t1 -c4 -m32`: 4 connections with
32 streams in flight on each):
- `h2c`: cleartext HTTP/2 with prior knowledge (lb `server.h2c`, HAProxy `proto h2`, nginx
  `listen ... http2`);
- `h2-tls`: HTTP/2 over TLS 1.3 chosen by ALPN, with the ECDSA P-256 certificate of bench/tls.py
  (lb `server.tls`, whose ALPN offers h2 by default; HAProxy `alpn h2,http/1.1`; nginx
  `listen ... ssl http2`). The 4 handshakes are a negligible share of a run.

Reported per proxy: requests per second, p50 and p99 of each request's time (from h2load's
`--log-file`, which records every request), failed requests, and CPU µs per request (the
proxy's user + system time over the run, divided by the requests), split into user and system
time. As in run.py the proxies stay up for the whole run and each round rotates their order;
medians are reported, with lb's ratio to the better peer paired round by round.

`--same-job` has HAProxy and nginx do what lb does by default besides forwarding: send the
backend `X-Forwarded-For`, `-Proto` and `-Host` and a new request id (`X-Request-Id`, HAProxy a
random UUID, nginx its `$request_id`), and return the id to the client. Without it they forward
the request as it came (their defaults), which is less work than lb's defaults.

`--lb-b BINARY` runs a second lb build, `lb-b`, in the same rounds (the same configuration) and
reports its CPU against `lb`'s paired round by round: a change worth 1-2 % cannot be told apart
from this machine's drift between separate runs, but it can within one. The two builds swap
their ports every round (both restarted and warmed), since a port's own bias, about 5 % seen
once by bench/ab.py, is not cancelled by pairing.

Usage: bench/h2.py [--rounds N] [--duration SECS] [--quick] [--same-job] [--lb BINARY] [--lb-b BINARY]
                   [--out FILE]
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
import tls  # noqa: E402  (the certificate)

PORT = {
    ("lb", "h2c"): 18380, ("haproxy", "h2c"): 18381, ("nginx", "h2c"): 18382,
    ("lb", "h2-tls"): 18383, ("haproxy", "h2-tls"): 18384, ("nginx", "h2-tls"): 18385,
    ("lb-b", "h2c"): 18386, ("lb-b", "h2-tls"): 18387,
}
# The metrics listener of each lb build, by scenario: its first port, then one per scenario.
LB_METRICS = {"lb": 18390, "lb-b": 18392}
SCENARIOS = ["h2c", "h2-tls"]
# Whose ports (and metrics ports) each lb build listens on this round: swapped every round.
SLOT = {"lb": "lb", "lb-b": "lb-b"}
CONNECTIONS, STREAMS = 4, 32


def url(name, scenario):
    scheme = "https" if scenario == "h2-tls" else "http"
    return f"{scheme}://127.0.0.1:{PORT[(SLOT.get(name, name), scenario)]}/"


def lb_config(tmp, cert, key, name="lb"):
    backends = "\n".join(f"  - address: 127.0.0.1:{p}" for p in run.BACKEND_PORTS)
    # lb has one client listener per configuration: one instance per scenario, each with one
    # worker; the CPU of the one under load is measured.
    configs = {}
    for scenario in SCENARIOS:
        if scenario == "h2c":
            server = "  h2c: true\n"
        else:
            server = (f"  tls:\n    certificates: [{{cert: {cert}, key: {key}}}]\n"
                      f"    min_version: \"1.3\"\n    session_tickets: false\n    watch: false\n")
        metrics = LB_METRICS[SLOT[name]] + SCENARIOS.index(scenario)
        configs[scenario] = run.write(os.path.join(tmp, f"{name}-{scenario}.yaml"), f"""
server:
  listen: 127.0.0.1:{PORT[(SLOT[name], scenario)]}
  workers: 1
  max_client_connections: 20000
{server}metrics:
  listen: 127.0.0.1:{metrics}
upstream:
  pool_max_idle_per_backend: 256
backends:
{backends}
""")
    return configs


def haproxy_config(tmp, both, same_job=False):
    def job(scheme):
        if not same_job:
            return ""
        return ("  option forwardfor\n"
                f"  http-request set-header X-Forwarded-Proto {scheme}\n"
                "  http-request set-header X-Forwarded-Host %[req.hdr(host)]\n"
                "  unique-id-format %[uuid]\n  unique-id-header X-Request-Id\n"
                "  http-response set-header X-Request-Id %[unique-id]\n")
    frontends = (f"frontend h2c\n  bind 127.0.0.1:{PORT[('haproxy', 'h2c')]} proto h2\n{job('http')}  default_backend be\n"
                 f"frontend h2tls\n  bind 127.0.0.1:{PORT[('haproxy', 'h2-tls')]} ssl crt {both} alpn h2,http/1.1\n"
                 f"{job('https')}  default_backend be\n")
    return run.write(os.path.join(tmp, "haproxy-h2.cfg"), run.haproxy_text(frontends, tls=True))


def nginx_config(tmp, cert, key, same_job=False):
    servers = "\n".join(f"    server 127.0.0.1:{p};" for p in run.BACKEND_PORTS)
    job = ("proxy_set_header X-Forwarded-For $remote_addr; proxy_set_header X-Forwarded-Proto $scheme; "
           "proxy_set_header X-Forwarded-Host $host; proxy_set_header X-Request-Id $request_id; "
           "add_header X-Request-Id $request_id always; ") if same_job else ""
    location = f'location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; {job}}}'
    return run.write(os.path.join(tmp, "nginx-h2.conf"), f"""
daemon off; master_process off; worker_processes 1; error_log {tmp}/nginx-h2-error.log crit; pid {tmp}/nginx-h2.pid;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_requests 1000000;  # per connection; over HTTP/2 it bounds the streams (nginx 1.19.7+)
  upstream be {{
{servers}
    keepalive 256;
  }}
  server {{
    listen 127.0.0.1:{PORT[('nginx', 'h2c')]} http2 backlog=4096;
    {location}
  }}
  server {{
    listen 127.0.0.1:{PORT[('nginx', 'h2-tls')]} ssl http2 backlog=4096;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    ssl_session_tickets off;
    ssl_session_cache off;
    {location}
  }}
}}
""")


def start(name, tmp, lb, cert, key, both, same_job=False):
    """The proxy's processes by scenario (HAProxy and nginx serve both from one process)."""
    env = dict(os.environ, RUST_LOG="warn")
    if name in LB_METRICS:
        procs = {}
        for scenario, config in lb_config(tmp, cert, key, name).items():
            procs[scenario] = subprocess.Popen(["taskset", "-c", run.PROXY_CORE, lb, config],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    else:
        cmd = (["haproxy", "-db", "-f", haproxy_config(tmp, both, same_job)] if name == "haproxy"
               else ["nginx", "-c", nginx_config(tmp, cert, key, same_job)])
        proc = subprocess.Popen(["taskset", "-c", run.PROXY_CORE] + cmd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        procs = {scenario: proc for scenario in SCENARIOS}
    for scenario in SCENARIOS:
        run.wait_port(PORT[(SLOT.get(name, name), scenario)])
    return procs


def swap_slots(procs, tmp, builds, cert, key, both, scenario):
    """Restarts both lb builds on each other's ports, and warms them for `scenario`."""
    for name in ("lb", "lb-b"):
        for proc in procs.pop(name).values():
            run.stop_proxy(proc)
    SLOT["lb"], SLOT["lb-b"] = SLOT["lb-b"], SLOT["lb"]
    for name in ("lb", "lb-b"):
        procs[name] = start(name, tmp, builds[name], cert, key, both)
        h2load(name, scenario, 1, tmp)


def h2load(name, scenario, duration, tmp):
    """(requests, req/s, p50 ms, p99 ms, failed) of one h2load run."""
    log = os.path.join(tmp, f"h2load-{name}-{scenario}.log")
    args = ["taskset", "-c", run.LOAD_CORE, "h2load", "-t1", f"-c{CONNECTIONS}", f"-m{STREAMS}",
            "-D", str(duration), "--log-file", log, url(name, scenario)]
    out = subprocess.run(args, check=True, text=True, capture_output=True).stdout
    done = [line for line in out.splitlines() if line.startswith("requests:")]
    if not done:
        sys.exit(f"h2.py: no summary from h2load against {name} ({scenario}):\n{out}")
    # "requests: N total, N started, N done, N succeeded, F failed, E errored, T timeout"
    fields = {part.split()[1]: int(part.split()[0]) for part in done[0].split(":", 1)[1].split(",")}
    # Each line of the log: start (µs since the epoch), status, time to the response end (µs).
    times = []
    with open(log) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[1] != "-1":
                times.append(int(parts[2]) / 1000.0)
    os.unlink(log)
    times.sort()
    pct = lambda q: times[min(len(times) - 1, int(q * len(times)))] if times else float("nan")  # noqa: E731
    requests = fields.get("succeeded", 0)
    return requests, requests / duration, pct(0.50), pct(0.99), fields.get("failed", 0) + fields.get("errored", 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per h2load run")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s: proves the script works")
    parser.add_argument("--lb", default=run.LB, help="the lb binary (default: target/release/lb)")
    parser.add_argument("--same-job", action="store_true",
                        help="HAProxy and nginx add the forwarding fields and request id lb adds")
    parser.add_argument("--lb-b", metavar="BINARY", help="a second lb build, run as `lb-b` in the same rounds")
    parser.add_argument("--out", default=os.path.join(run.ROOT, "docs", "performance-h2-run.md"))
    parser.add_argument("--proxies", default="lb,haproxy,nginx")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 2
    for tool, package in (("h2load", "nghttp2-client"), ("openssl", "openssl")):
        if not shutil.which(tool):
            sys.exit(f"h2.py: {tool} is missing (Debian: {package})")
    run.ensure_tools(build_lb=args.lb == run.LB)
    proxies = args.proxies.split(",")
    builds = {"lb": args.lb}
    if args.lb_b:
        if not os.path.exists(args.lb_b):
            sys.exit(f"h2.py: no such lb build: {args.lb_b}")
        builds["lb-b"] = os.path.abspath(args.lb_b)
        proxies.insert(proxies.index("lb") + 1 if "lb" in proxies else 0, "lb-b")
    tmp = tempfile.mkdtemp(prefix="lb-bench-h2-")
    cert, key, both = tls.make_certificate(tmp)
    backend = subprocess.Popen(["taskset", "-c", run.LOAD_CORE, "nginx", "-c", run.backend_config(tmp)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {(p, s): [] for p in proxies for s in SCENARIOS}
    procs = {}
    try:
        for port in run.BACKEND_PORTS:
            run.wait_port(port)
        for name in proxies:
            procs[name] = start(name, tmp, builds.get(name, args.lb), cert, key, both, args.same_job)
            for scenario in SCENARIOS:
                h2load(name, scenario, 1, tmp)  # warm the upstream pool
        for scenario in SCENARIOS:
            for round_index in range(args.rounds):
                if "lb-b" in procs and (SLOT["lb"] == "lb") != (round_index % 2 == 0):
                    swap_slots(procs, tmp, builds, cert, key, both, scenario)
                order = proxies[round_index % len(proxies):] + proxies[:round_index % len(proxies)]
                for name in order:
                    proc = procs[name][scenario]
                    user0, system0 = run.cpu_split(proc.pid)
                    requests, rps, p50, p99, failed = h2load(name, scenario, args.duration, tmp)
                    user1, system1 = run.cpu_split(proc.pid)
                    per_request = 1e6 / run.CLK_TCK / max(requests, 1)
                    user, system = (user1 - user0) * per_request, (system1 - system0) * per_request
                    results[(name, scenario)].append(dict(rps=rps, p50=p50, p99=p99, failed=failed,
                                                          cpu=user + system, user=user, system=system))
                    port = PORT[(SLOT.get(name, name), scenario)]
                    print(f"round {round_index + 1} {name:8} {scenario:7} :{port} {rps:9.0f} req/s p50 {p50:6.2f} ms "
                          f"p99 {p99:6.2f} ms cpu {user + system:6.1f} us/req (user {user:4.1f}) "
                          f"failed {failed}", flush=True)
    finally:
        stopped = set()
        for by_scenario in procs.values():
            for proc in by_scenario.values():
                if proc.pid not in stopped:
                    stopped.add(proc.pid)
                    run.stop_proxy(proc)
        backend.send_signal(signal.SIGTERM)
        backend.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    report(args, proxies, results)


def report(args, proxies, results):
    """run.py's paired table for lb and the peers (`lb-b` is not a peer), then the user/system
    split and, with `--lb-b`, the second build against the first."""
    command = (f"bench/h2.py --rounds {args.rounds} --duration {args.duration}"
               + (" --same-job" if args.same_job else "") + (f" --lb-b {args.lb_b}" if args.lb_b else ""))
    run.report_rounds(args.out, [
        f"# HTTP/2 benchmark run: `{command}`",
        "",
        f"One worker each; h2load -t1 -c{CONNECTIONS} -m{STREAMS}; TLS 1.3, one ECDSA P-256 certificate.",
    ], SCENARIOS, [p for p in proxies if p != "lb-b"], results, "failed", "failed")
    lines = ["", "CPU µs per request split, medians: user + system.", ""]
    for scenario in SCENARIOS:
        split = ", ".join(f"{name} {run.med([r['user'] for r in results[(name, scenario)]]):.2f} + "
                          f"{run.med([r['system'] for r in results[(name, scenario)]]):.2f}" for name in proxies)
        lines.append(f"- {scenario}: {split}")
    peers = [p for p in proxies if p not in ("lb", "lb-b")]
    if "lb" in proxies and peers:
        # A paired median of a few rounds moves with one disturbed round; the sums over all
        # rounds are the other view of the same runs.
        lines += ["", "lb's CPU summed over all rounds against each peer's:", ""]
        for scenario in SCENARIOS:
            mine = sum(r["cpu"] for r in results[("lb", scenario)])
            pooled = ", ".join(f"{peer} {mine / sum(r['cpu'] for r in results[(peer, scenario)]):.3f}×"
                               for peer in peers)
            lines.append(f"- {scenario}: {pooled}")
    if "lb-b" in proxies and "lb" in proxies:
        lines += ["", "`lb-b` against `lb`, paired round by round (CPU: lower is better), median, range, "
                  "and the ratio of the summed CPU:", ""]
        for scenario in SCENARIOS:
            a, b = results[("lb", scenario)], results[("lb-b", scenario)]
            ratios = [y["cpu"] / x["cpu"] for x, y in zip(a, b)]
            pooled = sum(y["cpu"] for y in b) / sum(x["cpu"] for x in a)
            lines.append(f"- {scenario}: {run.med(ratios):.3f}× ({min(ratios):.3f}–{max(ratios):.3f}), "
                         f"summed {pooled:.3f}×")
    text = "\n".join(lines) + "\n"
    with open(args.out, "a") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
