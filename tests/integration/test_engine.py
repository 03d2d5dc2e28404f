"""The engine end to end (issue 4): the example fleet played on the simulated
fleet, a real PostgreSQL, and `wavesched serve --time-scale`.

Each test gets its own database, service and simulator.  The service and the
simulator share one schedule clock (--time-scale, --time-origin), so backups
the simulator reports are as old as the engine thinks they are.  Every test
ends by checking that no tenant was deployed twice for one idempotency key.
"""
import datetime
import os
import tempfile
import time
import unittest

import wsharness as h
from simfleet import SimFleet, fleet_for_sim

SCALE = 20000                 # 20,000 x: a day in 4.3 s
RELEASE = "17.0.4"
DIGEST = "sha256:" + "ab" * 32
POLICIES = os.path.join(h.SOURCE_ROOT, "examples", "policies")


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Clock:
    """The schedule clock of the service: origin + (wall - origin) x scale."""

    def __init__(self, scale):
        self.scale = scale
        self.origin = int(time.time())

    def now(self):
        return self.origin + (time.time() - self.origin) * self.scale

    def args(self):
        return ["--time-scale", str(self.scale), "--time-origin", rfc3339(self.origin)]


def policy_text(name, **replace):
    with open(os.path.join(POLICIES, name)) as f:
        text = f.read()
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


class EngineCase(unittest.TestCase):
    scale = SCALE
    faults = None
    policy = "standard.yaml"
    policy_changes = {}

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ws-engine-")
        self.clock = Clock(self.scale)
        self.db = h.Database()
        self.svc = h.Service(self.db.url, args=["--time-scale", str(self.scale), "--time-origin",
                                                rfc3339(self.clock.origin)],
                             extra_env={"WAVESCHED_OUTBOUND_ALLOW": "127.0.0.0/8",
                                        "WAVESCHED_LEASE_TTL": "3s"})
        self.svc.wait_ready()
        self.admin = self.svc.token("admin", name="admin")
        self.platform = self.svc.token("platform", name="alice")
        self.approvers = [self.svc.token("approver", name=n) for n in ("bob", "carol")]
        backup_token = self.svc.token("platform", name="backup-job")
        env = {"WS_BACKUP_TOKEN": backup_token}
        self.sim = SimFleet(self.tmp, fleet=h.example_fleet(), scenario=self.faults, env=env,
                            converge_ms=20, service=f"http://127.0.0.1:{self.svc.port}",
                            token_env="WS_BACKUP_TOKEN", backup_interval="6h",
                            time_scale=self.scale, time_origin=rfc3339(self.clock.origin))
        self.sim.__enter__()
        fleet = fleet_for_sim(h.example_fleet(), self.sim.url, executor="webhook")
        r = self.svc.request("PUT", "/v1/fleet", token=self.admin, body=fleet,
                             headers={"Content-Type": "application/yaml"})
        self.assertEqual(r.status, 200, r)
        r = self.svc.request("POST", "/v1/policies", token=self.platform,
                             body=policy_text(self.policy, **self.policy_changes),
                             headers={"Content-Type": "application/yaml"})
        self.assertIn(r.status, (200, 201), r)
        self.policy_name = r.json.get("name") or r.json["policy"]["name"]
        r = self.svc.request("POST", "/v1/releases", token=self.platform,
                             body={"version": RELEASE, "digest": DIGEST, "kind": "standard"})
        self.assertIn(r.status, (200, 201), r)
        self.assertEqual(self.sim.report_backups()["failed"], 0)

    def tearDown(self):
        try:
            calls = self.sim.calls()
            twice = {k: n for k, n in calls["deploys"].items() if n > 1}
            self.assertEqual(twice, {}, "deployed twice for one idempotency key")
        finally:
            self.sim.__exit__(None, None, None)
            self.svc.stop()
            self.db.drop()

    # helpers -------------------------------------------------------------

    def create_rollout(self, start_in=60):
        r = self.svc.request("POST", "/v1/rollouts", token=self.platform,
                             body={"release": RELEASE, "policy": self.policy_name,
                                   "start": rfc3339(self.clock.now() + start_in)})
        self.assertIn(r.status, (200, 201), r)
        body = r.json
        return body.get("id") or body["rollout"]["id"]

    def rollout(self, rid):
        r = self.svc.request("GET", f"/v1/rollouts/{rid}", token=self.admin)
        self.assertEqual(r.status, 200, r)
        return r.json

    def approve_all(self, rid):
        for w in self.rollout(rid)["waves"]:
            need = w.get("approvals_required", 0)
            for tok in self.approvers[:2] if need or True else []:
                self.svc.request("POST", f"/v1/rollouts/{rid}/approve", token=tok,
                                 body={"wave": w["index"], "comment": "ok"})

    def start(self, rid):
        r = self.svc.request("POST", f"/v1/rollouts/{rid}/start", token=self.platform,
                             body={"reason": "test"})
        self.assertEqual(r.status, 200, r)

    def wait_state(self, rid, states, timeout=240):
        deadline = time.time() + timeout
        ro = None
        while time.time() < deadline:
            ro = self.rollout(rid)
            if ro["state"] in states:
                return ro
            time.sleep(0.2)
        self.fail(f"rollout {rid} still {ro and ro['state']} after {timeout}s:\n{ro}\n"
                  f"{self.svc.log()[-4000:]}")

    def tenants(self, ro):
        return {t["slug"]: t for w in ro["waves"] for t in w["tenants"]}


