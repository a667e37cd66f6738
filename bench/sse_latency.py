#!/usr/bin/env python3
"""How long a server-sent event takes from the demo origin to the client.

    python3 bench/sse_latency.py 127.0.0.1:9000 direct      # the origin alone
    python3 bench/sse_latency.py 127.0.0.1:8080 through     # through a step

The origin stamps each event with its send time (`sent at <unix ms> ms`);
this client compares with the arrival time: same machine, same clock.
Standard library only; loopback only; 50 events, 5 s socket timeout.
"""
import socket, sys, time, statistics
host, port = sys.argv[1].rsplit(":", 1)
if host not in ("127.0.0.1", "localhost", "::1"):
    raise SystemExit("loopback only")
s = socket.create_connection((host, int(port))); s.settimeout(5)
s.sendall(b"GET /sse?n=50&interval_ms=40 HTTP/1.1\r\nHost: x\r\n\r\n")
buf = b""; delays = []
deadline = time.time() + 10
while len(delays) < 50 and time.time() < deadline:
    data = s.recv(65536)
    if not data: break
    now = time.time() * 1000
    buf += data
    while b" ms\n" in buf and b"sent at " in buf:
        head, _, buf = buf.partition(b" ms\n")
        delays.append(now - int(head.split(b"sent at ")[-1]))
print(f"{sys.argv[2]}: n={len(delays)} median={statistics.median(delays):.2f} ms p90={sorted(delays)[int(len(delays)*0.9)]:.2f} ms max={max(delays):.2f} ms")
