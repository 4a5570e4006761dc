"""A real, throw-away PostgreSQL server for the black-box tests.

PgCluster runs initdb (newest /usr/lib/postgresql/*/bin, Debian's packages)
in a new temporary directory and starts the server on a free 127.0.0.1 port,
with its Unix socket and its log (log()) in that directory. PostgreSQL refuses
to run as root: when the euid is 0 the data directory belongs to the system
user `postgres`, and initdb, postgres and pg_ctl run through
`runuser -u postgres --`; otherwise they run as the current user.

Host connections use scram-sha-256: the superuser `postgres` has a random
password (superuser_password); the role `openexec` (password 'openexec-pw')
owns the test databases. The local socket is trust. Settings: SETTINGS.

The postmaster runs below a small Python process that is a child subreaper
(prctl PR_SET_CHILD_SUBREAPER), not below pg_ctl: that would leave it, and
after a kill its backends, to init, which on the test machines does not reap
them (they linger as <defunct>). The subreaper reaps all of them, exits after
the last, and asks for a fast shutdown if the test process dies. stop() and
kill() wait for it: when they return, no server process is left.

Only the standard library is used, plus psycopg2 (python3-psycopg2), imported
lazily. shared_cluster() gives one cluster per Python process, started on
first use and removed at exit; if it cannot start it raises RuntimeError (the
tests fail, they are never skipped).
"""

import atexit
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

from harness import free_port

START_TIMEOUT = 30.0  # seconds until the server must accept a connection
STOP_TIMEOUT = 30.0   # seconds a shutdown, or the end of a killed server, may take
ROLE, ROLE_PASSWORD = "openexec", "openexec-pw"
SETTINGS = ("listen_addresses=127.0.0.1", "fsync=off", "synchronous_commit=on",
            "max_connections=200", "shared_buffers=64MB")

# The subreaper. argv: DATADIR COMMAND...; exits with COMMAND's exit code once
# every descendant has exited.
_REAPER = r"""
import ctypes, os, signal, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
parent, child, code, asked = os.getppid(), os.fork(), 0, False
if child == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
while True:
    try:
        pid, status = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        sys.exit(code)
    if pid == child:
        code = os.waitstatus_to_exitcode(status)
    elif pid == 0 and not asked and os.getppid() != parent:
        asked = True  # the test process died: fast shutdown
        try:
            os.kill(int(open(sys.argv[1] + "/postmaster.pid").readline()), signal.SIGINT)
        except (OSError, ValueError):
            pass
    if pid == 0:
        time.sleep(0.05)
"""


def pg_bindir():
    """The bin directory of the highest PostgreSQL version installed."""
    found = [d for d in glob.glob("/usr/lib/postgresql/*/bin")
             if os.path.isfile(os.path.join(d, "initdb"))]
    if not found:
        raise RuntimeError("no /usr/lib/postgresql/*/bin/initdb (Debian package "
                           "postgresql): run make deps")
    return max(found, key=lambda d: [int(x) if x.isdigit() else 0
                                     for x in d.split("/")[-2].split(".")])


