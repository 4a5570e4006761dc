"""Black-box tests of the admin HTTP server's limits (issue 6): request
framing (RFC 9112 §6.3), slow clients (per-address connection limit and
header/body deadlines), the budget for buffered request bodies, and binding
(host names, IPv6, a port in use).

The limits tested here are stated in admin-http/http.h; the numbers below
repeat them, so that a change there shows up here.

Slow clients come from other loopback addresses (127.0.0.2, ...: the whole
127.0.0.0/8 reaches the server), so that the per-address limit applies to
them and not to the probes sent from 127.0.0.1."""

import http.client
import json
import os
import resource
import select
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import BIN, ONE_MIB, Server, ServiceTest, cli, free_port, run_tests  # noqa: E402

PER_IP_CONNECTIONS = 512           # OE_HTTP_PER_IP_CONNECTIONS
HEADER_DEADLINE = 10.0             # OE_HTTP_HEADER_DEADLINE_MS, seconds
BODY_DEADLINE = 30.0               # OE_HTTP_BODY_DEADLINE_MS, seconds
BODY_BUDGET = 64 * ONE_MIB         # OE_HTTP_BODY_BUDGET
SMALL_RESERVE = 8 * ONE_MIB        # OE_HTTP_SMALL_BODY_RESERVE
PER_ADDRESS = BODY_BUDGET // 8     # OE_HTTP_BODY_PER_ADDRESS
PROBE_LIMIT = 2.5                  # seconds /health may take under attack (a
                                   # starved probe would wait for the 10 s deadline)
RSS_LIMIT_MIB = 200                # server RSS bound while bodies are stalled


