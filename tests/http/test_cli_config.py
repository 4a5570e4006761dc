"""Black-box tests of the configuration of the command line (docs/operations.md):
numbers parsed as numbers, bad values refused with exit 2 and a reason that
names the flag or the environment variable actually used, Kafka properties
that a guarantee depends on refused rather than silently replaced, options a
command does not take refused, each command's help listing its own options,
a librdkafka `debug` setting that prints, the configuration file and the
logs (docs/operations.md).

Every test runs the real build/openexec; the Kafka ones use its embedded
broker."""

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import BIN, Broker, ServiceTest, clean_env, cli, free_port, run_tests  # noqa: E402

# What each command takes (docs/operations.md and the command's purpose); --help is
# every command's.
OPTIONS = {
    "run": {"--mode", "--secret", "--public-key", "--public-key-file", "--tenant", "--allowed-actions",
            "--actions-dir", "--action-max-steps", "--action-max-memory", "--brokers",
            "--requests-topic", "--receipts-topic", "--dlq-topic", "--checkpoints-topic",
            "--group-id",
            "--group-instance-id", "--execute",
            "--worker", "--receipt-format", "--transactions", "--transactional-id",
            "--partitions", "--batch-max", "--bridge-timeout-ms", "--confluent-schema-id",
            "--db", "--db-url", "--ledger-shared", "--ledger-payloads", "--db-sync",
            "--http-host", "--http-port",
            "--http-threads", "--log-level", "--log-format", "--config", "-X",
            "--broker-port", "--signing", "--signing-key-file", "--log-origin",
            "--trusted-keys-file", "--allow-demo-remote", "--help"},
    "broker": {"--partitions", "--bootstrap-file", "--broker-port", "--requests-topic", "--receipts-topic",
               "--dlq-topic", "--checkpoints-topic", "--log-level", "--log-format", "--config", "--help"},
    "produce": {"--brokers", "--requests-topic", "--format", "--config", "-X", "--help"},
    "receipts": {"--brokers", "--receipts-topic", "--from-beginning", "--follow", "--meta", "--max",
                 "--timeout-ms", "--config", "-X", "--help"},
    "topics": {"--brokers", "--requests-topic", "--receipts-topic", "--dlq-topic",
               "--checkpoints-topic", "--partitions", "--replication-factor", "--config", "-X", "--help"},
    "mint": {"--action", "--payload", "--secret", "--ed25519-key", "--tenant", "--approval-id",
             "--issued-at", "--action-code-hash", "--ttl", "--nonce", "--config", "--help"},
    "verify-receipt": {"--id", "--result", "--receipt", "--trusted-keys", "--help"},
    "keygen": {"--out", "--public-of", "--help"},
    "completion": {"--help"},
    "status": {"--brokers", "--requests-topic", "--group-id", "--db", "--db-url", "--output",
               "--config", "-X", "--help"},
    "actions": {"--actions-dir", "--action-max-steps", "--action-max-memory", "--config",
                "--output", "--help"},
    "exec": {"--brokers", "--requests-topic", "--receipts-topic", "--config", "--timeout-ms",
             "--trusted-keys", "-X", "--help"},
    "version": {"--help"},
    "ledger show": {"--db", "--db-url", "--config", "--nonce", "--id", "--since", "--until",
                    "--action", "--status", "--help"},
    "ledger export": {"--db", "--db-url", "--config", "--since", "--until", "--action",
                      "--status", "--help"},
    "ledger migrate": {"--db", "--db-url", "--config", "--help"},
    "ledger audit": {"--db", "--db-url", "--config", "--trusted-keys", "--checkpoint", "--help"},
    "ledger logs": {"--db", "--db-url", "--config", "--help"},
    "dlq replay": {"--brokers", "--requests-topic", "--dlq-topic", "--config", "--dry-run",
                   "--replay-group", "--from-beginning", "--timeout-ms", "-X", "--help"},
    "docs config": {"--help"},
    "docs metrics": {"--help"},
}

# librdkafka properties that openexec sets itself for its clients (the
# forced lists of worker/worker.c, bridge/bridge.c and cmd/kafka_cmds.c), with a value a user
# might try; "topic." is librdkafka's prefix for topic properties.
FORCED = [("group.id", "mine"), ("enable.auto.commit", "true"),
          ("enable.auto.offset.store", "true"), ("enable.partition.eof", "true"),
          ("enable.idempotence", "false"), ("acks", "1"), ("topic.acks", "1"),
          ("request.required.acks", "0"), ("transactional.id", "x"),
          ("bootstrap.servers", "127.0.0.1:1"), ("group.instance.id", "w1")]


def env_name(prop):
    """docs/operations.md: OPENEXEC_KAFKA_<PROP>, upper case, dots as underscores."""
    return "OPENEXEC_KAFKA_" + prop.upper().replace(".", "_")


def listening_ports(pid):
    """The TCP ports process pid listens on, read from /proc (its socket
    inodes matched against the LISTEN entries of its network namespace)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]$", link)
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                        ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


class Process:
    """`openexec ARGS` in the background, its stderr collected in a file."""

    def __init__(self, workdir, args, env=None):
        self.log_path = os.path.join(workdir, "proc-%d.log" % time.monotonic_ns())
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([BIN] + list(args), env=clean_env(env),
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=workdir)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, pattern, timeout=15.0):
        """The first match of pattern in the output, or None once the
        process has exited or the time is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log())
            if m or self.proc.poll() is not None:
                return m or re.search(pattern, self.log())
            time.sleep(0.05)
        return None

    def stop(self):
        """SIGTERM; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class ConfigTest(ServiceTest):
    def setUp(self):
        super().setUp()
        self._procs = []

    def tearDown(self):
        for p in self._procs:
            p.stop()
        super().tearDown()

    def start(self, args, env=None):
        p = Process(self.tmp, args, env)
        self._procs.append(p)
        return p

    def local_run(self, *extra):
        """`run` with in-process execution (no Kafka) on a database of the
        test's directory."""
        return ["run", "--execute", "local", "--db", self.path("x.db")] + list(extra)

    def assertRefused(self, p, *names, what=None):
        """Exit 2 with one line "openexec: ..." that names each of names."""
        what = what or " ".join(names)
        self.assertEqual(p.returncode, 2, "%s: exit %d, stderr %r" % (what, p.returncode,
                                                                        p.stderr))
        err = p.stderr.strip()
        self.assertNotIn("\n", err, "%s: not a one-line reason: %r" % (what, p.stderr))
        self.assertTrue(err.startswith("openexec: "), "%s: %r" % (what, err))
        for n in names:
            self.assertIn(n, err, "%s: the reason does not name %r: %r" % (what, n, err))
        return err


