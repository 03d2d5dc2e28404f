"""Issue 7's evidence behind the backup gate and the windows, end to end:

- require_restore_verified: a tenant whose backup is fresh but whose restore
  was never verified (or too long ago) is never deployed, and its reason and
  the gate's evidence say so;
- migration timing from staging: a release whose deploy took two hours in
  the staging wave makes the engine expect two hours of the production
  tenant too, whose one-hour daily window is then too short: it moves to the
  next window long enough (the Sunday one), with the reason, and the
  rollout's view shows the estimate and where it comes from.

Both run on the simulated fleet and a real PostgreSQL, under --time-scale."""
import datetime
import tempfile
import time
import unittest

import wsharness as h
from simfleet import SimFleet, fleet_for_sim

RELEASE = "17.0.4"
DIGEST = "sha256:" + "ef" * 32


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def tenant(slug, cluster, extra=""):
    return f"""  - {{slug: {slug}, cluster: {cluster}, criticality: low, timezone: UTC, version: '17.0.3',
     health_url: "http://127.0.0.1:9/t/{slug}/health"{extra}}}
"""


class GateCase(unittest.TestCase):
    SCALE = 2000
    FLEET = ""
    CONVERGE_MS = 20

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ws-gates-")
        origin = int(time.time())
        clock = ["--time-scale", str(self.SCALE), "--time-origin", rfc3339(origin)]
        self.db = h.Database()
        self.svc = h.Service(self.db.url, args=clock,
                             extra_env={"WAVESCHED_OUTBOUND_ALLOW": "127.0.0.0/8"})
        self.svc.wait_ready()
        self.admin = self.svc.token("admin", name="admin")
        self.platform = self.svc.token("platform", name="alice")
        self.sim = SimFleet(self.tmp, fleet=self.FLEET, converge_ms=self.CONVERGE_MS,
                            time_scale=self.SCALE, time_origin=rfc3339(origin))
        self.sim.__enter__()
        self.clock = lambda: origin + (time.time() - origin) * self.SCALE

    def tearDown(self):
        try:
            twice = {k: n for k, n in self.sim.calls()["deploys"].items() if n > 1}
            self.assertEqual(twice, {}, "deployed twice for one idempotency key")
        finally:
            self.sim.__exit__(None, None, None)
            self.svc.stop()
            self.db.drop()

    def call(self, method, path, body=None, yaml=False, token=None, want=(200, 201)):
        r = self.svc.request(method, path, token=token or (self.admin if "fleet" in path else self.platform),
                             body=body, headers={"Content-Type": "application/yaml"} if yaml else None)
        self.assertIn(r.status, want, r)
        return r.json

    def rollout(self, rid):
        return self.call("GET", f"/v1/rollouts/{rid}", token=self.admin)

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

    def play(self, policy_text, policy_name, before_start=None):
        self.call("PUT", "/v1/fleet", fleet_for_sim(self.FLEET, self.sim.url), yaml=True)
        self.call("POST", "/v1/policies", policy_text, yaml=True)
        self.call("POST", "/v1/releases", {"version": RELEASE, "digest": DIGEST, "kind": "standard"})
        body = self.call("POST", "/v1/rollouts", {"release": RELEASE, "policy": policy_name,
                                                  "start": rfc3339(self.clock() + 120)})
        rid = body.get("id") or body["rollout"]["id"]
        if before_start:
            before_start()
        self.call("POST", f"/v1/rollouts/{rid}/start", {"reason": "test"})
        return rid, self.wait_end(rid)


