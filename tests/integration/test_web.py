"""The web page in a real browser: Debian's Chromium, headless, driven by
playwright-core (tests/web/drive.mjs), against the real service, PostgreSQL
and the simulated fleet.

  * a tenant token sees its own windows, and nothing of another tenant;
  * a platform token sees the rollout's waves, the approval a wave still
    needs, and the page changes by itself (no reload) when a wave passes;
  * the page runs under its Content-Security-Policy without an error.
"""
import datetime
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import wsharness as h
from simfleet import SimFleet, fleet_for_sim

SCALE = 3000
DRIVER = os.path.join(h.SOURCE_ROOT, "tests", "web", "drive.mjs")
TOOLS = os.environ.get("WS_NODE_TOOLS") or os.path.join(h.SOURCE_ROOT, "tests", "tools", "node_modules")

FLEET = """apiVersion: wavesched/v1
kind: Fleet
clusters:
  - name: shared-1
    hosting: shared
    region: eu-west
    max_parallel: 4
    deploy: {executor: webhook, url: "http://127.0.0.1:1/deploy"}
tenants:
  - slug: alpine-clinic
    name: Alpine Clinic
    cluster: shared-1
    criticality: low
    timezone: Europe/Zurich
    labels: {env: training}
    health_url: http://127.0.0.1:1/t/alpine-clinic/health
    version: "1.0.0"
  - slug: baltic-labs
    name: Baltic Labs
    cluster: shared-1
    criticality: standard
    timezone: Europe/Riga
    labels: {env: production}
    health_url: http://127.0.0.1:1/t/baltic-labs/health
    version: "1.0.0"
"""

POLICY = """apiVersion: wavesched/v1
kind: WavePolicy
metadata: {name: web-two-waves}
spec:
  release_kinds: [standard]
  unmatched: error
  schedule: {respect_windows: false, slot: 30m}
  defaults:
    soak: 10m
    gates:
      health: {interval: 30s, timeout: 5s, consecutive_successes: 2, max_consecutive_failures: 3,
               max_latency_ms: 2000, latency_regression: 5}
  waves:
    - name: training
      select: {labels: {env: training}}
    - name: production
      select: {labels: {env: production}}
      gates: {approval: {min: 1, roles: [approver]}}
"""


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def node():
    found = shutil.which("node")
    if not found:
        raise RuntimeError("node is not installed")
    return found


class WebPage(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if not os.path.isdir(os.path.join(TOOLS, "playwright-core")):
            raise RuntimeError(f"playwright-core is not installed under {TOOLS}: run scripts/test")
        cls.tmp = tempfile.mkdtemp(prefix="ws-web-")
        cls.origin = int(time.time())
        cls.db = h.Database()
        cls.svc = h.Service(cls.db.url, args=["--time-scale", str(SCALE), "--time-origin", rfc3339(cls.origin)],
                            extra_env={"WAVESCHED_OUTBOUND_ALLOW": "127.0.0.0/8"})
        cls.svc.wait_ready()
        cls.admin = cls.svc.token("admin", name="admin")
        cls.platform = cls.svc.token("platform", name="pat")
        cls.approver = cls.svc.token("approver", name="ann")
        cls.alpine = cls.svc.token("tenant", "alpine-clinic", name="alpine-owner")
        cls.sim = SimFleet(cls.tmp, fleet=FLEET, converge_ms=20)
        cls.sim.__enter__()
        fleet = fleet_for_sim(FLEET, cls.sim.url, executor="webhook")
        for method, path, body, ctype in (("PUT", "/v1/fleet", fleet, "application/yaml"),
                                          ("POST", "/v1/policies", POLICY, "application/yaml")):
            r = cls.svc.request(method, path, token=cls.admin, body=body, headers={"Content-Type": ctype})
            assert r.status in (200, 201), r
        r = cls.svc.request("POST", "/v1/releases", token=cls.platform,
                            body={"version": "1.1.0", "digest": "sha256:" + "12" * 32})
        assert r.status == 201, r
        r = cls.svc.request("POST", "/v1/rollouts", token=cls.platform,
                            body={"release": "1.1.0", "policy": "web-two-waves",
                                  "start": rfc3339(cls.now() + 120)})
        assert r.status == 201, r
        cls.rid = r.json["id"]

    @classmethod
    def tearDownClass(cls):
        cls.sim.__exit__(None, None, None)
        cls.svc.stop()
        cls.db.drop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def now(cls):
        return cls.origin + (time.time() - cls.origin) * SCALE

    def drive(self, *args):
        env = dict(os.environ, WS_NODE_TOOLS=TOOLS)
        return subprocess.Popen([node(), DRIVER, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)

    def url(self):
        return f"http://127.0.0.1:{self.svc.port}/"

    def test_a_tenant_sees_its_own_windows_only(self):
        p = self.drive("tenant", self.url(), self.alpine)
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, err)
        lines = [json.loads(x) for x in out.splitlines()]
        seen, errors = lines[0], lines[-1]["errors"]
        self.assertEqual(errors, [])
        self.assertEqual(seen["sections"], ["alpine-clinic"])
        self.assertEqual(seen["rows"], [[self.rid, "TENTATIVE"]])
        self.assertEqual(seen["next"], [self.rid])
        self.assertIn("alpine-owner (tenant for alpine-clinic)", seen["who"])
        self.assertIn("Europe/Zurich", seen["text"])
        self.assertIn("selected by wave", seen["text"])      # why the window is when it is
        # Nothing of the other tenant, not even its name.
        self.assertNotIn("baltic", seen["text"].lower())

    def test_a_bad_token_is_refused_on_the_page(self):
        p = self.drive("refused", self.url(), "wst_" + "x" * 43)
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, err)
        lines = [json.loads(x) for x in out.splitlines()]
        self.assertEqual(lines[0], {"status": "This token is not valid (unknown, expired or revoked).",
                                    "signin_visible": True, "sections": 0})

    def test_the_platform_view_follows_the_rollout_live(self):
        p = self.drive("platform", self.url(), self.platform, str(self.rid))
        try:
            loaded = json.loads(p.stdout.readline())
            self.assertEqual(loaded["phase"], "loaded", loaded)
            self.assertEqual(loaded["rollout_state"], "planned")
            self.assertEqual(loaded["waves"], {"1": "pending", "2": "pending"})
            self.assertEqual(loaded["pending_approvals"], [1])          # production needs one
            r = self.svc.request("POST", f"/v1/rollouts/{self.rid}/approve", token=self.approver,
                                 body={"wave": 2, "comment": "go"})
            self.assertEqual(r.status, 200, r)
            r = self.svc.request("POST", f"/v1/rollouts/{self.rid}/start", token=self.platform,
                                 body={"reason": "web test"})
            self.assertEqual(r.status, 200, r)
            p.stdin.write("go\n")
            p.stdin.flush()
            after = json.loads(p.stdout.readline())
            self.assertEqual(after["phase"], "passed", (after, self.svc.log()[-3000:]))
            self.assertEqual(after["waves"]["1"], "passed")
            self.assertIn(after["rollout_state"], ("running", "completed"))
            self.assertEqual(after["pending_approvals"], [])
            self.assertEqual(after["live"], "on")          # updated from /v1/events, not by polling
            errors = json.loads(p.stdout.readline())["errors"]
            self.assertEqual(errors, [])
        finally:
            try:
                p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()


if __name__ == "__main__":
    h.main()