class Numbers(ConfigTest):
    def test_port_00_is_port_0_http_off(self):
        # "00" is the number 0: HTTP off, as with "0" (it used to bind a
        # random port because the text was compared with "0").
        for args, env in ((["--http-port", "00"], None), ([], {"OPENEXEC_HTTP_PORT": "00"}),
                          (["--http-port=000"], None)):
            p = self.start(self.local_run(*args), env)
            self.assertTrue(p.wait_log(r"admin HTTP off|admin http://"),
                            "%s %s: no start-up line: %s" % (args, env, p.log()))
            self.assertIn("admin HTTP off", p.log(), "%s %s" % (args, env))
            self.assertIsNone(p.proc.poll(), p.log())
            self.assertEqual(listening_ports(p.proc.pid), set(),
                             "%s %s: listens although HTTP is off" % (args, env))
            self.assertEqual(p.stop(), 0, p.log())

    def test_bad_ports_exit_2_naming_flag_or_variable(self):
        for value in ("5000x", "-1", "65536", "70000", "", " 80", "0x10", "1e3"):
            err = self.assertRefused(cli(self.local_run("--http-port", value)),
                                     "--http-port %s" % (value or "''"))
            self.assertNotIn("OPENEXEC_HTTP_PORT", err)
            err = self.assertRefused(cli(self.local_run(), env={"OPENEXEC_HTTP_PORT": value}),
                                     "OPENEXEC_HTTP_PORT=%s" % value)
            self.assertNotIn("--http-port", err)
        # Refused before the database is created.
        self.assertFalse(os.path.exists(self.path("x.db")))
        # A flag wins over the environment: the variable is not even read.
        port = free_port()
        p = self.start(self.local_run("--http-port", str(port)),
                       env={"OPENEXEC_HTTP_PORT": "junk"})
        self.assertTrue(p.wait_log(r"admin http://127\.0\.0\.1:%d" % port), p.log())
        self.assertEqual(p.stop(), 0, p.log())

    def test_other_settings_name_their_source(self):
        cases = [
            (["run", "--http-threads", "0"], None, "--http-threads 0"),
            (["run"], {"OPENEXEC_HTTP_THREADS": "4 "}, "OPENEXEC_HTTP_THREADS=4 "),
            (["run"], {"OPENEXEC_BATCH_MAX": "many"}, "OPENEXEC_BATCH_MAX=many"),
            (["run", "--bridge-timeout-ms", "99999999999999999999"], None,
             "--bridge-timeout-ms 99999999999999999999"),
            (["run"], {"OPENEXEC_RECEIPT_FORMAT": "xml"}, "OPENEXEC_RECEIPT_FORMAT=xml"),
            (["run", "--worker", "yes"], None, "--worker yes"),
            (["run"], {"OPENEXEC_KAFKA_TRANSACTIONS": "2"}, "OPENEXEC_KAFKA_TRANSACTIONS=2"),
            (["run"], {"OPENEXEC_DB_SYNC": "off"}, "OPENEXEC_DB_SYNC=off"),
            (["broker", "--partitions", "1001"], None, "--partitions 1001"),
            (["broker"], {"OPENEXEC_PARTITIONS": "0"}, "OPENEXEC_PARTITIONS=0"),
            (["receipts", "--brokers", "127.0.0.1:1", "--max", "0"], None, "--max 0"),
            (["produce", "--brokers", "127.0.0.1:1"], {"OPENEXEC_REQUEST_FORMAT": "xml"},
             "OPENEXEC_REQUEST_FORMAT=xml"),
            (["mint", "--action", "echo", "--secret", "s", "--ttl", "1h"], None, "--ttl 1h"),
        ]
        for args, env, source in cases:
            if args[0] == "run":
                args = args + ["--db", self.path("n.db")]
            self.assertRefused(cli(args, env=env, timeout=5), source, what=" ".join(args))
        self.assertFalse(os.path.exists(self.path("n.db")))

    def test_db_url_and_db_path_together_refused(self):
        # docs/operations.md: setting both is an error (the path used to win silently).
        env = {"OPENEXEC_DB_PATH": self.path("a.db"),
               "OPENEXEC_DB_URL": "sqlite:///" + self.path("b.db")}
        self.assertRefused(cli(["run", "--execute", "local", "--http-port", "0"], env=env,
                               timeout=5), "OPENEXEC_DB_URL", "OPENEXEC_DB_PATH")
        self.assertFalse(os.path.exists(self.path("a.db")))
        self.assertFalse(os.path.exists(self.path("b.db")))
        # A --db flag over OPENEXEC_DB_PATH alone is ordinary precedence.
        p = self.start(["run", "--execute", "local", "--http-port", "0", "--db",
                        self.path("c.db")], env={"OPENEXEC_DB_PATH": self.path("a.db")})
        self.assertTrue(p.wait_log(r"admin HTTP off"), p.log())
        self.assertIn("database %s" % self.path("c.db"), p.log())
        self.assertEqual(p.stop(), 0, p.log())
        self.assertFalse(os.path.exists(self.path("a.db")))


    def test_mint_approval_id_kept_whole_or_refused(self):
        # Regression: --approval-id was cut to 36 bytes without a word and
        # the shorter id signed. Ids up to 256 bytes are kept; longer exit 2.
        p = cli(["mint", "--action", "echo", "--secret", "s", "--approval-id", "a" * 100])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["approval_id"], "a" * 100)
        p = cli(["mint", "--action", "echo", "--secret", "s", "--approval-id", "a" * 257])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--approval-id: longer than 256 bytes", p.stderr)


class DemoRemote(ConfigTest):
    def test_demo_mode_listens_on_loopback_only_unless_told(self):
        # Demo mode runs every request unapproved: beyond loopback it is
        # refused (exit 2, naming the way out), whatever the source.
        for host in ("0.0.0.0", "::", "192.0.2.1", "example.invalid"):
            err = self.assertRefused(cli(self.local_run("--http-host", host,
                                                        "--http-port", str(free_port()))),
                                     "demo mode", host, "OPENEXEC_ALLOW_DEMO_REMOTE=1")
            self.assertIn("loopback only", err)
        self.assertRefused(cli(self.local_run("--http-port", str(free_port())),
                               env={"OPENEXEC_HTTP_HOST": "0.0.0.0"}), "0.0.0.0")
        self.assertFalse(os.path.exists(self.path("x.db")))
        # Loopback, clawshield mode, or the operator's say-so: it starts.
        for args, env, warned in (
                (["--http-host", "127.0.0.2"], {}, False),
                (["--http-host", "0.0.0.0", "--mode", "clawshield", "--secret", "s" * 32], {},
                 False),
                (["--http-host", "0.0.0.0"], {"OPENEXEC_ALLOW_DEMO_REMOTE": "1"}, True),
                (["--http-host", "0.0.0.0", "--allow-demo-remote", "1"], {}, True)):
            port = free_port()
            p = self.start(self.local_run(*args, "--http-port", str(port)), env=env)
            self.assertTrue(p.wait_log(r"admin http://"), p.log())
            self.assertEqual(("anyone who reaches port %d executes any request" % port)
                             in p.log(), warned, p.log())
            self.assertEqual(p.stop(), 0, p.log())


