#!/usr/bin/env python3
"""Looks for a request that makes step 17 panic (a search, not a test).

    cargo build --bin 17-complete
    python3 bench/malformed_requests.py --seed 1 --count 600

Starts `17-complete` with no config: step 11's example routes in front of
its demo origin, step 12's demo apps, the status API behind a token. Then
it sends `count` HTTP/1.1 requests, each made at random (seeded) from
odd pieces: methods (`CONNECT`, `PRI`, a NUL byte), targets (`%zz`, `..`,
absolute-form, 4 000 bytes), hosts (unclosed `[`, empty, an app's name
with a dot at its end), headers (`Accept` with bad weights, conflicting
lengths, `Upgrade` lists, a 5 000-byte token). It counts the lines of
the proxy's stderr that say `panicked`: the debug build, so an overflow
panics too. Step 14 answers a panic with a 500 (answer_safely); this
looks for inputs that reach one.

Standard library only; loopback only; every wait bounded; it ends the
process it started, by its PID.
"""
import argparse
import random
import re
import socket
import subprocess
import tempfile

METHODS = ["GET", "POST", "HEAD", "OPTIONS", "CONNECT", "DELETE", "PRI", "G\x00T", "PUT"]
TARGETS = [
    "/", "/echo", "/api/x", "/%", "/%zz", "/..", "/../../etc", "//", "/a/../../b",
    "/\x7f", "/echo?%", "/echo?a=%ff", "/" + "a/" * 2000, "*", "http://x/echo",
    "http://[::1/echo", "http://a:99999/", "/_proxy/apps", "/_proxy/metrics",
    "/_proxy/apps/hello", "/_proxy/apps/%2e%2e",
]
HOSTS = [
    "x", "hello.localhost", "HELLO.LOCALHOST.", "[::1]", "[::1", "a:b:c",
    "localhost:99999", ".localhost", "..localhost", "\xe9.localhost",
    "a" * 300 + ".localhost", "docs.localhost:0", "-.localhost",
    "hello.localhost:80:80", "",
]
HEADERS = [
    "Accept: */*;q=2", "Accept: text/html;q=abc, application/json;q=0.5",
    "Accept: ;;;,,", "Accept: a/b;q=0.", "Cookie: a=b", "Content-Length: -1",
    "Content-Length: 99999999999999999999", "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip, chunked", "TE: trailers", "Connection: upgrade",
    "Upgrade: websocket", "Upgrade: ,,,", "Connection: upgrade, close, x",
    "Expect: 100-continue", "Authorization: Bearer tok", "Authorization: Bearer",
    "Authorization: Bearer " + "x" * 5000, "X-Forwarded-For: ,,,",
    'Forwarded: for="[::1', "Range: bytes=99-1", "Host: second",
]


def one_request(rng):
    headers = rng.sample(HEADERS, rng.randint(0, 4))
    head = f"{rng.choice(METHODS)} {rng.choice(TARGETS)} HTTP/1.1\r\nHost: {rng.choice(HOSTS)}\r\n"
    head += "".join(f"{header}\r\n" for header in headers) + "\r\n"
    body = b"5\r\nhello\r\n0\r\n\r\n" if any("chunked" in h for h in headers) else b""
    return head.encode("latin1") + body


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", default="target/debug/17-complete")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=600)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryFile("w+") as stderr:
        proxy = subprocess.Popen(
            [args.proxy, "--listen", "127.0.0.1:0", "--admin-token", "tok"],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
        try:
            address = None
            for _ in range(50):
                found = re.match(r"listening on http://(\S+)", proxy.stdout.readline())
                if found:
                    address = found.group(1)
                    break
            if address is None:
                raise SystemExit("the proxy did not say where it listens")
            host, port = address.rsplit(":", 1)
            answered = 0
            for _ in range(args.count):
                try:
                    with socket.create_connection((host, int(port)), timeout=3) as tcp:
                        tcp.sendall(one_request(rng))
                        if tcp.recv(65536):
                            answered += 1
                except OSError:
                    pass  # refused, reset or timed out: the next one
        finally:
            proxy.terminate()
            try:
                proxy.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proxy.kill()
        stderr.seek(0)
        panics = [line for line in stderr if "panicked" in line]
    print(f"{args.count} requests (seed {args.seed}), {answered} answered; panics: {len(panics)}")
    for line in panics:
        print(line.rstrip())


if __name__ == "__main__":
    main()
