"""Break-glass and its after-the-fact review (issue 6): an urgent rollout
under a policy that overrides soft blackouts needs a justification and a
change reference, both kept on record; it opens a review that someone other
than its creator closes with a comment; overdue reviews are listed, counted
in /metrics and carried in the evidence bundle.  Real service, real
PostgreSQL."""
import json
import os
import re
import time

import wsharness as h
from wsharness import SOURCE_ROOT, ServiceCase, example_fleet, main, wavectl

POLICIES = os.path.join(SOURCE_ROOT, "examples", "policies")
DIGEST = "sha256:" + "9a" * 32
BG = {"justification": "CVE-2026-4242 exploited against Odoo portals", "change_ref": "CHG-7781"}


def policy(name):
    with open(os.path.join(POLICIES, name)) as f:
        return f.read()


class Reviews(ServiceCase):

    @classmethod
    def setUpClass(cls):
        cls.db = h.Database()
        # A short review window so that "overdue" can be seen in a test.
        cls.svc = h.Service(cls.db.url, extra_env={"WAVESCHED_REVIEW_WINDOW": "2s"})
        cls.svc.wait_ready()
        cls.admin = cls.svc.token("admin", name="admin")
        svc = cls.svc
        r = svc.request("PUT", "/v1/fleet", token=cls.admin, body=example_fleet(),
                        headers={"Content-Type": "application/yaml"})
        assert r.status == 200, r
        for name in ("urgent-security.yaml", "standard.yaml"):
            r = svc.request("POST", "/v1/policies", token=cls.admin, body=policy(name),
                            headers={"Content-Type": "application/yaml"})
            assert r.status == 201, r
        cls.sec = svc.token("security", name="sec-alice")
        cls.sec2 = svc.token("security", name="sec-bob")
        cls.appr = svc.token("approver", name="appr")
        cls.plat = svc.token("platform", name="plat")
        cls.viewer = svc.token("viewer", name="viewer")
        cls.tenant = svc.token("tenant", "clinic-north", name="north")
        for version, kind in (("17.0.5-hotfix", "urgent"), ("17.0.4", "standard")):
            r = svc.request("POST", "/v1/releases", token=cls.admin,
                            body={"version": version, "digest": DIGEST, "kind": kind})
            assert r.status == 201, r

    def req(self, method, path, token, body=None):
        return self.svc.request(method, path, token=token, body=body)

    def create_urgent(self, **extra):
        return self.req("POST", "/v1/rollouts", self.sec,
                        {"release": "17.0.5-hotfix", "policy": "urgent-security",
                         "start": "2026-12-01T00:00:00Z", **extra})

    def abort(self, rid):
        self.req("POST", f"/v1/rollouts/{rid}/abort", self.admin, {"reason": "clean-up"})

    def tearDown(self):
        self.assertEqual(self.db.sql("SELECT ok FROM ws_audit_verify()"), "t")

    def test_break_glass_needs_justification_and_change_ref(self):
        r = self.create_urgent()
        self.assertEqual(r.status, 422, r)
        self.assertEqual([d["field"] for d in r.json["error"]["details"]], ["break_glass"])
        self.assertIn("give {\"justification\", \"change_ref\"}", r.json["error"]["details"][0]["message"])
        for bad in ({"justification": "short", "change_ref": "CHG-1"},
                    {"justification": BG["justification"]},
                    {"justification": BG["justification"], "change_ref": ""},
                    {"justification": BG["justification"], "change_ref": "C", "why": "x"},
                    "please"):
            r = self.create_urgent(break_glass=bad)
            self.assertEqual(r.status, 422, (bad, r))
            self.assertIn("break_glass", json.dumps(r.json["error"]))
        # A dry run only previews: no justification needed.
        r = self.req("POST", "/v1/rollouts?dry_run=1", self.sec,
                     {"release": "17.0.5-hotfix", "policy": "urgent-security", "start": "2026-12-01T00:00:00Z"})
        self.assertEqual(r.status, 200, r)
        # A policy that does not break glass refuses the fields.
        r = self.req("POST", "/v1/rollouts", self.plat,
                     {"release": "17.0.4", "policy": "standard-quarterly", "break_glass": BG})
        self.assertEqual(r.status, 422, r)
        self.assertIn("does not override blackouts", json.dumps(r.json))
        self.assertEqual(self.db.sql("SELECT count(*) FROM rollouts"), "0")
        self.assertEqual(self.db.sql("SELECT count(*) FROM reviews"), "0")

    def test_review_lifecycle(self):
        r = self.create_urgent(break_glass=BG)
        self.assertEqual(r.status, 201, r)
        rid = r.json["id"]
        self.addCleanup(self.abort, rid)
        self.assertEqual(r.json["break_glass"], BG)
        review = r.json["review"]
        self.assertEqual((review["rollout"], review["state"], review["created_by"], review["change_ref"]),
                         (rid, "open", "token:sec-alice", "CHG-7781"))
        # On record: the rollout row, the audit log, the events.
        self.assertEqual(json.loads(self.db.sql(f"SELECT break_glass FROM rollouts WHERE id = {rid}")), BG)
        details = json.loads(self.db.sql(f"SELECT details FROM audit_log WHERE object = 'rollout/{rid}'"
                                         " AND action = 'rollout.break_glass'"))
        self.assertEqual((details["justification"], details["change_ref"], details["review"]),
                         (BG["justification"], BG["change_ref"], review["id"]))
        # Listed as open, for the roles that read the fleet; tenants not.
        listed = self.req("GET", "/v1/reviews", self.viewer).json["reviews"]
        self.assertEqual([x["id"] for x in listed if x["rollout"] == rid], [review["id"]])
        self.assertEqual(self.req("GET", "/v1/reviews", self.tenant).status, 403)
        self.assertEqual(self.req("GET", "/v1/reviews?state=later", self.viewer).status, 400)
        path = f"/v1/reviews/{review['id']}/close"
        # The creator never closes its own review; viewers and tenants never close.
        r = self.req("POST", path, self.sec, {"comment": "looked at it"})
        self.assertEqual(r.status, 403, r)
        self.assertIn("separation of duties", r.json["error"]["message"])
        for tok in (self.viewer, self.tenant):
            self.assertEqual(self.req("POST", path, tok, {"comment": "x"}).status, 403)
        r = self.req("POST", path, self.sec2, {})
        self.assertEqual(r.status, 422, r)
        self.assertEqual([d["field"] for d in r.json["error"]["details"]], ["comment"])
        # Overdue after the (2 s) window: listed, counted.
        time.sleep(2.5)
        overdue = self.req("GET", "/v1/reviews?state=overdue", self.viewer).json["reviews"]
        self.assertIn((review["id"], "overdue", True), [(x["id"], x["state"], x["overdue"]) for x in overdue])
        n_overdue = self.db.sql("SELECT count(*) FROM reviews WHERE closed_at IS NULL AND now() > due_at")
        self.assertEqual(len(overdue), int(n_overdue))
        metrics = self.svc.request("GET", "/metrics").body.decode()
        self.assertRegex(metrics, rf'wavesched_reviews\{{state="overdue"\}} {n_overdue}\n')
        # The CLI lists it.
        url = f"http://127.0.0.1:{self.svc.port}"
        out = wavectl("review", "list", "--state", "overdue", token=self.appr, url=url)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, rf"{review['id']}\s+{rid}\s+overdue\s+.*CHG-7781")
        # Closed by someone else, late, once.
        out = wavectl("review", "close", str(review["id"]), "--comment", "patch verified; CAB informed",
                      token=self.sec2, url=url)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(f"review {review['id']} of rollout {rid} closed", out.stdout)
        r = self.req("POST", path, self.appr, {"comment": "again"})
        self.assertEqual(r.status, 409, r)
        self.assertIn("was closed by token:sec-bob", r.json["error"]["message"])
        closed = self.req("GET", "/v1/reviews?state=closed", self.viewer).json["reviews"]
        self.assertEqual([(x["closed_by"], x["comment"]) for x in closed if x["rollout"] == rid],
                         [("token:sec-bob", "patch verified; CAB informed")])
        self.assertNotIn(rid, [x["rollout"] for x in self.req("GET", "/v1/reviews", self.viewer).json["reviews"]])
        late = json.loads(self.db.sql(f"SELECT details FROM audit_log WHERE action = 'review.close'"
                                      f" AND object = 'rollout/{rid}/review/{review['id']}'"))
        self.assertTrue(late["late"])
        n_closed = self.db.sql("SELECT count(*) FROM reviews WHERE closed_at IS NOT NULL")
        self.assertRegex(self.svc.request("GET", "/metrics").body.decode(),
                         rf'wavesched_reviews\{{state="closed"\}} {n_closed}\n')
        # The evidence bundle carries the break-glass record and the review.
        bundle = self.req("GET", f"/v1/rollouts/{rid}/evidence", self.viewer).json
        self.assertEqual(bundle["break_glass"], BG)
        self.assertEqual((bundle["review"]["closed_by"], bundle["review"]["state"]), ("token:sec-bob", "closed"))
        # Reviews are changed once and never removed, even by hand.
        with self.assertRaisesRegex(RuntimeError, "closed once and never removed"):
            self.db.sql(f"UPDATE reviews SET comment = 'nothing' WHERE id = {review['id']}")
        with self.assertRaisesRegex(RuntimeError, "closed once and never removed"):
            self.db.sql(f"DELETE FROM reviews WHERE id = {review['id']}")
        self.assertEqual(self.req("POST", "/v1/reviews/999999/close", self.appr, {"comment": "x"}).status, 404)

    def test_cli_creates_a_break_glass_rollout(self):
        url = f"http://127.0.0.1:{self.svc.port}"
        out = wavectl("rollout", "create", "--release", "17.0.5-hotfix", "--policy", "urgent-security",
                      "--start", "2026-12-02T00:00:00Z", token=self.sec, url=url)
        self.assertEqual(out.returncode, 1)
        self.assertIn("break_glass", out.stderr)
        self.assertEqual(wavectl("rollout", "create", "--release", "17.0.5-hotfix", "--policy", "urgent-security",
                                 "--justification", "only one half", token=self.sec, url=url).returncode, 2)
        out = wavectl("rollout", "create", "--release", "17.0.5-hotfix", "--policy", "urgent-security",
                      "--start", "2026-12-02T00:00:00Z", "--justification", BG["justification"],
                      "--change-ref", "CHG-9", token=self.sec, url=url)
        self.assertEqual(out.returncode, 0, out.stderr)
        rid = int(re.search(r"rollout (\d+) created", out.stdout).group(1))
        self.addCleanup(self.abort, rid)
        self.assertEqual(self.db.sql(f"SELECT break_glass->>'change_ref' FROM rollouts WHERE id = {rid}"), "CHG-9")
        self.assertEqual(self.db.sql(f"SELECT count(*) FROM reviews WHERE rollout_id = {rid}"), "1")


if __name__ == "__main__":
    main()