class Hosts(ConfigTest):
    def test_bad_hosts_exit_2_naming_flag_or_variable(self):
        for value in ("bad_host", "a b", "-lead", "trail-", "1.2.3.999", "", "a..b",
                      "x" * 64 + ".example", "[::1]"):
            shown = value or "''"
            err = self.assertRefused(cli(self.local_run("--http-host", value,
                                                        "--http-port", "0")),
                                     "--http-host %s" % shown, what="--http-host %r" % value)
            self.assertNotIn("OPENEXEC_HTTP_HOST", err)
            err = self.assertRefused(cli(self.local_run("--http-port", "0"),
                                         env={"OPENEXEC_HTTP_HOST": value}),
                                     "OPENEXEC_HTTP_HOST=%s" % value,
                                     what="OPENEXEC_HTTP_HOST=%r" % value)
            self.assertNotIn("--http-host", err)
        self.assertFalse(os.path.exists(self.path("x.db")))

    def test_host_names_and_ipv6_pass_configuration(self):
        # The configuration accepts host names and IPv6 literals; binding
        # them is the admin HTTP server's part. Where it starts, /health
        # must answer there; where the server cannot bind such a host yet,
        # the failure must be a run-time one (not exit 2, not a refusal of
        # the value).
        import http.client
        for host, connect in (("localhost", "localhost"), ("::1", "::1"),
                              ("127.0.0.1", "127.0.0.1")):
            for via_env in (False, True):
                port = free_port()
                if via_env:
                    p = self.start(self.local_run("--http-port", str(port)),
                                   env={"OPENEXEC_HTTP_HOST": host})
                else:
                    p = self.start(self.local_run("--http-host", host, "--http-port", str(port)))
                what = "%s via %s" % (host, "env" if via_env else "flag")
                started = p.wait_log(r"admin http://")
                if started:
                    c = http.client.HTTPConnection(connect, port, timeout=5)
                    try:
                        c.request("GET", "/health")
                        self.assertEqual(c.getresponse().status, 200, what)
                    finally:
                        c.close()
                    self.assertEqual(p.stop(), 0, p.log())
                    continue
                self.assertNotEqual(host, "127.0.0.1", "%s: did not start: %s" % (what, p.log()))
                code = p.stop()
                self.assertNotEqual(code, 2, "%s: refused as configuration: %s" % (what, p.log()))
                self.assertNotEqual(code, 0, "%s: exited 0 without serving: %s" % (what, p.log()))
                for word in ("invalid", "not a host name"):
                    self.assertNotIn(word, p.log().lower(), what)
                print("    %s: the admin HTTP server cannot bind it yet: %s"
                      % (what, p.log().strip().splitlines()[-1]))


