"""Black-box tests of operators' Lua actions (--actions-dir) through HTTP.

The example actions of examples/actions/ (a refund with a limit, a
key-rotation plan, a tool-call router checking arguments against a schema)
answer their table of payload -> result cases, examples/actions/cases.json:
each result exactly as Python's json.dumps(result, sort_keys=True) prints
it (the receipt hash is checked against that text), each failure a 400
with the script's message, recorded as `action_failed`. Then what the
command line promises: a broken script stops the start with exit 2 naming
file and line, the budgets are the flags', the allow-list applies to Lua
actions as to built-ins, and a failing or hostile script leaves the
service answering. Every answer, ledger row and log leaf of a Lua action
names the code that ran (action_code_hash, the file's SHA-256), checked
offline by `openexec verify-receipt`; an approval can bind that hash.
`openexec actions` lists what a folder defines with its code hashes,
and refuses what run refuses with the same line.
"""

import hashlib
import json
import os

import random
import re
import signal
import subprocess
import time

from harness import (BIN, LEDGER, ROOT, ServiceTest, cli, ledger_url, mint, produce,
                     run_tests)
from test_kafka import KafkaCase, jreq

EXAMPLES = os.path.join(ROOT, "examples", "actions")


def assert_action_failed(test, r):
    """A rejection recorded as action_failed: its log entry (the proof's
    leaf) says so when the node signs (not on a PostgreSQL ledger without
    a key of its own; /metrics counts the code either way)."""
    if "proof" in r.json:
        leaf = json.loads(r.json["proof"]["leaf"])
        test.assertEqual(leaf["error_code"], "action_failed", r)
        test.assertEqual(leaf["detail"], r.json["detail"], r)


