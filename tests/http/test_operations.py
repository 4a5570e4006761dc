"""docs/operations.md against the binary: its generated sections are what
`openexec docs config` and `openexec docs metrics` print now
(tests/http/generated_docs.py; `make docs` writes them), the metrics
reference is exactly what GET /metrics of a running service declares
(names, types and help, both ways), the configuration reference names each
command's options as its --help does, and the schema versions the document
states are this binary's."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import generated_docs  # noqa: E402
from harness import ROOT, ServiceTest, cli, run_tests  # noqa: E402

OPERATIONS = os.path.join(ROOT, "docs", "operations.md")


def cells(line):
    """The cells of a Markdown table row, unescaped as docs.c escapes them."""
    parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [p.strip().replace("\\|", "|").replace("\\*", "*").replace("\\`", "`")
            .replace("&lt;", "<").replace("&gt;", ">") for p in parts]


def reference_metrics():
    """{section title: {name: (type, help)}} from `openexec docs metrics`."""
    out, section = {}, None
    for line in generated_docs.output("openexec docs metrics").splitlines():
        if line.startswith("### "):
            section = out.setdefault(line[4:], {})
        elif line.startswith("| `openexec_"):
            name, kind, _, help_text = cells(line)
            section[name.strip("`")] = (kind, help_text)
    return out


def served_metrics(server):
    """{name: (type, help)} of the families GET /metrics declares, after
    checking that every sample belongs to one of them."""
    body = server.get("/metrics").body.decode()
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", body, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M))
    assert set(helps) == set(types), (set(helps) ^ set(types))
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in types or types.get(base) == "histogram", "undeclared sample: " + line
    return {n: (types[n], helps[n]) for n in types}


class Generated(ServiceTest):
    def test_generated_sections_are_current(self):
        with open(OPERATIONS) as f:
            self.assertEqual(generated_docs.commands(f.read()),
                             ["openexec docs config", "openexec docs metrics"])
        stale = generated_docs.stale()
        if stale:
            self.fail("generated sections differ from what the binary prints; run `%s` "
                      "(and commit the result):\n%s"
                      % (generated_docs.REGENERATE, "\n".join(d for _, d in stale)))

    def test_config_reference_names_each_commands_options(self):
        # Every row's flag under each command it names, plus -X: the same
        # set as the command's --help, and the same variables.
        flags, envs = {}, {}
        for line in generated_docs.output("openexec docs config").splitlines()[2:]:
            flag, env, _, commands = cells(line)[:4]
            for command in commands.split(", "):
                flags.setdefault(command, set()).add(flag.strip("`").split()[0])
                if env.startswith("`OPENEXEC_KAFKA_<"):
                    continue
                if env != "\u2014":
                    envs.setdefault(command, set()).add(env.strip("`"))
        usage = cli(["--help"]).stdout
        groups = {ln.split()[0] for ln in usage.splitlines() if ln.startswith("  ")}
        self.assertEqual({c.split()[0] for c in flags} - groups, set())
        for command in sorted(flags):
            p = cli(command.split() + ["--help"])
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(set(re.findall(r"^  (--[a-z0-9-]+|-X)\b", p.stdout, re.M)) - {"--help"},
                             flags[command], command)
            self.assertEqual(set(re.findall(r"\(env ([A-Z0-9_]+)\)", p.stdout)) - {
                "OPENEXEC_KAFKA_<PROP>"}, envs.get(command, set()), command)

    def test_schema_versions_are_this_binarys(self):
        with open(os.path.join(ROOT, "engine", "store.h")) as f:
            store = f.read()
        with open(OPERATIONS) as f:
            doc = f.read()
        for backend, macro in (("SQLite", "OE_SQLITE_SCHEMA_VERSION"),
                               ("PostgreSQL", "OE_POSTGRES_SCHEMA_VERSION")):
            version = re.search(r"#define %s (\d+)" % macro, store).group(1)
            self.assertIn("%s schema version %s" % (backend, version), doc,
                          "docs/operations.md, \"Upgrades and schema migrations\": say what "
                          "version %s of the %s ledger changes" % (version, backend))


class Metrics(ServiceTest):
    def test_reference_is_what_metrics_serves(self):
        ref = reference_metrics()
        kafka = ref.pop("Kafka worker and `/execute` bridge")
        always = {}
        for section in ref.values():
            always.update(section)
        self.assertGreater(len(always), 10)
        # With Kafka (the embedded broker; /metrics answers before /ready).
        s = self.server(env={"OPENEXEC_EXECUTE": "kafka"}, start=False)
        s.start(wait_ready=False)
        self.assertSame(served_metrics(s), dict(always, **kafka))
        # --execute local: no Kafka side.
        self.assertSame(served_metrics(self.server()), always)

    def assertSame(self, served, registered):
        self.assertEqual((sorted(set(served) - set(registered)),
                          sorted(set(registered) - set(served))), ([], []),
                         "(served by /metrics but in no registry, in a registry but not served)")
        for name in sorted(served):
            self.assertEqual(served[name], registered[name], name + ": (type, help)")


if __name__ == "__main__":
    run_tests()