class KafkaProperties(ConfigTest):
    def test_forced_properties_refused(self):
        # Each used to be replaced by openexec's own value without a word.
        for prop, value in FORCED:
            for cmd in (["produce"], ["receipts"]):
                args = cmd + ["--brokers", "127.0.0.1:1"]
                self.assertRefused(cli(args + ["-X", "%s=%s" % (prop, value)], timeout=5),
                                   "-X %s" % prop, "refused")
                name = env_name(prop)
                self.assertRefused(cli(args, env={name: value}, timeout=5),
                                   name, "refused")
        # The reasons say what to do or what would break.
        err = self.assertRefused(cli(["produce", "--brokers", "127.0.0.1:1", "-Xgroup.id=g"]),
                                 "-X group.id")
        self.assertIn("--group-id", err)
        err = self.assertRefused(cli(["receipts", "--brokers", "127.0.0.1:1"],
                                     env={"OPENEXEC_KAFKA_ENABLE_AUTO_COMMIT": "true"}),
                                 "OPENEXEC_KAFKA_ENABLE_AUTO_COMMIT")
        self.assertIn("durable", err)
        # `run` refuses them before it touches the disk or starts a broker.
        db = self.path("k.db")
        for args, env, source in (
                (["-X", "group.id=mine"], None, "-X group.id"),
                ([], {"OPENEXEC_KAFKA_GROUP_ID": "mine"}, "OPENEXEC_KAFKA_GROUP_ID"),
                (["-X", "enable.auto.commit=true"], None, "-X enable.auto.commit"),
                ([], {"OPENEXEC_KAFKA_ENABLE_AUTO_COMMIT": "true"},
                 "OPENEXEC_KAFKA_ENABLE_AUTO_COMMIT")):
            self.assertRefused(cli(["run", "--http-port", "0", "--db", db] + args, env=env,
                                   timeout=5), source)
        self.assertFalse(os.path.exists(db))
        # Other properties still pass through, "topic."-prefixed ones too
        # (produce checks the cluster and the topic before it reads stdin).
        b = Broker(self.tmp).start()
        try:
            p = subprocess.run([BIN, "produce", "--brokers", b.bootstrap, "-X", "client.id=abc",
                                "-X", "topic.metadata.refresh.interval.ms=1000"],
                               env=clean_env({"OPENEXEC_KAFKA_LINGER_MS": "1"}), input="",
                               capture_output=True, text=True, timeout=10)
        finally:
            b.stop()
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_code_loading_properties_refused_from_every_source(self):
        # librdkafka 2.0.2 loads shared libraries for plugin.library.paths
        # (plugins and their interceptors), ssl.engine.location and
        # ssl.providers, and runs sasl.kerberos.kinit.cmd in a shell: a
        # configuration value would become code running as openexec.
        so = self.path("evil.so")
        for prop, value in (("plugin.library.paths", so), ("ssl.engine.location", so),
                            ("ssl.providers", so), ("sasl.kerberos.kinit.cmd", "touch pwned"),
                            ("topic.plugin.library.paths", so),
                            # pasted into librdkafka's default kinit command, run by a shell
                            ("sasl.kerberos.principal", "x;touch pwned"),
                            ("sasl.kerberos.keytab", "$(touch pwned)")):
            conf = self.path("k.conf")
            with open(conf, "w") as f:
                f.write("%s = %s\n" % (env_name(prop), value))
            sources = ((["-X", "%s=%s" % (prop, value)], None, "-X " + prop),
                       ([], {env_name(prop): value}, env_name(prop)),
                       (["--config", conf], None, "k.conf:1:"))
            for args, env, source in sources:
                for cmd in (["produce", "--brokers", "127.0.0.1:1"],
                            ["run", "--http-port", "0", "--db", self.path("k.db")]):
                    err = self.assertRefused(cli(cmd + args, env=env, timeout=5), source,
                                             "property %s refused" % prop,
                                             what="%s %s" % (cmd[0], source))
                    self.assertNotIn(value, err)
        self.assertFalse(os.path.exists(self.path("k.db")))
        self.assertFalse(os.path.exists(self.path("pwned")))

    def test_broker_bootstrap_file_is_never_stale(self):
        # A file left by an earlier broker is removed before the new address
        # is written (whole, by rename), and the file is removed at exit: a
        # script waiting for the file never reads a dead address.
        bs = self.path("bs")
        with open(bs, "w") as f:
            f.write("127.0.0.1:1\n")
        p = self.start(["broker", "--partitions", "2", "--bootstrap-file", bs])
        m = p.wait_log(r"bootstrap\.servers=(\S+)")
        self.assertTrue(m, p.log())
        with open(bs) as f:
            self.assertEqual(f.read(), m.group(1) + "\n")
        self.assertEqual(p.stop(), 0, p.log())
        self.assertFalse(os.path.exists(bs))

    def test_broker_port(self):
        # --broker-port P: the embedded broker also takes clients on
        # 127.0.0.1:P (a relay to its own port), for `broker` and for `run`'s
        # own broker, so produce and receipts need no address from a log.
        port = free_port()
        b = self.start(["broker", "--partitions", "2", "--broker-port", str(port)])
        m = b.wait_log(r"bootstrap\.servers=(\S+)")
        self.assertTrue(m, b.log())
        self.assertEqual(m.group(1), "127.0.0.1:%d" % port)
        meta = subprocess.run(["kcat", "-L", "-b", "127.0.0.1:%d" % port, "-t",
                               "openexec.requests"], capture_output=True, text=True, timeout=20)
        self.assertEqual(meta.returncode, 0, meta.stderr)
        self.assertIn("2 partitions", meta.stdout)
        # Taken: exit 1, one line naming the address, why, and the flag.
        again = cli(["broker", "--broker-port", str(port)], timeout=10)
        self.assertEqual(again.returncode, 1, again.stderr)
        self.assertRegex(again.stderr.strip(), r"^openexec: embedded broker: cannot listen on "
                         r"127\.0\.0\.1:%d: Address already in use \(choose another with "
                         r"--broker-port\)$" % port)
        self.assertEqual(b.stop(), 0, b.log())
        # Only for the embedded broker.
        self.assertRefused(cli(["run", "--brokers", "127.0.0.1:1", "--broker-port", "9"],
                               timeout=5), "--broker-port", "--brokers")
        self.assertRefused(cli(self.local_run("--broker-port", "9"), timeout=5),
                           "--broker-port", "--execute local")
        self.assertRefused(cli(["broker", "--broker-port", "65536"], timeout=5), "--broker-port")
        # run's own broker, by the variable; a request through the fixed
        # port is executed and its receipt read back through it.
        port = free_port()
        s = self.server(env={"OPENEXEC_EXECUTE": "kafka", "OPENEXEC_BROKER_PORT": str(port)})
        self.assertIn("bootstrap.servers=127.0.0.1:%d" % port, s.log())
        brokers = ["--brokers", "127.0.0.1:%d" % port]
        sent = subprocess.run([BIN, "produce"] + brokers, input='{"action": "add", "payload": '
                              '{"a": 2, "b": 3}, "nonce": "fixed-1"}\n', capture_output=True,
                              text=True, timeout=30, env=clean_env({}))
        self.assertEqual(sent.returncode, 0, sent.stderr)
        # Success is summed up on stdout; stderr keeps the failures' form.
        self.assertEqual(sent.stdout, "produce: 1 sent, 0 failed, 0 invalid lines\n")
        self.assertNotIn("openexec: produce:", sent.stderr)
        got = cli(["receipts"] + brokers + ["--from-beginning", "--max", "1", "--timeout-ms",
                                            "15000"], timeout=30)
        self.assertEqual(got.returncode, 0, got.stderr)
        receipt = json.loads(got.stdout)
        self.assertEqual((receipt["nonce"], receipt["status"], receipt["result"]),
                         ("fixed-1", "executed", '{"sum": 5}'))

    def test_broker_refuses_client_options(self):
        # broker takes no brokers and no client properties (both used to be
        # accepted and ignored).
        for args, shown in ((["--brokers", "127.0.0.1:9092"], "--brokers"),
                            (["--brokers=127.0.0.1:9092"], "--brokers"),
                            (["-X", "debug=all"], "-X"), (["-Xdebug=all"], "-X"),
                            (["--group-id", "g"], "--group-id"),
                            (["--http-port", "0"], "--http-port")):
            self.assertRefused(cli(["broker"] + args, timeout=5), "unknown option", shown)

    def test_debug_property_prints_librdkafka_debug(self):
        # -X debug=cgrp alone prints the consumer group's debug lines (it
        # used to need an undocumented variable as well).
        s = self.server(env={"OPENEXEC_EXECUTE": "kafka"}, args=["-X", "debug=cgrp"])
        deadline = time.monotonic() + 10
        while not re.search(r"component=kafka .*facility=CGRP\w*", s.log()) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertRegex(s.log(), r"component=kafka .*facility=CGRP\w*")
        s.stop()
        # Without it, no debug lines.
        s = self.server(env={"OPENEXEC_EXECUTE": "kafka"})
        s.stop()
        self.assertNotRegex(s.log(), r"component=kafka .*facility=CGRP\w*")


