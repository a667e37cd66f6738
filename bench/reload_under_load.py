#!/usr/bin/env python3
"""Does a reload ever fail a request? Step 11 under continuous load, its
routes file rewritten every 100 ms.

    python3 bench/reload_under_load.py target/release/11-routing [REQUESTS]

Starts the step on a free loopback port with a routes file of its own (two
rule sets, `blue` and `green`, answered by the proxy itself, so the proxy is
all that is measured), runs 8 keep-alive clients until REQUESTS (default
20 000) have been answered, and meanwhile renames a new routes file over the
old one every 100 ms, as editors save. Prints the requests, the failures
(anything but a 200 carrying one of the two colours), the reloads the proxy
logged and the colours seen. Standard library only; loopback only; every
wait is bounded; the step is stopped (by its PID) at the end.
"""
import http.client, os, subprocess, sys, tempfile, threading, time

binary = sys.argv[1]
total = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
clients = 8

def rules(color):
    return ('[[rules]]\npath = "/*rest"\n'
            f'respond = {{ status = 200, body = "{color}" }}\n')

folder = tempfile.mkdtemp(prefix="reload-")
routes = os.path.join(folder, "routes.toml")
with open(routes, "w") as f:
    f.write(rules("blue"))
proxy = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--routes", routes],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, RUST_LOG="info"))
try:
    addr = proxy.stdout.readline().split("//", 1)[1].strip()
    while not proxy.stdout.readline().startswith("routes:"):
        pass
    host, port = addr.rsplit(":", 1)
    logs = []
    threading.Thread(target=lambda: logs.extend(proxy.stderr), daemon=True).start()

    lock, done, failures, colors = threading.Lock(), [0], [], set()
    def client():
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        while True:
            with lock:
                if done[0] >= total:
                    return
                done[0] += 1
            try:
                conn.request("GET", "/color")
                response = conn.getresponse()
                body = response.read().decode()
                ok = response.status == 200 and body in ("blue", "green")
            except Exception as err:
                ok, body = False, repr(err)
                conn = http.client.HTTPConnection(host, int(port), timeout=5)
            with lock:
                colors.add(body) if ok else failures.append(body)

    stop = threading.Event()
    def reloader():
        n = 0
        while not stop.wait(0.1):
            n += 1
            with open(routes + ".new", "w") as f:
                f.write(rules("green" if n % 2 else "blue"))
            os.rename(routes + ".new", routes)

    started = time.time()
    workers = [threading.Thread(target=client) for _ in range(clients)]
    changer = threading.Thread(target=reloader)
    changer.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    stop.set()
    changer.join(timeout=5)
    elapsed = time.time() - started
    time.sleep(0.3)  # the last reload's log line, for the count only
    reloads = sum("routes reloaded" in line for line in logs)
    print(f"{done[0]} requests in {elapsed:.1f} s by {clients} keep-alive clients, "
          f"routes file replaced every 100 ms: {reloads} reloads logged, "
          f"{len(failures)} failed, colours seen: {sorted(colors)}")
    if failures:
        print("first failures:", failures[:5])
        sys.exit(1)
finally:
    proxy.terminate()
    proxy.wait(timeout=10)
    for name in os.listdir(folder):
        os.remove(os.path.join(folder, name))
    os.rmdir(folder)
