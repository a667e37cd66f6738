#!/usr/bin/env python3
"""Instructions a request, by callgrind: step 17 (with bench/compare.py's
config: two rules, the access log to a file, metrics) beside hyper's floor,
counted the same way. compare.py says how fast, beside nginx and HAProxy;
this says where the time goes, and does not move with a shared machine's
noise as timings do.

    cargo build --profile production --bin 17-complete --example hyper-floor
    python3 bench/instructions.py                 # HTTP/1.1
    python3 bench/instructions.py --h2            # h2c, 8 streams a connection
    python3 bench/instructions.py --also before=/tmp/17-complete-before
    python3 bench/instructions.py --features      # what each feature adds

Each contender runs under valgrind's callgrind, on one core when there are
two (so step 17 takes tokio's current-thread scheduler, as in the bench), in
front of nginx serving a 5-byte file. h2load sends 2,000 requests to warm it
up; callgrind's counters are zeroed; then `--requests` (8 connections) are
counted, every thread of the proxy included. It prints instructions a
request and, for each contender, the functions that spend the most (their
own instructions, not their callees'; inlined code counts as its caller's).

`--features` runs step 17 alone, under one config per feature: a bare
config (one rule, no log), then the same with one feature added, and says
what each adds to a request. What cannot be turned off (metrics, the
deadlines) is given as the instructions of the functions that do it,
callees included. proxy.example.toml's comments quote these figures.

Needs valgrind, nginx and h2load (apt: valgrind nginx nghttp2-client).
Loopback only; every wait is bounded; it ends what it started, by PID.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

from compare import CONFIG
from loopback import free_port, stop, until_accepts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARM_UP = 2000

NGINX = """\
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location = /small {{ root {dir}/www; default_type text/plain; }}
  }}
}}
"""


# --features: a bare config, and what each variant adds to it. Every
# request asks for HTML (`Accept: text/html`, as a browser's page does), so
# that a rule by `Accept` is tried and not chosen.
BARE = """\
listen = ["{listen}"]

[log]
{log}

{more}
[[rules]]
path = "/*rest"
forward = "{upstream}"
"""
NO_LOG = 'access = "off"'
ACCEPT = "accept: text/html"
# Chrome's, for a page.
BROWSER = ("accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
           "image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7")
BY_ACCEPT = ('[accept]\njson = ["application/json"]\n\n'
             '[[rules]]\npath = "/*rest"\naccept = ["json"]\nforward = "{upstream}"\n')

# (name, its [log], what comes before the bare config's rule, the request's
# Accept if not ACCEPT)
FEATURES = [
    ("bare: one rule, no log", NO_LOG, "", None),
    ("access log, common format, to a file", 'access = "{file}"\nformat = "common"', "", None),
    ("access log, JSON, to a file", 'access = "{file}"\nformat = "json"', "", None),
    ("a rule by Accept tried first (JSON; the request asks for HTML)", NO_LOG, BY_ACCEPT, None),
    ("the same, the request with Chrome's Accept for a page", NO_LOG, BY_ACCEPT, BROWSER),
    ("max_request_body", NO_LOG, "[limits]\nmax_request_body = 10485760\n", None),
    ("an app on demand (the request is for another host)", NO_LOG,
     '[on_demand]\ndomain = "localhost"\n\n'
     '[[apps]]\nname = "hello"\ncommand = ["python3", "-m", "http.server", "{port}"]\n',
     None),
]

# Always on: the functions that do it, callees included.
ALWAYS = [
    ("metrics: counting the response", ["kit::metrics::Metrics::count"]),
    ("response_head: the upstream's deadline, polled (its removal from tokio's timer "
     "wheel is not counted)", ["tokio::time::timeout::poll_delay"]),
    # keep_alive and header_read are the kit's HeadClock, inlined in the
    # connection's reads: one timer a connection, moved lazily, so no
    # function to count (hyper's timer for every head, until 2026-12-07:
    # 650 to 730).
]


def feature_config(log, more, listen, upstream, file):
    """BARE with its `[log]` table's lines and what comes before its rule."""
    text = BARE.replace("{log}", log).replace("{more}", more)
    return text.replace("{listen}", listen).replace("{upstream}", upstream).replace("{file}", file)