class ConfigFile(ConfigTest):
    """docs/operations.md: --config FILE (or OPENEXEC_CONFIG) reads NAME = value lines
    with the environment's names; flag > environment > file > default."""

    def write(self, name, text, mode=0o600):
        path = self.path(name)
        with open(path, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def test_precedence_flag_env_file_default(self):
        file_port, flag_port = free_port(), free_port()
        conf = self.write("openexec.conf", "\n".join([
            "# the service of this test",
            "OPENEXEC_EXECUTE = local",
            "OPENEXEC_HTTP_PORT = %d" % file_port,          # a flag wins
            "OPENEXEC_ALLOWED_ACTIONS = echo",              # the environment wins
            'OPENEXEC_DB_PATH = "%s"' % self.path("file.db"),  # from the file, unquoted
            "   OPENEXEC_HTTP_THREADS=3   ",
            "OPENEXEC_KAFKA_SOCKET_TIMEOUT_MS = 12345",     # a Kafka property
            "",
        ]))
        p = self.start(["run", "--config", conf, "--http-port", str(flag_port)],
                       env={"OPENEXEC_ALLOWED_ACTIONS": "add"})
        self.assertTrue(p.wait_log(r"admin http://127\.0\.0\.1:%d" % flag_port), p.log())
        self.assertIn("database %s" % self.path("file.db"), p.log())
        self.assertTrue(os.path.exists(self.path("file.db")))
        self.assertEqual(listening_ports(p.proc.pid), {flag_port})
        # The effective configuration, once, with where each value came from.
        lines = [line for line in p.log().splitlines() if "effective configuration" in line]
        self.assertEqual(len(lines), 1, p.log())
        conf_line = lines[0]
        for field in ("OPENEXEC_HTTP_PORT=%d OPENEXEC_HTTP_PORT.from=flag" % flag_port,
                      "OPENEXEC_ALLOWED_ACTIONS=add OPENEXEC_ALLOWED_ACTIONS.from=env",
                      "OPENEXEC_HTTP_THREADS=3 OPENEXEC_HTTP_THREADS.from=file",
                      "OPENEXEC_DB_SYNC=full ", "kafka.socket.timeout.ms=12345"):
            self.assertIn(field, conf_line)
        self.assertNotIn("OPENEXEC_DB_SYNC.from", conf_line)  # a default
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", flag_port, timeout=10)
        c.request("POST", "/execute", body=json.dumps(
            {"action": "echo", "payload": {}, "nonce": "cf-1"}))
        self.assertEqual(c.getresponse().status, 403)  # echo: not in the environment's list
        c.close()
        self.assertEqual(p.stop(), 0, p.log())
        # OPENEXEC_CONFIG names the file as the flag does.
        p = self.start(["run", "--http-port", "0"], env={"OPENEXEC_CONFIG": conf})
        self.assertTrue(p.wait_log(r"admin HTTP off"), p.log())
        self.assertIn("database %s" % self.path("file.db"), p.log())
        self.assertEqual(p.stop(), 0, p.log())

    def test_bad_files_exit_2_naming_file_and_line(self):
        def refused(text, *words):
            conf = self.write("bad.conf", text)
            err = self.assertRefused(cli(["run", "--config", conf, "--db", self.path("b.db")],
                                         timeout=5), *words, what=text)
            return err
        refused("OPENEXEC_MODE = demo\nOPENEXEC_NO_SUCH = 1\n", "bad.conf:2:",
                "unknown setting OPENEXEC_NO_SUCH")
        refused("just words\n", "bad.conf:1:", "NAME = value")
        refused("OPENEXEC_MODE = demo\n\nOPENEXEC_MODE = clawshield\n", "bad.conf:3:",
                "set twice (first on line 1)")
        refused("OPENEXEC_HTTP_PORT = 99999\n", "bad.conf:1:", "OPENEXEC_HTTP_PORT",
                "not a port")
        refused("OPENEXEC_MODE = sometimes\n", "bad.conf:1:", "OPENEXEC_MODE")
        refused("OPENEXEC_CONFIG = other.conf\n", "bad.conf:1:", "OPENEXEC_CONFIG")
        refused("OPENEXEC_KAFKA_ENABLE_AUTO_COMMIT = true\n", "bad.conf:1:",
                "OPENEXEC_KAFKA_ENABLE_AUTO_COMMIT", "refused")
        refused("OPENEXEC_HTTP_PORT = 1\n" + "x" * 9000 + "\n", "bad.conf:2:", "longer than")
        self.assertRefused(cli(["run", "--config", self.path("missing.conf")], timeout=5),
                           "--config", "missing.conf", "cannot read it")
        self.assertFalse(os.path.exists(self.path("b.db")))
        # Other commands read the same file and skip what they do not take.
        conf = self.write("shared.conf", "OPENEXEC_HTTP_PORT = 1\n"
                                         "CLAWSHIELD_SECRET_KEY = from-file\n"
                                         "CLAWSHIELD_TENANT_ID = t-file\n")
        p = cli(["mint", "--config", conf, "--action", "echo"], timeout=5)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["tenant_id"], "t-file")

    def test_two_ledger_locations_refused_from_any_sources(self):
        # docs/operations.md: OPENEXEC_DB_PATH / --db and OPENEXEC_DB_URL / --db-url
        # from any sources, the same one or two, are an error naming both
        # and where each came from. It used to be accepted: a file's URL
        # beat the environment's path, and a file could hold both.
        a, b = self.path("a.db"), "sqlite:///" + self.path("b.db")
        cases = [
            ({"OPENEXEC_DB_PATH": a}, "OPENEXEC_DB_URL = %s\n" % b, [],
             "OPENEXEC_DB_PATH (environment) and OPENEXEC_DB_URL (config file %s line 1)"),
            ({}, "OPENEXEC_DB_PATH = %s\nOPENEXEC_MODE = demo\nOPENEXEC_DB_URL = %s\n" % (a, b),
             [], "OPENEXEC_DB_PATH (config file %s line 1) and OPENEXEC_DB_URL "
                 "(config file %s line 3)"),
            ({"OPENEXEC_DB_URL": b}, None, ["--db", a],
             "--db (flag) and OPENEXEC_DB_URL (environment)"),
            ({}, "OPENEXEC_DB_PATH = %s\n" % a, ["--db-url", b],
             "OPENEXEC_DB_PATH (config file %s line 1) and --db-url (flag)"),
            ({}, None, ["--db", a, "--db-url", b], "--db (flag) and --db-url (flag)"),
            # A variable the environment overrides is still given by the file.
            ({"OPENEXEC_DB_PATH": a}, "OPENEXEC_DB_PATH = %s\nOPENEXEC_DB_URL = %s\n" % (a, b),
             [], "OPENEXEC_DB_PATH (environment) and OPENEXEC_DB_URL (config file %s line 2)"),
        ]
        for env, text, args, words in cases:
            conf = self.write("two.conf", text) if text else None
            for cmd in (["run", "--execute", "local", "--http-port", "0"], ["ledger", "show",
                                                                            "--nonce", "n"]):
                argv = cmd + args + (["--config", conf] if conf else [])
                err = self.assertRefused(cli(argv, env=env, timeout=5),
                                         words.replace("%s", conf or ""),
                                         "each a ledger location; give one", what=words)
                self.assertEqual(err.count(conf or "\0"), words.count("%s"), err)
        self.assertFalse(os.path.exists(a))
        self.assertFalse(os.path.exists(self.path("b.db")))
        # The same variable at two levels is precedence, not an error: the
        # flag wins over the environment, the environment over the file.
        conf = self.write("one.conf", "OPENEXEC_DB_PATH = %s\n" % self.path("file.db"))
        p = self.start(["run", "--execute", "local", "--http-port", "0", "--config", conf],
                       env={"OPENEXEC_DB_PATH": self.path("env.db")})
        self.assertTrue(p.wait_log(r"admin HTTP off"), p.log())
        self.assertIn("database %s" % self.path("env.db"), p.log())
        self.assertEqual(p.stop(), 0, p.log())
        self.assertFalse(os.path.exists(self.path("file.db")))

    def test_other_alternatives_refused_from_any_sources(self):
        # The Ed25519 public key as text or as a file, and mint's two
        # signing keys: one silently won over the other from a file.
        with open(self.path("pub.pem"), "w") as f:
            f.write("not read\n")
        conf = self.write("k.conf", "CLAWSHIELD_PUBLIC_KEY_FILE = %s\n" % self.path("pub.pem"))
        self.assertRefused(cli(["run", "--http-port", "0", "--db", self.path("k.db"),
                                "--config", conf], env={"CLAWSHIELD_PUBLIC_KEY": "x"}, timeout=5),
                           "CLAWSHIELD_PUBLIC_KEY (environment) and CLAWSHIELD_PUBLIC_KEY_FILE "
                           "(config file %s line 1)" % conf, "give one")
        self.assertFalse(os.path.exists(self.path("k.db")))
        conf = self.write("m.conf", "CLAWSHIELD_SECRET_KEY = s\n")
        err = self.assertRefused(cli(["mint", "--action", "echo", "--config", conf,
                                      "--ed25519-key", self.path("none.pem")], timeout=5),
                                 "CLAWSHIELD_SECRET_KEY (config file %s line 1)" % conf,
                                 "--ed25519-key (flag)", "give one")
        self.assertNotIn("cannot read", err)

    def test_nul_byte_refused_naming_file_and_line(self):
        # A line starting with NUL used to be skipped, and a NUL inside a
        # value cut it ("a\0b" read as "a"): the check could not fire.
        for text, line in ((b"\0CLAWSHIELD_TENANT_ID = t\n", 1),
                           (b"CLAWSHIELD_SECRET_KEY = s\nCLAWSHIELD_TENANT_ID = a\0b\n", 2),
                           (b"CLAWSHIELD_SECRET_KEY = s\n\0", 2),
                           (b"# comment\0\n", 1)):
            conf = self.write("nul.conf", text)
            self.assertRefused(cli(["mint", "--action", "echo", "--secret", "s", "--config", conf],
                                   timeout=5), "nul.conf:%d:" % line, "NUL byte", what=repr(text))

    def test_errors_never_echo_a_value(self):
        # A secret on a line that lost its '=' or its name used to be
        # echoed whole as the "name"; bad values and refused properties
        # were echoed too. Errors name FILE:LINE and at most the setting.
        secret = "c2VjcmV0LXZhbHVl"
        for text, words in (
                ("CLAWSHIELD_SECRET_KEY: %s==\n" % secret, ["e.conf:1:", "unknown setting"]),
                ("%s = 1\n" % secret, ["e.conf:1:", "unknown setting"]),
                ("OPENEXEC_MODE = demo\nOPENEXEC_HTTP_PORT = %s\n" % secret,
                 ["e.conf:2:", "OPENEXEC_HTTP_PORT", "not a port"]),
                ("OPENEXEC_MODE = %s\n" % secret, ["e.conf:1:", "OPENEXEC_MODE"]),
                ("OPENEXEC_KAFKA_ENABLE_AUTO_COMMIT = %s\n" % secret,
                 ["e.conf:1:", "OPENEXEC_KAFKA_ENABLE_AUTO_COMMIT", "refused"])):
            conf = self.write("e.conf", text)
            err = self.assertRefused(cli(["run", "--config", conf, "--db", self.path("e.db")],
                                         timeout=5), *words, what=text)
            self.assertNotIn(secret, err)
        self.assertFalse(os.path.exists(self.path("e.db")))

    def test_file_with_a_secret_readable_by_others_refused(self):
        # As ssh does with private keys: a file holding a secret must not be
        # readable by its group or others (the mode is given, not the value).
        secret = "s3cr3t-value-of-the-test"
        for text, line in (("CLAWSHIELD_SECRET_KEY = %s\n" % secret, 1),
                           ("OPENEXEC_MODE = demo\nOPENEXEC_KAFKA_SASL_PASSWORD = %s\n" % secret,
                            2),
                           ("OPENEXEC_KAFKA_SSL_KEY_PASSWORD = %s\n" % secret, 1),
                           ("OPENEXEC_DB_URL = postgresql://u:%s@127.0.0.1:1/db\n" % secret, 1),
                           ("OPENEXEC_DB_URL = postgresql://u@127.0.0.1:1/db?password=%s\n"
                            % secret, 1)):
            for mode in (0o644, 0o640, 0o604):
                conf = self.write("s.conf", text, mode)
                err = self.assertRefused(cli(["run", "--config", conf, "--http-port", "0"],
                                             timeout=5, cwd=self.tmp),
                                         "s.conf:%d:" % line, "chmod 600 %s" % conf,
                                         "%04o" % mode, what="%s %o" % (text, mode))
                self.assertNotIn(secret, err)
        self.assertFalse(os.path.exists(self.path("openexec.db")))
        # 0600 (and 0400) are fine; so is a readable file without secrets
        # (a private key's file name is no secret).
        for text, mode in (("CLAWSHIELD_SECRET_KEY = %s\n" % secret, 0o600),
                           ("CLAWSHIELD_SECRET_KEY = %s\n" % secret, 0o400),
                           ("CLAWSHIELD_TENANT_ID = t\nOPENEXEC_DB_URL = sqlite:///x.db\n", 0o644)):
            conf = self.write("ok%o.conf" % mode, text, mode)
            p = cli(["mint", "--action", "echo", "--config", conf] +
                    (["--secret", "s"] if "SECRET" not in text else []), timeout=5)
            self.assertEqual(p.returncode, 0, p.stderr)
        conf = self.write("pk.conf", "CLAWSHIELD_PRIVATE_KEY_FILE = %s\n" % self.path("no.pem"),
                          0o644)
        self.assertRefused(cli(["mint", "--action", "echo", "--config", conf], timeout=5),
                           "--ed25519-key", "cannot read it")

