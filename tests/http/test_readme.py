"""The README as a newcomer pastes it: every ```sh block carries a marker
comment on the line before it:
- `<!-- test: run -->` (or `run, WHY`): run as it is;
- `<!-- test: run, as make run's service -->`: the `make run` block; it runs
  in the background (its ledger in a temp dir) while the blocks marked
- `<!-- test: run, with make run's service -->` run, and is stopped (its
  process group: make and the service) before any other block;
- `<!-- test: skip, REASON -->`.
The blocks to run are run in README order in one bash (set -euo pipefail,
so that their variables carry over as in a terminal), from the
repository's root, with L naming a database of a throw-away PostgreSQL
server; a block that fails, or a block without a marker, fails the test.
What the blocks print is checked against what the README says they print."""

import json
import os
import re
import shlex
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import ROOT, ServiceTest, clean_env, run_tests  # noqa: E402
import pgcluster  # noqa: E402

README = os.path.join(ROOT, "README.md")
MARKER = re.compile(r"^<!-- test: (run|run, .+|skip, .+) -->$")
SERVICE = "run, as make run's service"
WITH_SERVICE = "run, with make run's service"


def blocks():
    """[(line number, marker or None, text)] of every ```sh block."""
    with open(README) as f:
        lines = f.read().split("\n")
    out, i = [], 0
    while i < len(lines):
        if lines[i] == "```sh":
            start = i
            body = []
            i += 1
            while lines[i] != "```":
                body.append(lines[i])
                i += 1
            m = MARKER.match(lines[start - 1]) if start > 0 else None
            out.append((start + 1, m.group(1) if m else None, "\n".join(body)))
        i += 1
    return out


def json_objects(text):
    """Every JSON object in text (curl prints them without newlines)."""
    dec, out, i = json.JSONDecoder(), [], 0
    while True:
        i = text.find("{", i)
        if i < 0:
            return out
        try:
            obj, end = dec.raw_decode(text, i)
        except ValueError:
            i += 1
            continue
        if isinstance(obj, dict):
            out.append(obj)
        i = end


def port_free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Readme(ServiceTest):
    def test_every_block_runs_as_pasted(self):
        found = blocks()
        self.assertGreaterEqual(len(found), 8)
        unmarked = [n for n, marker, _ in found if marker is None]
        self.assertEqual(unmarked, [], "README lines with a ```sh block and no test marker")
        for port in (5000, 5001, 5002, 5003, 9092):
            self.assertTrue(port_free(port), "port %d is taken: the README's examples use it"
                            % port)
        services = [text for _, marker, text in found if marker == SERVICE]
        self.assertEqual(len(services), 1, "one block is make run's service")
        self.assertEqual(services[0].split("#")[0].strip(), "make run")
        script = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
                  'T="$(mktemp -d)"']
        # make run in a process group of its own (stopped as Ctrl-C would:
        # make and the service), its ledger in the temp dir.
        start = ('OPENEXEC_DB_PATH="$T/make-run.db" setsid bash -c %s > "$T/make-run.log" 2>&1 & '
                 'SVC=$!' % shlex.quote(services[0]))
        stop = 'kill -TERM -- -$SVC; wait $SVC || true'
        ran = skipped = 0
        service = False
        for n, marker, text in found:
            if marker.startswith("skip"):
                skipped += 1
                continue
            if marker == SERVICE:
                continue
            wants = marker == WITH_SERVICE
            if wants and not service:
                script.append(start)
                service = True
            if not wants and service:
                script.append(stop)
                service = False
            script.append("echo '=== README line %d'" % n)
            script.append(text)
            ran += 1
        if service:
            script.append(stop)
        script.append("echo '=== README done'")
        # The PostgreSQL group example's L; make's own variables of an outer
        # make (make test) are not the newcomer's.
        env = clean_env({"L": pgcluster.fresh_database("readme"), "MAKEFLAGS": None,
                         "MAKELEVEL": None, "MFLAGS": None})
        p = subprocess.run(["bash", "-c", "\n".join(script)], cwd=ROOT, capture_output=True,
                           text=True, timeout=300, env=env)
        out = p.stdout
        self.assertEqual(p.returncode, 0, "a README block failed (exit %d); output:\n%s\n%s"
                         % (p.returncode, out[-4000:], p.stderr[-4000:]))
        self.assertIn("=== README done", out)
        print("    %d blocks run, %d skipped with their reason" % (ran, skipped))
        # What the README says they print.
        objs = json_objects(out)
        self.assertIn({"valid": True}, objs)
        self.assertTrue(any(o.get("result") == {"echo": {"msg": "hello"}} for o in objs))
        self.assertTrue(any(o.get("result") == {"sum": 5} for o in objs))
        self.assertTrue(any(o.get("result") == {"echo": {"msg": "governed"}} and
                            o.get("status") == "executed" for o in objs))
        self.assertTrue(any(o.get("result") == {"echo": {"msg": "governed"}} and
                            o.get("status") == "replayed" for o in objs))
        self.assertTrue(any(o.get("result") == {"echo": {}} and o.get("approved") for o in objs))
        self.assertTrue(any(o.get("nonce") == "k-1" and o.get("status") == "executed"
                            for o in objs), out[-3000:])
        self.assertTrue(any(o.get("record") == "execution" and o.get("nonce") == "k-1"
                            for o in objs))
        self.assertIn("\nvalid\n", out)
        # ledger audit of the signed ledger, against the checkpoint it published.
        self.assertRegex(out, r"\nlog openexec/[0-9a-f]{16}: 1 entry, 1 checkpoint, intact\n")
        # make run's broker on 9092; Apache Kafka; the PostgreSQL group.
        self.assertTrue(any(o.get("nonce") == "cli-1" and o.get("result") == {"sum": 2}
                            for o in objs), out[-3000:])
        self.assertTrue(any(o.get("result") == {"echo": {"on": "kafka"}} and
                            o.get("status") == "executed" for o in objs), out[-3000:])
        pg = [o for o in objs if o.get("result") == {"echo": {"shared": True}}]
        self.assertEqual([o.get("status") for o in pg], ["executed", None], out[-3000:])