def inclusive(dump, count, functions):
    """Instructions a request of `functions`, callees included; None if
    one is missing (inlined)."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump],
        capture_output=True, text=True, timeout=300,
    ).stdout
    costs = {}
    for line in text.splitlines():
        found = re.match(r"\s*([\d,]+) \([^)]*\)\s+\S*?:(.*?) \[", line)
        if found and found.group(2) in functions:
            cost = int(found.group(1).replace(",", "")) / count
            costs[found.group(2)] = costs.get(found.group(2), 0) + cost
    return sum(costs.values()) if len(costs) == len(functions) else None


def features(binary, upstream, args, scratch):
    """`--features`: step 17 under each of FEATURES' configs."""
    results = []
    # Logs in a folder of their own: step 17 watches its config's folder.
    logs = os.path.join(scratch, "logs")
    os.makedirs(logs)
    for index, (name, log, more, accept) in enumerate(FEATURES):
        port = free_port()
        config = os.path.join(scratch, f"feature-{index}.toml")
        with open(config, "w") as file:
            file.write(feature_config(log, more, f"127.0.0.1:{port}", upstream,
                                      os.path.join(logs, f"feature-{index}.log")))
        per_request, dump = measure(f"feature-{index}", [binary, "--config", config],
                                    port, args.requests, args.h2, scratch, [accept or ACCEPT])
        results.append((name, per_request, dump))
        print(f"{name}: {per_request:,.0f} instructions a request", flush=True)
    bare = results[0][1]
    protocol = "h2c" if args.h2 else "HTTP/1.1"
    print(f"\n{protocol}, {args.requests:,} GET /small ({ACCEPT}), step 17, "
          "instructions a request (callgrind)\n")
    print("| config | instructions | added |\n|---|---:|---:|")
    for index, (name, per_request, _) in enumerate(results):
        added = f"{per_request - bare:+,.0f}" if index else ""
        print(f"| {name} | {per_request:,.0f} | {added} |")
    print("\nAlways on (in the bare config; the function, callees included):\n")
    for name, functions in ALWAYS:
        cost = inclusive(results[0][2], args.requests, functions)
        shown = "?" if cost is None else f"{cost:,.0f}"
        print(f"  {shown:>7}  {name}")
        if cost is None:
            print("           (a function not found: inlined, or renamed)")


def h2load(port, count, h2, headers=()):
    """`count` GETs of /small; fails loudly unless every one succeeded."""
    argv = ["h2load", "-n", str(count), "-c", "8"]
    for header in headers:
        argv += ["-H", header]
    argv += ["-m", "8"] if h2 else ["--h1"]
    argv.append(f"http://127.0.0.1:{port}/small")
    if shutil.which("taskset") and os.cpu_count() >= 2:
        argv = ["taskset", "-c", "0"] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600).stdout
    if f"{count} succeeded" not in out:
        sys.exit(f"h2load: not every request succeeded:\n{out[-800:]}")


def contender_command(name, binary, configured, listen, upstream, scratch):
    """How a contender runs: step 17 (and `--also` builds) with
    compare.py's config written to `scratch`, the floor with flags."""
    if not configured:
        return [binary, "--listen", listen, "--upstream", upstream]
    config = os.path.join(scratch, f"{name}.toml")
    with open(config, "w") as file:
        text = CONFIG.format(log=os.path.join(scratch, f"{name}.log"))
        file.write(text.replace("{listen}", listen).replace("{upstream}", upstream))
    return [binary, "--config", config]


def under_callgrind(name, command, scratch):
    """Starts `command` under callgrind, on core 1 when there are two;
    returns the process, its callgrind file (a dump is that file `.1`,
    `.2`…) and its open log."""
    out = os.path.join(scratch, f"{name}.callgrind")
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + command
    if shutil.which("taskset") and os.cpu_count() >= 2:
        argv = ["taskset", "-c", "1"] + argv
    log = open(os.path.join(scratch, f"{name}.valgrind.txt"), "w")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log), out, log


