"""The backup gate's `source: http` end to end (engine.md "backup gate"): a
rollout whose policy reads each tenant's backup status from the simulated
fleet (GET /t/{slug}/backup) instead of the catalog.

The simulator reports nothing to the catalog here (no --service), so only
the status URL can let a tenant through: the fresh tenant deploys, and the
stale, missing, failing and hanging ones are skipped, never deployed, with
the problem in their reason and in the backup gate's evidence of
GET /v1/rollouts/{id}."""
import datetime
import tempfile
import time
import unittest

import wsharness as h
from simfleet import SimFleet, fleet_for_sim

SCALE = 20000                 # a day in 4.3 s
RELEASE = "17.0.4"
DIGEST = "sha256:" + "cd" * 32

# One shared cluster without windows: every tenant gets a slot from the
# wave's start, so the stale ones are skipped within seconds.
FLEET = """apiVersion: wavesched/v1
kind: Fleet
clusters:
  - {name: shared-1, hosting: shared, region: eu, max_parallel: 6,
     deploy: {executor: webhook, url: "http://127.0.0.1:9/deploy"}}
tenants:
""" + "".join(f"""  - {{slug: {s}, cluster: shared-1, criticality: low, timezone: UTC, version: '17.0.3',
     health_url: "http://127.0.0.1:9/t/{s}/health"}}
""" for s in ("fresh-a", "stale-b", "broken-c", "missing-d", "stuck-e")) + """  - {slug: meta-f, cluster: shared-1, criticality: low, timezone: UTC, version: '17.0.3',
     labels: {grp: meta}, health_url: "http://127.0.0.1:9/t/meta-f/health"}
"""

FAULTS = {"tenants": {"stale-b": {"backup": "stale", "backup_age": "72h"},
                      "broken-c": {"http_500": True},
                      "missing-d": {"backup": "missing"},
                      "stuck-e": {"hang": True}}}


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def policy(status_url):
    return f"""apiVersion: wavesched/v1
kind: WavePolicy
metadata: {{name: backup-http}}
spec:
  release_kinds: [standard]
  defaults:
    soak: 10m
    gates:
      backup: {{max_age: 24h, source: http, url: "{status_url}"}}
      health: {{interval: 30s, timeout: 5s, consecutive_successes: 2}}
  waves:
    # a wave-level override of the template only: an address the outbound
    # layer always refuses (cloud metadata)
    - name: meta
      select: {{labels: {{grp: meta}}}}
      gates: {{backup: {{url: "http://169.254.169.254/{{slug}}/backup"}}}}
    - {{name: all, select: {{}}}}
"""


