#!/usr/bin/env python3
"""Step 17 side by side with nginx, HAProxy and step 10, in one run.

    python3 bench/compare.py                 # all four workloads, ~6 min
    python3 bench/compare.py --quick         # 2 rounds of 3 s, small and h2

It builds the binaries with the `production` profile (release with
link-time optimisation, what an operator runs), then runs the workplace's harness
(`../shared/bench/run.py`, or `--harness PATH`: nginx as the origin,
interleaved rounds, the load generator on CPU 0 and the server side on
CPU 1) with these contenders:

- `17-complete`: step 17 with its real features on: a config file with two
  routing rules (one chooses by `Accept`), the access log to a file,
  metrics counted (and the admin token set, so `/_proxy/metrics` answers);
- `10-websocket`: step 10, what step 17 started from;
- `hyper-floor`: `bench/hyper_floor.rs`, the least a hyper proxy does (no
  feature at all; HTTP/1.1 or h2c in, HTTP/1.1 out):
  what hyper itself costs a request;
- nginx and HAProxy, configured by the harness.

It writes the harness's markdown table to `bench/results/compare-DATE.md`
(stdout too) and, below it, step 17's ratios to the peers and to the floor
in the same run, beside the targets of issue 20.

Loopback only; the harness bounds every run and ends what it started.
"""
import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """\
listen = ["{{listen}}"]
admin_token = "bench"

[log]
access = "{log}"
format = "common"

[accept]
json = ["application/json"]

[[rules]]
path = "/api/*rest"
accept = ["json"]
forward = "{{upstream}}/api"

[[rules]]
path = "/*rest"
forward = "{{upstream}}"
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--harness",
        default=os.path.join(ROOT, "..", "shared", "bench", "run.py"),
        help="the harness's run.py",
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s, small and h2")
    parser.add_argument("--workloads", default="small,1m,upload,h2")
    parser.add_argument("--no-build", action="store_true", help="use target/production as it is")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="NAME=BINARY",
        help="another build of 17-complete, run the same way (before/after a change)",
    )
    args = parser.parse_args()
    if not os.path.exists(args.harness):
        sys.exit(f"no harness at {args.harness} (--harness PATH)")
    if not args.no_build:
        subprocess.run(
            [
                "cargo", "build", "--profile", "production",
                "--bin", "17-complete", "--bin", "10-websocket",
                "--example", "hyper-floor",
            ],
            cwd=ROOT,
            check=True,
            timeout=900,
        )
    scratch = tempfile.mkdtemp(prefix="rp-compare-")

    def features_on(name, binary):
        """A template for the harness: the shell writes the config (the
        harness fills {listen} and {upstream}), then `exec` makes the proxy
        the process the harness measures (same PID)."""
        config = os.path.join(scratch, f"{name}.toml")
        text = CONFIG.format(log=os.path.join(scratch, f"{name}.log"))
        write_then_run = (
            f"printf %s {shlex.quote(text)} > {config} && exec {binary} --config {config}"
        )
        return f"sh -c {shlex.quote(write_then_run)}"

    command = [
        sys.executable,
        args.harness,
        "--only",
        "nginx,haproxy",
        "--ours",
        features_on("17-complete", f"{ROOT}/target/production/17-complete"),
        "--ours-name",
        "17-complete",
        "--contender",
        f"10-websocket={ROOT}/target/production/10-websocket --listen {{listen}} --upstream {{upstream}}",
        "--contender",
        f"hyper-floor={ROOT}/target/production/examples/hyper-floor --listen {{listen}} --upstream {{upstream}}",
        "--workloads",
        "small,h2" if args.quick else args.workloads,
        "--results-dir",
        os.path.join(ROOT, "bench", "results"),
    ]
    for also in args.also:
        name, _, binary = also.partition("=")
        command += ["--contender", f"{name}={features_on(name, os.path.abspath(binary))}"]
    if args.quick:
        command += ["--rounds", "2", "--duration", "3"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    sys.stderr.write(run.stderr[-4000:])
    if run.returncode != 0:
        sys.exit(f"the harness failed ({run.returncode})")
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    header = (
        f"# 17-complete beside nginx, HAProxy, step 10 and hyper's floor\n\n"
        f"{stamp}, {platform.machine()}, {os.cpu_count()} cores; "
        f"`python3 bench/compare.py{' --quick' if args.quick else ''}`\n\n"
    )
    report = header + run.stdout + "\n" + ratios(run.stdout)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    out = os.path.join(
        ROOT, "bench", "results", f"compare-{datetime.datetime.now():%Y%m%d-%H%M}.md"
    )
    with open(out, "w") as file:
        file.write(report)
    print(report)
    print(f"written to {os.path.relpath(out, ROOT)}")


def ratios(output):
    """Step 17's ratios to the best of nginx and HAProxy and to the floor,
    beside issue 20's targets, from the harness's JSON results (its output
    names the file: `raw results: PATH.json`)."""
    import json
    import re

    found = re.search(r"raw results: (\S+\.json)", output)
    if not found:
        return "(the harness named no JSON results)\n"
    with open(found.group(1)) as file:
        summary = json.load(file)["summary"]

    def value(workload, name, key="median"):
        got = summary.get(workload, {}).get(name) or {}
        return got.get(key)

    def ratio(a, b):
        return f"{a / b:.2f}" if a and b else "n/a"

    def best(workload, key="median", lower=False):
        peers = [value(workload, name, key) for name in ("nginx", "haproxy")]
        peers = [peer for peer in peers if peer]
        return (min if lower else max)(peers) if peers else None

    ours = "17-complete"
    rows = [
        ("small GET req/s ÷ best peer", ratio(value("small", ours), best("small")), "≥ 0.95"),
        ("small GET CPU/req ÷ floor's",
         ratio(value("small", ours, "proxy_cpu_per_unit"),
               value("small", "hyper-floor", "proxy_cpu_per_unit")), "≤ 1.10"),
        ("small GET p99 ÷ best peer's",
         ratio(value("small", ours, "p99_ms"), best("small", "p99_ms", lower=True)), "≤ 1.10"),
        ("h2c GET req/s ÷ nginx", ratio(value("h2", ours), value("h2", "nginx")), "≥ 1.00"),
        ("h2c GET req/s ÷ HAProxy", ratio(value("h2", ours), value("h2", "haproxy")), "≥ 0.75"),
        ("h2c GET CPU/req ÷ floor's",
         ratio(value("h2", ours, "proxy_cpu_per_unit"),
               value("h2", "hyper-floor", "proxy_cpu_per_unit")), "≤ 1.10"),
        ("1 MiB GET MiB/s ÷ best peer", ratio(value("1m", ours), best("1m")), "≥ 1.40"),
        ("256 MiB upload s ÷ best peer", ratio(value("upload", ours), best("upload", lower=True)),
         "≤ 1.00"),
        ("256 MiB upload peak RSS MiB", f"{value('upload', ours, 'peak_rss_mib') or 'n/a'}",
         "≤ 12"),
    ]
    lines = ["| 17-complete | this run | issue 20's target |", "|---|---:|---:|"]
    lines += [f"| {what} | {got} | {target} |" for what, got, target in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
