"""The generated sections of the documents under docs/. Each one is what an
openexec command prints, between two marker lines:

    <!-- generated: openexec docs config -->

    (the command's output)

    <!-- end generated -->

`make docs` rewrites them from build/openexec (this file with --write);
tests/http/test_operations.py fails while one differs from what the binary
prints (expected() and stale() below), showing the difference and this
command. Standard library only."""

import difflib
import os
import re
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import BIN, ROOT, clean_env  # noqa: E402

DOCS = os.path.join(ROOT, "docs")
REGENERATE = "make docs"
SECTION = re.compile(r"^<!-- generated: (openexec [^>]*?) -->\n(.*?)^<!-- end generated -->$",
                     re.M | re.S)


def documents():
    """Paths of docs/*.md, sorted."""
    return sorted(os.path.join(DOCS, n) for n in os.listdir(DOCS) if n.endswith(".md"))


def commands(text):
    """The commands of the generated sections of text, in order."""
    return [m.group(1) for m in SECTION.finditer(text)]


def output(command):
    """What `openexec ...` prints (the binary under test, no OPENEXEC_*
    variables of the caller's)."""
    p = subprocess.run([BIN] + shlex.split(command)[1:], env=clean_env(), capture_output=True,
                       text=True, timeout=10)
    if p.returncode != 0 or p.stderr:
        raise AssertionError("%s: exit %d, %s" % (command, p.returncode, p.stderr.strip()))
    return p.stdout


def expected(text):
    """text with each generated section as its command prints it now."""
    return SECTION.sub(lambda m: "<!-- generated: %s -->\n\n%s\n<!-- end generated -->"
                       % (m.group(1), output(m.group(1))), text)


def stale():
    """[(path, unified diff)] of the documents whose generated sections
    differ from what the binary prints."""
    out = []
    for path in documents():
        with open(path) as f:
            text = f.read()
        want = expected(text)
        if want != text:
            rel = os.path.relpath(path, ROOT)
            diff = difflib.unified_diff(text.splitlines(True), want.splitlines(True),
                                        rel + " (as it is)", rel + " (as generated)")
            out.append((path, "".join(diff)))
    return out


def main(argv):
    if argv != ["--write"]:
        sys.exit("usage: generated_docs.py --write   (rewrites the generated sections of "
                 "docs/*.md from %s)" % os.path.relpath(BIN, ROOT))
    for path in documents():
        with open(path) as f:
            text = f.read()
        want = expected(text)
        if want != text:
            with open(path, "w") as f:
                f.write(want)
            print("rewrote the generated sections of %s" % os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main(sys.argv[1:])
