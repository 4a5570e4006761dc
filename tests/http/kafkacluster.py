"""Apache Kafka (KRaft) for the black-box tests, through tests/kafka/kafka.sh.

KafkaCluster(nodes=1|3, sasl=False).up() fetches the broker's jars (once,
into build/kafka/lib), formats and starts the nodes on free loopback ports
and waits until a metadata request lists them all. kill(n) / start(n) /
wait() drive single nodes (failover tests); down() stops exactly the nodes
it started. With sasl=True each node also has a SASL_SSL listener
(sasl_bootstrap, advertised as localhost), a certificate signed by a
throw-away CA (ca_path) and the user SASL_USER for SASL/PLAIN and
SCRAM-SHA-512. version picks the broker's release (default: kafka.sh's);
SCRAM from Debian 12's librdkafka (2.0.2) works with 3.9.1, not with 4.x
(librdkafka#4895, fixed in librdkafka 2.6.1).

shared_cluster() gives one single-node cluster per Python process, started
on first use and stopped at exit, unless OPENEXEC_TEST_KAFKA_BOOTSTRAP names
one already running (tests/run.sh starts one for all suites). Failures raise
RuntimeError with kafka.sh's one-line reason: the tests fail, never skip.
"""

import atexit
import os
import shutil
import subprocess
import tempfile

from harness import ROOT

SCRIPT = os.path.join(ROOT, "tests", "kafka", "kafka.sh")
SASL_USER, SASL_PASSWORD = "openexec", "openexec-secret"
UP_TIMEOUT = 120  # seconds; the first run also fetches the jars


def _run(args, timeout):
    p = subprocess.run([SCRIPT] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("tests/kafka/kafka.sh %s: %s" % (
            args[0], p.stderr.decode("utf-8", "replace").strip() or "exit %d" % p.returncode))
    return p.stdout.decode("utf-8")


def fetch(version=None):
    """The broker's jars, fetched from Maven Central on first use."""
    _run(["fetch"] + (["--version", version] if version else []), timeout=600)


class KafkaCluster:
    def __init__(self, nodes=1, sasl=False, workdir=None, version=None):
        self.nodes = nodes
        self.sasl = sasl
        self.version = version
        self._own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="openexec-kafka-")
        self.bootstrap = None
        self.sasl_bootstrap = None
        self._up = False

    @property
    def ca_path(self):
        return os.path.join(self.dir, "tls", "ca.pem")

    def up(self):
        fetch(self.version)
        out = _run(["up", "--dir", self.dir, "--nodes", str(self.nodes)]
                   + (["--sasl"] if self.sasl else [])
                   + (["--version", self.version] if self.version else []),
                   timeout=UP_TIMEOUT + 30)
        self._up = True
        atexit.register(self.down)
        for line in out.splitlines():
            if line.startswith("bootstrap.servers="):
                self.bootstrap = line.split("=", 1)[1]
            elif line.startswith("sasl_ssl.bootstrap.servers="):
                self.sasl_bootstrap = line.split("=", 1)[1]
        if not self.bootstrap:
            self.down()
            raise RuntimeError("kafka.sh up printed no bootstrap.servers line: %r" % out)
        return self

    def kill(self, node):
        """kill -9 one node."""
        _run(["kill", "--dir", self.dir, "--node", str(node)], timeout=60)

    def start(self, node):
        """Starts a killed node again (returns at once; wait() for it)."""
        _run(["start", "--dir", self.dir, "--node", str(node)], timeout=60)

    def wait(self, timeout=UP_TIMEOUT):
        """Until a metadata request lists every node."""
        _run(["wait", "--dir", self.dir, "--timeout", str(int(timeout))], timeout=timeout + 30)

    def down(self):
        if self._up:
            self._up = False
            try:
                _run(["down", "--dir", self.dir], timeout=120)
            finally:
                if self._own_dir:
                    shutil.rmtree(self.dir, ignore_errors=True)

    def leaders(self, topic):
        """{partition: leader node id} of a topic, from the cluster's metadata."""
        from confluent_kafka.admin import AdminClient
        md = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(topic, timeout=10)
        t = md.topics[topic]
        if t.error is not None:
            raise RuntimeError("metadata of %s: %s" % (topic, t.error))
        return {p: pm.leader for p, pm in t.partitions.items()}


class _Running:
    """A cluster someone else started (OPENEXEC_TEST_KAFKA_BOOTSTRAP)."""

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.nodes = len(bootstrap.split(","))


_shared = None


def shared_cluster():
    global _shared
    if _shared is None:
        given = os.environ.get("OPENEXEC_TEST_KAFKA_BOOTSTRAP")
        if given:
            _shared = _Running(given)
        else:
            _shared = KafkaCluster(nodes=1).up()
    return _shared