class StandardRollout(EngineCase):
    def test_example_fleet_completes_in_the_planned_order(self):
        rid = self.create_rollout()
        self.approve_all(rid)
        self.start(rid)
        ro = self.wait_state(rid, ("completed", "halted", "aborted"))
        self.assertEqual(ro["state"], "completed", ro)
        states = {s: t["state"] for s, t in self.tenants(ro).items()}
        self.assertTrue(all(s == "healthy" for s in states.values()), states)
        versions = {s: t["version"] for s, t in self.sim.tenants().items()}
        for slug in states:
            self.assertEqual(versions[slug], RELEASE, slug)
        # Waves in sequence: each passed before the next one deployed.
        waves = ro["waves"]
        for a, b in zip(waves, waves[1:]):
            self.assertEqual(a["state"], "passed")
        calls = self.sim.calls()
        self.assertEqual(len(calls["deploys"]), len(states))
        # The service records what runs now (0019): the tenant views and
        # the export say 17.0.4, and the next rollout takes it as the
        # version to come back to.
        listed = self.svc.request("GET", "/v1/tenants", token=self.admin).json["tenants"]
        self.assertEqual({t["slug"]: t["version"] for t in listed if t["slug"] in states},
                         {s: RELEASE for s in states})
        self.assertEqual([t["version"] for t in listed if t["slug"] == "legacy-archive"], ["16.0.9"])  # frozen
        export = self.svc.request("GET", "/v1/fleet?format=json", token=self.admin).json
        self.assertEqual({t["slug"]: t["version"] for t in export["tenants"] if t["slug"] in states},
                         {s: RELEASE for s in states})
        r = self.svc.request("POST", "/v1/releases", token=self.platform,
                             body={"version": "17.0.5", "digest": DIGEST, "kind": "standard"})
        self.assertEqual(r.status, 201, r)
        r = self.svc.request("POST", "/v1/rollouts", token=self.platform,
                             body={"release": "17.0.5", "policy": self.policy_name,
                                   "start": rfc3339(self.clock.now() + 86400)})
        self.assertEqual(r.status, 201, r)
        prev = self.db.sql(f"SELECT DISTINCT previous_version FROM deployments WHERE rollout_id = {r.json['id']}")
        self.assertEqual(prev, RELEASE)


