#!/usr/bin/env python3
"""Instructions a MiB passed on, by callgrind: step 17 (with
bench/compare.py's config) beside hyper's floor, for an answer and for an
upload. instructions.py counts what a small request costs; this counts
what a body costs once it flows, which is mostly how many pieces it is
read in (hyper's read buffers), and does not move with a shared machine's
noise as compare.py's timings do.

    cargo build --profile production --bin 17-complete --bin origin \\
        --example hyper-floor
    python3 bench/bytes.py
    python3 bench/bytes.py --also before=/tmp/17-complete-before

Each contender runs under valgrind's callgrind, on one core when there are
two, in front of the workshop's origin: one answer of `--mib` MiB
(`/big`) and one upload of as many (`/upload`) to warm up, then
callgrind's counters are zeroed and three of each are counted, every
thread of the proxy included.

Needs valgrind and curl. Loopback only; every wait is bounded; it ends
what it started, by PID.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from instructions import contender_command, under_callgrind
from loopback import free_port, stop, until_accepts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = 3


def curl(url, upload=None):
    """One exchange, its answer thrown away; fails on an HTTP error."""
    argv = ["curl", "-sS", "--fail", "-o", os.devnull, "--max-time", "300"]
    if upload:
        argv += ["-X", "POST", "-T", upload, "-H", "Expect:"]
    subprocess.run(argv + [url], check=True, timeout=320)


def summary(dump):
    with open(dump) as file:
        return next(int(line.split()[1]) for line in file if line.startswith("summary:"))


def measure(name, command, port, mib, body, scratch):
    """Runs `command` under callgrind; returns instructions a MiB of an
    answer, and of an upload."""
    process, out, log = under_callgrind(name, command, scratch)
    url = f"http://127.0.0.1:{port}"
    exchanges = [
        ("answer", lambda: curl(f"{url}/big?mb={mib}")),
        ("upload", lambda: curl(f"{url}/upload", upload=body)),
    ]
    counted = {}
    try:
        until_accepts(port, timeout=120, process=process)
        for _, exchange in exchanges:
            exchange()
        for dumped, (what, exchange) in enumerate(exchanges, start=1):
            control = ["callgrind_control", "-z", str(process.pid)]
            subprocess.run(control, check=True, capture_output=True, timeout=60)
            for _ in range(ROUNDS):
                exchange()
            control[1] = "-d"
            subprocess.run(control, check=True, capture_output=True, timeout=120)
            counted[what] = summary(f"{out}.{dumped}") / (ROUNDS * mib)
    finally:
        stop(process)
        log.close()
    return counted


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="MiB an exchange")
    parser.add_argument("--also", action="append", default=[], metavar="NAME=BINARY",
                        help="another build of 17-complete, run with the same config")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "curl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt: valgrind curl)")
    target = os.path.join(ROOT, "target", "production")
    origin_bin = os.path.join(target, "origin")
    contenders = [("hyper-floor", os.path.join(target, "examples", "hyper-floor"), False),
                  ("17-complete", os.path.join(target, "17-complete"), True)]
    contenders += [(name, binary, True) for name, _, binary in (a.partition("=") for a in args.also)]
    for binary in [origin_bin] + [binary for _, binary, _ in contenders]:
        if not os.path.exists(binary):
            sys.exit(f"{binary} not built (cargo build --profile production "
                     "--bin 17-complete --bin origin --example hyper-floor)")

    scratch = tempfile.mkdtemp(prefix="rp-bytes-")
    body = os.path.join(scratch, "body")
    with open(body, "wb") as file:
        for _ in range(args.mib):
            file.write(os.urandom(1024 * 1024))
    origin_port = free_port()
    origin = subprocess.Popen([origin_bin, "--listen", f"127.0.0.1:{origin_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = []
    try:
        until_accepts(origin_port, timeout=30, process=origin)
        upstream = f"http://127.0.0.1:{origin_port}"
        for name, binary, configured in contenders:
            port = free_port()
            listen = f"127.0.0.1:{port}"
            command = contender_command(name, binary, configured, listen, upstream, scratch)
            counted = measure(name, command, port, args.mib, body, scratch)
            results.append((name, counted))
            print(f"{name}: {counted['answer']:,.0f} and {counted['upload']:,.0f}", flush=True)
    finally:
        stop(origin)
        os.remove(body)

    print(f"\n{ROUNDS} answers and {ROUNDS} uploads of {args.mib} MiB, "
          "instructions a MiB (callgrind)\n")
    print("| contender | answer | upload |\n|---|---:|---:|")
    for name, counted in results:
        print(f"| {name} | {counted['answer']:,.0f} | {counted['upload']:,.0f} |")
    print(f"\ncallgrind files (callgrind_annotate FILE): {scratch}")


if __name__ == "__main__":
    main()