class ExampleActions(ServiceTest):

    def write(self, folder, scripts):
        path = self.path(folder)
        os.makedirs(path, exist_ok=True)
        for name, text in scripts.items():
            with open(os.path.join(path, name), "w") as f:
                f.write(text)
        return path

    def test_examples_answer_their_cases(self):
        with open(os.path.join(EXAMPLES, "cases.json")) as f:
            cases = json.load(f)
        self.assertEqual(sorted(cases), ["key-rotation", "refund", "tool-router"])
        s = self.server(args=["--actions-dir", EXAMPLES])
        log = s.log()
        for name in cases:
            with open(os.path.join(EXAMPLES, name + ".lua"), "rb") as f:
                code_hash = hashlib.sha256(f.read()).hexdigest()
            self.assertIn("action=%s code_hash=%s" % (name, code_hash), log)
        count = 0
        for name, table in sorted(cases.items()):
            for i, case in enumerate(table):
                nonce = "%s-%d" % (name, i)
                r = s.execute(name, case["payload"], nonce)
                if "result" in case:
                    self.assertExecuted(r, name, case["payload"], nonce, result=case["result"])
                else:
                    self.assertDetail(r, 400, equals=case["error"])
                    assert_action_failed(self, r)
                count += 1
        # The same requests again: replays of the executions, and the
        # rejections decided again the same way.
        for name, table in sorted(cases.items()):
            for i, case in enumerate(table):
                r = s.execute(name, case["payload"], "%s-%d" % (name, i))
                if "result" in case:
                    self.assertEqual(r.json["status"], "replayed", r)
                else:
                    self.assertDetail(r, 400, equals=case["error"])
        metrics = s.metrics()
        self.assertEqual(metrics.get('openexec_rejections_total{error_code="action_failed"}'),
                         2 * sum("error" in c for t in cases.values() for c in t), metrics)
        print("    %d cases of %d example actions" % (count, len(cases)))

    def test_broken_scripts_stop_the_start(self):
        ok = "return function(p) return p end\n"
        refusals = [
            ({"ok.lua": ok, "broken.lua": "local x = 1\nreturn function(p) return p +* 1 end\n"},
             "broken.lua:2: unexpected symbol near '*'"),
            ({"echo.lua": ok}, "echo.lua: action echo is built in"),
            ({"Refund.lua": ok}, "Refund.lua: \"Refund\" is not an action name"),
            ({"value.lua": "return 42\n"}, "value.lua: the chunk must return one function"),
            ({"fails.lua": "local t = {}\nreturn t.x.y\n"},
             "fails.lua:2: attempt to index a nil value (field 'x')"),
        ]
        for i, (scripts, words) in enumerate(refusals):
            folder = self.write("bad%d" % i, scripts)
            p = cli(["run", "--execute", "local", "--http-port", "0", "--db",
                     self.path("x%d.db" % i), "--actions-dir", folder])
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(folder + "/" + words, p.stderr)
            self.assertFalse(os.path.exists(self.path("x%d.db" % i)),
                             "the ledger was opened before the scripts were checked")
        p = cli(["run", "--execute", "local", "--http-port", "0", "--db", self.path("y.db"),
                 "--actions-dir", self.path("missing")])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("cannot open the folder", p.stderr)
        for flag, value in (("--action-max-steps", "999"), ("--action-max-memory", "1024"),
                            ("--action-max-steps", "many")):
            p = cli(["run", "--execute", "local", "--http-port", "0", flag, value])
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(flag, p.stderr)

    def test_budgets_and_hostile_scripts(self):
        folder = self.write("acts", {
            "spin.lua": "return function(p) while true do end end\n",
            "hog.lua": "return function(p) return #string.rep('x', p.n) end\n",
            "deep.lua": "local function f(n) return 1 + f(n + 1) end\n"
                        "return function(p) return f(1) end\n",
            "escape.lua": "return function(p)\n"
                          "  return {io == nil, os == nil, load == nil, require == nil,\n"
                          "          getmetatable('').__index == string, string.dump == nil}\n"
                          "end\n",
            "leak.lua": "return function(p) g = (g or 0) + 1 return g end\n",
            "gib.lua": "return function(p) return #string.rep('x', 1 << 30) end\n",
            "billion.lua": "return function(p) local t = {} for i = 1, 1000000000 do t[i] = i end"
                           " return #t end\n",
            "doubling.lua": "return function(p) local s = 'x' for i = 1, 64 do s = s .. s end"
                            " return #s end\n",
            "reps.lua": "return function(p) return #string.rep(string.rep('ab', 1 << 20), 1 << 20)"
                        " end\n",
        })
        s = self.server(args=["--actions-dir", folder, "--action-max-steps", "100000"],
                        env={"OPENEXEC_ACTION_MAX_MEMORY": "1048576"})
        r = s.execute("spin", {}, "spin-1")
        self.assertDetail(r, 400, equals="step budget exceeded (100000 steps)")
        assert_action_failed(self, r)
        self.assertDetail(s.execute("hog", {"n": 2 << 20}, "hog-1"), 400,
                          equals="memory budget exceeded (1048576 bytes)")
        self.assertExecuted(s.execute("hog", {"n": 1000}, "hog-2"), "hog", {"n": 1000}, "hog-2",
                            result=1000)
        detail = self.assertDetail(s.execute("deep", {}, "deep-1"), 400)
        self.assertIn(detail, ("memory budget exceeded (1048576 bytes)",
                               "step budget exceeded (100000 steps)"))
        self.assertExecuted(s.execute("escape", {}, "escape-1"), "escape", {}, "escape-1",
                            result=[True] * 6)
        for i in range(3):
            self.assertExecuted(s.execute("leak", {"i": i}, "leak-%d" % i), "leak", {"i": i},
                                "leak-%d" % i, result=1)
        # A gibibyte string, a billion-entry table, a doubling string, a
        # string.rep of a string.rep: each stopped by a budget, the worker's
        # peak memory far below what any of them asked for.
        for name in ("gib", "billion", "doubling", "reps"):
            detail = self.assertDetail(s.execute(name, {}, name + "-1"), 400)
            self.assertIn(detail, ("memory budget exceeded (1048576 bytes)",
                                   "step budget exceeded (100000 steps)"), name)
        with open("/proc/%d/status" % s.proc.pid) as f:
            peak_kib = int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))
        self.assertLess(peak_kib, 128 << 10, "peak RSS %d KiB" % peak_kib)
        print("    worker peak RSS after the hostile scripts: %d MiB" % (peak_kib >> 10))
        # A Lua action runs like a built-in beside them.
        self.assertExecuted(s.execute("add", {"a": 2, "b": 3}, "add-1"), "add",
                            {"a": 2, "b": 3}, "add-1", result={"sum": 5})
        self.assertStatus(s.get("/health"), 200)

    def test_allow_list_applies_to_lua_actions(self):
        s = self.server(args=["--actions-dir", EXAMPLES, "--allowed-actions", "refund, echo"])
        payload = {"order": "o-1", "currency": "EUR", "paid_cents": 100, "amount_cents": 100}
        self.assertExecuted(s.execute("refund", payload, "a-1"), "refund", payload, "a-1")
        self.assertDetail(s.execute("tool-router", {"tool": "search"}, "a-2"), 403,
                          contains="Action not allowed: tool-router")
        self.assertEqual(s.get("/health").json["allow_list"], ["refund", "echo"])
        p = cli(["run", "--execute", "local", "--http-port", "0", "--db", self.path("z.db"),
                 "--allowed-actions", "refund"])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("\"refund\" is not a registered action", p.stderr)

    def test_actions_command_lists_code_hashes(self):
        # `openexec actions`: the folder loaded as run loads it, each action
        # with the SHA-256 of its file; built-ins first, marked, no hash.
        hashes = {}
        for name in ("key-rotation", "refund", "tool-router"):
            with open(os.path.join(EXAMPLES, name + ".lua"), "rb") as f:
                hashes[name] = hashlib.sha256(f.read()).hexdigest()
        p = cli(["actions", "--actions-dir", EXAMPLES])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        rows = [line.split() for line in p.stdout.splitlines()]
        self.assertEqual(rows[0], ["ACTION", "KIND", "CODE", "HASH"])
        self.assertEqual(rows[1:], [["add", "built-in", "-"], ["echo", "built-in", "-"]] +
                         [[n, "lua", h] for n, h in sorted(hashes.items())])
        # The table of docs/actions.md is this one.
        with open(os.path.join(ROOT, "docs", "actions.md")) as f:
            doc = [line[2:] for line in f.read().splitlines() if line.startswith("# ")]
        for line in p.stdout.splitlines():
            self.assertIn(line, doc, "docs/actions.md's table of `openexec actions`")
        # JSON, and the folder from the environment or the configuration
        # file, as run reads it.
        conf = self.path("actions.conf")
        with open(conf, "w") as f:
            f.write("OPENEXEC_ACTIONS_DIR = %s\n" % EXAMPLES)
        for args, env in ((["--actions-dir", EXAMPLES], None),
                          ([], {"OPENEXEC_ACTIONS_DIR": EXAMPLES}),
                          (["--config", conf], None)):
            p = cli(["actions", "--output", "json"] + args, env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            listing = json.loads(p.stdout)
            self.assertEqual(listing["actions_dir"], EXAMPLES)
            self.assertEqual((listing["action_max_steps"], listing["action_max_memory"]),
                             (10000000, 16777216))
            self.assertEqual(listing["actions"], [
                {"name": "add", "builtin": True, "code_hash": None},
                {"name": "echo", "builtin": True, "code_hash": None}] + [
                {"name": n, "builtin": False, "code_hash": h} for n, h in sorted(hashes.items())])
        # No folder: the built-in actions alone.
        p = cli(["actions", "--output", "json"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([a["name"] for a in json.loads(p.stdout)["actions"]], ["add", "echo"])
        self.assertIsNone(json.loads(p.stdout)["actions_dir"])

    def test_actions_command_refuses_what_run_refuses(self):
        # A folder that does not load: exit 2, nothing on stdout, and on
        # stderr the loader's line (file and line) that run stops with.
        ok = "return function(p) return p end\n"
        big = "local s = string.rep('x', 200000)\nreturn function(p) return #s end\n"
        cases = [
            ({"ok.lua": ok, "broken.lua": "local x = 1\nreturn function(p) return p +* 1 end\n"},
             [], "broken.lua:2: unexpected symbol near '*'"),
            ({"value.lua": "return 42\n"}, [], "value.lua: the chunk must return one function"),
            ({"add.lua": ok}, [], "add.lua: action add is built in"),
            # The budgets are run's: this chunk loads within the default
            # memory budget, not within 64 KiB.
            ({"big.lua": big}, ["--action-max-memory", "65536"],
             "big.lua: memory budget exceeded (65536 bytes)"),
            ({"spin.lua": "while true do end\n"}, ["--action-max-steps", "1000"],
             "spin.lua: step budget exceeded (1000 steps)"),
        ]
        for i, (scripts, flags, words) in enumerate(cases):
            folder = self.write("refused%d" % i, scripts)
            p = cli(["actions", "--actions-dir", folder] + flags)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertEqual(p.stdout, "")
            self.assertTrue(p.stderr.startswith("openexec: actions: --actions-dir: %s/%s"
                                                % (folder, words)), p.stderr)
            self.assertEqual(p.stderr.count("\n"), 1, p.stderr)
            r = cli(["run", "--execute", "local", "--http-port", "0", "--db",
                     self.path("r%d.db" % i), "--actions-dir", folder] + flags)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertEqual(r.stderr.replace("openexec: ", "openexec: actions: ", 1), p.stderr)
        p = cli(["actions", "--actions-dir", self.write("big", {"big.lua": big}), "--output", "json"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([a["name"] for a in json.loads(p.stdout)["actions"]], ["add", "echo", "big"])
        p = cli(["actions", "--actions-dir", self.path("missing")])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("cannot open the folder", p.stderr)
        p = cli(["actions", "--output", "yaml"])
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--output", p.stderr)

    def test_code_hash_in_receipts_and_approvals(self):
        v1 = "return function(p) return {n = p.n * 2} end\n"
        v2 = "return function(p) return {n = p.n * 3} end\n"
        folder = self.write("code", {"double.lua": v1})
        h1 = hashlib.sha256(v1.encode()).hexdigest()
        h2 = hashlib.sha256(v2.encode()).hexdigest()
        key = self.path("node.key")
        p = cli(["keygen", "--out", key])
        self.assertEqual(p.returncode, 0, p.stderr)
        pem = re.search(r"-----BEGIN PUBLIC KEY-----\n[A-Za-z0-9+/=\n]+-----END PUBLIC KEY-----\n",
                        p.stdout)
        self.assertTrue(pem, p.stdout)
        trusted = self.path("trusted.pem")
        with open(trusted, "w") as f:
            f.write(pem.group(0))
        db = self.path("code.db")
        s = self.server(db=db, args=["--actions-dir", folder],
                        env={"OPENEXEC_SIGNING_KEY_FILE": key})
        r = s.execute("double", {"n": 2}, "c-1")
        self.assertExecuted(r, "double", {"n": 2}, "c-1", result={"n": 4})
        self.assertEqual(r.json["action_code_hash"], h1, r)
        leaf = json.loads(r.json["proof"]["leaf"])
        self.assertEqual(leaf["action_code_hash"], h1)
        r_echo = s.execute("echo", {}, "c-2")
        self.assertIsNone(r_echo.json["action_code_hash"], r_echo)
        self.assertNotIn("action_code_hash", json.loads(r_echo.json["proof"]["leaf"]))
        stored = s.get("/receipts/%s" % r.json["id"])
        self.assertEqual(stored.json["action_code_hash"], h1, stored)

        def verify(answer):
            return subprocess.run([BIN, "verify-receipt", "--trusted-keys", trusted],
                                  input=json.dumps(answer), capture_output=True, text=True,
                                  timeout=30)
        self.assertEqual(verify(r.json).returncode, 0, verify(r.json))
        self.assertEqual(verify(r_echo.json).returncode, 0)
        for forged in (dict(r.json, action_code_hash=h2), dict(r.json, action_code_hash=None),
                       dict(r_echo.json, action_code_hash=h1)):
            v = verify(forged)
            self.assertEqual(v.returncode, 1, (forged, v.stdout, v.stderr))
            self.assertIn("action_code_hash is not the leaf's", v.stdout + v.stderr)
        s.stop()
        where = ["--db-url", ledger_url(db)] if LEDGER == "postgresql" else ["--db", db]
        # The audit rebuilds each leaf from its row, the code hash included.
        audit = cli(["ledger", "audit", "--trusted-keys", trusted] + where)
        self.assertEqual(audit.returncode, 0, audit.stdout + audit.stderr)
        self.assertIn("intact", audit.stdout)
        out = cli(["ledger", "export"] + where)
        self.assertEqual(out.returncode, 0, out.stderr)
        rows = {row["nonce"]: row for row in map(json.loads, out.stdout.splitlines())}
        self.assertEqual(rows["c-1"]["action_code_hash"], h1)
        self.assertIsNone(rows["c-2"]["action_code_hash"])

        # The file changes: the replay keeps the original result and code
        # hash; a new request runs (and names) the new code.
        with open(os.path.join(folder, "double.lua"), "w") as f:
            f.write(v2)
        s = self.server(db=db, args=["--actions-dir", folder],
                        env={"OPENEXEC_SIGNING_KEY_FILE": key})
        r = s.execute("double", {"n": 2}, "c-1")
        self.assertEqual((r.json["status"], r.json["result"], r.json["action_code_hash"]),
                         ("replayed", {"n": 4}, h1), r)
        self.assertEqual(verify(r.json).returncode, 0)
        r = s.execute("double", {"n": 2}, "c-3")
        self.assertEqual((r.json["result"], r.json["action_code_hash"]), ({"n": 6}, h2), r)
        s.stop()

        # Approvals of one version: the old code's is refused after the
        # change, the new code's accepted; mint checks the hash's form.
        s = self.server(args=["--actions-dir", folder],
                        env={"OPENEXEC_MODE": "clawshield", "CLAWSHIELD_SECRET_KEY": "k",
                             "CLAWSHIELD_TENANT_ID": "t"})
        old = mint("double", {"n": 1}, secret="k", tenant="t", action_code_hash=h1)
        self.assertEqual(old["action_code_hash"], h1)
        r = s.execute("double", {"n": 1}, "a-1", artifact=old)
        self.assertDetail(r, 403, contains="code hash mismatch")
        new = mint("double", {"n": 1}, secret="k", tenant="t", action_code_hash=h2)
        r = s.execute("double", {"n": 1}, "a-2", artifact=new)
        self.assertEqual((r.status, r.json["action_code_hash"]), (200, h2), r)
        stripped = mint("double", {"n": 1}, secret="k", tenant="t", action_code_hash=h2)
        del stripped["action_code_hash"]
        r = s.execute("double", {"n": 1}, "a-3", artifact=stripped)
        self.assertDetail(r, 403, contains="Invalid signature")
        bad = cli(["mint", "--action", "double", "--secret", "k", "--action-code-hash", "ABC"])
        self.assertEqual(bad.returncode, 2)
        self.assertIn("not 64 lowercase hex digits", bad.stderr)

    def wait_log(self, s, text, timeout=15.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in s.log():
                return s.log()
            time.sleep(0.05)
        self.fail("%r not in the log within %.0f s:\n%s" % (text, timeout, s.log()[-2000:]))

    def test_sighup_reloads_all_or_nothing(self):
        v1 = "return function(p) return {n = p.n * 2} end\n"
        v2 = "return function(p) return {n = p.n * 3} end\n"
        h1, h2 = (hashlib.sha256(v.encode()).hexdigest() for v in (v1, v2))
        folder = self.write("reload", {"double.lua": v1})
        s = self.server(args=["--actions-dir", folder],
                        env={"OPENEXEC_MODE": "clawshield", "CLAWSHIELD_SECRET_KEY": "k",
                             "CLAWSHIELD_TENANT_ID": "t", "OPENEXEC_ALLOWED_ACTIONS": "double,echo"})
        self.assertEqual(s.get("/health").json["actions"], {"echo": None, "add": None, "double": h1})
        old = mint("double", {"n": 1}, secret="k", tenant="t", action_code_hash=h1)
        r = s.execute("double", {"n": 1}, "r-1",
                      artifact=mint("double", {"n": 1}, secret="k", tenant="t"))
        self.assertEqual(r.json["result"], {"n": 2}, r)

        # A new version and a new action, in one reload.
        with open(os.path.join(folder, "double.lua"), "w") as f:
            f.write(v2)
        with open(os.path.join(folder, "triple.lua"), "w") as f:
            f.write("return function(p) return {n = p.n * 3} end\n")
        s.proc.send_signal(signal.SIGHUP)
        log = self.wait_log(s, "Lua actions reloaded: 2 actions, 2 changed")
        self.assertIn('msg="Lua action changed" action=double old_code_hash=%s code_hash=%s'
                      % (h1, h2), log)
        self.assertIn('msg="Lua action added" action=triple old_code_hash=none', log)
        self.assertEqual(s.get("/health").json["actions"]["double"], h2)
        r = s.execute("double", {"n": 1}, "r-2",
                      artifact=mint("double", {"n": 1}, secret="k", tenant="t"))
        self.assertEqual((r.json["result"], r.json["action_code_hash"]), ({"n": 3}, h2), r)
        # An approval of the code before the reload is refused now.
        r = s.execute("double", {"n": 1}, "r-3", artifact=old)
        self.assertDetail(r, 403, contains="code hash mismatch")
        # The replay of a request run before the reload: its original answer.
        r = s.execute("double", {"n": 1}, "r-1",
                      artifact=mint("double", {"n": 1}, secret="k", tenant="t"))
        self.assertEqual((r.json["status"], r.json["result"], r.json["action_code_hash"]),
                         ("replayed", {"n": 2}, h1), r)

        # A folder that does not load: nothing changes, the reason is logged.
        with open(os.path.join(folder, "double.lua"), "w") as f:
            f.write("return function(p) return {n = p.n * 4} end\n")
        with open(os.path.join(folder, "broken.lua"), "w") as f:
            f.write("return function(p)\n  return {\nend\n")
        s.proc.send_signal(signal.SIGHUP)
        log = self.wait_log(s, "Lua actions not reloaded, the 2 loaded before stay: ")
        self.assertIn("broken.lua:3: unexpected symbol", log)
        self.assertEqual(s.get("/health").json["actions"]["double"], h2)
        r = s.execute("double", {"n": 2}, "r-4",
                      artifact=mint("double", {"n": 2}, secret="k", tenant="t"))
        self.assertEqual(r.json["result"], {"n": 6}, r)
        # Nor when the allow-list names an action the folder no longer has.
        os.remove(os.path.join(folder, "broken.lua"))
        os.remove(os.path.join(folder, "double.lua"))
        s.proc.send_signal(signal.SIGHUP)
        self.wait_log(s, 'is not a registered action (known: add, echo, triple)')
        self.assertEqual(s.get("/health").json["actions"]["double"], h2)
        self.assertTrue(s.alive(), s.log()[-2000:])


# A script that runs every kind of payload value through Lua's arithmetic
# and string functions: integers near and past 2^53 and at the 64-bit
# edges (wrapping), floats (-0.0, 1e308, denormals), UTF-8 text. Some
# results cannot be JSON (an infinity, bytes that are not UTF-8): those
# calls fail, the same way on every worker.
CALC = """return function(p)
  local out = json.object()
  for k, v in json.sorted_pairs(p) do
    local t = json.type(v)
    if t == "integer" then
      out[k] = {twice = v * 2, neg = -v, third = v // 3, mod = v % 7, seventh = v / 7,
                big = v + math.maxinteger}
    elseif t == "number" then
      out[k] = {twice = v * 2, neg = -v, floor = math.floor(v), sq = v * v,
                half = v / 2}
    elseif t == "string" then
      out[k] = {len = #v, utf8 = utf8.len(v), up = string.upper(v),
                rev = string.reverse(v)}
    elseif t == "array" then
      local sum = 0
      for _, x in ipairs(v) do if math.type(x) then sum = sum + x end end
      out[k] = {n = #v, sum = sum}
    elseif t == "object" then
      local keys = json.array()
      for kk in json.sorted_pairs(v) do keys[#keys + 1] = kk end
      out[k] = keys
    else
      out[k] = v
    end
  end
  return out
end
"""

EDGE_INTS = [0, 1, -1, 2**53, 2**53 + 1, -(2**53) - 1, 2**62, 2**63 - 1, -(2**63),
             10**18, 12345678901234567]
EDGE_FLOATS = [0.0, -0.0, 0.1, 1.5, 1e308, -1e308, 5e-324, 2.2250738585072014e-308,
               9007199254740993.0, 1e16, 123456.789]
TEXTS = ["", "a", "caf\u00e9", "\U0001f600 x", "tab\tquote\"back\\slash", "\u0000nul",
         "\u2028\u2029", "long " * 20]


def random_value(rng, depth=0):
    k = rng.randrange(9 if depth < 3 else 6)
    if k == 0:
        return rng.choice(EDGE_INTS)
    if k == 1:
        return rng.randrange(-10**6, 10**6)
    if k == 2:
        return rng.choice(EDGE_FLOATS)
    if k == 3:
        return rng.uniform(-1e6, 1e6)
    if k == 4:
        return rng.choice(TEXTS)
    if k == 5:
        return rng.choice([None, True, False])
    if k == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["a", "b", "z", "\u00e9", "k%d" % rng.randrange(5)]):
            random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_payload(rng, action, cases):
    """calc and echo: random objects. The examples: one of their cases'
    payloads, often with one field replaced by a random value."""
    if action in cases:
        payload = json.loads(json.dumps(rng.choice(cases[action])["payload"]))
        if payload and rng.random() < 0.5:
            payload[rng.choice(sorted(payload))] = random_value(rng)
        return payload
    if rng.random() < 0.1:
        return random_value(rng)  # not an object: refused before any script
    return {"k%d" % i: random_value(rng) for i in range(rng.randrange(1, 6))}


class TwoWorkers(KafkaCase):
    """The same requests through two workers (own groups, own ledgers, own
    signing keys, one writing Avro receipts, the other JSON) give receipts
    that agree field for field, for the example actions and a script
    exercising every number and string edge; the examples' own cases get
    their known answers through Kafka as through HTTP."""

    COUNT = int(os.environ.get("OPENEXEC_TEST_LUA_PAYLOADS", "10000"))

    def test_workers_agree_on_random_payloads(self):
        folder = os.path.join(self.tmp, "det")
        os.makedirs(folder)
        for name in ("refund", "key-rotation", "tool-router"):
            with open(os.path.join(EXAMPLES, name + ".lua")) as src, \
                    open(os.path.join(folder, name + ".lua"), "w") as dst:
                dst.write(src.read())
        with open(os.path.join(folder, "calc.lua"), "w") as f:
            f.write(CALC)
        actions = ["calc", "calc", "refund", "key-rotation", "tool-router", "echo"]
        # 16 partitions: the two workers' 20,000 signed receipts (about
        # 1.7 KB each) stay within the embedded broker's 5 MiB per
        # partition, so that a reader that falls behind never finds its
        # offset gone.
        b = self.broker(partitions=16)
        workers = [self.worker(b.bootstrap, args=["--actions-dir", folder, "--group-id", g],
                               env={"OPENEXEC_RECEIPT_FORMAT": fmt},
                               db=os.path.join(self.tmp, g + ".db"))
                   for g, fmt in (("det-a", "avro"), ("det-b", "json"))]
        reader = self.reader(b.bootstrap)
        with open(os.path.join(EXAMPLES, "cases.json")) as f:
            cases = json.load(f)
        rng = random.Random(2026)
        messages, nonces = [], []
        for i in range(self.COUNT):
            action = actions[i % len(actions)]
            nonce = "det-%d" % i
            nonces.append(nonce)
            messages.append((nonce, jreq(action, random_payload(rng, action, cases), nonce)))
        # The examples' own cases, whose answers are known.
        known = {}
        for name, table in sorted(cases.items()):
            with open(os.path.join(EXAMPLES, name + ".lua"), "rb") as f:
                code_hash = hashlib.sha256(f.read()).hexdigest()
            for i, case in enumerate(table):
                nonce = "case-%s-%d" % (name, i)
                known[nonce] = (case, code_hash)
                nonces.append(nonce)
                messages.append((nonce, jreq(name, case["payload"], nonce)))
        t0 = time.monotonic()
        produce(b.bootstrap, messages)
        got = self.receipts_for(reader, nonces, count=2, timeout=300)
        print("    %d requests through two workers: %.1f s" % (self.COUNT, time.monotonic() - t0))
        fields = ("id", "nonce", "action", "request_hash", "status", "approved", "result",
                  "result_json", "receipt", "error_code", "detail", "approval_id",
                  "action_code_hash")
        outcomes = {}
        differ = []
        for nonce in nonces:
            # One worker writes Avro, the other JSON: both are here.
            kinds = {m.value[:1] for m, _ in got[nonce]}
            if kinds != {b"{", b"\xc3"}:
                differ.append((nonce, "receipts from one worker only"))
                continue
            recs = [r for _, r in got[nonce]]
            first = {f: recs[0].get(f) for f in fields}
            for r in recs[1:]:
                if {f: r.get(f) for f in fields} != first:
                    differ.append((nonce, recs))
            key = (first["action"], first["status"], first["error_code"])
            outcomes[key] = outcomes.get(key, 0) + 1
        self.assertEqual(differ[:3], [], "%d nonces got receipts that differ" % len(differ))
        for nonce, (case, code_hash) in known.items():
            rec = got[nonce][0][1]
            self.assertEqual(rec["action_code_hash"], code_hash, rec)
            if "result" in case:
                self.assertEqual((rec["status"], rec["result_json"]),
                                 ("executed", json.dumps(case["result"], sort_keys=True)), rec)
            else:
                self.assertEqual((rec["status"], rec["error_code"], rec["detail"]),
                                 ("rejected", "action_failed", case["error"]), rec)
        for w in workers:
            w.wait_metric("openexec_receipts_produced_total", lambda v: v >= self.COUNT)
            self.assertNoFatal(w)
        # Each script both ran and failed on its way through.
        for action in ("calc", "refund", "key-rotation", "tool-router"):
            self.assertTrue(outcomes.get((action, "executed", None)), outcomes)
            self.assertTrue(outcomes.get((action, "rejected", "action_failed")), outcomes)
        print("    outcomes: %s" % ", ".join("%s %s%s: %d" % (a, s, " " + c if c else "", n)
                                             for (a, s, c), n in sorted(
                                                 outcomes.items(), key=str)))


if __name__ == "__main__":
    run_tests()