def raise_fd_limit(needed):
    """Raises this process's descriptor limit (inherited by the server) to
    at least `needed`; returns the limit in effect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


def connect_from(src, port, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def closed_by_server(s):
    """True when the server closed (or reset) the connection."""
    p = select.poll()
    p.register(s, select.POLLIN)
    if not p.poll(0):
        return False
    try:
        return s.recv(4096) == b""
    except OSError:
        return True


def read_all(s, limit=10.0):
    """Everything the server sends until it closes (or `limit` seconds)."""
    s.settimeout(limit)
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            part = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not part:
            return data, True
        data += part
    return data, False


def timed_get(server, path):
    t0 = time.monotonic()
    r = server.get(path, timeout=5.0)
    return r, time.monotonic() - t0


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS for pid %d" % pid)


class HostServer(Server):
    """A server bound to --http-host HOST, spoken to at connect_host."""

    def __init__(self, workdir, host, connect_host):
        super().__init__(workdir, args=["--http-host", host])
        self.connect_host = connect_host

    def request(self, method, path, body=None, headers=None, timeout=5.0):
        conn = http.client.HTTPConnection(self.connect_host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return type("R", (), {"status": r.status, "body": r.read()})()
        finally:
            conn.close()


class Framing(ServiceTest):
    """RFC 9112 §6.3: a body whose length two parsers could read
    differently is refused with 400 and the connection closed, so nothing
    after it can be taken as a second (smuggled) request."""

    def exchange(self, port, data):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            s.sendall(data)
            return read_all(s)
        finally:
            s.close()

    def assertRefusedAndClosed(self, port, head, rest, reason):
        data, closed = self.exchange(port, head + rest)
        self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data[:200])
        self.assertIn(reason.encode(), data)
        self.assertTrue(closed, "the connection stayed open after the 400")
        self.assertEqual(data.count(b"HTTP/1.1 "), 1, "a second request was answered: %r" % data)

    def test_content_length_with_transfer_encoding(self):
        s = self.server()
        # Chunked, the body ends at once; Content-Length would take 40 bytes
        # and a front end reading it so would see the GET as body.
        smuggled = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        head = (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.assertRefusedAndClosed(s.port, head, b"0\r\n\r\n" + smuggled,
                                    "Content-Length and Transfer-Encoding")
        # The same for a route that takes no body.
        head = b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n"
        self.assertRefusedAndClosed(s.port, head, b"0\r\n\r\n" + smuggled,
                                    "Content-Length and Transfer-Encoding")
        self.assertGreaterEqual(s.metrics()["openexec_http_framing_refused_total"], 2)

    def test_conflicting_content_lengths(self):
        s = self.server()
        body = b'{"action":"echo","nonce":"cl-1","payload":{}}'
        smuggled = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        head = (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n"
                % (len(body), len(body) + len(smuggled)))
        self.assertRefusedAndClosed(s.port, head, body + smuggled, "conflicting Content-Length")
        # Nothing was executed: the nonce is still new.
        r = s.execute("echo", {}, "cl-1")
        self.assertEqual(r.json.get("status"), "executed", r)

    def test_repeated_equal_content_length_accepted(self):
        s = self.server()
        body = b'{"action":"echo","nonce":"cl-2","payload":{"a":1}}'
        head = (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                % (len(body), len(body)))
        data, _ = self.exchange(s.port, head + body)
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:300])

    def test_transfer_coding_other_than_chunked(self):
        s = self.server()
        head = (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: gzip\r\n\r\n")
        self.assertRefusedAndClosed(s.port, head, b"{}", "chunked")


class SlowClients(ServiceTest):
    """Issue 6 item 11: 4,200 connections sending a header line every few
    seconds made /health time out (the idle timeout counts only silence and
    the 4,096-connection limit was global)."""

    def test_slow_headers_limited_per_address_and_deadline(self):
        addresses = ["127.0.0.%d" % i for i in range(2, 6)]
        per_address = 1050  # 4,200 in all: more than the global limit of 4,096
        limit = raise_fd_limit(len(addresses) * per_address + 1024)
        self.assertGreaterEqual(limit, len(addresses) * per_address + 512,
                                "cannot raise the descriptor limit (ulimit -n) for the test")
        s = self.server()
        socks = {a: [] for a in addresses}
        try:
            for a in addresses:
                for _ in range(per_address):
                    c = connect_from(a, s.port)
                    try:
                        c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                    except OSError:
                        pass
                    socks[a].append(c)
            # The server accepts (and refuses) the backlog: until the open
            # counts stop changing (a connection still queued looks open).
            counts, deadline = None, time.monotonic() + 10
            while time.monotonic() < deadline:
                time.sleep(0.5)
                for a in addresses:
                    socks[a] = [c for c in socks[a] if not closed_by_server(c)]
                now = [len(socks[a]) for a in addresses]
                if now == counts and max(now) <= PER_IP_CONNECTIONS:
                    break
                counts = now
            start = time.monotonic()
            for a in addresses:
                open_ = socks[a]
                self.assertLessEqual(len(open_), PER_IP_CONNECTIONS,
                                     "%s holds %d connections" % (a, len(open_)))
                self.assertGreater(len(open_), PER_IP_CONNECTIONS // 2,
                                   "%s: only %d connections accepted" % (a, len(open_)))
                socks[a] = open_
            # /health and /ready answer from another address, in time.
            for path in ("/health", "/ready", "/health"):
                r, took = timed_get(s, path)
                self.assertEqual(r.status, 200, r)
                self.assertLess(took, PROBE_LIMIT, "%s took %.2f s" % (path, took))
            # The slow clients keep sending header lines, so the idle timeout
            # never fires; the header deadline closes them all anyway.
            held = sum(len(v) for v in socks.values())
            while time.monotonic() < start + HEADER_DEADLINE + 4:
                for a in addresses:
                    still = []
                    for c in socks[a]:
                        try:
                            c.send(b"X-Slow: 1\r\n")
                            still.append(c)
                        except OSError:
                            pass
                    socks[a] = still
                r, took = timed_get(s, "/health")
                self.assertEqual(r.status, 200, r)
                self.assertLess(took, PROBE_LIMIT, "/health took %.2f s" % took)
                time.sleep(2.0)
            left = [c for a in addresses for c in socks[a] if not closed_by_server(c)]
            self.assertEqual(len(left), 0, "%d slow connections outlived the header deadline"
                             % len(left))
            m = s.metrics()
            self.assertGreaterEqual(m['openexec_http_deadline_closed_total{phase="headers"}'],
                                    held)
        finally:
            for v in socks.values():
                for c in v:
                    c.close()

    def test_slow_body_deadline(self):
        s = self.server()
        socks = []
        try:
            for i in range(3):
                c = connect_from("127.0.0.2", s.port)
                c.sendall(b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100000\r\n\r\n{")
                socks.append(c)
            start = time.monotonic()
            closed_at = {}
            # One byte every 2 s: never silent, never finished.
            while len(closed_at) < len(socks) and time.monotonic() < start + BODY_DEADLINE + 6:
                for i, c in enumerate(socks):
                    if i in closed_at:
                        continue
                    if closed_by_server(c):
                        closed_at[i] = time.monotonic() - start
                        continue
                    try:
                        c.send(b" ")
                    except OSError:
                        closed_at[i] = time.monotonic() - start
                time.sleep(2.0)
            self.assertEqual(len(closed_at), len(socks),
                             "a trickling body outlived the body deadline")
            for t in closed_at.values():
                self.assertGreater(t, BODY_DEADLINE - 3)
            m = s.metrics()
            self.assertGreaterEqual(m['openexec_http_deadline_closed_total{phase="body"}'], 3)
            r = s.execute("echo", {"after": 1}, "body-deadline-1")
            self.assertEqual(r.status, 200, r)
        finally:
            for c in socks:
                c.close()


class BodyBudget(ServiceTest):
    """Issue 6 item 12: 600 connections each sending ~1 MB and stopping
    raised RSS from 25 MB to 653 MB."""

    def test_stalled_bodies_stay_within_budget(self):
        raise_fd_limit(2048)
        s = self.server()
        base = rss_mib(s.proc.pid)
        announced = ONE_MIB - 1000
        sent = 1000 * 1000
        chunk = b"x" * sent
        head = (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % announced)
        socks = []
        try:
            # Ten addresses: more than the global budget at 1/8 each.
            for i in range(600):
                c = connect_from("127.0.0.%d" % (2 + i % 10), s.port, timeout=10)
                socks.append(c)
                try:
                    c.sendall(head)
                    c.sendall(chunk)
                except OSError:
                    pass  # refused early: the server closed the connection
            time.sleep(1.0)
            peak = rss_mib(s.proc.pid)
            self.assertLess(peak, RSS_LIMIT_MIB,
                            "server RSS %.0f MiB (from %.0f MiB) with 600 stalled bodies"
                            % (peak, base))
            m = s.metrics()
            self.assertLessEqual(m["openexec_http_body_bytes"], BODY_BUDGET)
            self.assertGreaterEqual(m["openexec_http_body_budget_refused_total"],
                                    600 - BODY_BUDGET // announced - 8)
            # The server still answers, and a small request still executes.
            r, took = timed_get(s, "/health")
            self.assertEqual(r.status, 200, r)
            self.assertLess(took, PROBE_LIMIT)
            r = s.execute("echo", {"during": True}, "budget-during-1")
            self.assertEqual(r.status, 200, r)
            # A body announced larger than the budget left is refused as
            # soon as its headers arrive. What is left depends on how the
            # bodies above interleaved (a refused body gives back what it
            # held): up to a few MB. More stalled bodies, from addresses of
            # their own, bring it under one body first.
            left = BODY_BUDGET - m["openexec_http_body_bytes"]
            extra = 0
            while left >= sent and extra < 16:
                c = connect_from("127.0.0.%d" % (20 + extra), s.port, timeout=10)
                socks.append(c)
                c.sendall(head)
                c.sendall(chunk)
                extra += 1
                held = s.wait_metric("openexec_http_body_bytes",
                                     lambda v: BODY_BUDGET - v < left, timeout=5)
                left = BODY_BUDGET - held
            print("    %d bytes of budget left (%d more bodies sent)" % (left, extra))
            self.assertLess(left, sent)
            announce = max(left + 1, 64 * 1024 + 1)  # above the small-body reserve
            c = connect_from("127.0.0.1", s.port)
            socks.append(c)
            c.sendall(b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % announce)
            data, _ = read_all(c, limit=5)
            self.assertTrue(data.startswith(b"HTTP/1.1 503 "), data[:200])
        finally:
            for c in socks:
                c.close()
        # Once the stalled senders are gone, the budget is free again.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and s.metrics()["openexec_http_body_bytes"] > 0:
            time.sleep(0.1)
        self.assertEqual(s.metrics()["openexec_http_body_bytes"], 0)
        # (The echo result is capped at 256 KiB: OE_RESULT_MAX_BYTES.)
        big = json.dumps({"action": "echo", "nonce": "budget-big-1",
                          "payload": {"pad": "a" * (200 * 1000)}})
        r = s.execute(raw=big)
        self.assertEqual(r.status, 200, r)

    def test_one_address_cannot_block_others(self):
        # Regression: the budget was reserved for the announced length before
        # any byte came, so one address with 64 connections announcing 1 MiB
        # and 129 announcing 64 KiB, sending nothing, made every other
        # client's /execute 503 at no cost. Now budget is taken as bytes
        # arrive, and one address holds at most 1/8 of it.
        raise_fd_limit(2048)
        s = self.server()
        socks = []
        try:
            for size, count in ((ONE_MIB - 1000, 64), (64 * 1024, 129)):
                for _ in range(count):
                    c = connect_from("127.0.0.2", s.port, timeout=10)
                    c.sendall(b"POST /execute HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Type: application/json\r\n"
                              b"Content-Length: %d\r\n\r\n" % size)
                    socks.append(c)
            # The same address also sends real bytes and stalls: its share
            # fills, the rest of the budget stays for others.
            for _ in range(20):
                c = connect_from("127.0.0.2", s.port, timeout=10)
                try:
                    c.sendall(b"POST /execute HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Type: application/json\r\n"
                              b"Content-Length: %d\r\n\r\n" % (ONE_MIB - 1000))
                    c.sendall(b"x" * (1000 * 1000))
                except OSError:
                    pass  # refused: its share is spent
                socks.append(c)
            time.sleep(1.0)
            m = s.metrics()
            self.assertLessEqual(m["openexec_http_body_bytes"], PER_ADDRESS)
            big = json.dumps({"action": "echo", "nonce": "other-1",
                              "payload": {"pad": "a" * (200 * 1000)}})
            r = s.execute(raw=big)
            self.assertEqual(r.status, 200, r)
            r = s.execute("echo", {"small": True}, "other-2")
            self.assertEqual(r.status, 200, r)
        finally:
            for c in socks:
                c.close()

    def test_chunked_bodies_over_budget_refused(self):
        s = self.server()
        head = (b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        piece = b"x" * 65536
        per_body = 15 * len(piece)  # 960 KiB, under the 1 MiB limit
        n = 100
        socks = []
        try:
            # Fill the budget with chunked bodies of unannounced size.
            for i in range(n):
                c = connect_from("127.0.0.%d" % (2 + i % 2), s.port)
                c.sendall(head)
                for _ in range(15):
                    c.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                socks.append(c)
            # Every body read (kept or refused) before any ends: the budget
            # an answered body frees must not go to one still arriving.
            m, deadline = None, time.monotonic() + 10
            while time.monotonic() < deadline:
                time.sleep(0.5)
                now = s.metrics()
                keys = ("openexec_http_body_bytes", "openexec_http_body_budget_refused_total")
                if m and all(now[k] == m[k] for k in keys):
                    break
                m = now
            self.assertLessEqual(m["openexec_http_body_bytes"], BODY_BUDGET + SMALL_RESERVE)
            self.assertGreater(m["openexec_http_body_budget_refused_total"], 0)
            # Each body ends: the kept ones are read (and are not JSON: 422),
            # the refused ones were drained and are answered 503.
            for c in socks:
                c.sendall(b"0\r\n\r\n")
            statuses = []
            for c in socks:
                data, _ = read_all(c, limit=5)
                statuses.append(int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ")
                                else None)
            self.assertEqual(set(statuses) - {422, 503}, set(), statuses)
            self.assertLessEqual(statuses.count(422), (BODY_BUDGET + SMALL_RESERVE) // per_body)
            self.assertGreaterEqual(statuses.count(503), n - (BODY_BUDGET + SMALL_RESERVE) // per_body)
        finally:
            for c in socks:
                c.close()


class Binding(ServiceTest):
    """Issue 6 item 8 / lifecycle: host names and IPv6 are accepted, and a
    port in use is reported with the address and the system's reason."""

    def host_server(self, host, connect_host):
        srv = HostServer(self.tmp, host, connect_host)
        self._servers.append(srv)
        return srv

    def test_localhost(self):
        srv = self.host_server("localhost", "localhost").start()
        r = srv.request("GET", "/health")
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.body)["status"], "healthy")

    def test_ipv6_loopback(self):
        with open("/proc/net/if_inet6") as f:
            has_v6_loopback = any(l.split()[0] == "0" * 31 + "1" for l in f if l.strip())
        if has_v6_loopback:
            srv = self.host_server("::1", "::1").start()
            r = srv.request("GET", "/health")
            self.assertEqual(r.status, 200)
            self.assertEqual(json.loads(r.body)["status"], "healthy")
        else:
            port = free_port()
            p = cli(["run", "--execute", "local", "--http-host", "::1", "--http-port", str(port),
                     "--db", os.path.join(self.tmp, "v6.db")])
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("cannot listen on [::1]:%d: " % port, p.stderr)

    def test_port_in_use_names_address_and_reason(self):
        busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            p = cli(["run", "--execute", "local", "--http-port", str(port),
                     "--db", os.path.join(self.tmp, "busy.db")])
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("cannot listen on 127.0.0.1:%d: Address already in use" % port,
                          p.stderr)
        finally:
            busy.close()

    def test_unknown_host_refused(self):
        p = cli(["run", "--execute", "local", "--http-host", "no-such-host.invalid",
                 "--http-port", str(free_port()), "--db", os.path.join(self.tmp, "h.db")])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("no-such-host.invalid", p.stderr)


if __name__ == "__main__":
    assert os.path.exists(BIN), "build/openexec is missing: run make all"
    run_tests()
