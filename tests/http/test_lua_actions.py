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
service answering; `openexec actions` lists what a folder defines with
its code hashes, and refuses what run refuses with the same line.
"""

import hashlib
import json
import os

from harness import ROOT, ServiceTest, cli, run_tests

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


if __name__ == "__main__":
    run_tests()
