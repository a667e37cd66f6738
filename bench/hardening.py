#!/usr/bin/env python3
"""Step 17's hardening, measured from outside (figures, not tests).

    cargo build --release --bin 17-complete --bin origin
    python3 bench/hardening.py

- slowloris: a client sends a request head one byte a second; how long
  until the proxy cuts it off (header_read, default 10 s);
- shutdown: N requests of 3 s each in flight, SIGTERM 1 s in; how many
  are answered 200, and the proxy's exit code;
- idle: N keep-alive connections, each after one request, held open; the
  proxy's resident memory before and after (VmRSS), per connection; and
  the same for hyper's floor (`bench/hyper_floor.rs`, if built in the
  same target folder: `cargo build --release --example hyper-floor`),
  what hyper itself keeps for a connection.

Standard library only; loopback only; every wait bounded; it ends the
processes it started, by their PID.
"""
import argparse
import os
import resource
import signal
import socket
import subprocess
import tempfile
import threading
import time

from loopback import free_port, rss_kib, stop, until_accepts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(proxy, origin_port, extra_config=""):
    folder = tempfile.mkdtemp(prefix="hardening-")
    config = os.path.join(folder, "proxy.toml")
    port = free_port()
    with open(config, "w") as file:
        file.write(f'listen = ["127.0.0.1:{port}"]\n[log]\naccess = "off"\n{extra_config}\n'
                   f'[[rules]]\npath = "/*rest"\nforward = "http://127.0.0.1:{origin_port}"\n')
    process = subprocess.Popen([proxy, "--config", config], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    until_accepts(port)
    return process, port



def slowloris(proxy, origin_port):
    process, port = start(proxy, origin_port)
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        started = time.monotonic()
        head = b"GET /echo HTTP/1.1\r\nhost: slow.example\r\n" + b"x-padding: " + b"a" * 60 + b"\r\n\r\n"
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
                sock.settimeout(1.0)
                if sock.recv(1) == b"":
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        took = time.monotonic() - started
        sock.close()
        return took
    finally:
        stop(process)


def shutdown(proxy, origin_port, count):
    process, port = start(proxy, origin_port, '[shutdown]\ngrace = "30s"\n')
    answers = []

    def one():
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(b"GET /slow?ms=3000 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            answers.append(data.startswith(b"HTTP/1.1 200"))
        except OSError:
            answers.append(False)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=40)
    took = time.monotonic() - started
    for thread in threads:
        thread.join(timeout=40)
    return sum(answers), count, code, took


def start_floor(floor, origin_port):
    port = free_port()
    process = subprocess.Popen(
        [floor, "--listen", f"127.0.0.1:{port}", "--upstream", f"http://127.0.0.1:{origin_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    until_accepts(port)
    return process, port


def idle(proxy, origin_port, count, floor=False):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if floor:
        process, port = start_floor(proxy, origin_port)
    else:
        process, port = start(proxy, origin_port,
                              f'[timeouts]\nheader_read = "120s"\n'
                              f'[limits]\nmax_connections = {count + 100}\n')
    try:
        before = rss_kib(process.pid)
        sockets = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            sockets.append(sock)
        for sock in sockets:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    raise SystemExit("a connection closed")
                data += chunk
        after = rss_kib(process.pid)
        for sock in sockets:
            sock.close()
        return before, after
    finally:
        stop(process)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--target", default=os.path.join(ROOT, "target", "release"))
    args = parser.parse_args()
    proxy = os.path.join(args.target, "17-complete")
    origin_bin = os.path.join(args.target, "origin")
    origin_port = free_port()
    origin = subprocess.Popen([origin_bin, "--listen", f"127.0.0.1:{origin_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until_accepts(origin_port)
        took = slowloris(proxy, origin_port)
        print(f"slowloris: cut off after {took:.1f} s (header_read 10 s)")
        answered, count, code, took = shutdown(proxy, origin_port, args.in_flight)
        print(f"shutdown: {answered}/{count} requests in flight answered 200, exit {code}, "
              f"{took:.1f} s after SIGTERM")
        before, after = idle(proxy, origin_port, args.idle)
        per = (after - before) / args.idle
        print(f"idle: {args.idle} keep-alive connections: RSS {before / 1024:.1f} MiB -> "
              f"{after / 1024:.1f} MiB, {per:.1f} KiB each")
        floor = os.path.join(args.target, "examples", "hyper-floor")
        if os.path.exists(floor):
            before, after = idle(floor, origin_port, args.idle, floor=True)
            floor_per = (after - before) / args.idle
            print(f"idle, hyper's floor: RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB, "
                  f"{floor_per:.1f} KiB each: step 17 keeps {per - floor_per:.1f} KiB more")
    finally:
        origin.terminate()
        origin.wait(timeout=10)


if __name__ == "__main__":
    main()