class BackupOverHttp(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ws-backup-http-")
        origin = int(time.time())
        clock = ["--time-scale", str(SCALE), "--time-origin", rfc3339(origin)]
        self.db = h.Database()
        self.svc = h.Service(self.db.url, args=clock,
                             extra_env={"WAVESCHED_OUTBOUND_ALLOW": "127.0.0.0/8"})
        self.svc.wait_ready()
        self.admin = self.svc.token("admin", name="admin")
        self.platform = self.svc.token("platform", name="alice")
        self.sim = SimFleet(self.tmp, fleet=FLEET, scenario=FAULTS, converge_ms=20,
                            time_scale=SCALE, time_origin=rfc3339(origin))
        self.sim.__enter__()
        self.clock = lambda: origin + (time.time() - origin) * SCALE

    def tearDown(self):
        try:
            twice = {k: n for k, n in self.sim.calls()["deploys"].items() if n > 1}
            self.assertEqual(twice, {}, "deployed twice for one idempotency key")
        finally:
            self.sim.__exit__(None, None, None)
            self.svc.stop()
            self.db.drop()

    def put(self, method, path, body, yaml=False):
        r = self.svc.request(method, path, token=self.admin if "fleet" in path else self.platform,
                             body=body,
                             headers={"Content-Type": "application/yaml"} if yaml else None)
        self.assertIn(r.status, (200, 201), r)
        return r.json

    def rollout(self, rid):
        r = self.svc.request("GET", f"/v1/rollouts/{rid}", token=self.admin)
        self.assertEqual(r.status, 200, r)
        return r.json

    def wait_end(self, rid, timeout=120):
        deadline = time.time() + timeout
        ro = None
        while time.time() < deadline:
            ro = self.rollout(rid)
            if ro["state"] in ("completed", "halted", "aborted", "rolled_back"):
                return ro
            time.sleep(0.2)
        self.fail(f"rollout {rid} still {ro and ro['state']} after {timeout}s:\n{ro}\n"
                  f"{self.svc.log()[-4000:]}")

    def test_fresh_deploys_the_others_are_skipped_with_their_reason(self):
        self.put("PUT", "/v1/fleet", fleet_for_sim(FLEET, self.sim.url), yaml=True)
        status_url = self.sim.url + "/t/{slug}/backup"
        self.put("POST", "/v1/policies", policy(status_url), yaml=True)
        self.put("POST", "/v1/releases", {"version": RELEASE, "digest": DIGEST, "kind": "standard"})
        body = self.put("POST", "/v1/rollouts", {"release": RELEASE, "policy": "backup-http",
                                                 "start": rfc3339(self.clock() + 60)})
        rid = body.get("id") or body["rollout"]["id"]
        # The stored wave settings carry the source and the template.
        waves = self.rollout(rid)["waves"]
        self.assertEqual(waves[1]["settings"]["backup"],
                         {"enabled": True, "max_age_s": 86400, "source": "http", "url": status_url})
        self.assertEqual(waves[0]["settings"]["backup"]["url"],
                         "http://169.254.169.254/{slug}/backup")
        r = self.svc.request("POST", f"/v1/rollouts/{rid}/start", token=self.platform,
                             body={"reason": "test"})
        self.assertEqual(r.status, 200, r)
        ro = self.wait_end(rid)
        self.assertEqual(ro["state"], "completed", ro)
        t = {x["slug"]: x for w in ro["waves"] for x in w["tenants"]}
        states = {s: x["state"] for s, x in t.items()}
        self.assertEqual(states, {"fresh-a": "healthy", "stale-b": "skipped", "broken-c": "skipped",
                                  "missing-d": "skipped", "stuck-e": "skipped", "meta-f": "skipped"})
        # Skipped tenants were never called; the fresh one was deployed.
        sim = self.sim.tenants()
        self.assertEqual(sim["fresh-a"]["version"], RELEASE)
        for s in ("stale-b", "broken-c", "missing-d", "stuck-e", "meta-f"):
            self.assertEqual(sim[s]["deploys"], 0, s)
            self.assertEqual(sim[s]["version"], "17.0.3", s)

        def url(s):
            return f"{self.sim.url}/t/{s}/backup"

        reasons = {s: x["state_reason"] for s, x in t.items()}
        self.assertRegex(reasons["stale-b"], r"^backup stale: " + url("stale-b") +
                         r" reports last_success \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(max_age 1d\)$")
        self.assertEqual(reasons["broken-c"], f"backup status {url('broken-c')}: HTTP 500")
        self.assertEqual(reasons["missing-d"], f"backup status {url('missing-d')}: HTTP 404")
        self.assertRegex(reasons["stuck-e"], r"^backup status " + url("stuck-e") + r": .*tim")
        meta_url = "http://169.254.169.254/meta-f/backup"
        self.assertRegex(reasons["meta-f"], r"^backup status " + meta_url + r": .*refused")
        ev = [g for g in t["meta-f"]["gates"] if g["gate"] == "backup"][-1]["evidence"]
        self.assertEqual((ev["url"], ev["http_status"], ev["error"]), (meta_url, None, reasons["meta-f"]))

        def backup_gates(s):
            return [g for g in t[s]["gates"] if g["gate"] == "backup"]

        ok = backup_gates("fresh-a")
        self.assertEqual([g["result"] for g in ok], ["pass"])
        ev = ok[0]["evidence"]
        self.assertEqual((ev["source"], ev["url"], ev["http_status"]), ("http", url("fresh-a"), 200))
        self.assertLess(ev["age_s"], 86400)
        self.assertEqual(ev["last_success"], ev["completed_at"])
        self.assertNotIn("error", ev)
        for s, status in (("stale-b", 200), ("broken-c", 500), ("missing-d", 404), ("stuck-e", None)):
            gates = backup_gates(s)
            self.assertEqual(gates[-1]["result"], "fail", (s, gates))
            ev = gates[-1]["evidence"]
            self.assertEqual((ev["url"], ev["http_status"]), (url(s), status), s)
            if s == "stale-b":
                self.assertGreater(ev["age_s"], 86400)
                self.assertNotIn("error", ev)
            else:
                self.assertIsNone(ev["last_success"], s)
                self.assertEqual(ev["error"], reasons[s], s)

    def test_stored_settings_are_checked(self):
        """migrations/0012: a wave's settings naming an unknown source, http
        without a URL template, or a URL with the catalog are refused when a
        rollout is created (ws__wave_settings_problem)."""
        base = ('{"soak_s": 0, "max_parallel_per_cluster": 0, "backup": %s, '
                '"health": {"enabled": false, "interval_s": 30, "timeout_s": 5, '
                '"consecutive_successes": 3, "max_consecutive_failures": 3, "max_latency_ms": 2000, '
                '"latency_regression": 1.5}, "approval": {"min": 0, "roles": ["approver"]}, '
                '"failure": {"max_failed": 0, "action": "halt"}}')
        cases = {
            '{"enabled": true, "max_age_s": 60}': "",
            '{"enabled": true, "max_age_s": 60, "source": "catalog"}': "",
            '{"enabled": true, "max_age_s": 60, "source": "http", "url": "https://b/{slug}"}': "",
            '{"enabled": true, "max_age_s": 60, "source": "s3"}':
                'backup.source must be "catalog" or "http"',
            '{"enabled": true, "max_age_s": 60, "source": 1}':
                'backup.source must be "catalog" or "http"',
            '{"enabled": true, "max_age_s": 60, "source": "http"}':
                "backup.url must be an http(s) URL template with source http",
            '{"enabled": true, "max_age_s": 60, "source": "http", "url": "file:///etc/{slug}"}':
                "backup.url must be an http(s) URL template with source http",
            '{"enabled": true, "max_age_s": 60, "url": "https://b/{slug}"}':
                "backup.url is only used with source http",
        }
        for backup, want in cases.items():
            got = self.db.sql("SELECT ws__wave_settings_problem('%s'::jsonb)" % (base % backup))
            self.assertEqual(got.strip(), want, backup)


if __name__ == "__main__":
    h.main()
