#!/usr/bin/env python3
"""Chaos run: load through `lb` while backends are killed and restarted at random.

Loopback only, bounded in time, not run in CI. Three `test-backend` processes (each logging
`METHOD PATH X-REQUEST-ID` per request) sit behind a release `lb`; `wrk` drives GETs and a
client here sends POSTs, each with a unique `x-request-id`, while backends are killed (SIGKILL)
and restarted on the same port. Afterwards it asserts:
- no POST reached a backend twice (ids in the backends' logs);
- errors stayed within what retries cannot cover (requests cut mid-response by a SIGKILL);
- `lb_active_connections` and the balancer's open file descriptors return to their baseline;
- resident memory is back within 10% of what it was before the chaos.

Usage: scripts/chaos.py [--seconds 30] [--seed N]
"""
import argparse
import http.client
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
PORTS = [18201, 18202, 18203]
LB_PORT, METRICS_PORT = 18280, 18290


def wait_port(port, timeout=10.0):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Backend:
    def __init__(self, index, tmp):
        self.index, self.tmp, self.port, self.proc, self.incarnation = index, tmp, PORTS[index], None, 0
        self.logs = []

    def start(self):
        self.incarnation += 1
        log = os.path.join(self.tmp, f"b{self.index}-{self.incarnation}.log")
        self.logs.append(log)
        self.proc = subprocess.Popen(
            [os.path.join(RELEASE, "test-backend"), "--log-requests", "--threads", "1", "--name", f"b{self.index}", str(self.port)],
            stdout=open(log, "w"), stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def metrics():
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=2) as response:
        return response.read().decode()


def metric_sum(text, name):
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def post_driver(stop, results):
    connection = None
    n = 0
    while not stop.is_set():
        n += 1
        request_id = f"post-{n}"
        try:
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", LB_PORT, timeout=5)
            connection.request("POST", "/echo", body=b"order=" + str(n).encode(), headers={"x-request-id": request_id})
            response = connection.getresponse()
            response.read()
            results.append((request_id, response.status))
            if response.getheader("connection", "").lower() == "close":
                connection.close()
                connection = None
        except Exception:
            results.append((request_id, 0))
            connection = None
        time.sleep(0.005)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    if not (os.path.exists(os.path.join(RELEASE, "lb")) and os.path.exists(os.path.join(RELEASE, "test-backend"))):
        subprocess.run("cargo build --release -p lb-proxy -p test-backend", shell=True, check=True, cwd=ROOT)
    tmp = tempfile.mkdtemp(prefix="lb-chaos-")
    backends = [Backend(i, tmp) for i in range(3)]
    for backend in backends:
        backend.start()
    config = os.path.join(tmp, "lb.yaml")
    with open(config, "w") as f:
        f.write(f"""server: {{listen: 127.0.0.1:{LB_PORT}, workers: 1}}
metrics: {{listen: 127.0.0.1:{METRICS_PORT}}}
health_check: {{interval: 200ms, timeout: 100ms, unhealthy_threshold: 2, healthy_threshold: 2}}
circuit_breaker: {{failure_threshold: 5, open_duration: 1s, max_open_duration: 2s}}
retry: {{max_attempts: 3, base_delay: 5ms, max_delay: 50ms, budget_ratio: 0.5}}
backends:
""" + "".join(f"  - {{name: b{i}, address: 127.0.0.1:{p}}}\n" for i, p in enumerate(PORTS)))
    lb = subprocess.Popen([os.path.join(RELEASE, "lb"), config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=dict(os.environ, RUST_LOG="error"))
    failures = []
    try:
        wait_port(LB_PORT)
        # Warm up so pools and buffers reach their steady state before the baseline.
        subprocess.run(["wrk", "-t1", "-c16", "-d3s", f"http://127.0.0.1:{LB_PORT}/"], capture_output=True)
        time.sleep(1)
        base_fds, base_rss = fds(lb.pid), rss_kib(lb.pid)
        print(f"seed {args.seed}; baseline: {base_fds} fds, {base_rss} KiB resident", flush=True)

        stop = threading.Event()
        posts = []
        poster = threading.Thread(target=post_driver, args=(stop, posts))
        poster.start()
        wrk = subprocess.Popen(["wrk", "-t1", "-c16", "-d", f"{args.seconds}s", f"http://127.0.0.1:{LB_PORT}/"],
                               stdout=subprocess.PIPE, text=True)
        deadline = time.time() + args.seconds
        kills = 0
        while time.time() < deadline - 2:
            time.sleep(rng.uniform(0.5, 2.0))
            victim = rng.choice(backends)
            victim.kill()
            kills += 1
            time.sleep(rng.uniform(0.2, 1.5))
            victim.start()
        wrk_out, _ = wrk.communicate(timeout=args.seconds + 30)
        stop.set()
        poster.join()

        requests = int(re.search(r"(\d+) requests in", wrk_out).group(1))
        non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", wrk_out)) else 0
        socket_errors = sum(int(x) for x in m.groups()) if (m := re.search(
            r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", wrk_out)) else 0
        post_errors = sum(1 for _, status in posts if status != 200)
        print(f"{kills} kills; GET: {requests} requests, {non2xx} non-2xx, {socket_errors} socket errors; "
              f"POST: {len(posts)} sent, {post_errors} not 200", flush=True)

        # Every request cut by a SIGKILL mid-response is an error no retry can cover: bound it by
        # what the kills could have cut (16 + 1 connections in flight per kill), plus 1%.
        allowed = kills * 17 + (requests + len(posts)) // 100
        if non2xx + socket_errors + post_errors > allowed:
            failures.append(f"{non2xx + socket_errors + post_errors} errors > {allowed} allowed")

        seen = {}
        for backend in backends:
            for log in backend.logs:
                for line in open(log):
                    parts = line.split()
                    if len(parts) == 3 and parts[0] == "POST" and parts[2] != "-":
                        seen[parts[2]] = seen.get(parts[2], 0) + 1
        twice = [request_id for request_id, count in seen.items() if count > 1]
        print(f"POSTs seen by backends: {len(seen)} distinct ids, {len(twice)} seen twice", flush=True)
        if twice:
            failures.append(f"POSTs reached a backend twice: {twice[:5]}")

        settled = False
        for _ in range(50):
            text = metrics()
            now_fds = fds(lb.pid)
            if metric_sum(text, "lb_active_connections") == 0 and now_fds <= base_fds + 6:
                settled = True
                break
            time.sleep(0.1)
        now_rss = rss_kib(lb.pid)
        print(f"after: {fds(lb.pid)} fds, lb_active_connections {metric_sum(metrics(), 'lb_active_connections'):.0f}, "
              f"{now_rss} KiB resident ({(now_rss - base_rss) * 100 / base_rss:+.1f}%)", flush=True)
        if not settled:
            failures.append("lb_active_connections or open descriptors did not return to the baseline")
        if now_rss > base_rss * 1.10:
            failures.append(f"resident memory {now_rss} KiB is more than 10% over {base_rss} KiB")
    finally:
        lb.send_signal(signal.SIGTERM)
        try:
            lb.wait(timeout=10)
        except subprocess.TimeoutExpired:
            lb.kill()
        for backend in backends:
            backend.kill()
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("chaos run passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
