"""The README as a newcomer pastes it: every ```sh block carries a marker
comment on the line before it, `<!-- test: run -->`, `<!-- test: run, with
make run's service -->` (the block talks to `make run`'s service on port
5000, which this test starts and stops around it), or `<!-- test: skip,
REASON -->`. The blocks to run are run in README order in one bash (set
-euo pipefail, so that their variables carry over as in a terminal), from
the repository's root; a block that fails, or a block without a marker,
fails the test. What the blocks print is checked against what the README
says they print."""

import json
import os
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import ROOT, ServiceTest, clean_env, run_tests  # noqa: E402

README = os.path.join(ROOT, "README.md")
MARKER = re.compile(r"^<!-- test: (run|run, with make run's service|skip, .+) -->$")


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
        self.assertTrue(port_free(5000), "port 5000 is taken: the README's examples use it")
        script = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
                  'T="$(mktemp -d)"']
        ran = skipped = 0
        service = False
        for n, marker, text in found:
            if marker.startswith("skip"):
                skipped += 1
                continue
            wants = marker.endswith("service")
            if wants and not service:
                # `make run`: the service with the embedded broker on 5000.
                script.append('build/openexec run --db "$T/make-run.db" 2>"$T/make-run.log" & '
                              'SVC=$!')
                service = True
            if not wants and service:
                script.append("kill $SVC; wait $SVC")
                service = False
            script.append("echo '=== README line %d'" % n)
            script.append(text)
            ran += 1
        if service:
            script.append("kill $SVC; wait $SVC")
        script.append("echo '=== README done'")
        p = subprocess.run(["bash", "-c", "\n".join(script)], cwd=ROOT, capture_output=True,
                           text=True, timeout=300, env=clean_env({}))
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


if __name__ == "__main__":
    run_tests()
