#!/usr/bin/env python3
"""Instructions per proxied request of `lb`, counted by valgrind's callgrind.

Wall-clock figures on a shared 2-core machine move by 10-25 % from run to run; instruction
counts do not, so this is the tool for comparing two builds of `lb`. It starts the same nginx
backend as `run.py` (three ports, fixed 200, on core 1), runs `lb` under callgrind, warms it up,
zeroes the counters, drives `wrk` for a fixed time, dumps the counters and divides the
instructions by the requests wrk completed.

Usage: bench/instructions.py [--lb PATH] [--scenario keepalive|close] [--seconds S]
                             [--connections N] [--annotate] [--extra YAML] [--header H]...
"""
import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the shared helpers of the side-by-side benchmark)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lb", default=run.LB, help="the lb binary to measure (default: target/release/lb)")
    parser.add_argument("--scenario", choices=["keepalive", "close"], default="keepalive")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--annotate", action="store_true", help="print callgrind_annotate's top functions")
    parser.add_argument("--extra", default="", help="YAML appended to lb's config, e.g. 'retry:\\n  max_attempts: 1\\n'")
    parser.add_argument("--header", action="append", default=[],
                        help="a header wrk sends with every request, e.g. 'Authorization: Bearer ...' (repeatable)")
    parser.add_argument("--path", default="/", help="the path wrk asks for (default /)")
    parser.add_argument("--keep", help="copy the callgrind dump here (for callgrind_annotate or kcachegrind)")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "wrk", "nginx"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"instructions.py: {tool} is missing (Debian: valgrind, wrk, nginx)")
    tmp = tempfile.mkdtemp(prefix="lb-instructions-")
    backend = subprocess.Popen(["taskset", "-c", run.LOAD_CORE, "nginx", "-c", run.backend_config(tmp)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = os.path.join(tmp, "callgrind.out")
    config = run.lb_config(tmp)
    with open(config, "a") as f:
        f.write(args.extra.replace("\\n", "\n"))
    lb = subprocess.Popen(["taskset", "-c", run.PROXY_CORE, "valgrind", "--tool=callgrind", "--compress-strings=no", f"--callgrind-out-file={out}",
                           args.lb, config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=dict(os.environ, RUST_LOG="warn"))
    try:
        for port in run.BACKEND_PORTS:
            run.wait_port(port)
        run.wait_port(run.PROXY_PORT["lb"], timeout=60)
        run_wrk(args, 2)  # warm the pools and the allocator
        subprocess.run(["callgrind_control", "--zero", str(lb.pid)], check=True, capture_output=True)
        requests = run_wrk(args, args.seconds)
        subprocess.run(["callgrind_control", "--dump", str(lb.pid)], check=True, capture_output=True)
        time.sleep(0.5)
        dumps = sorted(glob.glob(out + "*"), key=os.path.getmtime)
        text = open(dumps[-1]).read()
        total = int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1))
        print(f"{args.scenario}, {args.connections} connections, {args.seconds} s: {requests} requests, "
              f"{total} instructions, {total / max(requests, 1):.0f} per request")
        if args.keep:
            shutil.copy(dumps[-1], args.keep)
        if args.annotate:
            annotated = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=90", dumps[-1]],
                                       capture_output=True, text=True).stdout
            print("\n".join(line[:160] for line in annotated.splitlines()[20:80]))
    finally:
        lb.send_signal(signal.SIGTERM)
        backend.send_signal(signal.SIGTERM)
        lb.wait(timeout=30)
        backend.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def run_wrk(args, seconds):
    cmd = ["taskset", "-c", run.LOAD_CORE, "wrk", "-t1", f"-c{args.connections}", "-d", f"{seconds}s"]
    if args.scenario == "close":
        cmd += ["-H", "Connection: close"]
    for header in args.header:
        cmd += ["-H", header]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{run.PROXY_PORT['lb']}{args.path}"], check=True, text=True, capture_output=True).stdout
    return int(re.search(r"(\d+) requests in", out).group(1))


if __name__ == "__main__":
    main()
