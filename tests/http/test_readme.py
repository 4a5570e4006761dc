"""The documents a user reads, as a newcomer pastes them: README.md,
CONTRIBUTING.md, SECURITY.md and docs/*.md. Every ```sh block carries a
marker comment on the line before it:
- `<!-- test: run -->` (or `run, WHY`): run as it is;
- `<!-- test: run, as make run's service -->`: the README's `make run`
  block; it runs in the background (its ledger in a temp dir), in a
  process group of its own, while the rest of the document's blocks run;
- `<!-- test: run, with make run's service -->`: a block that talks to
  that service (port 5000, its broker on 9092);
- `<!-- test: examples NAME -->`: docs/integrate.md's, run by
  tests/http/test_examples.py;
- `<!-- test: skip, REASON -->`.
A block without a marker fails the test.

The blocks to run are run document by document (RUN_HERE, in that order),
each document's in its order in one bash of its own (set -euo pipefail,
so that their variables carry over as in a terminal), from the
repository's root, with L naming a database of a throw-away PostgreSQL
server when a block uses it. A document with `with make run's service`
blocks has make run's service (the README's block) from its start, or
from its own service block, to its end, as a user leaves it running in
another terminal: so every other block runs beside it, and one that
collides with it (ports 5000 and 9092) fails, as does the document when
the service did not survive its blocks. The Apache Kafka node that `make
kafka` starts is shared by the documents, as in one terminal session, and
stopped at the end if a document left it running. What the blocks print
is checked against what the documents say they print.

Docs checks every document without running it: the markers, no wait
without a timeout, no block but make run's own using its ports or
starting a service on port 5000, JSON blocks that parse, links to files
and headings that exist, and nothing pointing outside the repository."""

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import ROOT, ServiceTest, clean_env, run_tests  # noqa: E402
import pgcluster  # noqa: E402

README = os.path.join(ROOT, "README.md")
GUIDE = os.path.join(ROOT, "docs", "guide.md")
# The documents whose blocks are run here, in this order (the guide goes on
# from where the README leaves off).
RUN_HERE = ("README.md", os.path.join("docs", "guide.md"), "CONTRIBUTING.md")
# The documents whose `examples NAME` blocks tests/http/test_examples.py
# runs (it checks that it runs each of them).
RUN_BY_EXAMPLES = (os.path.join("docs", "integrate.md"),)
MARKER = re.compile(r"^<!-- test: (run|run, .+|skip, .+|examples [a-z0-9-]+) -->$")
SERVICE = "run, as make run's service"
WITH_SERVICE = "run, with make run's service"
SERVICE_PORTS = (5000, 9092)   # make run's HTTP port and its broker's fixed port
KAFKA_DEV = os.path.join(ROOT, "build", "kafka-dev")


def documents():
    """The paths, relative to ROOT, of every document a user reads."""
    docs = os.path.join(ROOT, "docs")
    return ["README.md", "CONTRIBUTING.md", "SECURITY.md"] + sorted(
        os.path.join("docs", n) for n in os.listdir(docs) if n.endswith(".md"))


