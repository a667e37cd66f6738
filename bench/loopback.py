"""What the bench scripts share: free loopback ports, waiting for one to
accept, a process's resident memory, ending a process they started.
Standard library only."""
import signal
import socket
import subprocess
import time


def free_port():
    """A port free on 127.0.0.1 now (a process could take it before us)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def until_accepts(port, timeout=10.0, process=None):
    """Waits (at most `timeout`) until something accepts on `port`; stops
    waiting if `process`, the one that should, has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"{process.args[0]} exited ({process.returncode}) "
                             f"before accepting on port {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.0002)
    raise SystemExit(f"nothing accepted on port {port} within {timeout} s")


def rss_kib(pid):
    """The resident memory of process `pid` (VmRSS), KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stop(process, timeout=40):
    """Ends a process we started: SIGTERM, then SIGKILL if it is still
    there after `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
