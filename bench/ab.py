#!/usr/bin/env python3
"""CPU per request of two `lb` builds, side by side, under the load of `run.py`.

For a change to lb's hot path: both builds run at once (two slots, ports 18180 and 18183, one
worker each, pinned to core 0, the same config as `run.py`), and each round gives each build one
slice per scenario, the order alternating from round to round. Reports the medians and the
median of the rounds' paired ratios (B / A), which cancels most of a shared machine's drift.
The builds also change slots from round to round (both are restarted and warmed before each
round): on 2026-12-07 the second slot cost about 5 % more CPU on `close` whichever build ran in
it, a bias that pairing alone does not cancel.
`instructions.py` is the steadier tool for small changes; this one shows wall-clock CPU.

Usage: bench/ab.py A_BINARY B_BINARY [--rounds N] [--duration SECS] [--scenarios keepalive,close,rate]
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the shared helpers of the side-by-side benchmark)

PORTS = {"A": (18180, 18190), "B": (18183, 18193)}


def user_system_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--scenarios", default="keepalive,close,rate")
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    tmp = tempfile.mkdtemp(prefix="lb-ab-")
    backend = subprocess.Popen(["taskset", "-c", run.LOAD_CORE, "nginx", "-c", run.backend_config(tmp)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = {}
    cpu = {(build, s): [] for build in PORTS for s in scenarios}
    user = {(build, s): [] for build in PORTS for s in scenarios}
    try:
        for port in run.BACKEND_PORTS:
            run.wait_port(port)
        binaries = {"A": args.a, "B": args.b}
        for scenario in scenarios:
            for round_index in range(args.rounds):
                # Odd rounds swap the slots; each round starts both builds afresh.
                slots = {"A": "A", "B": "B"} if round_index % 2 == 0 else {"A": "B", "B": "A"}
                for build in ("A", "B"):
                    if build in procs:
                        run.stop_proxy(procs.pop(build))
                for build in ("A", "B"):
                    port, metrics_port = PORTS[slots[build]]
                    config = run.lb_config(tmp, port, metrics_port)
                    procs[build] = subprocess.Popen(["taskset", "-c", run.PROXY_CORE, binaries[build], config],
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                    env=dict(os.environ, RUST_LOG="warn"))
                    run.wait_port(port)
                    run.run_wrk("lb", "keepalive", 1, tmp, port)  # warm the upstream pool
                for build in (("A", "B") if round_index % 2 == 0 else ("B", "A")):
                    pid = procs[build].pid
                    u0, s0 = user_system_ticks(pid)
                    port = PORTS[slots[build]][0]
                    requests, rps, _, p99, errors = run.run_wrk("lb", scenario, args.duration, tmp, port)
                    u1, s1 = user_system_ticks(pid)
                    per_request = 1e6 / run.CLK_TCK / max(requests, 1)
                    us = (u1 - u0 + s1 - s0) * per_request
                    cpu[(build, scenario)].append(us)
                    user[(build, scenario)].append((u1 - u0) * per_request)
                    print(f"round {round_index + 1} {build} (slot {slots[build]}) {scenario:9} {rps:8.0f} req/s "
                          f"p99 {p99:6.2f} ms cpu {us:5.1f} us/req errors {errors}", flush=True)
    finally:
        for proc in procs.values():
            run.stop_proxy(proc)
        backend.send_signal(signal.SIGTERM)
        backend.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nA = {args.a}\nB = {args.b}")
    for scenario in scenarios:
        a, b = cpu[("A", scenario)], cpu[("B", scenario)]
        ratios = [y / x for x, y in zip(a, b)]
        user_a, user_b = statistics.median(user[("A", scenario)]), statistics.median(user[("B", scenario)])
        print(f"{scenario:9} CPU us/req A {statistics.median(a):5.1f}  B {statistics.median(b):5.1f}  "
              f"B/A paired {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}); "
              f"of it user space A {user_a:5.1f}  B {user_b:5.1f}")


if __name__ == "__main__":
    sys.exit(main())
