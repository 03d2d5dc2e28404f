"""Shared fixtures for the integration suites.

Every suite gets its own database in the PostgreSQL that scripts/test started
(WS_TEST_PG_URL), runs the real `wavesched` binary built by meson (with the
sanitizers when the build has them) on a free loopback port, and talks to it
over real HTTP.  Nothing is mocked.  On stop, the service must exit 0 on
SIGTERM with no sanitizer report in its log.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import uuid

WAVESCHED = os.environ.get("WAVESCHED_BIN", "")
WAVECTL = os.environ.get("WAVECTL_BIN", "")
SOURCE_ROOT = os.environ.get("WS_SOURCE_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
HARNESS = os.path.join(SOURCE_ROOT, "tests", "harness")
EXAMPLE_FLEET = os.path.join(SOURCE_ROOT, "examples", "fleet.yaml")
PG_URL = os.environ.get("WS_TEST_PG_URL", "")
REDIS_URL = os.environ.get("WS_TEST_REDIS_URL", "")

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def require_services():
    """Integration suites need the servers scripts/test starts; without them
    they are skipped (meson counts exit code 77 as skipped)."""
    if not PG_URL or not WAVESCHED:
        print("WS_TEST_PG_URL or WAVESCHED_BIN not set: run through scripts/test", file=sys.stderr)
        sys.exit(77)


def tool(name):
    found = shutil.which(name)
    if found:
        return found
    for base in sorted(os.listdir("/usr/lib/postgresql"), reverse=True):
        cand = os.path.join("/usr/lib/postgresql", base, "bin", name)
        if os.path.exists(cand):
            return cand
    raise RuntimeError(f"{name} not found")


def db_url(base, dbname):
    """The same server as `base`, another database."""
    p = urllib.parse.urlsplit(base)
    # urlunsplit drops the "//" of an empty host ("postgresql:///db?host=/sock")
    return f"{p.scheme}://{p.netloc}/{dbname}" + (f"?{p.query}" if p.query else "")


def psql(url, sql):
    out = subprocess.run([tool("psql"), url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


class Database:
    """A fresh database for one suite, dropped at the end."""

    def __init__(self, pg_url=None):
        self.admin_url = pg_url or PG_URL
        self.name = "ws_" + uuid.uuid4().hex[:12]
        psql(self.admin_url, f"CREATE DATABASE {self.name}")
        self.url = db_url(self.admin_url, self.name)

    def sql(self, q):
        return psql(self.url, q)

    def dump_data(self):
        """Every row of every table, for byte-for-byte comparisons."""
        out = subprocess.run([tool("pg_dump"), "--data-only", "--no-owner", "--inserts",
                              "--dbname", self.url], capture_output=True, text=True, check=True)
        # comments and pg_dump's per-run \restrict keys are not data
        return "\n".join(l for l in out.stdout.splitlines()
                         if not l.startswith(("--", "\\restrict", "\\unrestrict")))

    def drop(self):
        psql(self.admin_url, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


class Service:
    """A running `wavesched serve`."""

    def __init__(self, db_url_, redis_url=None, extra_env=None, migrate=True, args=()):
        self.port = free_port()
        self.args = list(args)
        self.env = dict(os.environ)
        self.env.update({
            "WAVESCHED_DATABASE_URL": db_url_,
            "WAVESCHED_LISTEN": f"127.0.0.1:{self.port}",
            "WAVESCHED_LOG_LEVEL": "debug",
            # Suites that load the service on purpose (keep-alive, engine
            # polling) are not about the per-token limit; test_ratelimit.py
            # turns it on.
            "WAVESCHED_RATE_LIMIT": "off",
        })
        self.env.pop("WAVESCHED_REDIS_URL", None)
        if redis_url:
            self.env["WAVESCHED_REDIS_URL"] = redis_url
        if extra_env:
            self.env.update(extra_env)
        self.logf = tempfile.NamedTemporaryFile(prefix="wavesched-", suffix=".log", delete=False)
        if migrate:
            self.run_wavesched("migrate", check=True)
        self.start()

    def start(self):
        """(Re)starts the process on the same port, database and log."""
        self.proc = subprocess.Popen([WAVESCHED, "serve", *self.args], env=self.env,
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        self.wait_listening()

    def run_wavesched(self, *args, check=False, env=None):
        e = dict(self.env)
        if env:
            e.update(env)
        out = subprocess.run([WAVESCHED, *args], env=e, capture_output=True, text=True, timeout=120)
        if check and out.returncode != 0:
            raise RuntimeError(f"wavesched {' '.join(args)} failed ({out.returncode}): {out.stderr}")
        return out

    def token(self, role, *tenants, name=None, expires=None):
        args = ["token", "create", "--role", role]
        for t in tenants:
            args += ["--tenant", t]
        if name:
            args += ["--name", name]
        if expires:
            args += ["--expires", expires]
        return self.run_wavesched(*args, check=True).stdout.strip()

    def wait_listening(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wavesched exited with {self.proc.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("wavesched did not start listening")

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = self.request("GET", "/readyz")
            if last.status == 200:
                return last
            time.sleep(0.1)
        raise AssertionError(f"not ready after {timeout}s: {last}")

    def request(self, method, path, token=None, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        resp = Response(r.status, r.getheaders(), r.read())
        conn.close()
        return resp

    def log(self):
        with open(self.logf.name, errors="replace") as f:
            return f.read()

    def stop(self, check=True):
        """SIGTERM: the service must drain and exit 0, with a clean log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("wavesched did not stop within 30 s of SIGTERM")
        log = self.log()
        os.unlink(self.logf.name)
        if check:
            bad = [m for m in SANITIZER_MARKS if m in log]
            if self.proc.returncode != 0 or bad:
                raise AssertionError(f"wavesched exited {self.proc.returncode} {bad}:\n{log[-6000:]}")
        return log


def wavectl(*args, token=None, url=None, stdin=None):
    env = dict(os.environ)
    if token is not None:
        env["WAVESCHED_TOKEN"] = token
    if url is not None:
        env["WAVESCHED_URL"] = url
    return subprocess.run([WAVECTL, *args], env=env, capture_output=True, text=True,
                          input=stdin, timeout=120)


class ServiceCase(unittest.TestCase):
    """One database and one service per test class."""
    redis = None

    @classmethod
    def setUpClass(cls):
        cls.db = Database()
        cls.svc = Service(cls.db.url, redis_url=cls.redis)
        cls.svc.wait_ready()
        cls.admin = cls.svc.token("admin", name="test-admin")

    @classmethod
    def tearDownClass(cls):
        try:
            cls.svc.stop()
        finally:
            cls.db.drop()

    def import_fleet(self, text, token=None, dry_run=False, ctype="application/yaml"):
        path = "/v1/fleet?dry_run=1" if dry_run else "/v1/fleet"
        return self.svc.request("PUT", path, token=token or self.admin, body=text,
                                headers={"Content-Type": ctype})


def example_fleet():
    with open(EXAMPLE_FLEET) as f:
        return f.read()


def main():
    require_services()
    unittest.main(verbosity=2)
