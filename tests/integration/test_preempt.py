"""Concurrent rollouts and preemption (issue 6): the example fleet on the
simulated fleet, a standard rollout mid-way when an urgent one comes.

The standard rollout (standard-quarterly) is in its second wave (staging,
deploying or soaking) when security creates and starts an urgent rollout
over the training, staging and shared tenants.  Then:
  * the standard rollout finishes that wave and goes `preempted` before its
    third one; the urgent rollout deploys nothing before that;
  * the urgent rollout completes, none of its deploys inside the hard
    month-end-close blackout of the high/critical tenants;
  * the standard rollout resumes on plan version 2 whose diff names the
    tenants now on the urgent release (left out: the standard release would
    undo the fix); its dedicated wave changed, so its approvals were
    withdrawn and it waits for approval again; approved, it completes;
  * no tenant was deployed by both rollouts at once, and no idempotency key
    was deployed twice.
"""
import datetime
import os
import tempfile
import time
import unittest
from zoneinfo import ZoneInfo

import yaml

import wsharness as h
from simfleet import SimFleet, fleet_for_sim

SCALE = 20000                  # a day in 4.3 s
RELEASE = "17.0.4"
URGENT = "17.0.5-sec"
DIGEST = "sha256:" + "ab" * 32
URGENT_DIGEST = "sha256:" + "cd" * 32
POLICIES = os.path.join(h.SOURCE_ROOT, "examples", "policies")
BG = {"justification": "CVE in the login path, exploited in the wild", "change_ref": "CHG-1"}
ACTIVE = ("deploying", "verifying", "soaking")


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def policy_text(name, **replace):
    with open(os.path.join(POLICIES, name)) as f:
        text = f.read()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def in_month_end_close(start, end):
    """Whether [start, end] touches month-end-close (examples/fleet.yaml: the
    last three days of a month and the first, America/Chicago)."""
    tz = ZoneInfo("America/Chicago")
    t = start
    while True:
        local = t.astimezone(tz)
        nxt = (local.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
        last = (nxt - datetime.timedelta(days=1)).day
        if local.day == 1 or local.day >= last - 2:
            return True
        if t >= end:
            return False
        t = min(end, t + datetime.timedelta(minutes=10))


class Preemption(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ws-preempt-")
        self.origin = int(time.time())
        self.db = h.Database()
        self.svc = h.Service(self.db.url, args=["--time-scale", str(SCALE), "--time-origin",
                                                rfc3339(self.origin)],
                             extra_env={"WAVESCHED_OUTBOUND_ALLOW": "127.0.0.0/8",
                                        "WAVESCHED_LEASE_TTL": "3s"})
        self.svc.wait_ready()
        self.admin = self.svc.token("admin", name="admin")
        self.platform = self.svc.token("platform", name="alice")
        self.security = self.svc.token("security", name="sec-alice")
        self.approvers = [self.svc.token("approver", name=n) for n in ("bob", "carol")]
        env = {"WS_BACKUP_TOKEN": self.svc.token("platform", name="backup-job")}
        # Backups every hour: the urgent policy wants them under 6 hours old.
        self.sim = SimFleet(self.tmp, fleet=h.example_fleet(), env=env, converge_ms=20,
                            service=f"http://127.0.0.1:{self.svc.port}", token_env="WS_BACKUP_TOKEN",
                            backup_interval="1h", time_scale=SCALE, time_origin=rfc3339(self.origin))
        self.sim.__enter__()
        fleet = fleet_for_sim(h.example_fleet(), self.sim.url, executor="webhook")
        self.fleet = yaml.safe_load(h.example_fleet())
        r = self.svc.request("PUT", "/v1/fleet", token=self.admin, body=fleet,
                             headers={"Content-Type": "application/yaml"})
        self.assertEqual(r.status, 200, r)
        # Staging soaks three days, so the test meets the standard rollout
        # mid-way with room to spare.
        standard = policy_text("standard.yaml", **{"soak: 24h": "soak: 72h"})
        # The urgent patch covers everything but the dedicated tenants.
        urgent = policy_text("urgent-security.yaml", **{
            "unmatched: error": "unmatched: skip",
            "    - name: dedicated\n      select: {hosting: dedicated}\n": ""})
        for text in (standard, urgent):
            r = self.svc.request("POST", "/v1/policies", token=self.platform, body=text,
                                 headers={"Content-Type": "application/yaml"})
            self.assertIn(r.status, (200, 201), r)
        r = self.svc.request("POST", "/v1/releases", token=self.platform,
                             body={"version": RELEASE, "digest": DIGEST, "kind": "standard"})
        self.assertIn(r.status, (200, 201), r)
        r = self.svc.request("POST", "/v1/releases", token=self.security,
                             body={"version": URGENT, "digest": URGENT_DIGEST, "kind": "urgent"})
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

    # helpers ----------------------------------------------------------------

    def now(self):
        return self.origin + (time.time() - self.origin) * SCALE

    def rollout(self, rid):
        r = self.svc.request("GET", f"/v1/rollouts/{rid}", token=self.admin)
        self.assertEqual(r.status, 200, r)
        return r.json

    def approve(self, rid, waves=None):
        for w in self.rollout(rid)["waves"]:
            if waves is None or w["index"] in waves:
                for tok in self.approvers:
                    self.svc.request("POST", f"/v1/rollouts/{rid}/approve", token=tok,
                                     body={"wave": w["index"], "comment": "ok"})

    def start(self, rid, token):
        r = self.svc.request("POST", f"/v1/rollouts/{rid}/start", token=token, body={"reason": "test"})
        self.assertEqual(r.status, 200, r)

    def wait(self, rid, pred, what, timeout=240):
        deadline = time.time() + timeout
        ro = None
        while time.time() < deadline:
            ro = self.rollout(rid)
            if pred(ro):
                return ro
            time.sleep(0.1)
        self.fail(f"rollout {rid}: {what} not reached after {timeout}s (state {ro and ro['state']}, "
                  f"{ro and ro.get('state_reason')}):\n{ro}\n{self.svc.log()[-4000:]}")

    def tenants(self, ro):
        return {t["slug"]: dict(t, wave=w["index"], wave_name=w["name"])
                for w in ro["waves"] for t in w["tenants"]}

    # the scenario --------------------------------------------------------------

    def test_urgent_preempts_at_the_wave_boundary_and_the_standard_resumes_replanned(self):
        r = self.svc.request("POST", "/v1/rollouts", token=self.platform,
                             body={"release": RELEASE, "policy": "standard-quarterly",
                                   "start": rfc3339(self.now() + 60)})
        self.assertIn(r.status, (200, 201), r)
        std = r.json["id"]
        self.approve(std)
        self.start(std, self.platform)
        self.wait(std, lambda ro: ro["waves"][1]["state"] in ACTIVE, "wave 2 under way")

        # An urgent rollout over tenants of the running one is allowed ...
        r = self.svc.request("POST", "/v1/rollouts", token=self.security,
                             body={"release": URGENT, "policy": "urgent-security",
                                   "start": rfc3339(self.now()), "break_glass": BG})
        self.assertIn(r.status, (200, 201), r)
        urg = r.json["id"]
        rows = self.db.sql(f"SELECT preempted_rollout || ':' || state_at_creation FROM preemptions"
                           f" WHERE urgent_rollout = {urg}").split()
        self.assertEqual(rows, [f"{std}:running"])
        # ... but not a second urgent one over the same tenants.
        r2 = self.svc.request("POST", "/v1/releases", token=self.security,
                              body={"version": URGENT + "b", "digest": URGENT_DIGEST, "kind": "urgent"})
        self.assertIn(r2.status, (200, 201), r2)
        r2 = self.svc.request("POST", "/v1/rollouts", token=self.security,
                              body={"release": URGENT + "b", "policy": "urgent-security",
                                    "start": rfc3339(self.now()), "break_glass": BG})
        self.assertEqual(r2.status, 409, r2)
        self.assertIn(f"rollout {urg}", r2.json["error"]["message"])

        self.approve(urg)
        self.start(urg, self.security)

        # The standard rollout finishes its wave, then stops at the boundary.
        ro = self.wait(std, lambda ro: ro["state"] != "running", "preemption")
        self.assertEqual(ro["state"], "preempted", ro)
        self.assertIn(f"preempted by urgent rollout {urg}", ro["state_reason"])
        states = [w["state"] for w in ro["waves"]]
        self.assertEqual(states[:2], ["passed", "passed"], states)
        self.assertEqual(set(states[2:]), {"pending"}, states)
        wave2_end = parse_time(ro["waves"][1]["ended_at"])
        self.assertEqual(self.db.sql(f"SELECT count(*) FROM preemptions WHERE preempted_rollout = {std}"
                                     " AND preempted_at IS NOT NULL"), "1")

        u = self.wait(urg, lambda ro: ro["state"] not in ("approved", "running"), "the urgent rollout's end")
        self.assertEqual(u["state"], "completed", u)
        # It started its first wave only once the standard wave had passed.
        self.assertGreaterEqual(parse_time(u["waves"][0]["started_at"]), wave2_end)
        crit = {t["slug"]: t.get("criticality", "standard") for t in self.fleet["tenants"]}
        ut = self.tenants(u)
        for slug, t in ut.items():
            self.assertEqual(t["state"], "healthy", t)
            if crit[slug] in ("high", "critical"):
                self.assertFalse(in_month_end_close(parse_time(t["started_at"]), parse_time(t["ended_at"])),
                                 f"{slug} deployed inside the hard blackout: {t}")
        dedicated = {t["slug"] for t in self.fleet["tenants"] if self.fleet_hosting(t) == "dedicated"}
        self.assertTrue(dedicated)
        self.assertFalse(dedicated & set(ut), ut.keys())

        # Resumed on plan version 2 with a diff.
        ro = self.wait(std, lambda ro: ro["plan_version"] == 2 and ro["state"] == "running", "the resume")
        self.assertIn(f"resumed after urgent rollout {urg} ended", ro["state_reason"])
        r = self.svc.request("GET", f"/v1/rollouts/{std}/plans", token=self.admin)
        self.assertEqual(r.status, 200, r)
        diff = r.json["plans"][1]["diff"]
        old = self.tenants(self.plan_rows(std, 1))
        on_urgent = sorted(s for s, t in old.items() if t["wave"] >= 3 and s in ut)
        self.assertTrue(on_urgent)
        self.assertEqual([x["slug"] for x in diff["on_urgent"]], on_urgent, diff)
        for x in diff["on_urgent"]:
            self.assertEqual((x["rollout"], x["release"]), (urg, URGENT), x)
        self.assertEqual(diff["kept_waves"], 2)
        self.assertEqual(diff["removed"], [])
        # The dedicated wave changed (index and windows): its two approvals
        # were withdrawn and it is decided again.
        self.assertIn("dedicated", {a["wave_name"] for a in diff["approvals_withdrawn"]}, diff)
        waves = ro["waves"]
        self.assertEqual([w["name"] for w in waves][:3], ["training", "staging", "dedicated"])
        self.assertEqual(waves[2]["approvals"], [])
        self.assertEqual(sorted(t["slug"] for w in waves[2:] for t in w["tenants"]),
                         sorted(s for s, t in old.items() if t["wave"] >= 3 and s not in ut))
        for slug in on_urgent:
            self.assertEqual(self.sim.tenants()[slug]["version"], URGENT, slug)
        time.sleep(1)
        self.assertEqual(self.rollout(std)["waves"][2]["state"], "pending")

        self.approve(std, waves=range(3, len(waves) + 1))
        ro = self.wait(std, lambda ro: ro["state"] not in ("running",), "the standard rollout's end")
        self.assertEqual(ro["state"], "completed", ro)
        sim = self.sim.tenants()
        for slug, t in self.tenants(ro).items():
            self.assertEqual(t["state"], "healthy", t)
            # the urgent rollout came after the standard one for tenants of passed waves
            self.assertEqual(sim[slug]["version"], URGENT if slug in ut else RELEASE, slug)
        for slug in on_urgent:
            self.assertEqual(sim[slug]["version"], URGENT, f"{slug} was downgraded")
        # Never one tenant in flight in both rollouts at once.
        st = self.tenants(ro)
        for slug in set(st) & set(ut):
            a, b = st[slug], ut[slug]
            self.assertTrue(parse_time(a["ended_at"]) <= parse_time(b["started_at"])
                            or parse_time(b["ended_at"]) <= parse_time(a["started_at"]), (a, b))

    def create_standard(self):
        r = self.svc.request("POST", "/v1/rollouts", token=self.platform,
                             body={"release": RELEASE, "policy": "standard-quarterly",
                                   "start": rfc3339(self.now() + 60)})
        self.assertIn(r.status, (200, 201), r)
        return r.json["id"]

    def create_urgent(self):
        r = self.svc.request("POST", "/v1/rollouts", token=self.security,
                             body={"release": URGENT, "policy": "urgent-security",
                                   "start": rfc3339(self.now()), "break_glass": BG})
        self.assertIn(r.status, (200, 201), r)
        return r.json["id"]

    def test_a_rollout_not_started_holds_and_is_replanned(self):
        std = self.create_standard()
        urg = self.create_urgent()
        self.assertEqual(self.db.sql(f"SELECT state_at_creation FROM preemptions WHERE urgent_rollout = {urg}"
                                     f" AND preempted_rollout = {std}"), "planned")
        # A standard rollout over the urgent one's tenants is refused.
        r = self.svc.request("POST", "/v1/rollouts", token=self.platform,
                             body={"release": RELEASE, "policy": "standard-quarterly",
                                   "start": rfc3339(self.now() + 60)})
        self.assertEqual(r.status, 409, r)
        self.assertIn("are already in rollout", r.json["error"]["message"])
        self.approve(std)
        self.start(std, self.platform)
        time.sleep(1.5)     # past its start in schedule time: held, not started
        self.assertEqual(self.rollout(std)["state"], "approved")
        self.approve(urg)
        self.start(urg, self.security)
        u = self.wait(urg, lambda ro: ro["state"] not in ("approved", "running"), "the urgent rollout's end")
        self.assertEqual(u["state"], "completed", u)
        ut = self.tenants(u)
        last_urgent = max(parse_time(t["ended_at"]) for t in ut.values())
        ro = self.wait(std, lambda ro: ro["plan_version"] == 2, "the re-plan")
        self.assertIn(f"re-planned after urgent rollout {urg} ended", ro["state_reason"])
        r = self.svc.request("GET", f"/v1/rollouts/{std}/plans", token=self.admin)
        diff = r.json["plans"][1]["diff"]
        self.assertEqual(diff["kept_waves"], 0)
        self.assertEqual(sorted(x["slug"] for x in diff["on_urgent"]), sorted(ut))
        planned = set(self.tenants(self.plan_rows(std, 1)))
        self.assertEqual(sorted(self.tenants(ro)), sorted(planned - set(ut)))
        self.assertTrue(self.dedicated() <= set(self.tenants(ro)))
        self.approve(std)
        ro = self.wait(std, lambda ro: ro["state"] not in ("approved", "running"), "the standard rollout's end")
        self.assertEqual(ro["state"], "completed", ro)
        sim = self.sim.tenants()
        for slug, t in self.tenants(ro).items():
            self.assertEqual(t["state"], "healthy", t)
            self.assertGreaterEqual(parse_time(t["started_at"]), last_urgent, t)
            self.assertEqual(sim[slug]["version"], RELEASE, slug)
        for slug in ut:
            self.assertEqual(sim[slug]["version"], URGENT, f"{slug} was downgraded")

    def test_one_tenant_is_never_in_flight_in_two_rollouts(self):
        std = self.create_standard()
        urg = self.create_urgent()
        slug = "training-a"
        self.db.sql(f"UPDATE deployments SET state = 'deploying' WHERE rollout_id = {urg} AND slug = '{slug}'")
        with self.assertRaises(RuntimeError) as cm:
            self.db.sql(f"UPDATE deployments SET state = 'deploying' WHERE rollout_id = {std} AND slug = '{slug}'")
        self.assertIn(f"tenant {slug} is deploying in rollout {urg}; rollout {std} may not act on it",
                      str(cm.exception))
        self.assertEqual(self.db.sql(f"SELECT state FROM deployments WHERE rollout_id = {std} AND slug = '{slug}'"),
                         "scheduled")

    def dedicated(self):
        return {t["slug"] for t in self.fleet["tenants"] if self.fleet_hosting(t) == "dedicated"}

    def fleet_hosting(self, t):
        cluster = next(c for c in self.fleet["clusters"] if c["name"] == t["cluster"])
        return cluster.get("hosting", "shared")

    def plan_rows(self, rid, version):
        r = self.svc.request("GET", f"/v1/rollouts/{rid}/plan?version={version}", token=self.admin)
        self.assertEqual(r.status, 200, r)
        return {"waves": [dict(w, tenants=w["tenants"]) for w in r.json["waves"]]}


if __name__ == "__main__":
    h.main()
