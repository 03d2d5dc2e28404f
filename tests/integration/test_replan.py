"""Re-planning a planned rollout: a new plan version with a diff, never an
edit (engine.md).  The real service against a real PostgreSQL: the fleet
changes after the rollout was created, the rollout is re-planned, and the
stored versions, the diff, the rebuilt rows, the withdrawn approvals, the
moves, the audit row and the refusals are checked.
"""
import json
import os
import tempfile

from wsharness import SOURCE_ROOT, ServiceCase, example_fleet, main, wavectl

POLICIES = os.path.join(SOURCE_ROOT, "examples", "policies")
START = "2026-12-01T00:00:00Z"
DIGEST = "sha256:" + "cd" * 32


def policy_text(fname):
    with open(os.path.join(POLICIES, fname)) as f:
        return f.read()


def changed_fleet():
    """The example fleet a week later: clinic-north left, clinic-central
    arrived, clinic-south became high criticality (so it changes wave),
    clinic-west's window moved from Friday to Thursday."""
    text = example_fleet()
    start = text.index("  - slug: clinic-north")
    end = text.index("  - slug: clinic-south")
    north = text[start:end]
    central = (north.replace("clinic-north", "clinic-central")
                    .replace("North Clinic Group", "Central Clinic Group"))
    text = text[:start] + central + text[end:]
    south = text.index("  - slug: clinic-south")
    text = text[:south] + text[south:].replace("criticality: standard", "criticality: high", 1)
    west = text.index("  - slug: clinic-west")
    text = text[:west] + text[west:].replace("BYDAY=FR", "BYDAY=TH", 1)
    for must in ("clinic-central", "BYDAY=TH"):
        assert must in text
    assert "slug: clinic-north\n" not in text
    return text


TRAINING_ONLY = """apiVersion: wavesched/v1
kind: WavePolicy
metadata: {name: training-only}
spec:
  release_kinds: [standard]
  unmatched: skip
  schedule: {respect_windows: false, slot: 30m}
  waves:
    - name: training
      select: {labels: {env: training}}
"""