class Logs(ConfigTest):
    """docs/operations.md: one line per event; key=value text or JSON objects; the
    level filters; secrets never written."""

    def test_json_lines(self):
        s = self.server(env={"OPENEXEC_EXECUTE": "kafka", "OPENEXEC_LOG_FORMAT": "json",
                             "OPENEXEC_MODE": "clawshield",
                             "CLAWSHIELD_SECRET_KEY": "very-secret-value"},
                        args=["-X", "sasl.password=hunter2-secret"])
        r = s.execute("add", {"a": 1, "b": 2}, "log-1")
        self.assertEqual(r.status, 403, r)  # no artifact: rejected, and logged in a batch
        s.stop()
        events = []
        for line in s.log().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                self.fail("not a JSON line: %r" % line)
        for e in events:
            self.assertTrue({"ts", "level", "component", "msg"} <= set(e), e)
            self.assertRegex(e["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn(e["level"], ("error", "warn", "info", "debug"))
        conf = [e for e in events if e["msg"] == "effective configuration of run"]
        self.assertEqual(len(conf), 1, events)
        self.assertEqual(conf[0]["CLAWSHIELD_SECRET_KEY"], "***")
        self.assertEqual(conf[0]["kafka.sasl.password"], "***")
        self.assertEqual(conf[0]["OPENEXEC_LOG_FORMAT"], "json")
        batches = [e for e in events if e["msg"] == "batch"]
        self.assertTrue(batches, events)
        self.assertEqual(sum(int(b["rejected"]) for b in batches), 1, batches)
        for key in ("messages", "executed", "replayed", "dead_lettered", "ms"):
            self.assertIn(key, batches[0])
        self.assertNotIn("very-secret-value", s.log())
        self.assertNotIn("hunter2-secret", s.log())

    def test_json_lines_parse_whatever_the_values(self):
        # A line used to be cut at 9 KiB without its closing brace, and bytes
        # that are not UTF-8 were copied as they came: both made lines that
        # are not JSON. Values are cut now ("..."), never lines, and each
        # byte that is not UTF-8 becomes U+FFFD. The tenant is logged in the
        # effective configuration: here 2 bytes that are not UTF-8, then
        # 6,000 bytes that escaping makes 21,000.
        # Receipts unsigned: a signed log's leaves need the tenant as UTF-8
        # text (test_signed_receipts.py).
        tenant = "\udcff\udcc3" + "\x01\"\\\n\x85\u2028" * 1000
        s = self.server(env={"OPENEXEC_EXECUTE": "local", "OPENEXEC_LOG_FORMAT": "json",
                             "CLAWSHIELD_TENANT_ID": tenant, "OPENEXEC_SIGNING": "off"})
        self.assertEqual(s.execute("add", {"a": 1, "b": 2}, "log-u").status, 200)
        s.stop()
        with open(s.log_path, "rb") as f:
            raw = f.read()
        events = []
        for line in raw.split(b"\n")[:-1]:
            try:
                events.append(json.loads(line.decode("utf-8")))
            except ValueError:
                self.fail("not a JSON line: %r" % line[-200:])
        conf = [e for e in events if e["msg"] == "effective configuration of run"]
        self.assertEqual(len(conf), 1, events)
        value = conf[0]["CLAWSHIELD_TENANT_ID"]
        self.assertTrue(value.startswith("\ufffd\ufffd\x01\"\\\n\x85\u2028"), value[:20])
        self.assertTrue(value.endswith("..."), value[-20:])
        self.assertEqual(conf[0]["OPENEXEC_LOG_FORMAT"], "json")  # after the long value

    def test_level_error_keeps_only_errors(self):
        s = self.server(env={"OPENEXEC_EXECUTE": "kafka"}, args=["--log-level", "error"])
        self.assertEqual(s.execute("add", {"a": 1, "b": 2}, "log-2").status, 200)
        s.stop()
        self.assertNotIn("level=info", s.log())
        self.assertNotIn("level=warn", s.log())
        # And at info (the default) the same run says what it did.
        s = self.server(env={"OPENEXEC_EXECUTE": "kafka"})
        self.assertEqual(s.execute("add", {"a": 1, "b": 2}, "log-3").status, 200)
        s.stop()
        self.assertRegex(s.log(), r"level=info component=worker msg=batch messages=1 "
                                  r"executed=1 replayed=0 rejected=0 dead_lettered=0 ms=\d+")


class Keygen(ConfigTest):
    def test_keygen_writes_a_private_key_and_prints_its_public_key(self):
        from cryptography.hazmat.primitives import serialization
        path = self.path("log.key")
        p = cli(["keygen", "--out", path])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        with open(path, "rb") as f:
            pem = f.read()
        self.assertTrue(pem.startswith(b"-----BEGIN PRIVATE KEY-----\n"), pem[:40])
        key = serialization.load_pem_private_key(pem, None)
        pub = key.public_key()
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        key_id = hashlib.sha256(raw).hexdigest()
        # The verifier key of golang.org/x/mod/sumdb/note: name, key hash
        # (SHA-256 of name, newline, 0x01, key: first 4 bytes), 0x01 || key.
        name = "openexec/" + key_id[:16]
        key_hash = hashlib.sha256(name.encode() + b"\n\x01" + raw).hexdigest()[:8]
        vkey = "%s+%s+%s" % (name, key_hash, base64.b64encode(b"\x01" + raw).decode())
        spki = pub.public_bytes(serialization.Encoding.PEM,
                                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        self.assertEqual(p.stdout, "%skey_id: %s\nvkey: %s\n" % (spki, key_id, vkey))

        # Never overwritten: exit 1, one line, the file as it was.
        p = cli(["keygen", "--out", path])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(p.stdout, "")
        err = p.stderr.strip()
        self.assertNotIn("\n", err)
        self.assertTrue(err.startswith("openexec: keygen: "), err)
        self.assertIn(path, err)
        self.assertIn("already exists", err)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), pem)
        # Two keys are two keys.
        p2 = cli(["keygen", "--out", self.path("other.key")])
        self.assertEqual(p2.returncode, 0, p2.stderr)
        self.assertNotIn("key_id: %s" % key_id, p2.stdout)

    def test_keygen_refusals(self):
        self.assertRefused(cli(["keygen"]), "--out")
        self.assertRefused(cli(["keygen", "--out", ""]), "--out")
        p = cli(["keygen", "--out", self.path("no/such/dir/log.key")])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("No such file or directory", p.stderr)
        self.assertFalse(os.path.exists(self.path("no")))

    def test_key_files_too_large_or_not_text_refused(self):
        # Every file of keys is read whole up to 64 KiB: a longer one, or
        # one with a NUL byte, is refused, never read in part.
        big = self.path("big.pem")
        with open(big, "w") as f:
            f.write("x" * (64 * 1024 + 1))
        nul = self.path("nul.pem")
        with open(nul, "wb") as f:
            f.write(b"-----BEGIN PUBLIC KEY-----\0")
        for path in (big, nul):
            for argv, flag in (
                    (["verify-receipt", "--trusted-keys", path, os.devnull], "--trusted-keys"),
                    (["ledger", "audit", "--db", self.path("a.db"), "--trusted-keys", path],
                     "--trusted-keys"),
                    (["mint", "--action", "echo", "--ed25519-key", path], "--ed25519-key"),
                    (["run", "--http-port", "0", "--db", self.path("r.db"), "--mode",
                      "clawshield", "--public-key-file", path], "--public-key-file")):
                self.assertRefused(cli(argv, timeout=10), flag, path,
                                   "larger than 65536 bytes, or not text")
            # run reads the trusted keys once its ledger and log are open
            # (their lines come first): exit 2, the reason last.
            p = cli(["run", "--http-port", "0", "--db", self.path("r.db"),
                     "--trusted-keys-file", path], timeout=10)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertEqual(p.stderr.strip().splitlines()[-1],
                             "openexec: --trusted-keys-file %s: cannot read it (larger than 65536 "
                             "bytes, or not text)" % path)
        self.assertRefused(cli(["verify-receipt", "--trusted-keys", self.path("none.pem"),
                                os.devnull]), "none.pem", "No such file or directory")


class Waits(ConfigTest):
    def test_produce_says_how_long_it_waited(self):
        # Brokers that never answer: produce waits its 15 s for them, then
        # says so (each round of the wait is half a second: not that).
        t0 = time.monotonic()
        p = cli(["produce", "--brokers", "127.0.0.1:1"], timeout=40)
        waited = time.monotonic() - t0
        self.assertEqual(p.returncode, 1, p.stderr)
        last = p.stderr.strip().splitlines()[-1]
        m = re.match(r"^openexec: produce: brokers unreachable after (\d+\.\d) s: ", last)
        self.assertTrue(m, last)
        self.assertGreaterEqual(float(m.group(1)), 14.5, last)
        # (printed to a tenth: rounded, it may pass the wait by 0.05 s)
        self.assertLessEqual(float(m.group(1)), waited + 0.05, last)


class Help(ConfigTest):
    def listed(self, command):
        p = cli(command.split() + ["--help"])
        self.assertEqual(p.returncode, 0, "%s --help: %r" % (command, p.stderr))
        self.assertTrue(p.stdout.startswith("usage: openexec %s" % command),
                        "%s --help: %r" % (command, p.stdout[:200]))
        return set(re.findall(r"^  (--[a-z0-9-]+|-X)\b", p.stdout, re.M))

    def test_each_command_lists_its_own_options(self):
        for command, expected in sorted(OPTIONS.items()):
            self.assertEqual(self.listed(command), expected, command)
        self.assertNotIn("--mode", self.listed("produce"))
        self.assertNotIn("--secret", self.listed("produce"))
        # version --help is help, not the version.
        p = cli(["version", "--help"])
        self.assertNotEqual(p.stdout.strip(), cli(["version"]).stdout.strip())
        self.assertRefused(cli(["version", "--bogus"]), "--bogus")

    def test_completion_names_what_help_names(self):
        # The bash completion script, run in bash: the commands of
        # `openexec --help`, each command's options exactly as its --help
        # lists them, and the values of options with a few words.
        script = cli(["completion", "bash"])
        self.assertEqual(script.returncode, 0, script.stderr)

        def complete(*words):
            line = "COMP_WORDS=(openexec %s); COMP_CWORD=%d; _openexec; " \
                   "printf '%%s\\n' \"${COMPREPLY[@]}\"" % (
                       " ".join("'%s'" % w for w in words), len(words))
            p = subprocess.run(["bash", "-c", script.stdout + "\n" + line],
                               capture_output=True, text=True, timeout=10)
            self.assertEqual(p.returncode, 0, p.stderr)
            return set(p.stdout.split())

        usage = cli(["--help"]).stdout
        listed = {ln.split()[0] for ln in usage.splitlines() if ln.startswith("  ")}
        self.assertEqual(complete(""), listed)
        for command, expected in sorted(OPTIONS.items()):
            self.assertEqual(complete(*command.split(), ""), expected, command)
            self.assertEqual(complete(*command.split(), ""), self.listed(command), command)
        self.assertEqual(complete("ledger", ""), {"show", "export", "audit", "logs", "migrate"})
        self.assertEqual(complete("docs", ""), {"config", "metrics"})
        self.assertEqual(complete("run", "--mode", ""), {"demo", "clawshield"})
        self.assertEqual(complete("ledger", "export", "--status", "re"), {"rejected"})
        self.assertEqual(complete("run", "--db-s"), {"--db-sync"})
        # zsh: the same function through bashcompinit.
        z = cli(["completion", "zsh"])
        self.assertEqual(z.returncode, 0, z.stderr)
        self.assertIn("bashcompinit", z.stdout)
        self.assertIn(script.stdout.split("\n", 1)[1], z.stdout)
        self.assertRefused(cli(["completion"]), "bash or zsh")
        self.assertRefused(cli(["completion", "fish"]), "bash or zsh")

    def test_typos_get_a_did_you_mean(self):
        for argv, typo, said in (
                (["rn"], "rn", "unknown command: rn; did you mean run?"),
                (["verfy-receipt"], "verfy-receipt", "did you mean verify-receipt?"),
                (["ledger", "adit"], "adit", "ledger: unknown action adit; did you mean audit?"),
                (["docs", "confg"], "confg", "docs: unknown action confg; did you mean config?"),
                (["run", "--brokres", "x"], "--brokres", "did you mean --brokers?"),
                (["topics", "--partitons", "2"], "--partitons", "did you mean --partitions?"),
                (["run", "--db-sycn", "full"], "--db-sycn", "did you mean --db-sync?")):
            self.assertIn(said, self.assertRefused(cli(argv, timeout=5), typo), argv)
        # Nothing close: no guess.
        for argv in (["zzzz"], ["run", "--zzz"], ["ledger", "frobnicate"]):
            err = self.assertRefused(cli(argv, timeout=5), argv[-1])
            self.assertNotIn("did you mean", err)

    def test_version_names_the_libraries(self):
        import sqlite3
        p = cli(["version"])
        self.assertEqual((p.returncode, p.stderr), (0, ""))
        lines = p.stdout.splitlines()
        self.assertRegex(lines[0], r"^\d+\.\d+\.\d+ \(commit \S+, \S+\)$")
        libs = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in lines[1:]}
        self.assertEqual(sorted(libs), ["OpenSSL", "SQLite", "avro-c", "libmicrohttpd", "libpq",
                                        "librdkafka"], p.stdout)
        # What is linked in, as the system's own tools report it.
        def modversion(pkg):
            return subprocess.run(["pkg-config", "--modversion", pkg], capture_output=True,
                                  text=True).stdout.strip()
        self.assertEqual(libs["SQLite"], sqlite3.sqlite_version)
        self.assertEqual(libs["librdkafka"], modversion("rdkafka"))
        self.assertEqual(libs["libmicrohttpd"], modversion("libmicrohttpd"))
        self.assertEqual(libs["avro-c"], modversion("avro-c") + " (built against)")
        self.assertTrue(libs["OpenSSL"].startswith(modversion("openssl") + " "), libs)
        self.assertRegex(libs["libpq"], r"^\d+\.\d+$")

    def test_options_of_other_commands_refused(self):
        for command, expected in sorted(OPTIONS.items()):
            others = set().union(*OPTIONS.values()) - expected - {"-X"}
            for flag in sorted(others):
                args = command.split() + [flag, "1"]
                if command in ("produce", "receipts", "dlq replay"):
                    args += ["--brokers", "127.0.0.1:1"]
                if command == "run":
                    args += ["--http-port", "0", "--db", self.path("o.db")]
                self.assertRefused(cli(args, timeout=5), "unknown option", flag,
                                   what=" ".join(args))


if __name__ == "__main__":
    run_tests()