def blocks(path=README):
    """[(line number, marker or None, text)] of every ```sh block of the
    document at path."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            start = i
            body = []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            m = MARKER.match(lines[start - 1].strip()) if start > 0 else None
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


def commands(text):
    """The block's logical lines (continuations joined), without comments
    (a `#` at the start of a word) and without blank lines."""
    out = []
    for line in text.replace("\\\n", " ").split("\n"):
        code = re.sub(r"(^|\s)#.*", "", line).strip()
        if code:
            out.append(code)
    return out


def is_make_run(text):
    """Whether the block is `make run` itself (with variables before it)."""
    cmds = commands(text)
    return len(cmds) == 1 and re.fullmatch(r"([A-Z_]+=\S+\s+)*make run", cmds[0]) is not None


def unbounded_waits(text):
    """The lines of a block that may wait forever: a loop without a
    `timeout`, `openexec receipts` without --max (it follows the topic
    until Ctrl-C), kcat consuming without -e."""
    out = []
    for code in commands(text):
        if re.search(r"\b(until|while)\b", code) and not re.search(r"\btimeout \d+", code):
            out.append(code)
        elif re.search(r"\bopenexec receipts\b", code) and "--max" not in code:
            out.append(code)
        elif re.search(r"\bkcat\b.*\s-C\b", code) and not re.search(r"\s-e\b", code):
            out.append(code)
    return out


def collisions(text):
    """The lines of a block that would collide with make run's service:
    its ports, another `make run`, or `openexec run` on the default HTTP
    port."""
    out = []
    ports = "|".join(str(p) for p in SERVICE_PORTS)
    for code in commands(text):
        if (re.search(r"(localhost|127\.0\.0\.1):(%s)\b" % ports, code)
                or re.search(r"(--http-port|--broker-port|_PORT=)[ =]?(%s)\b" % ports, code)
                or re.search(r"\bmake run\b", code)
                or (re.search(r"\bopenexec run\b", code)
                    and not re.search(r"(--http-port|OPENEXEC_HTTP_PORT=)", code))):
            out.append(code)
    return out


class Blocks(ServiceTest):
    """RUN_HERE's blocks, run as pasted, and what they print."""

    def run_document(self, name, service_cmd, env):
        """Runs the document's blocks as the module says; returns (output,
        number of blocks run, number skipped)."""
        found = blocks(os.path.join(ROOT, name))
        script = ["set -euo pipefail", 'T="$(mktemp -d)"', "SVC=",
                  # On the way out, make run's process group and the
                  # blocks' background jobs.
                  'cleanup() { [ -z "$SVC" ] || kill -TERM -- -"$SVC" 2>/dev/null || true; '
                  'kill $(jobs -p) 2>/dev/null || true; }',
                  "trap cleanup EXIT"]
        # make run in a process group of its own (stopped as Ctrl-C would:
        # make and the service), its ledger in the temp dir; the blocks
        # after it wait, as a user does, until it is ready.
        start = ['OPENEXEC_DB_PATH="$T/make-run.db" setsid bash -c %s > "$T/make-run.log" 2>&1 & '
                 'SVC=$!' % shlex.quote(service_cmd),
                 'timeout 120 sh -c "until curl -sf localhost:5000/ready >/dev/null; '
                 'do kill -0 $SVC || exit 1; sleep 0.1; done" || '
                 "{ echo \"make run's service is not ready\"; cat \"$T/make-run.log\"; exit 1; }"]
        stop = ['kill -0 "$SVC" && curl -sf localhost:5000/ready >/dev/null || '
                "{ echo \"make run's service did not survive the blocks\"; "
                'tail -n 30 "$T/make-run.log"; exit 1; }',
                # Stopped as Ctrl-C would stop it, and gone before the next.
                'kill -TERM -- -"$SVC"; wait "$SVC" || true',
                'timeout 30 sh -c "while kill -0 -- -$SVC 2>/dev/null; do sleep 0.1; done"; SVC=']
        service = any(marker == WITH_SERVICE for _, marker, _ in found)
        if service and not any(marker == SERVICE for _, marker, _ in found):
            script += start
        ran = skipped = 0
        for n, marker, text in found:
            if marker.startswith("skip") or marker.startswith("examples"):
                skipped += 1
                continue
            script.append("echo '=== %s line %d'" % (name, n))
            if marker == SERVICE:
                script += start
            else:
                script.append(text)
            ran += 1
        if service:
            script += stop
        script.append("echo '=== %s done'" % name)
        # Output and errors interleaved, as in a terminal.
        p = subprocess.run(["bash", "-c", "\n".join(script)], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=300, env=env)
        self.assertEqual(p.returncode, 0, "%s: a block failed (exit %d); output:\n%s"
                         % (name, p.returncode, p.stdout[-8000:]))
        self.assertIn("=== %s done" % name, p.stdout)
        return p.stdout, ran, skipped

    def test_every_block_runs_as_pasted(self):
        for port in SERVICE_PORTS + tuple(range(5001, 5013)):
            self.assertTrue(port_free(port), "port %d is taken: the documents' examples use it"
                            % port)
        services = [text for _, marker, text in blocks(README) if marker == SERVICE]
        self.assertEqual(len(services), 1, "one block of the README is make run's service")
        self.assertEqual(services[0].split("#")[0].strip(), "make run")
        kafka_before = os.path.exists(os.path.join(KAFKA_DEV, "nodes"))
        out = {}
        try:
            for name in RUN_HERE:
                uses_l = any(re.search(r"\$\{?L\b", "\n".join(commands(text)))
                             for _, marker, text in blocks(os.path.join(ROOT, name))
                             if marker.startswith("run"))
                # make's own variables of an outer make (make test) are not
                # the newcomer's.
                env = clean_env({"MAKEFLAGS": None, "MAKELEVEL": None, "MFLAGS": None, "B": None,
                                 "L": pgcluster.fresh_database("readme") if uses_l else None})
                t0 = time.monotonic()
                while not all(port_free(p) for p in SERVICE_PORTS):
                    self.assertLess(time.monotonic() - t0, 30, "make run's ports still taken")
                    time.sleep(0.1)
                out[name], ran, skipped = self.run_document(name, services[0].split("#")[0].strip(),
                                                            env)
                print("    %s: %d blocks run, %d skipped with their reason (%.1f s)"
                      % (name, ran, skipped, time.monotonic() - t0))
        finally:
            if not kafka_before and os.path.exists(os.path.join(KAFKA_DEV, "nodes")):
                subprocess.run(["make", "-s", "kafka-down"], cwd=ROOT, capture_output=True,
                               timeout=120)
        self.check_readme(out["README.md"])
        self.check_guide(out[os.path.join("docs", "guide.md")])

    def check_readme(self, out):
        objs = json_objects(out)
        # The first request, its replay and a conflict.
        self.assertTrue(any(o.get("result") == {"sum": 5} and o.get("status") == "executed"
                            for o in objs), out[-3000:])
        self.assertTrue(any(o.get("result") == {"sum": 5} and o.get("status") == "replayed"
                            for o in objs), out[-3000:])
        self.assertTrue(any(o.get("detail") == "Nonce already used by a different request"
                            for o in objs), out[-3000:])
        # A signed receipt checked, a changed one refused, the ledger audited.
        self.assertIn("\nvalid\n", out)
        self.assertIn("\ninvalid: result is not the leaf's\n", out)
        self.assertRegex(out, r"\nlog openexec/[0-9a-f]{16}: 1 entry, 1 checkpoint, intact\n")
        # The PostgreSQL group: executed, verified, and read back on another node.
        pg = [o for o in objs if o.get("result") == {"echo": {"shared": True}}]
        self.assertEqual([o.get("status") for o in pg], ["executed", "executed"], out[-3000:])
        self.assertIn("proof", pg[0])
        # ... the same receipt fields in both answers (one shape), the
        # stored receipt without the proof and with the ledger's time.
        self.assertEqual(set(pg[0]) - {"proof"}, set(pg[1]) - {"created_at"}, out[-3000:])

    def check_guide(self, out):
        objs = json_objects(out)
        self.assertIn({"valid": True}, objs)
        self.assertTrue(any(o.get("result") == {"echo": {"msg": "hello"}} for o in objs))
        self.assertTrue(any(o.get("nonce") == "cli-1" and o.get("result") == {"sum": 2}
                            for o in objs), out[-3000:])
        self.assertTrue(any(o.get("nonce") == "k-1" and o.get("status") == "executed"
                            for o in objs), out[-3000:])
        self.assertTrue(any(o.get("nonce") == "k-3" and o.get("status") == "executed"
                            for o in objs), out[-3000:])
        self.assertTrue(any(o.get("record") == "execution" and o.get("nonce") == "k-1"
                            for o in objs))
        # The dead letter, its headers, and the replay that lists it.
        self.assertRegex(out, r"\nnot a request .*openexec\.error=")
        self.assertTrue(any(o.get("key") == "junk-1" for o in objs), out[-3000:])
        self.assertTrue(any(o.get("result") == {"echo": {"on": "kafka"}} and
                            o.get("status") == "executed" for o in objs), out[-3000:])
        # The audit: intact, then the changed row named.
        self.assertRegex(out, r"\nlog openexec/[0-9a-f]{16}: 1 entry, 1 checkpoint, intact\n")
        self.assertRegex(out, r"\nopenexec: ledger audit: execution nonce a-1, entry 0 of log "
                         r"openexec/[0-9a-f]{16} was changed after it was signed\nexit 1\n")
        self.assertTrue(any(o.get("entries") == 1 and o.get("checkpoints") == 1 for o in objs))
        # Approvals.
        self.assertTrue(any(o.get("result") == {"echo": {"msg": "governed"}} and
                            o.get("status") == "executed" for o in objs))
        self.assertTrue(any(o.get("result") == {"echo": {"msg": "governed"}} and
                            o.get("status") == "replayed" for o in objs))
        self.assertTrue(any(o.get("result") == {"echo": {}} and o.get("approved") for o in objs))


