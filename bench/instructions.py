#!/usr/bin/env python3
"""Instructions per proxied request of `lb`, counted by valgrind's callgrind.

Wall-clock figures on a shared 2-core machine move by 10-25 % from run to run; instruction
counts do not, so this is the tool for comparing two builds of `lb`. It starts the same nginx
backend as `run.py` (three ports, fixed 200, on core 1), runs `lb` under callgrind, warms it up,
zeroes the counters, drives `wrk` for a fixed time, dumps the counters and divides the
instructions by the requests wrk completed.

Scenario `h2c` serves cleartext HTTP/2 with prior knowledge (`server.h2c`) and drives `h2load`
(Debian `nghttp2-client`) as bench/h2.py does: 4 connections with 32 streams in flight on each.

`--h2c` serves the HTTP/1 scenarios on a listener with `server.h2c` (each new connection's first
bytes are sniffed for HTTP/2's preface): what the sniff costs HTTP/1.

`--tls` serves HTTP/1.1 over TLS 1.3 (the ECDSA P-256 certificate of bench/tls.py, no session
resumption) to wrk over HTTPS, or with `--scenario h2c` HTTP/2 by ALPN to h2load over HTTPS;
`--alpn h2,http/1.1` sets `server.tls.alpn` (default: lb's).

`--upstream-h2c` has the backend nginx speak cleartext HTTP/2 (`listen ... http2`) and lb reach
it with `upstream.protocol: h2c`: the HTTP/2 client path.

`--haproxy` counts HAProxy instead, configured as bench/run.py (keepalive, close) or bench/h2.py
(h2c, and h2 over TLS with `--tls`) configure it, so that lb's figure has its peer's beside it.

Usage: bench/instructions.py [--lb PATH | --haproxy] [--scenario keepalive|close|h2c] [--h2c] [--tls [--alpn LIST]]
                             [--upstream-h2c]
                             [--seconds S] [--connections N] [--annotate] [--extra YAML] [--header H]...
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
import tls  # noqa: E402  (the certificate)
import h2  # noqa: E402  (HAProxy's HTTP/2 configuration)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lb", default=run.LB, help="the lb binary to measure (default: target/release/lb)")
    parser.add_argument("--haproxy", action="store_true", help="count HAProxy instead of lb")
    parser.add_argument("--scenario", choices=["keepalive", "close", "h2c"], default="keepalive")
    parser.add_argument("--h2c", action="store_true", help="HTTP/1 scenarios on a listener with server.h2c")
    parser.add_argument("--upstream-h2c", action="store_true",
                        help="backends speak h2c and lb reaches them with upstream.protocol: h2c")
    parser.add_argument("--tls", action="store_true", help="TLS 1.3: HTTP/1.1 (keepalive, close) or h2 by ALPN (h2c)")
    parser.add_argument("--alpn", help="server.tls.alpn with --tls, comma-separated (default: lb's)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--annotate", action="store_true", help="print callgrind_annotate's top functions")
    parser.add_argument("--extra", default="", help="YAML appended to lb's config, e.g. 'retry:\\n  max_attempts: 1\\n'")
    parser.add_argument("--header", action="append", default=[],
                        help="a header wrk sends with every request, e.g. 'Authorization: Bearer ...' (repeatable)")
    parser.add_argument("--path", default="/", help="the path wrk asks for (default /)")
    parser.add_argument("--keep", help="copy the callgrind dump here (for callgrind_annotate or kcachegrind)")
    args = parser.parse_args()
    if args.h2c and (args.tls or args.haproxy):
        sys.exit("instructions.py: --h2c is lb's cleartext listener (not with --tls or --haproxy)")
    if args.upstream_h2c and args.haproxy:
        sys.exit("instructions.py: --upstream-h2c is lb's HTTP/2 client (not with --haproxy)")

    load_tool = "h2load" if args.scenario == "h2c" else "wrk"
    for tool in ("valgrind", "callgrind_control", load_tool, "nginx"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"instructions.py: {tool} is missing (Debian: valgrind, {load_tool}, nginx)")
    tmp = tempfile.mkdtemp(prefix="lb-instructions-")
    backend = subprocess.Popen(["taskset", "-c", run.LOAD_CORE, "nginx", "-c", run.backend_config(tmp, args.upstream_h2c)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = os.path.join(tmp, "callgrind.out")
    if args.haproxy:
        cmd, args.port = haproxy_command(args, tmp)
    else:
        cmd, args.port = lb_command(args, tmp)
    proxy = subprocess.Popen(["taskset", "-c", run.PROXY_CORE, "valgrind", "--tool=callgrind", "--compress-strings=no",
                              f"--callgrind-out-file={out}"] + cmd, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
    try:
        for port in run.BACKEND_PORTS:
            run.wait_port(port)
        run.wait_port(args.port, timeout=60)
        run_wrk(args, 2)  # warm the pools and the allocator
        subprocess.run(["callgrind_control", "--zero", str(proxy.pid)], check=True, capture_output=True)
        requests = run_wrk(args, args.seconds)
        subprocess.run(["callgrind_control", "--dump", str(proxy.pid)], check=True, capture_output=True)
        time.sleep(0.5)
        dumps = sorted(glob.glob(out + "*"), key=os.path.getmtime)
        text = open(dumps[-1]).read()
        total = int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1))
        connections = H2_CONNECTIONS if args.scenario == "h2c" else args.connections
        name = "h2" if args.scenario == "h2c" and args.tls else args.scenario
        print(f"{'haproxy: ' if args.haproxy else ''}{name}{' over TLS' if args.tls else ''}, {connections} connections, {args.seconds} s: {requests} requests, "
              f"{total} instructions, {total / max(requests, 1):.0f} per request")
        if args.keep:
            shutil.copy(dumps[-1], args.keep)
        if args.annotate:
            annotated = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=90", dumps[-1]],
                                       capture_output=True, text=True).stdout
            print("\n".join(line[:160] for line in annotated.splitlines()[20:80]))
    finally:
        proxy.send_signal(signal.SIGTERM)
        backend.send_signal(signal.SIGTERM)
        proxy.wait(timeout=30)
        backend.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def lb_command(args, tmp):
    """lb's command line and port."""
    config = run.lb_config(tmp)
    if (args.scenario == "h2c" or args.h2c) and not args.tls:
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace("server:\n", "server:\n  h2c: true\n", 1))
    if args.upstream_h2c:
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace("upstream:\n", "upstream:\n  protocol: h2c\n", 1))
    if args.tls:
        cert, key, _ = tls.make_certificate(tmp)
        alpn = f"    alpn: [{args.alpn}]\n" if args.alpn else ""
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace("server:\n", f"server:\n  tls:\n    certificates: [{{cert: {cert}, key: {key}}}]\n"
                                 f"    min_version: \"1.3\"\n    session_tickets: false\n    watch: false\n{alpn}", 1))
    with open(config, "a") as f:
        f.write(args.extra.replace("\\n", "\n"))
    return [args.lb, config], run.PROXY_PORT["lb"]