# The standard policy lets one tenant of shared-low-risk fail: two do.
TWO_UNHEALTHY = {"tenants": {"clinic-north": {"unhealthy_after_version": RELEASE},
                             "clinic-south": {"unhealthy_after_version": RELEASE}}}


class UnhealthyTenantHalts(EngineCase):
    faults = TWO_UNHEALTHY

    def test_halts_in_its_wave(self):
        rid = self.create_rollout()
        self.approve_all(rid)
        self.start(rid)
        ro = self.wait_state(rid, ("completed", "halted", "rolled_back", "aborted"))
        self.assertEqual(ro["state"], "halted", ro)
        t = self.tenants(ro)
        self.assertEqual(t["clinic-north"]["state"], "failed")
        self.assertEqual(t["clinic-south"]["state"], "failed")
        self.assertIn("2 tenants failed, the budget allows 1", ro["state_reason"])
        # Nothing of later waves was deployed.
        for slug in ("integration-hub", "hq-finance", "payroll-hr"):
            self.assertIn(t[slug]["state"], ("scheduled", "skipped"), slug)
            self.assertEqual(self.sim.tenants()[slug]["version"], "17.0.3", slug)


class UnhealthyTenantRollsBack(EngineCase):
    faults = TWO_UNHEALTHY
    # shared-low-risk (wave 3) rolls back instead of halting.
    policy_changes = {"failure: {max_failed: 1, action: halt}":
                      "failure: {max_failed: 1, action: rollback_wave}"}

    def test_rolls_the_wave_back(self):
        rid = self.create_rollout()
        self.approve_all(rid)
        self.start(rid)
        ro = self.wait_state(rid, ("completed", "rolled_back", "aborted"))
        self.assertEqual(ro["state"], "rolled_back", ro)
        t = self.tenants(ro)
        sim = self.sim.tenants()
        for slug, x in t.items():
            if x["state"] == "rolled_back":
                self.assertEqual(sim[slug]["version"], sim[slug]["initial_version"], slug)
        self.assertEqual(t["clinic-north"]["state"], "rolled_back")
        self.assertEqual(t["clinic-south"]["state"], "rolled_back")
        # Later waves never started.
        self.assertEqual(t["integration-hub"]["state"], "scheduled")
        self.assertEqual(ro["state_reason"], "the wave was rolled back")
        # The recorded versions follow: back to 17.0.3 where rolled back,
        # 17.0.4 where healthy, untouched where never deployed.
        listed = {x["slug"]: x["version"] for x in
                  self.svc.request("GET", "/v1/tenants", token=self.admin).json["tenants"]}
        for slug, x in t.items():
            want = {"rolled_back": "17.0.3", "healthy": RELEASE, "scheduled": "17.0.3"}.get(x["state"])
            if want:
                self.assertEqual(listed[slug], want, (slug, x["state"]))


class StaleBackupNeverDeployed(EngineCase):
    faults = {"tenants": {"clinic-east": {"backup": "stale", "backup_age": "72h"}}}

    def test_stale_backup_means_no_deploy(self):
        rid = self.create_rollout()
        self.approve_all(rid)
        self.start(rid)
        ro = self.wait_state(rid, ("completed", "halted", "aborted"))
        t = self.tenants(ro)
        self.assertEqual(t["clinic-east"]["state"], "skipped", t["clinic-east"])
        self.assertEqual(self.sim.tenants()["clinic-east"]["deploys"], 0)
        self.assertNotIn("clinic-east", self.sim.calls()["by_tenant"])