def fenced(text):
    """[(line number, language, body, the line before)] of every fenced
    block of a Markdown text (indented ones in lists included)."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\S*)$", lines[i])
        if m:
            start, body = i, []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i][len(m.group(1)):])
                i += 1
            out.append((start + 1, m.group(2), "\n".join(body),
                        lines[start - 1].strip() if start else ""))
        i += 1
    return out


def anchors(text):
    """The anchors of a Markdown text's headings, as GitHub makes them."""
    out, seen = set(), {}
    for line in text.split("\n"):
        m = re.match(r"^#{1,6} (.*)$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else "%s-%d" % (slug, n))
    return out


class Docs(ServiceTest):
    """Every document a user reads (README.md, CONTRIBUTING.md, SECURITY.md,
    docs/*.md), without running it: each ```sh block has a marker, is run by
    a test that runs that document (RUN_HERE above, or RUN_BY_EXAMPLES), has
    no wait without a timeout and, unless it is make run or uses its
    service, nothing that collides with make run's service; every ```json
    block is JSON (an example a client can paste); links to files and
    headings of the repository resolve; and nothing points outside it."""

    def test_docs_blocks_and_links(self):
        names = documents()
        checked = services = 0
        for name in names:
            path = os.path.join(ROOT, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for line, lang, body, before in fenced(text):
                where = "%s:%d" % (name, line)
                self.assertNotIn(lang, ("bash", "shell"), "%s: write ```sh" % where)
                if lang == "sh":
                    m = MARKER.match(before)
                    self.assertTrue(m, "%s: a shell block without a test marker" % where)
                    marker = m.group(1)
                    if marker.startswith("examples"):
                        self.assertIn(name, RUN_BY_EXAMPLES,
                                      "%s: no test runs the examples blocks of %s" % (where, name))
                    if marker.startswith("run"):
                        self.assertIn(name, RUN_HERE, "%s: no test runs the blocks of %s"
                                      % (where, name))
                    if marker == SERVICE:
                        services += 1
                        self.assertEqual(name, "README.md", "%s: make run's service is the "
                                         "README's" % where)
                        self.assertTrue(is_make_run(body), "%s: not `make run`" % where)
                    self.assertEqual(unbounded_waits(body), [],
                                     "%s: waits without a timeout" % where)
                    if not (marker in (SERVICE, WITH_SERVICE) or marker.startswith("examples")
                            or is_make_run(body)):
                        self.assertEqual(collisions(body), [], "%s: collides with make run's "
                                         "service (another port, or mark it `with make run's "
                                         "service`)" % where)
                if lang == "json":
                    try:
                        json.loads(body)
                    except ValueError as e:
                        self.fail("%s: not JSON: %s" % (where, e))
                    checked += 1
            for bad in ("../shared", "SPEC.md", "SPEC \u00a7"):
                self.assertNotIn(bad, text, name)
            # Links to files and headings of the repository resolve.
            for target, anchor in re.findall(r"\]\(((?!https?:)[^)#\s]*)(?:#([^)\s]*))?\)", text):
                dest = os.path.normpath(os.path.join(os.path.dirname(path), target)) \
                    if target else path
                self.assertTrue(os.path.exists(dest), "%s: link to %s, which does not exist"
                                % (name, target))
                if anchor and dest.endswith(".md"):
                    with open(dest, encoding="utf-8") as f:
                        self.assertIn(anchor, anchors(f.read()), "%s: link to %s#%s, a heading "
                                      "that does not exist" % (name, target, anchor))
        self.assertEqual(services, 1, "one block is make run's service")
        # The README shows a receipt verified, in a section of that name,
        # with a block this test runs.
        with open(README, encoding="utf-8") as f:
            section = f.read().partition("\n## Verifying receipts\n")[2].partition("\n## ")[0]
        self.assertIn("<!-- test: run -->\n```sh\n", section,
                      "README.md: a section \"Verifying receipts\" with a runnable example")
        self.assertIn("verify-receipt", section)
        print("    %d documents, %d JSON blocks parsed" % (len(names), checked))


if __name__ == "__main__":
    run_tests()
