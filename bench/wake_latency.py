#!/usr/bin/env python3
"""Step 12: how long the first request to a sleeping app takes, against a
request to an awake app and the app's own start-up time.

    cargo build --release --bin 12-wake --bin origin
    python3 bench/wake_latency.py                 # 20 wakes, 2000 awake requests

What it prints, medians and 90th percentiles in milliseconds:
- "app alone": the demo origin started directly, until it accepts a
  connection (polled every 0.2 ms): what no proxy can beat;
- "wake": the first request to a sleeping app through 12-wake, until
  its whole answer (the app is stopped through the status API before each);
- "awake": a request to the same app once awake, on a kept-alive connection.
The wake's cost over the app alone and the awake request is the proxy's:
the readiness polling (backoff from 1 ms) and the hand-over to the held
request.

Standard library only; loopback only; every loop bounded by its count and
every wait by a timeout; it ends the processes it started, by their PID.
"""
import argparse
import http.client
import os
import statistics
import subprocess
import tempfile
import time

from loopback import free_port, until_accepts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-token"


def app_alone(origin, rounds):
    times = []
    for _ in range(rounds):
        port = free_port()
        started = time.monotonic()
        process = subprocess.Popen([origin, "--listen", f"127.0.0.1:{port}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            until_accepts(port)
            times.append(time.monotonic() - started)
        finally:
            process.terminate()
            process.wait(timeout=10)
    return times


def ask(port, method, path, host, token=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Host": host, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection.request(method, path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def summary(name, seconds):
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    return f"{name:10} median {statistics.median(ms):8.2f} ms   p90 {p90:8.2f} ms   ({len(ms)} runs)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wakes", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--target", default=os.path.join(ROOT, "target", "release"))
    args = parser.parse_args()
    proxy_bin = os.path.join(args.target, "12-wake")
    origin = os.path.join(args.target, "origin")
    for binary in (proxy_bin, origin):
        if not os.path.exists(binary):
            raise SystemExit(f"{binary} is missing: cargo build --release --bin 12-wake --bin origin")

    alone = app_alone(origin, args.wakes)

    with tempfile.TemporaryDirectory() as folder:
        apps = os.path.join(folder, "apps.toml")
        with open(apps, "w") as file:
            file.write(f'[[apps]]\nname = "hello"\ncommand = ["{origin}", "--listen", "127.0.0.1:{{port}}"]\n'
                       'idle = "1h"\n')
        port = free_port()
        proxy = subprocess.Popen(
            [proxy_bin, "--listen", f"127.0.0.1:{port}", "--apps", apps,
             "--upstream", "http://127.0.0.1:9", "--admin-token", TOKEN],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            until_accepts(port)
            wakes = []
            for _ in range(args.wakes):
                status, body = ask(port, "POST", "/_proxy/apps/hello/stop", "127.0.0.1", TOKEN)
                if status != 200 or b'"asleep"' not in body:
                    raise SystemExit(f"could not stop the app: {status} {body[:200]!r}")
                started = time.monotonic()
                status, _ = ask(port, "GET", "/echo", "hello.localhost")
                wakes.append(time.monotonic() - started)
                if status != 200:
                    raise SystemExit(f"the first request got {status}")
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            awake = []
            for _ in range(args.requests):
                started = time.monotonic()
                connection.request("GET", "/echo", headers={"Host": "hello.localhost"})
                response = connection.getresponse()
                response.read()
                awake.append(time.monotonic() - started)
                if response.status != 200:
                    raise SystemExit(f"an awake request got {response.status}")
            connection.close()
        finally:
            proxy.terminate()
            proxy.wait(timeout=20)

    print(summary("app alone", alone))
    print(summary("wake", wakes))
    print(summary("awake", awake))


if __name__ == "__main__":
    main()