class Replan(ServiceCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        svc = cls.svc
        cls.put_fleet(example_fleet())
        for text in (policy_text("standard.yaml"), TRAINING_ONLY):
            r = svc.request("POST", "/v1/policies", token=cls.admin, body=text,
                            headers={"Content-Type": "application/yaml"})
            assert r.status in (200, 201), r
        cls.plat = svc.token("platform", name="plat")
        cls.appr = svc.token("approver", name="appr")
        cls.appr2 = svc.token("approver", name="appr2")
        cls.north = svc.token("tenant", "clinic-west", name="west")
        r = svc.request("POST", "/v1/releases", token=cls.admin,
                        body={"version": "17.0.4", "digest": DIGEST})
        assert r.status == 201, r

    @classmethod
    def put_fleet(cls, text):
        r = cls.svc.request("PUT", "/v1/fleet", token=cls.admin, body=text,
                            headers={"Content-Type": "application/yaml"})
        assert r.status == 200, r

    def req(self, method, path, token, body=None):
        return self.svc.request(method, path, token=token, body=body)

    def create(self, policy="standard-quarterly"):
        r = self.req("POST", "/v1/rollouts", self.plat,
                     {"release": "17.0.4", "policy": policy, "start": START})
        self.assertEqual(r.status, 201, r)
        rid = r.json["id"]
        self.addCleanup(self.req, "POST", f"/v1/rollouts/{rid}/abort", self.admin, {"reason": "clean-up"})
        return rid, r.json["plan"]

    def wave_of(self, plan, name):
        return next(w["index"] for w in plan["waves"] if w["name"] == name)

    def tearDown(self):
        self.assertEqual(self.db.sql("SELECT ok FROM ws_audit_verify()"), "t")

    def test_replan_after_a_fleet_change(self):
        self.addCleanup(self.put_fleet, example_fleet())
        rid, plan1 = self.create()
        high, dedicated = self.wave_of(plan1, "shared-high"), self.wave_of(plan1, "dedicated")
        for tok, wave in ((self.appr, high), (self.appr, dedicated), (self.appr2, dedicated)):
            r = self.req("POST", f"/v1/rollouts/{rid}/approve", tok, {"wave": wave, "comment": "ok"})
            self.assertEqual(r.status, 200, r)
        v1 = self.req("GET", f"/v1/rollouts/{rid}/plan", self.plat)
        before = {t["slug"]: (w["name"], t["window_start"]) for w in plan1["waves"] for t in w["tenants"]}

        self.put_fleet(changed_fleet())
        r = self.req("POST", f"/v1/rollouts/{rid}/replan", self.plat, {"reason": "fleet changed: north left"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["plan_version"], 2)
        diff = r.json["diff"]
        self.assertEqual((diff["from_version"], diff["to_version"], diff["reason"]),
                         (1, 2, "fleet changed: north left"))
        self.assertEqual([x["slug"] for x in diff["added"]], ["clinic-central"])
        self.assertEqual([x["slug"] for x in diff["removed"]], ["clinic-north"])
        moved = {x["slug"]: x for x in diff["moved"]}
        self.assertIn("clinic-south", moved)
        self.assertEqual((moved["clinic-south"]["from"]["wave_name"], moved["clinic-south"]["to"]["wave_name"]),
                         ("shared-low-risk", "shared-high"))
        self.assertIn("clinic-west", moved)
        self.assertEqual(moved["clinic-west"]["from"]["wave_name"], moved["clinic-west"]["to"]["wave_name"])
        self.assertNotEqual(moved["clinic-west"]["from"]["window_start"], moved["clinic-west"]["to"]["window_start"])
        # Every tenant of version 1 is accounted for exactly once.
        kept = set(before) - {"clinic-north"} - set(moved)
        self.assertEqual(diff["unchanged"], len(kept))
        # shared-high gained a tenant: its approval is withdrawn; dedicated is
        # the same wave and keeps both.
        self.assertEqual([(x["wave_name"], x["actor"], x["decision"]) for x in diff["approvals_withdrawn"]],
                         [("shared-high", "token:appr", "approve")])

        # The new plan is the plan a dry run makes now, byte for byte.
        dry = self.req("POST", "/v1/rollouts?dry_run=1", self.plat,
                       {"release": "17.0.4", "policy": "standard-quarterly", "start": START})
        v2 = self.req("GET", f"/v1/rollouts/{rid}/plan", self.plat)
        self.assertEqual(v2.body, dry.body)
        self.assertEqual(v2.headers["x-plan-version"], "2")
        # Version 1 is still there, unchanged.
        old = self.req("GET", f"/v1/rollouts/{rid}/plan?version=1", self.plat)
        self.assertEqual(old.body, v1.body)

        doc = self.req("GET", f"/v1/rollouts/{rid}", self.plat).json
        self.assertEqual(doc["plan_version"], 2)
        waves = {w["name"]: w for w in doc["waves"]}
        self.assertEqual(waves["shared-high"]["approvals"], [])
        self.assertEqual(sorted(a["actor"] for a in waves["dedicated"]["approvals"]), ["token:appr", "token:appr2"])
        slugs = {t["slug"] for w in doc["waves"] for t in w["tenants"]}
        self.assertIn("clinic-central", slugs)
        self.assertNotIn("clinic-north", slugs)

        plans = self.req("GET", f"/v1/rollouts/{rid}/plans", self.plat).json
        self.assertEqual([p["version"] for p in plans["plans"]], [1, 2])
        self.assertIsNone(plans["plans"][0]["diff"])
        self.assertEqual(plans["plans"][1]["diff"], diff)
        self.assertEqual([(a["actor"], a["wave_name"], a["plan_version"]) for a in plans["approvals_withdrawn"]],
                         [("token:appr", "shared-high", 1)])

        # The moved window is a recorded move; an unchanged one has none.
        moves = json.loads(self.db.sql(
            f"SELECT moves FROM deployments WHERE rollout_id = {rid} AND slug = 'clinic-west'"))
        self.assertEqual(len(moves), 1)
        self.assertIn("re-planned (plan version 2): fleet changed", moves[0]["reason"])
        self.assertEqual(moves[0]["to_start"], moved["clinic-west"]["to"]["window_start"])
        self.assertEqual(self.db.sql(
            f"SELECT moves FROM deployments WHERE rollout_id = {rid} AND slug = 'hq-finance'"), "[]")

        audit = self.db.sql(f"SELECT actor || ' ' || (details->>'to_version') || ' ' || (details->>'moved')"
                            f" FROM audit_log WHERE object = 'rollout/{rid}' AND action = 'rollout.replan'")
        self.assertEqual(audit, f"token:plat 2 {len(moved)}")
        events = self.db.sql(f"SELECT kind || ':' || COALESCE(tenant, '') FROM events WHERE rollout_id = {rid}"
                             " AND kind IN ('rollout.replanned', 'deployment.cancelled') ORDER BY id").splitlines()
        self.assertEqual(events, ["rollout.replanned:", "deployment.cancelled:clinic-north"])

        # Approving shared-high again works; the withdrawn decision stays on record.
        r = self.req("POST", f"/v1/rollouts/{rid}/approve", self.appr, {"wave": high, "comment": "again"})
        self.assertEqual(r.status, 200, r)

        # A second re-plan with nothing changed: version 3, an empty diff,
        # every approval kept.
        r = self.req("POST", f"/v1/rollouts/{rid}/replan", self.plat, {"reason": "no change"})
        self.assertEqual(r.status, 200, r)
        d3 = r.json["diff"]
        self.assertEqual((d3["added"], d3["removed"], d3["moved"], d3["approvals_withdrawn"]), ([], [], [], []))
        self.assertEqual(d3["unchanged"], len(slugs))

        # The evidence bundle carries every plan version with its diff and
        # the withdrawn approval, and verifies offline.
        bundle = self.req("GET", f"/v1/rollouts/{rid}/evidence", self.plat)
        self.assertEqual(bundle.status, 200, bundle)
        doc = bundle.json
        self.assertEqual([p["version"] for p in doc["plans"]], [1, 2, 3])
        self.assertEqual(doc["plans"][1]["diff"], diff)
        self.assertEqual([(a["actor"], a["wave_name"]) for a in doc["approvals_withdrawn"]],
                         [("token:appr", "shared-high")])
        with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
            f.write(bundle.body)
        self.addCleanup(os.unlink, f.name)
        r = wavectl("evidence", "verify", f.name)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_a_tenant_left_out_keeps_a_cancelled_window(self):
        self.addCleanup(self.put_fleet, example_fleet())
        rid, _ = self.create("training-only")
        trainer = self.svc.token("tenant", "training-a", name="trainer")
        before = self.req("GET", "/v1/tenants/training-a/windows", trainer).json["windows"]
        mine = [w for w in before if w["rollout"] == rid]
        self.assertEqual([(w["status"], w["sequence"]) for w in mine], [("TENTATIVE", 0)])
        # training-a is retired from training: still in the fleet, no longer
        # in the policy's waves.
        text = example_fleet()
        at = text.index("  - slug: training-a")
        self.put_fleet(text[:at] + text[at:].replace("env: training", "env: retired", 1))
        r = self.req("POST", f"/v1/rollouts/{rid}/replan", self.plat, {"reason": "training-a retired"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual([x["slug"] for x in r.json["diff"]["removed"]], ["training-a"])
        after = [w for w in self.req("GET", "/v1/tenants/training-a/windows", trainer).json["windows"]
                 if w["rollout"] == rid]
        self.assertEqual(len(after), 1)
        w = after[0]
        self.assertEqual((w["state"], w["status"], w["cancelled"], w["sequence"]), ("withdrawn", "CANCELLED", True, 2))
        self.assertEqual(w["cancel_reason"], "withdrawn by re-plan (plan version 2): training-a retired")
        self.assertEqual(w["window_start"], mine[0]["window_start"])
        ics = self.svc.request("GET", "/v1/tenants/training-a/windows.ics", token=trainer).body.decode()
        self.assertIn(f"UID:rollout-{rid}-tenant-training-a@wavesched", ics.replace("\r\n ", ""))
        self.assertIn("STATUS:CANCELLED", ics)
        # training-b stays, unchanged, not cancelled.
        b = [w for w in self.req("GET", "/v1/tenants/training-b/windows", self.admin).json["windows"]
             if w["rollout"] == rid]
        self.assertEqual([x["status"] for x in b], ["TENTATIVE"])

    def test_refusals(self):
        rid, _ = self.create()
        path = f"/v1/rollouts/{rid}/replan"
        r = self.req("POST", path, self.plat, {})
        self.assertEqual(r.status, 422, r)
        self.assertIn("reason", json.dumps(r.json["error"]["details"]))
        r = self.req("POST", path, self.plat, {"reason": "x", "start": "tomorrow", "colour": "red"})
        self.assertEqual(r.status, 422, r)
        fields = [d["field"] for d in r.json["error"]["details"]]
        self.assertIn("start", fields)
        self.assertIn("colour", fields)
        r = self.req("POST", path, self.plat, {"reason": "x", "policy_version": 99})
        self.assertEqual(r.status, 422, r)
        self.assertIn("no such version", json.dumps(r.json))
        self.assertEqual(self.req("POST", path, self.north, {"reason": "x"}).status, 403)
        self.assertEqual(self.req("POST", "/v1/rollouts/999999/replan", self.plat, {"reason": "x"}).status, 404)
        self.assertEqual(self.req("GET", "/v1/rollouts/999999/plans", self.plat).status, 404)
        # Nothing was stored by the refusals.
        self.assertEqual(self.db.sql(f"SELECT count(*) FROM rollout_plans WHERE rollout_id = {rid}"), "1")
        # Once started, a rollout is not re-planned here.
        r = self.req("POST", f"/v1/rollouts/{rid}/start", self.plat, {"reason": "go"})
        self.assertEqual(r.status, 200, r)
        r = self.req("POST", path, self.plat, {"reason": "x"})
        self.assertEqual(r.status, 409, r)
        self.assertIn("only a planned rollout is re-planned", r.json["error"]["message"])

    def test_cli(self):
        rid, _ = self.create()
        env = {"url": f"http://127.0.0.1:{self.svc.port}", "token": self.plat}
        r = wavectl("rollout", "replan", str(rid), "--reason", "cli check", **env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"rollout {rid}: plan version 1 -> 2 (cli check)", r.stdout)
        self.assertRegex(r.stdout, r"unchanged: \d+ tenant")
        r = wavectl("rollout", "replan", str(rid), "--reason", "json", "--format", "json", **env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["plan_version"], 3)
        self.assertEqual(wavectl("rollout", "replan", str(rid), **env).returncode, 2)   # no --reason
        r = wavectl("rollout", "replan", "999999", "--reason", "x", **env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("wavectl: ", r.stderr)


if __name__ == "__main__":
    main()