class RestoreVerified(GateCase):
    FLEET = """apiVersion: wavesched/v1
kind: Fleet
clusters:
  - {name: shared-1, hosting: shared, region: eu, max_parallel: 4,
     deploy: {executor: webhook, url: "http://127.0.0.1:9/deploy"}}
tenants:
""" + "".join(tenant(s, "shared-1") for s in ("verified-a", "never-b", "old-c", "failed-d", "regressed-e"))

    POLICY = """apiVersion: wavesched/v1
kind: WavePolicy
metadata: {name: restore}
spec:
  release_kinds: [standard]
  defaults:
    gates:
      backup: {max_age: 24h, require_restore_verified: 7d}
      health: {interval: 30s, timeout: 5s, consecutive_successes: 1}
  waves:
    - {name: all, select: {}}
"""

    def backup(self, slug, restore_days_ago=None, result="ok"):
        now = self.clock()
        body = {"tenant": slug, "completed_at": rfc3339(now - 3600), "location": f"s3://b/{slug}",
                "size_bytes": 1024, "checksum": "sha256:" + "12" * 32}
        if restore_days_ago is not None:
            body.update(restore_verified_at=rfc3339(now - restore_days_ago * 86400),
                        restore_result=result, restore_duration=420)
        self.call("POST", "/v1/backups", body, token=self.admin)

    def test_only_a_recently_verified_restore_lets_a_tenant_through(self):
        def reports():
            self.backup("verified-a", restore_days_ago=2)
            self.backup("never-b")
            self.backup("old-c", restore_days_ago=9)
            self.backup("failed-d", restore_days_ago=1, result="failed")
            # restored fine three days ago, but yesterday's restore failed
            self.backup("regressed-e", restore_days_ago=3)
            self.backup("regressed-e", restore_days_ago=1, result="failed")
        rid, ro = self.play(self.POLICY, "restore", before_start=reports)
        self.assertEqual(ro["state"], "completed", ro)
        self.assertEqual(ro["waves"][0]["settings"]["backup"]["restore_max_age_s"], 7 * 86400)
        t = {x["slug"]: x for w in ro["waves"] for x in w["tenants"]}
        self.assertEqual({s: x["state"] for s, x in t.items()},
                         {"verified-a": "healthy", "never-b": "skipped", "old-c": "skipped",
                          "failed-d": "skipped", "regressed-e": "skipped"})
        sim = self.sim.tenants()
        self.assertEqual(sim["verified-a"]["version"], RELEASE)
        for s in ("never-b", "old-c", "failed-d", "regressed-e"):
            self.assertEqual(sim[s]["deploys"], 0, s)
        self.assertEqual(t["never-b"]["state_reason"],
                         "restore not verified: the tenant's latest restore verification is missing or "
                         "failed (require_restore_verified 7d)")
        self.assertEqual(t["failed-d"]["state_reason"], t["never-b"]["state_reason"])
        self.assertEqual(t["regressed-e"]["state_reason"], t["never-b"]["state_reason"])
        self.assertRegex(t["old-c"]["state_reason"],
                         r"^restore not verified: the latest verified restore is from "
                         r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(require_restore_verified 7d\)$")
        ok = [g for g in t["verified-a"]["gates"] if g["gate"] == "backup"][-1]
        self.assertEqual(ok["result"], "pass")
        self.assertEqual(ok["evidence"]["restore_max_age_s"], 7 * 86400)
        self.assertGreater(ok["evidence"]["restore_age_s"], 86400)
        self.assertLess(ok["evidence"]["restore_age_s"], 7 * 86400)
        bad = [g for g in t["never-b"]["gates"] if g["gate"] == "backup"][-1]
        self.assertEqual((bad["result"], bad["evidence"]["restore_verified_at"]), ("fail", None))
        # The evidence bundle carries the same gate results.
        ev = self.call("GET", f"/v1/rollouts/{rid}/evidence", token=self.admin)
        self.assertIn("restore not verified", str(ev))


    def test_stored_settings_are_checked(self):
        """0020: the gates' settings in another shape are refused when a
        rollout is created (ws__wave_settings_problem), after 0012's checks."""
        base = ('{"soak_s": 0, "max_parallel_per_cluster": 0, "backup": {"enabled": true, '
                '"max_age_s": 60%s}, "health": {"enabled": false, "interval_s": 30, "timeout_s": 5, '
                '"consecutive_successes": 3, "max_consecutive_failures": 3, "max_latency_ms": 2000, '
                '"latency_regression": 1.5}, "approval": {"min": 0, "roles": ["approver"]}, '
                '"failure": {"max_failed": 0, "action": "halt"}%s}')
        metric = '{"name": "%s", "query": "q", "for_s": 0, "max": 1}'
        cases = {
            ("", ""): "",
            (', "restore_max_age_s": 86400', ', "attestations": ["tests"], "metrics": [%s]' % (metric % "a")): "",
            (', "restore_max_age_s": 0', ""): "backup.restore_max_age_s must be a positive number",
            ("", ', "attestations": ["Tests"]'): "attestations must be an array of names",
            ("", ', "attestations": "tests"'): "attestations must be an array of names",
            ("", ', "metrics": [{"name": "a", "query": "q", "for_s": 0}]'):
                "metrics must be an array of {name, query, for_s, min and/or max}, names unique",
            ("", ', "metrics": [%s, %s]' % (metric % "a", metric % "a")):
                "metrics must be an array of {name, query, for_s, min and/or max}, names unique",
            # 0012's problems come first
            (', "source": "s3", "restore_max_age_s": 0', ""): 'backup.source must be "catalog" or "http"',
        }
        for (backup, gates), want in cases.items():
            got = self.db.sql("SELECT ws__wave_settings_problem('%s'::jsonb)" % (base % (backup, gates)))
            self.assertEqual(got.strip(), want, (backup, gates))


class StagingTiming(GateCase):
    # 20000x: a day in 4.3 s; a deploy converging in 400 ms takes 2h13m of
    # schedule time.
    SCALE = 20000
    CONVERGE_MS = 400
    FLEET = """apiVersion: wavesched/v1
kind: Fleet
clusters:
  - {name: staging, hosting: shared, region: eu, max_parallel: 2,
     deploy: {executor: webhook, url: "http://127.0.0.1:9/deploy"}}
  - {name: prod, hosting: dedicated, region: eu, max_parallel: 1,
     deploy: {executor: webhook, url: "http://127.0.0.1:9/deploy"}}
tenants:
""" + tenant("stage-a", "staging") + tenant("prod-x", "prod", """,
     windows: [{rrule: "FREQ=DAILY", start: "10:00", duration: 1h},
               {rrule: "FREQ=WEEKLY;BYDAY=SU", start: "01:00", duration: 5h}]""")

    POLICY = """apiVersion: wavesched/v1
kind: WavePolicy
metadata: {name: timing}
spec:
  release_kinds: [standard]
  schedule: {deploy_estimate: 15m}
  defaults:
    gates:
      health: {interval: 30s, timeout: 5s, consecutive_successes: 1}
  waves:
    - {name: staging, select: {clusters: [staging]}}
    - {name: production, select: {clusters: [prod]}}
"""

    def test_a_long_staging_deploy_moves_a_short_production_window(self):
        rid, ro = self.play(self.POLICY, "timing")
        self.assertEqual(ro["state"], "completed", ro)
        t = {x["slug"]: x for w in ro["waves"] for x in w["tenants"]}
        stage, prod = t["stage-a"], t["prod-x"]
        self.assertEqual((stage["state"], prod["state"]), ("healthy", "healthy"))
        took = (datetime.datetime.fromisoformat(stage["ended_at"].replace("Z", "+00:00")) -
                datetime.datetime.fromisoformat(stage["started_at"].replace("Z", "+00:00")))
        self.assertGreater(took.total_seconds(), 3600, stage)
        # The production tenant was moved off its 1h daily window, for the
        # staging measurement, to the Sunday 5h window.
        self.assertTrue(prod["moves"], prod)
        reason = prod["moves"][0]["reason"]
        self.assertRegex(reason, r"^window too short: it ends .*, the deployment needs \S+ "
                                 r"\(this release's deployments so far\)$")
        self.assertTrue(prod["reasons"] and any("this release's deployments so far" in r
                                                 for r in prod["reasons"]), prod)
        start = datetime.datetime.fromisoformat(prod["window_start"].replace("Z", "+00:00"))
        self.assertEqual((start.weekday(), start.hour), (6, 1), prod)   # Sunday 01:00
        # The view says what is expected and where it comes from.
        self.assertEqual(prod["expected"]["source"], "release", prod)
        # The release's p90 of its deploy calls: staging's and, by now, this
        # tenant's own (both about the same length).
        self.assertAlmostEqual(prod["expected"]["seconds"], took.total_seconds(),
                               delta=0.05 * took.total_seconds())
        self.assertIn("staging", prod["expected"]["detail"])
        # The text view shows it too.
        out = h.wavectl("rollout", "show", str(rid), token=self.admin, url=f"http://127.0.0.1:{self.svc.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("EXPECTS", out.stdout)
        self.assertRegex(out.stdout, r"prod-x .* \S+ \(release\)")


if __name__ == "__main__":
    h.main()