class PgCluster:
    def __init__(self, workdir=None):
        self.bindir = pg_bindir()
        self.tmp = tempfile.mkdtemp(prefix="openexec-pg-", dir=workdir)
        os.chmod(self.tmp, 0o755)  # the postgres user must traverse it
        self.datadir = os.path.join(self.tmp, "data")
        self.sockdir = os.path.join(self.tmp, "sock")
        self.logfile = os.path.join(self.tmp, "postgres.log")
        self.port = None
        self.superuser_password = uuid.uuid4().hex
        self._proc = None  # the subreaper, while a server runs
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self._prefix = []
        os.mkdir(self.datadir, 0o700)  # initdb wants 0700 (or 0750)
        os.mkdir(self.sockdir, 0o755)  # postgres creates the socket and its lock
        if os.geteuid() == 0:
            self._prefix = [shutil.which("runuser") or "/usr/sbin/runuser",
                            "-u", "postgres", "--"]
            pw = pwd.getpwnam("postgres")
            for d in (self.datadir, self.sockdir):
                os.chown(d, pw.pw_uid, pw.pw_gid)

    def _cmd(self, prog, *args):
        return self._prefix + [os.path.join(self.bindir, prog)] + list(args)

    def start(self):
        """initdb, a free port, the server, the role openexec. Returns self."""
        pwfile = os.path.join(self.tmp, "pwfile")  # read by initdb as postgres
        with open(pwfile, "w") as f:
            f.write(self.superuser_password + "\n")
        os.chmod(pwfile, 0o644)
        try:
            p = subprocess.run(self._cmd(
                "initdb", "-D", self.datadir, "-U", "postgres", "--pwfile=" + pwfile,
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C",
                "--no-sync", "--no-instructions"), env=self._env, cwd=self.tmp, text=True,
                stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        finally:
            os.unlink(pwfile)
        if p.returncode != 0:
            raise RuntimeError("initdb: exit %d: %s" % (p.returncode, p.stdout + p.stderr))
        for attempt in range(3):  # another process may take the free port first
            self.port = free_port()
            try:
                self.restart()
                break
            except RuntimeError as e:
                if attempt == 2 or "already in use" not in str(e):
                    raise
        self.query("postgres", "CREATE ROLE %s LOGIN PASSWORD '%s'" % (ROLE, ROLE_PASSWORD))
        return self

    def restart(self):
        """Starts the server (again, after stop() or kill()) on the same port
        and waits until it accepts a connection (after any crash recovery)."""
        if self.running():
            raise RuntimeError("PostgreSQL is already running")
        import psycopg2  # fail now rather than after START_TIMEOUT
        args = ["-D", self.datadir, "-p", str(self.port), "-k", self.sockdir]
        for setting in SETTINGS:
            args += ["-c", setting]
        with open(self.logfile, "a") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _REAPER, self.datadir] + self._cmd("postgres", *args),
                env=self._env, cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self._connect("postgres", timeout=2).close()
                return self
            except psycopg2.OperationalError as e:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    why = ("exited with status %d" % self._proc.returncode
                           if self._proc.poll() is not None else
                           "accepted no connection within %.0f s" % START_TIMEOUT)
                    self.kill()
                    raise RuntimeError("PostgreSQL %s (%s); log: %s" % (
                        why, " ".join(str(e).split()), self.log_tail())) from None
            time.sleep(0.1)

    def _connect(self, dbname, timeout=10):
        import psycopg2
        c = psycopg2.connect(host="127.0.0.1", port=self.port, dbname=dbname, user="postgres",
                             password=self.superuser_password, connect_timeout=timeout,
                             sslmode="disable")
        c.autocommit = True
        return c

    def url(self, dbname, user=ROLE, password=ROLE_PASSWORD):
        q = lambda s: urllib.parse.quote(s, safe="")  # noqa: E731
        return "postgresql://%s:%s@127.0.0.1:%d/%s?sslmode=disable" % (
            q(user), q(password), self.port, q(dbname))

    def query(self, dbname, sql, params=()):
        """Runs SQL in DBNAME as the superuser (autocommit); returns the rows
        as a list of tuples, [] for a statement without a result."""
        c = self._connect(dbname)
        try:
            with c.cursor() as cur:
                cur.execute(sql, params or None)
                return cur.fetchall() if cur.description is not None else []
        finally:
            c.close()

    def create_database(self, name):
        """CREATE DATABASE NAME OWNER openexec unless it exists; its URL."""
        from psycopg2 import sql
        if not self.query("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (name,)):
            self.query("postgres", sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(ROLE)))
        return self.url(name)

    def drop_database(self, name):
        from psycopg2 import sql
        self.query("postgres", sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))

    def running(self):
        return self._proc is not None and self._proc.poll() is None

    def _wait_gone(self):
        """Waits for the subreaper, that is, for every server process."""
        if self._proc is None:
            return
        try:
            self._proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:  # last resort: its whole process group
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def stop(self):
        """pg_ctl stop -m fast; does nothing if the server is not running."""
        if self.running():
            subprocess.run(self._cmd("pg_ctl", "stop", "-D", self.datadir, "-m", "fast",
                                     "-w", "-t", "%d" % STOP_TIMEOUT),
                           env=self._env, cwd=self.tmp, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=STOP_TIMEOUT + 10)
        self._wait_gone()

    def kill(self):
        """SIGKILL to the postmaster, a crash; returns once its backends have
        exited too. The data directory stays as the crash left it."""
        if self.running():
            try:
                with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                    os.kill(int(f.readline()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        self._wait_gone()

    def cleanup(self):
        """Stops the server if it runs and removes the temporary directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, lines=10):
        """The last LINES lines of the log, on one line."""
        return " | ".join(self.log().strip().splitlines()[-lines:]) or "(empty)"


_shared = None
_shared_error = None


def shared_cluster():
    """The cluster of this process: started on the first call, stopped and
    removed at exit. Raises RuntimeError (on every call) if it cannot start."""
    global _shared, _shared_error
    if _shared is None and _shared_error is None:
        c = None
        try:
            c = PgCluster()
            atexit.register(c.cleanup)
            _shared = c.start()
        except Exception as e:
            msg = " ".join(str(e).split())
            if c is not None and "log:" not in msg:
                msg += "; log: " + c.log_tail()
            _shared_error = "PostgreSQL test cluster did not start: " + msg
    if _shared_error is not None:
        raise RuntimeError(_shared_error)
    return _shared


def fresh_database(prefix="t"):
    """A new database (PREFIX + random hex) on the shared cluster; its URL."""
    return shared_cluster().create_database(prefix + uuid.uuid4().hex[:12])
