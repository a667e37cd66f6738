#!/usr/bin/env python3
"""WebSocket echo round trips per second, one connection, one message in flight.

    python3 bench/ws_echo_rate.py ws://127.0.0.1:9000/ws          # the origin directly
    python3 bench/ws_echo_rate.py ws://127.0.0.1:8080/ws          # through a step

Standard library only: a minimal RFC 6455 client (masked frames out,
unmasked frames in, no fragmentation). Loopback only; bounded by --messages
and --seconds.
"""
import argparse
import base64
import os
import socket
import struct
import time
from urllib.parse import urlparse


def handshake(sock, host, path):
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
         f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("the server closed during the handshake")
        head += chunk
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status:
        raise SystemExit(f"no 101: {status!r}")
    return head.split(b"\r\n\r\n", 1)[1]


def frame(payload):
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
    return header + mask + masked


def read_exact(sock, buffer, n):
    while len(buffer) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("the connection closed")
        buffer += chunk
    return buffer[:n], buffer[n:]


def read_frame(sock, buffer):
    head, buffer = read_exact(sock, buffer, 2)
    length = head[1] & 0x7F
    if length == 126:
        ext, buffer = read_exact(sock, buffer, 2)
        length = struct.unpack("!H", ext)[0]
    elif length == 127:
        ext, buffer = read_exact(sock, buffer, 8)
        length = struct.unpack("!Q", ext)[0]
    payload, buffer = read_exact(sock, buffer, length)
    return payload, buffer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    url = urlparse(args.url)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loopback only")
    sock = socket.create_connection((url.hostname, url.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = handshake(sock, url.netloc, url.path or "/")
    payload = b"x" * args.size
    message = frame(payload)
    started = time.perf_counter()
    done = 0
    while done < args.messages and time.perf_counter() - started < args.seconds:
        sock.sendall(message)
        echoed, buffer = read_frame(sock, buffer)
        if echoed != payload:
            raise SystemExit("the echo differs")
        done += 1
    elapsed = time.perf_counter() - started
    print(f"{args.url}: {done} round trips of {args.size} bytes in {elapsed:.2f} s: "
          f"{done / elapsed:,.0f}/s, mean {elapsed / done * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
