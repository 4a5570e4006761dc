"""deploy/ checked with every validator this machine has (there is no
container engine and no Kubernetes here): yamllint on every YAML file,
`docker-compose config`, `promtool check rules` and `check config`,
`systemd-analyze verify` and `security`, the Grafana dashboard's JSON, the
Kubernetes manifests' structure, and the Dockerfile's build stage run for
real (the files it copies, the make command it runs). Every metric the
alerts and the dashboard use is one a running service exports; every
setting the manifests and the compose file give is one `openexec run`
takes, and the configuration file of the ConfigMap starts a service.

The compose topology's processes themselves run on loopback against
Apache Kafka and PostgreSQL in test_kafka_cluster.py (ComposeTopology)."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import BIN, ROOT, ServiceTest, clean_env, cli, run_tests  # noqa: E402

DEPLOY = os.path.join(ROOT, "deploy")
YAMLLINT = ("{extends: default, rules: {line-length: {max: 120}, document-start: disable,"
            " truthy: {check-keys: false}}}")


def yaml_files():
    out = []
    for d, _, files in os.walk(DEPLOY):
        out += [os.path.join(d, f) for f in files if f.endswith((".yml", ".yaml"))]
    return sorted(out)


def load_yaml_docs(path):
    import yaml
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


def run_settings():
    """The environment variables `openexec run` takes (from its --help)."""
    p = cli(["run", "--help"])
    names = set(re.findall(r"\(env ([A-Z0-9_]+)\)", p.stdout))
    assert names, p.stdout
    return names


def metric_names():
    """Every metric name a running service exports (from /metrics: its
    HELP lines), with the worker's and the bridge's (embedded broker)."""
    import tempfile
    d = tempfile.mkdtemp(prefix="oe-deploy-")
    try:
        from harness import Server
        s = Server(d, env={"OPENEXEC_EXECUTE": "kafka"})
        s.start()
        try:
            s.execute("add", {"a": 1, "b": 2}, "deploy-metrics")
            body = s.get("/metrics").body.decode()
        finally:
            s.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    names = set(re.findall(r"^# HELP (\S+)", body, re.M))
    for n in list(names):
        if re.search(r"^# TYPE %s histogram$" % re.escape(n), body, re.M):
            names |= {n + "_bucket", n + "_sum", n + "_count"}
    return names


class SetUp(ServiceTest):
    def test_make_run_installs_only_what_the_program_needs(self):
        # `make run` depends on `make deps`: the build's -dev packages (and
        # curl for the documents' examples); the test world is `make
        # deps-test`, which `make test` runs.
        def var(name):
            p = subprocess.run(["make", "-s", "-C", ROOT, "--no-print-directory",
                                "--eval=print-%s: ; @echo $(%s)" % (name, name),
                                "print-" + name], capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            return set(p.stdout.split())

        self.assertEqual(var("DEB_PKGS"), {"pkg-config", "libssl-dev", "libsqlite3-dev",
                                           "libmicrohttpd-dev", "librdkafka-dev", "libavro-dev",
                                           "libpq-dev", "liblua5.4-dev", "curl"})
        self.assertIn("postgresql", var("DEB_TEST_PKGS"))
        self.assertFalse(var("DEB_PKGS") & (var("DEB_TEST_PKGS") | var("DEB_TOOLS")))
        with open(os.path.join(ROOT, "Makefile")) as f:
            rules = {m.group(1): m.group(2).split() for m in
                     re.finditer(r"^([a-z-]+):([^=\n]*)$", f.read(), re.M)}
        self.assertEqual(rules["run"], ["deps"])
        self.assertEqual(rules["deps-test"], ["deps"])
        self.assertEqual(rules["test"], ["deps-test"])


class Validators(ServiceTest):
    def test_yamllint(self):
        files = yaml_files()
        self.assertGreaterEqual(len(files), 9, files)
        p = run(["yamllint", "-f", "parsable", "-d", YAMLLINT] + files)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_compose_config(self):
        p = run(["docker-compose", "-f", os.path.join(DEPLOY, "docker-compose.yml"), "config"],
                cwd=DEPLOY, env=clean_env({}))
        self.assertEqual(p.returncode, 0, p.stderr)
        import yaml
        c = yaml.safe_load(p.stdout)
        services = c["services"]
        self.assertEqual(sorted(services), ["kafka", "postgres", "prometheus", "topics",
                                            "worker-1", "worker-2", "worker-3"])
        self.assertTrue(services["kafka"]["image"].startswith("apache/kafka:"))
        self.assertEqual(services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"],
                         "broker,controller")  # KRaft
        known = run_settings()
        for name in ("worker-1", "worker-2", "worker-3"):
            env = services[name]["environment"]
            self.assertEqual(env["OPENEXEC_GROUP_INSTANCE_ID"], name)
            self.assertTrue(env["OPENEXEC_DB_URL"].startswith("postgresql://"))
            for k in env:
                self.assertIn(k, known, "%s sets %s, which `openexec run` does not take"
                              % (name, k))
            self.assertEqual(services[name]["depends_on"]["topics"]["condition"],
                             "service_completed_successfully")
        self.assertEqual(services["topics"]["entrypoint"], ["openexec", "topics"])

    def test_promtool(self):
        p = run(["promtool", "check", "rules", os.path.join(DEPLOY, "prometheus", "alerts.yml")])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS: 11 rules found", p.stdout)
        p = run(["promtool", "check", "config",
                 os.path.join(DEPLOY, "prometheus", "prometheus.yml")])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # A rule that is not PromQL is refused: the check can fail.
        bad = self.path("bad.yml")
        with open(bad, "w") as f:
            f.write("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(\n")
        self.assertNotEqual(run(["promtool", "check", "rules", bad]).returncode, 0)

    def test_systemd_unit(self):
        # ExecStart pointed at this build (verify checks that it can run).
        unit = self.path("openexec.service")
        with open(os.path.join(DEPLOY, "systemd", "openexec.service")) as f:
            text = f.read()
        self.assertIn("ExecStart=/usr/local/bin/openexec run --config", text)
        with open(unit, "w") as f:
            f.write(text.replace("/usr/local/bin/openexec", BIN))
        p = run(["systemd-analyze", "verify", unit])
        # verify only warns (exit 0) about values it ignores: any word fails.
        self.assertEqual((p.returncode, p.stdout.strip(), p.stderr.strip()), (0, "", ""))
        for key in ("DynamicUser=yes", "StateDirectory=openexec", "ProtectSystem=strict",
                    "NoNewPrivileges=yes", "PrivateTmp=yes", "CapabilityBoundingSet=\n"):
            self.assertIn(key, text)
        p = run(["systemd-analyze", "security", "--offline=true", unit])
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout + p.stderr)
        self.assertTrue(m, p.stdout + p.stderr)
        self.assertLessEqual(float(m.group(1)), 2.0, p.stdout[-2000:])
        print("    systemd-analyze security: exposure %s" % m.group(1))

    def test_metrics_of_alerts_and_dashboard_exist(self):
        names = metric_names()
        exprs = []
        for g in load_yaml_docs(os.path.join(DEPLOY, "prometheus", "alerts.yml"))[0]["groups"]:
            exprs += [r["expr"] for r in g["rules"]]
        with open(os.path.join(DEPLOY, "grafana", "openexec-dashboard.json")) as f:
            dash = json.load(f)
        self.assertEqual(dash["uid"], "openexec")
        self.assertGreaterEqual(len(dash["panels"]), 10)
        for p in dash["panels"]:
            self.assertTrue(p["targets"], p["title"])
            exprs += [t["expr"] for t in p["targets"]]
        used = set()
        for e in exprs:
            used |= set(re.findall(r"\b(openexec_[a-z0-9_]+)", e))
        self.assertGreaterEqual(len(used), 15, used)
        self.assertEqual(sorted(used - names), [], "metrics the service does not export")

    def test_kubernetes_manifests(self):
        known = run_settings()
        kinds = {}
        for path in yaml_files():
            if os.sep + "k8s" + os.sep not in path:
                continue
            for doc in load_yaml_docs(path):
                self.assertIn("apiVersion", doc, path)
                kinds.setdefault(doc["kind"], []).append(doc)
        self.assertEqual(sorted(kinds), ["ConfigMap", "Deployment", "PodDisruptionBudget",
                                         "Secret", "Service", "StatefulSet"])
        for workload in kinds["Deployment"] + kinds["StatefulSet"]:
            name = workload["metadata"]["name"]
            spec = workload["spec"]["template"]["spec"]
            (c,) = spec["containers"]
            self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/ready", name)
            self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/health", name)
            self.assertTrue(c["resources"]["requests"] and c["resources"]["limits"], name)
            self.assertTrue(spec["securityContext"]["runAsNonRoot"], name)
            ann = workload["spec"]["template"]["metadata"]["annotations"]
            self.assertEqual(ann["prometheus.io/scrape"], "true")
            env = {e["name"]: e for e in c.get("env", [])}
            self.assertEqual(env["OPENEXEC_GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]
                             ["fieldPath"], "metadata.name", name)
            for k in env:
                self.assertIn(k, known, "%s sets %s" % (name, k))
            self.assertEqual(workload["spec"]["selector"]["matchLabels"],
                             workload["spec"]["template"]["metadata"]["labels"])
        (secret,) = kinds["Secret"]
        for k in secret["stringData"]:
            self.assertIn(k, known)
        (sts,) = kinds["StatefulSet"]
        self.assertEqual(sts["spec"]["replicas"], 1)  # a SQLite ledger is one worker's
        (pdb,) = kinds["PodDisruptionBudget"]
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"],
                         kinds["Deployment"][0]["spec"]["selector"]["matchLabels"])

    def test_configmap_file_starts_a_service(self):
        (cm,) = [d for d in load_yaml_docs(os.path.join(DEPLOY, "k8s", "configmap.yaml"))]
        conf = self.path("openexec.conf")
        with open(conf, "w") as f:
            f.write(cm["data"]["openexec.conf"])
        # The file as the pods read it; here without Kafka (local execution)
        # and with a secret, as the Secret gives it.
        s = self.server(env={"CLAWSHIELD_SECRET_KEY": "k8s-secret"},
                        args=["--config", conf, "--execute", "local"])
        h = s.get("/health").json
        self.assertEqual((h["mode"], h["signature_verification"]), ("clawshield", "enabled"))
        # The file asks for JSON logs: its effective configuration is one.
        (conf_line,) = [json.loads(x) for x in s.log().splitlines()
                        if "effective configuration" in x]
        self.assertEqual((conf_line["OPENEXEC_MODE"], conf_line["OPENEXEC_MODE.from"]),
                         ("clawshield", "file"))
        self.assertEqual(conf_line["CLAWSHIELD_TENANT_ID"], "acme")
        self.assertEqual(conf_line["OPENEXEC_KAFKA_TRANSACTIONS"], "1")
        self.assertEqual(conf_line["CLAWSHIELD_SECRET_KEY"], "***")
        self.assertNotIn("k8s-secret", s.log())

    def test_dockerfile_build_stage(self):
        with open(os.path.join(DEPLOY, "Dockerfile")) as f:
            text = f.read()
        stages = re.findall(r"^FROM (\S+)", text, re.M)
        self.assertEqual(stages, ["debian:bookworm", "debian:bookworm-slim"])
        self.assertIn("USER openexec", text)
        self.assertRegex(text, r"HEALTHCHECK .*\n.*curl -fsS http://127\.0\.0\.1:5000/health")
        self.assertIn('ENTRYPOINT ["openexec", "run"]', text)
        # Every package it installs exists in Debian's archive (apt-cache).
        pkgs = []
        for block in re.findall(r"apt-get install -y --no-install-recommends((?:.|\n)*?)\\\n &&",
                                text):
            pkgs += block.replace("\\", " ").split()
        self.assertGreaterEqual(len(pkgs), 15, pkgs)
        p = run(["apt-cache", "show", "--no-all-versions"] + pkgs)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(re.findall(r"^Package: ", p.stdout, re.M)), len(pkgs), pkgs)
        # The build stage for real: the files it copies and its make command.
        src = self.path("src")
        os.mkdir(src)
        copies = re.findall(r"^COPY (\S+) (\S+)$", text, re.M)
        for what, _ in copies:
            from_ = os.path.join(ROOT, what)
            (shutil.copytree if os.path.isdir(from_) else shutil.copy)(
                from_, os.path.join(src, what))
        (make,) = re.findall(r"^RUN (make .*?) \\\n", text, re.M)
        make = make.replace('-j"$(nproc)"', "-j2").replace('"$BUILD_COMMIT"', "deploytest") \
                   .replace('"$BUILD_DATE"', "2026-01-01T00:00:00Z")
        # Without optimisation here (a third of the time): what is checked is
        # that the copied files and the command build the binary.
        make += " OPT=-O0"
        p = subprocess.run(make, shell=True, cwd=src, capture_output=True, text=True,
                           timeout=600)
        self.assertEqual(p.returncode, 0, p.stdout[-3000:] + p.stderr[-3000:])
        out = subprocess.run([os.path.join(src, "build", "openexec"), "version"],
                             capture_output=True, text=True, timeout=10).stdout
        self.assertIn("commit deploytest, 2026-01-01T00:00:00Z", out)


if __name__ == "__main__":
    run_tests()