# A shell block in docs/ is run by the test its marker names, or says why not.
DOCS_MARKER = re.compile(r"^<!-- test: (examples [a-z0-9-]+|skip, .+) -->$")
# The documents whose `examples NAME` blocks tests/http/test_examples.py runs
# (it checks that it runs each of them).
DOCS_RUN_BY_EXAMPLES = ("integrate.md",)


class Docs(ServiceTest):
    """docs/*.md, the users' documents: every ```json block is JSON (an
    example a client can paste), no ```sh block goes untested (the README's
    are run above; those of docs/integrate.md by tests/http/test_examples.py,
    each marked `<!-- test: examples NAME -->`, or `<!-- test: skip, REASON
    -->` for one that is the same as a block tested elsewhere), and nothing
    points outside the repository."""

    def test_docs_blocks_and_links(self):
        docs = os.path.join(ROOT, "docs")
        names = sorted(n for n in os.listdir(docs) if n.endswith(".md")) \
            if os.path.isdir(docs) else []
        checked = 0
        for name in names:
            with open(os.path.join(docs, name)) as f:
                text = f.read()
            for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.M | re.S):
                where = "%s:%d" % (name, text[:m.start()].count("\n") + 1)
                self.assertNotIn(m.group(1), ("bash", "shell"), "%s: write ```sh" % where)
                if m.group(1) == "sh":
                    before = (["", ""] + text[:m.start()].split("\n"))[-2]  # the line before
                    marker = DOCS_MARKER.match(before)
                    self.assertTrue(marker, "%s: a shell block without a test marker" % where)
                    if marker.group(1).startswith("examples"):
                        self.assertIn(name, DOCS_RUN_BY_EXAMPLES,
                                      "%s: no test runs the examples blocks of %s" % (where, name))
                if m.group(1) == "json":
                    try:
                        json.loads(m.group(2))
                    except ValueError as e:
                        self.fail("%s: not JSON: %s" % (where, e))
                    checked += 1
            for bad in ("../shared", "SPEC.md", "SPEC \u00a7"):
                self.assertNotIn(bad, text, name)
            # Links to files of the repository resolve.
            for target in re.findall(r"\]\(((?!https?:|#)[^)#\s]+)", text):
                self.assertTrue(os.path.exists(os.path.join(docs, target)),
                                "%s: link to %s, which does not exist" % (name, target))
        # The other documents users read point nowhere outside either.
        for name in ("README.md", "SECURITY.md"):
            with open(os.path.join(ROOT, name)) as f:
                text = f.read()
            for bad in ("../shared", "SPEC.md", "SPEC \u00a7"):
                self.assertNotIn(bad, text, name)
        print("    %d documents, %d JSON blocks parsed" % (len(names), checked))


if __name__ == "__main__":
    run_tests()
