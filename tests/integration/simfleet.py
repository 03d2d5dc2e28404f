"""The simulated fleet, for integration suites.

    from simfleet import SimFleet, fleet_for_sim

    with SimFleet(tmpdir, fleet=fleet_text) as sim:
        fleet = fleet_for_sim(example_fleet(), sim.url)       # health/deploy -> sim
        sim.set_fault("clinic-north", unhealthy_after_version="18.0")
        ...
        self.assertEqual(max(sim.calls()["deploys"].values()), 1)

SimFleet starts the real `simfleet` binary (SIMFLEET_BIN, built by meson with
the sanitizers when the build has them) on a free port, and on exit stops it
with SIGTERM and checks it exited 0 with no sanitizer report in its log.
Only the standard library is used.
"""
import http.client
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.parse

SIMFLEET = os.environ.get("SIMFLEET_BIN", "")
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


class SimResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


class SimFleet:
    """A running simfleet.

    fleet: fleet YAML text or a path to a fleet file (None: any slug).
    scenario: {"tenants": {slug: fault}} or a path to such a JSON file.
    Keyword options map to command-line flags: converge_ms=200,
    service="http://...", token_env="NAME", backup_interval="60s",
    time_scale=100, time_origin="2026-...Z", log_level="debug".
    env: extra environment (e.g. {"SIMFLEET_TOKEN": "..."}).
    """

    def __init__(self, tmpdir, fleet=None, scenario=None, env=None, args=(), **opts):
        if not SIMFLEET:
            raise RuntimeError("SIMFLEET_BIN is not set: run through meson test")
        self.tmpdir = tmpdir
        self.dir = tempfile.mkdtemp(prefix="simfleet-", dir=tmpdir)
        self.argv = [SIMFLEET, "--listen", "127.0.0.1:0",
                     "--port-file", os.path.join(self.dir, "port")]
        if fleet is not None:
            self.argv += ["--fleet", self._file(fleet, "fleet.yaml")]
        if scenario is not None:
            text = scenario if isinstance(scenario, str) and os.path.exists(scenario) else None
            self.argv += ["--scenario", text or self._file(json.dumps(scenario), "scenario.json")]
        for k, v in opts.items():
            self.argv += ["--" + k.replace("_", "-"), str(v)]
        self.argv += list(args)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.proc = None
        self.port = None
        self.url = None

    def _file(self, content, name):
        if "\n" not in content and os.path.exists(content):
            return content
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(content)
        return path

    # -- life cycle ------------------------------------------------------
    def start(self, timeout=30):
        self.logf = open(os.path.join(self.dir, "simfleet.log"), "wb")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        port_file = os.path.join(self.dir, "port")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"simfleet exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with open(port_file) as f:
                    self.port = int(f.read().strip())
                self.url = f"http://127.0.0.1:{self.port}"
                return self
            except (OSError, ValueError):
                time.sleep(0.02)
        self.proc.kill()
        raise RuntimeError("simfleet did not write its port file")

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop(check=exc_type is None)

    def log(self):
        with open(os.path.join(self.dir, "simfleet.log"), errors="replace") as f:
            return f.read()

    def stop(self, check=True, sig=signal.SIGTERM):
        """Stops with `sig`: simfleet must exit 0 with a clean log."""
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"simfleet did not stop within 30 s:\n{self.log()[-4000:]}")
        self.logf.close()
        log = self.log()
        if check:
            bad = [m for m in SANITIZER_MARKS if m in log]
            if self.proc.returncode != 0 or bad:
                raise AssertionError(f"simfleet exited {self.proc.returncode} {bad}:\n{log[-6000:]}")
        return log

    # -- HTTP ------------------------------------------------------------
    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return SimResponse(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def _ok(self, r, what):
        if r.status // 100 != 2:
            raise AssertionError(f"simfleet {what}: {r}")
        return r.json

    def calls(self):
        """{"calls": {key: n}, "deploys": {key: n}, "states": {key: s},
        "by_tenant": {slug: [keys]}}"""
        return self._ok(self.request("GET", "/_sim/calls"), "calls")

    def tenants(self):
        """{slug: {"version", "initial_version", "healthy", "deploys",
        "health_requests", "fault"}}"""
        return self._ok(self.request("GET", "/_sim/tenants"), "tenants")["tenants"]

    def set_fault(self, slug, **spec):
        return self._ok(self.request("PUT", f"/_sim/faults/{slug}", body=spec), "set_fault")

    def clear_fault(self, slug):
        return self._ok(self.request("DELETE", f"/_sim/faults/{slug}"), "clear_fault")

    def set_version(self, slug, version):
        """What a GitOps sync agent does on applying a commit (PUT /_sim/versions/{slug})."""
        return self._ok(self.request("PUT", f"/_sim/versions/{slug}", body={"version": version}),
                        "set_version")

    def set_gauges(self, slug, **gauges):
        """Sets what /metrics exposes for the tenant, e.g.
        set_gauges("acme", odoo_queue_backlog=700, odoo_db_lock_waits=0)."""
        return self._ok(self.request("POST", f"/_sim/gauges/{slug}", body=gauges), "set_gauges")

    def reset(self):
        return self._ok(self.request("POST", "/_sim/reset"), "reset")

    def report_backups(self):
        """Reports every tenant's backup now; returns {"reported", "failed", "skipped"}."""
        return self._ok(self.request("POST", "/_sim/backups/report"), "report_backups")

    def health(self, slug, timeout=30):
        return self.request("GET", f"/t/{slug}/health", timeout=timeout)

    def metrics(self):
        r = self.request("GET", "/metrics")
        if r.status != 200:
            raise AssertionError(f"simfleet metrics: {r}")
        return r.body.decode()

    def status_url(self):
        return f"{self.url}/deploy/status?key={{key}}"


def fleet_for_sim(fleet_text, base_url, executor="webhook", token_env=None, fmt="yaml"):
    """`fleet_text` (a fleet document, e.g. examples/fleet.yaml) with every
    tenant's health_url and every cluster's deploy pointed at the simulator
    at `base_url`, through `simfleet fleet-for` (the project's own fleet
    parser and canonical form).  executor: webhook, kubernetes or command."""
    if not SIMFLEET:
        raise RuntimeError("SIMFLEET_BIN is not set: run through meson test")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(fleet_text)
        path = f.name
    try:
        argv = [SIMFLEET, "fleet-for", "--base", base_url, "--executor", executor,
                "--format", fmt, path]
        if token_env:
            argv[2:2] = ["--token-env", token_env]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    finally:
        os.unlink(path)
    if out.returncode != 0:
        raise RuntimeError(f"simfleet fleet-for failed ({out.returncode}): {out.stderr}")
    return out.stdout


def query_key(key):
    """A key as it goes into a status URL's query."""
    return urllib.parse.quote(key, safe="")