def haproxy_command(args, tmp):
    """HAProxy's command line and port, configured as run.py (HTTP/1.1) or h2.py (HTTP/2) does."""
    if args.scenario == "h2c":
        _, _, both = tls.make_certificate(tmp)
        config, port = h2.haproxy_config(tmp, both), h2.PORT[("haproxy", "h2-tls" if args.tls else "h2c")]
    elif args.tls:
        sys.exit("instructions.py: --haproxy --tls is for HTTP/2 (--scenario h2c)")
    else:
        config, port = run.haproxy_config(tmp), run.PROXY_PORT["haproxy"]
    # valgrind keeps descriptors of its own, so HAProxy's usual maxconn no longer fits the limit.
    with open(config) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text.replace(f"maxconn {run.HAPROXY_MAXCONN}", "maxconn 4000"))
    return ["haproxy", "-db", "-f", config], port


def run_wrk(args, seconds):
    if args.scenario == "h2c":
        return run_h2load(args, seconds)
    cmd = ["taskset", "-c", run.LOAD_CORE, "wrk", "-t1", f"-c{args.connections}", "-d", f"{seconds}s"]
    if args.scenario == "close":
        cmd += ["-H", "Connection: close"]
    for header in args.header:
        cmd += ["-H", header]
    scheme = "https" if args.tls else "http"
    out = subprocess.run(cmd + [f"{scheme}://127.0.0.1:{args.port}{args.path}"], check=True, text=True,
                         capture_output=True).stdout
    return int(re.search(r"(\d+) requests in", out).group(1))


H2_CONNECTIONS, H2_STREAMS = 4, 32


def run_h2load(args, seconds):
    cmd = ["taskset", "-c", run.LOAD_CORE, "h2load", "-t1", f"-c{H2_CONNECTIONS}", f"-m{H2_STREAMS}",
           f"-D{seconds}"]
    for header in args.header:
        cmd += ["-H", header]
    scheme = "https" if args.tls else "http"
    out = subprocess.run(cmd + [f"{scheme}://127.0.0.1:{args.port}{args.path}"], check=True, text=True,
                         capture_output=True).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    if not done or done.group(1) != done.group(2):
        sys.exit(f"instructions.py: h2load saw failures:\n{out}")
    return int(done.group(1))


if __name__ == "__main__":
    main()