class PauseResumeAbort(EngineCase):
    def test_pause_resume_abort(self):
        rid = self.create_rollout()
        self.approve_all(rid)
        self.start(rid)
        self.wait_state(rid, ("running",), timeout=30)
        r = self.svc.request("POST", f"/v1/rollouts/{rid}/pause", token=self.platform,
                             body={"reason": "look"})
        self.assertEqual(r.status, 200, r)
        ro = self.rollout(rid)
        self.assertEqual(ro["state"], "paused")
        # No deploy is decided while paused.  (One decided just before the
        # pause is still sent after it, so the count to hold still is the
        # decisions, the outbox rows, not the calls the fleet saw.)
        decided = f"SELECT count(*) FROM outbox WHERE rollout_id = {rid}"
        before = self.db.sql(decided).strip()
        time.sleep(2)   # ~11 hours of schedule time
        self.assertEqual(self.db.sql(decided).strip(), before, "deploy decided while paused")
        keys = set(self.db.sql(f"SELECT idempotency_key FROM outbox WHERE rollout_id = {rid}")
                   .split())
        sent = set(self.sim.calls()["deploys"])
        self.assertLessEqual(sent, keys, "deploy calls with no decision")
        r = self.svc.request("POST", f"/v1/rollouts/{rid}/resume", token=self.platform,
                             body={"reason": "go"})
        self.assertEqual(r.status, 200, r)
        r = self.svc.request("POST", f"/v1/rollouts/{rid}/abort", token=self.platform,
                             body={"reason": "enough"})
        self.assertEqual(r.status, 200, r)
        ro = self.wait_state(rid, ("aborted",), timeout=30)
        deadline = time.time() + 20
        while time.time() < deadline:
            t = self.tenants(self.rollout(rid))
            if not any(x["state"] in ("scheduled", "waiting_window") for x in t.values()):
                break
            time.sleep(0.2)
        self.assertFalse([s for s, x in t.items() if x["state"] in ("scheduled", "waiting_window")])


class PlatformPatchByCluster(EngineCase):
    """The mission's shared platform patch: examples/policies/platform-patch.yaml
    (unit: cluster) pushes whole clusters in segmented waves, in the
    clusters' own windows; cluster dependencies come from tenant
    dependencies (labs-shared-services on shared-us-2 depends on hq-finance
    on dedicated-hq, so shared-us-2 goes after the dedicated clusters)."""
    policy = "platform-patch.yaml"

    def test_clusters_move_together_in_dependency_order(self):
        rid = self.create_rollout()
        self.approve_all(rid)
        self.start(rid)
        ro = self.wait_state(rid, ("completed", "halted", "rolled_back", "aborted"), timeout=400)
        self.assertEqual(ro["state"], "completed", ro.get("state_reason"))
        cluster = {t["slug"]: t["cluster"] for t in
                   self.svc.request("GET", "/v1/tenants", token=self.admin).json["tenants"]}
        wave_of = {t["slug"]: w["name"] for w in ro["waves"] for t in w["tenants"]}
        # Every candidate tenant of a cluster is in its cluster's wave.
        by_cluster = {}
        for slug, wave in wave_of.items():
            by_cluster.setdefault(cluster[slug], set()).add(wave)
        self.assertTrue(all(len(w) == 1 for w in by_cluster.values()), by_cluster)
        self.assertEqual(by_cluster["dedicated-hq"], {"dedicated-clusters"})
        self.assertEqual(by_cluster["shared-us-2"], {"overflow-1"})
        # Segmented: a wave's deploys start only after the previous wave's
        # tenants are all healthy; shared-us-2 after dedicated-hq.
        t = self.tenants(ro)
        def started(c):
            return [t[s]["started_at"] for s in wave_of if cluster[s] == c]
        def ended(c):
            return [t[s]["ended_at"] for s in wave_of if cluster[s] == c]
        self.assertGreater(min(started("shared-us-2")), max(ended("dedicated-hq")))
        self.assertGreater(min(started("dedicated-hq")), max(ended("shared-us-1")))
        self.assertTrue(all(x["state"] == "healthy" for x in t.values()), t)
        self.assertNotIn("legacy-archive", wave_of)            # frozen: never a candidate
        versions = {s: x["version"] for s, x in self.sim.tenants().items()}
        self.assertEqual({s: versions[s] for s in wave_of}, {s: RELEASE for s in wave_of})


if __name__ == "__main__":
    h.main()