def measure(name, command, port, count, h2, scratch, headers=()):
    """Runs `command` under callgrind; returns (instructions a request,
    the callgrind file of the counted requests)."""
    process, out, log = under_callgrind(name, command, scratch)
    try:
        until_accepts(port, timeout=120, process=process)
        h2load(port, WARM_UP, h2, headers)
        subprocess.run(["callgrind_control", "-z", str(process.pid)], check=True,
                       capture_output=True, timeout=60)
        h2load(port, count, h2, headers)
        subprocess.run(["callgrind_control", "-d", str(process.pid)], check=True,
                       capture_output=True, timeout=120)
    finally:
        stop(process)
        log.close()
    dump = f"{out}.1"
    with open(dump) as file:
        total = next(int(line.split()[1]) for line in file if line.startswith("summary:"))
    return total / count, dump


def top(dump, count, how_many):
    """The functions that spend the most of their own, a request each."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", dump],
        capture_output=True, text=True, timeout=300,
    ).stdout
    rows = []
    for line in text.split("file:function", 1)[-1].splitlines():
        found = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*)", line)
        if found:
            rows.append((int(found.group(1).replace(",", "")), found.group(2)))
    total = max((cost for cost, _ in rows), default=1)
    # The program's outermost frames claim everything: not a function's own.
    rows = [(cost, where) for cost, where in rows if cost < 0.9 * total]
    return [(cost / count, re.sub(r" \[.*\]$", "", where)) for cost, where in rows[:how_many]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--h2", action="store_true", help="h2c instead of HTTP/1.1")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--top", type=int, default=15, help="functions listed per contender")
    parser.add_argument("--also", action="append", default=[], metavar="NAME=BINARY",
                        help="another build of 17-complete, run with the same config")
    parser.add_argument("--features", action="store_true",
                        help="step 17 alone, under a config per feature: what each adds")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate", "nginx", "h2load"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt: valgrind nginx nghttp2-client)")
    target = os.path.join(ROOT, "target", "production")
    floor = os.path.join(target, "examples", "hyper-floor")
    contenders = [("hyper-floor", floor, False), ("17-complete", os.path.join(target, "17-complete"), True)]
    contenders += [(name, binary, True) for name, _, binary in (a.partition("=") for a in args.also)]
    if args.features:
        contenders = contenders[1:2]  # step 17 alone (--also does not count)
    for _, binary, _ in contenders:
        if not os.path.exists(binary):
            sys.exit(f"{binary} not built (cargo build --profile production "
                     "--bin 17-complete --example hyper-floor)")

    scratch = tempfile.mkdtemp(prefix="rp-instructions-")
    # nginx's file in a folder of its own: step 17 watches its config's
    # folder, and would see nginx open the file for every request.
    os.makedirs(os.path.join(scratch, "www"))
    with open(os.path.join(scratch, "www", "small"), "w") as file:
        file.write("hello")
    origin_port = free_port()
    with open(os.path.join(scratch, "nginx.conf"), "w") as file:
        file.write(NGINX.format(dir=scratch, port=origin_port))
    origin = subprocess.Popen(["nginx", "-p", scratch, "-c", os.path.join(scratch, "nginx.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = []
    try:
        until_accepts(origin_port)
        upstream = f"http://127.0.0.1:{origin_port}"
        if args.features:
            features(contenders[0][1], upstream, args, scratch)
            print(f"\ncallgrind files (callgrind_annotate FILE): {scratch}")
            return
        for name, binary, configured in contenders:
            port = free_port()
            listen = f"127.0.0.1:{port}"
            command = contender_command(name, binary, configured, listen, upstream, scratch)
            per_request, dump = measure(name, command, port, args.requests, args.h2, scratch)
            results.append((name, per_request, dump))
            print(f"{name}: {per_request:,.0f} instructions a request", flush=True)
    finally:
        stop(origin)

    floor_cost = results[0][1]
    protocol = "h2c" if args.h2 else "HTTP/1.1"
    print(f"\n{protocol}, {args.requests:,} GET /small, instructions a request (callgrind)\n")
    print("| contender | instructions | ÷ floor |\n|---|---:|---:|")
    for name, per_request, _ in results:
        print(f"| {name} | {per_request:,.0f} | {per_request / floor_cost:.2f} |")
    for name, _, dump in results:
        print(f"\n{name}: its own instructions a request, most first\n")
        for cost, where in top(dump, args.requests, args.top):
            print(f"  {cost:7,.0f}  {where[:150]}")
    print(f"\ncallgrind files (callgrind_annotate FILE): {scratch}")


if __name__ == "__main__":
    main()
