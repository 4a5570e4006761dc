#!/usr/bin/env python3
"""wait_worker.py PORT PID N WHAT: the timing half of bench/lib.sh time_worker.

Waits until the worker on PORT (process PID) is ready (its group join is
not work; up to 30 s), then until it has had N receipts acknowledged
(openexec_receipts_produced_total, up to 300 s). Prints "start end
peak_rss_kib" (seconds since the epoch; VmHWM of PID); exits 1 with a line
on stderr if the worker exits or times out.

One process, one kept-alive HTTP connection, one poll every 20 ms: about
0.3 ms of CPU per poll. The shell loop it replaces started curl, awk and
date on every poll, about 12 ms of CPU each time: a fifth of a CPU taken
from the worker being measured, on a machine of two.
"""
import http.client
import os
import sys
import time

POLL_S = 0.02
METRIC = b"openexec_receipts_produced_total "


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Admin:
    def __init__(self, port):
        self.port = port
        self.conn = None

    def get(self, path):
        """(status, body) of GET path, or None when the server cannot be reached."""
        for _ in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                self.conn.request("GET", path)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                # A kept-alive connection the server closed: one new try.
                self.conn.close()
                self.conn = None
        return None


def counter(body):
    for line in body.splitlines():
        if line.startswith(METRIC):
            return int(float(line[len(METRIC):]))
    return 0


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: wait_worker.py PORT PID N WHAT")
    port, pid, n, what = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    admin = Admin(port)
    deadline = time.monotonic() + 30
    while True:
        got = admin.get("/ready")
        if got is not None and got[0] == 200:
            break
        if not alive(pid):
            sys.exit(f"{what}: the worker exited")
        if time.monotonic() > deadline:
            sys.exit(f"{what}: not ready in 30 s")
        time.sleep(0.05)
    t0 = time.time()
    deadline = time.monotonic() + 300
    done = 0
    while True:
        got = admin.get("/metrics")
        if got is not None and got[0] == 200:
            done = counter(got[1])
            if done >= n:
                break
        if time.monotonic() > deadline:
            sys.exit(f"{what}: timed out at {done} of {n}")
        if not alive(pid):
            sys.exit(f"{what}: the worker exited")
        time.sleep(POLL_S)
    t1 = time.time()
    rss = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    rss = int(line.split()[1])
    except OSError:
        sys.exit(f"{what}: the worker exited before its peak RSS was read")
    print(f"{t0:.6f} {t1:.6f} {rss}")


if __name__ == "__main__":
    main()
