"""Releases, backup reports and rollouts as people drive them through the API
and wavectl: the real service against a real PostgreSQL, tokens of every
role, and the rows the engine will read checked in the database.

Every rollout a test creates is aborted in its clean-up, so the tenants are
free again for the next test (a tenant can be in one active rollout only).
"""
import json
import os
import threading

from wsharness import SOURCE_ROOT, ServiceCase, example_fleet, main, wavectl

POLICIES = os.path.join(SOURCE_ROOT, "examples", "policies")
START = "2026-12-01T00:00:00Z"
DIGEST = "sha256:" + "ab" * 32
SETTINGS_KEYS = {"deploy_estimate_s", "soak_s", "max_parallel_per_cluster", "backup", "health", "approval", "failure"}
HEALTH_KEYS = {"enabled", "interval_s", "timeout_s", "consecutive_successes", "max_consecutive_failures",
               "max_latency_ms", "latency_regression"}


def policy_text(fname):
    with open(os.path.join(POLICIES, fname)) as f:
        return f.read()


# The standard policy with platform allowed to approve the shared-high wave:
# separation of duties must then be what refuses the creator.
PLATFORM_APPROVES = (policy_text("standard.yaml")
                     .replace("name: standard-quarterly", "name: platform-approves")
                     .replace("gates: {approval: {min: 1, roles: [approver]}}",
                              "gates: {approval: {min: 1, roles: [approver, platform]}}"))
assert "roles: [approver, platform]" in PLATFORM_APPROVES

# Only the training tenants; everybody else is unassigned, not deployed.
TRAINING_ONLY = """apiVersion: wavesched/v1
kind: WavePolicy
metadata: {name: training-only}
spec:
  release_kinds: [standard]
  unmatched: skip
  schedule: {respect_windows: false, slot: 30m}
  defaults:
    soak: 10m
    gates: {approval: {min: 1, roles: [approver, security]}}
  waves:
    - name: training
      select: {labels: {env: training}}
"""


class Rollouts(ServiceCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        svc = cls.svc
        r = svc.request("PUT", "/v1/fleet", token=cls.admin, body=example_fleet(),
                        headers={"Content-Type": "application/yaml"})
        assert r.status == 200, r
        for text in (policy_text("standard.yaml"), policy_text("urgent-security.yaml"), PLATFORM_APPROVES,
                     TRAINING_ONLY):
            r = svc.request("POST", "/v1/policies", token=cls.admin, body=text,
                            headers={"Content-Type": "application/yaml"})
            assert r.status in (200, 201), r
        cls.plat = svc.token("platform", name="plat")
        cls.plat2 = svc.token("platform", name="plat2")
        cls.sec = svc.token("security", name="sec")
        cls.appr = svc.token("approver", name="appr")
        cls.appr2 = svc.token("approver", name="appr2")
        cls.viewer = svc.token("viewer", name="view")
        cls.north = svc.token("tenant", "clinic-north", name="north")
        cls.trainer = svc.token("tenant", "training-a", name="trainer")
        for version, kind in (("17.0.4", "standard"), ("17.0.5-hotfix", "urgent")):
            r = svc.request("POST", "/v1/releases", token=cls.admin,
                            body={"version": version, "digest": DIGEST, "kind": kind})
            assert r.status == 201, r

    # ---- helpers ---------------------------------------------------------

    def req(self, method, path, token, body=None):
        return self.svc.request(method, path, token=token, body=body)

    def url(self):
        return f"http://127.0.0.1:{self.svc.port}"

    def create(self, policy="standard-quarterly", release="17.0.4", token=None, expect=201, **extra):
        body = {"release": release, "policy": policy, "start": START, **extra}
        r = self.req("POST", "/v1/rollouts", token or self.plat, body)
        self.assertEqual(r.status, expect, r)
        if r.status == 201:
            self.addCleanup(self.abort_quietly, r.json["id"])
        return r

    def abort_quietly(self, rid):
        self.req("POST", f"/v1/rollouts/{rid}/abort", self.admin, {"reason": "test clean-up"})

    def audit(self, object_, action):
        return self.db.sql(f"SELECT actor FROM audit_log WHERE object = '{object_}' AND action = '{action}'"
                           " ORDER BY id").splitlines()

    def wave_index(self, plan, name):
        return next(w["index"] for w in plan["waves"] if w["name"] == name)

    def tearDown(self):
        # The hash chain stays whole whatever a test did.
        self.assertEqual(self.db.sql("SELECT ok FROM ws_audit_verify()"), "t")

    # ---- releases ----------------------------------------------------------

    def test_releases_create_list_show(self):
        r = self.req("POST", "/v1/releases", self.plat,
                     {"version": "18.0.0", "digest": DIGEST, "notes": "quarterly"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual({k: r.json[k] for k in ("version", "digest", "kind", "notes", "created_by")},
                         {"version": "18.0.0", "digest": DIGEST, "kind": "standard", "notes": "quarterly",
                          "created_by": "token:plat"})
        self.assertRegex(r.json["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        r = self.req("POST", "/v1/releases", self.plat, {"version": "18.0.1", "digest": DIGEST})
        self.assertEqual(r.status, 201, r)
        listed = [x["version"] for x in self.req("GET", "/v1/releases", self.viewer).json["releases"]]
        self.assertLess(listed.index("18.0.0"), listed.index("18.0.1"))   # oldest first
        self.assertEqual(self.req("GET", "/v1/releases/18.0.0", self.appr).json["notes"], "quarterly")
        self.assertEqual(self.req("GET", "/v1/releases/19.9.9", self.admin).status, 404)
        self.assertEqual(self.audit("release/18.0.0", "release.create"), ["token:plat"])

        dup = self.req("POST", "/v1/releases", self.sec, {"version": "18.0.0", "digest": DIGEST})
        self.assertEqual(dup.status, 409, dup)
        self.assertIn("18.0.0 already exists", dup.json["error"]["message"])
        self.assertEqual(self.audit("release/18.0.0", "release.create"), ["token:plat"])

    def test_releases_are_validated_field_by_field(self):
        r = self.req("POST", "/v1/releases", self.plat,
                     {"version": "-bad version", "digest": "sha256:ABC", "kind": "weekly", "colour": 1})
        self.assertEqual(r.status, 422, r)
        fields = sorted(d["field"] for d in r.json["error"]["details"])
        self.assertEqual(fields, ["colour", "digest", "kind", "version"])
        for d in r.json["error"]["details"]:
            self.assertTrue(d["message"].startswith(d["field"] + ": "), d)
        r = self.req("POST", "/v1/releases", self.plat, {"version": "18.1.0", "digest": "md5:" + "0" * 32})
        self.assertEqual([d["field"] for d in r.json["error"]["details"]], ["digest"])
        self.assertEqual(self.req("POST", "/v1/releases", self.plat, "{not json").status, 400)
        self.assertEqual(self.db.sql("SELECT count(*) FROM releases WHERE version LIKE '18.1%'"), "0")

    def test_release_roles(self):
        body = {"version": "18.2.0-sec", "digest": DIGEST, "kind": "urgent"}
        r = self.req("POST", "/v1/releases", self.plat, body)
        self.assertEqual(r.status, 403, r)
        self.assertIn("security", r.json["error"]["message"])
        r = self.req("POST", "/v1/releases", self.sec, body)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["kind"], "urgent")
        for tok in (self.viewer, self.appr, self.north):
            self.assertEqual(self.req("POST", "/v1/releases", tok,
                                      {"version": "18.2.1", "digest": DIGEST}).status, 403)
        self.assertEqual(self.req("GET", "/v1/releases", self.north).status, 403)
        self.assertEqual(self.req("GET", "/v1/releases", self.appr).status, 200)

    # ---- backups -------------------------------------------------------------

    def test_backup_reports(self):
        good = {"tenant": "clinic-south", "completed_at": "2026-11-30T22:00:00.250Z",
                "location": "s3://backups/clinic-south/1.dump", "size_bytes": 1048576,
                "checksum": "sha256:" + "1" * 64}
        r = self.req("POST", "/v1/backups", self.plat, good)
        self.assertEqual(r.status, 201, r)
        self.assertTrue(r.json["created"])
        b = r.json["backup"]
        self.assertEqual((b["tenant"], b["completed_at"], b["size_bytes"], b["succeeded"]),
                         ("clinic-south", "2026-11-30T22:00:00Z", 1048576, True))
        # a job retrying after a lost answer does not store the report twice
        again = self.req("POST", "/v1/backups", self.plat, good)
        self.assertEqual(again.status, 200, again)
        self.assertFalse(again.json["created"])
        self.assertEqual(again.json["backup"]["id"], b["id"])
        self.assertEqual(self.db.sql("SELECT count(*), min(reported_by) FROM backups b JOIN tenants t"
                                     " ON t.id = b.tenant_id WHERE t.slug = 'clinic-south'"), "1|token:plat")
        self.assertEqual(self.audit("tenant/clinic-south", "backup.report"), ["token:plat"])

        verified = dict(good, completed_at="2026-11-30T23:00:00+01:00", location="s3://backups/clinic-south/2.dump",
                        restore_verified_at="2026-12-01T01:00:00Z",
                        restore_result="ok", restore_duration="4m30s")
        r = self.req("POST", "/v1/backups", self.admin, verified)
        self.assertEqual(r.status, 201, r)
        self.assertEqual((r.json["backup"]["restore_result"], r.json["backup"]["restore_duration_s"]), ("ok", 270))
        self.assertEqual(self.db.sql("SELECT restore_duration FROM backups WHERE id = %d" % r.json["backup"]["id"]),
                         "00:04:30")

        listed = self.req("GET", "/v1/tenants/clinic-south/backups", self.viewer).json["backups"]
        self.assertEqual([x["completed_at"] for x in listed], ["2026-11-30T22:00:00Z", "2026-11-30T22:00:00Z"])

    def test_backup_reports_are_refused_with_field_names(self):
        cases = [
            ({"tenant": "no-such-tenant"}, ["tenant"]),
            ({"completed_at": "yesterday"}, ["completed_at"]),
            ({"completed_at": None}, ["completed_at"]),
            ({"size_bytes": -1}, ["size_bytes"]),
            ({"size_bytes": "12"}, ["size_bytes"]),
            ({"location": ""}, ["location"]),
            ({"checksum": "two words"}, ["checksum"]),
            ({"restore_verified_at": "2026-12-01T01:00:00Z"}, ["restore_result"]),
            ({"restore_result": "ok"}, ["restore_verified_at"]),
            ({"restore_result": "maybe", "restore_verified_at": "2026-12-01T01:00:00Z"}, ["restore_result"]),
            ({"restore_duration": 10}, ["restore_duration"]),
            ({"extra": True}, ["extra"]),
        ]
        base = {"tenant": "clinic-east", "completed_at": "2026-11-30T22:00:00Z", "location": "s3://b/x",
                "size_bytes": 1, "checksum": "sha256:" + "2" * 64}
        for change, fields in cases:
            with self.subTest(change=change):
                r = self.req("POST", "/v1/backups", self.plat, dict(base, **change))
                self.assertEqual(r.status, 422, r)
                self.assertEqual([d["field"] for d in r.json["error"]["details"]], fields, r.json)
        self.assertEqual(self.db.sql("SELECT count(*) FROM backups b JOIN tenants t ON t.id = b.tenant_id"
                                     " WHERE t.slug = 'clinic-east'"), "0")
        self.assertEqual(self.req("POST", "/v1/backups", self.viewer, base).status, 403)
        self.assertEqual(self.req("POST", "/v1/backups", self.north, base).status, 403)
        # tenant tokens read their own tenant's catalog only
        self.assertEqual(self.req("GET", "/v1/tenants/clinic-north/backups", self.north).status, 200)
        self.assertEqual(self.req("GET", "/v1/tenants/clinic-east/backups", self.north).status, 404)
        self.assertEqual(self.req("GET", "/v1/tenants/nobody/backups", self.admin).status, 404)

    # ---- creating rollouts ---------------------------------------------------------

    def test_create_freezes_the_plan(self):
        dry = self.req("POST", "/v1/rollouts?dry_run=1", self.plat,
                       {"release": "17.0.4", "policy": "standard-quarterly", "start": START})
        self.assertEqual(dry.status, 200, dry)
        r = self.create()
        ro = r.json
        rid = ro["id"]
        self.assertEqual(r.headers["location"], f"/v1/rollouts/{rid}")
        self.assertEqual((ro["state"], ro["plan_version"], ro["release"], ro["policy"]),
                         ("planned", 1, "17.0.4", "standard-quarterly"))
        plan = json.loads(dry.body)
        self.assertEqual(ro["plan"], plan)
        stored = self.req("GET", f"/v1/rollouts/{rid}/plan", self.viewer)
        self.assertEqual(stored.status, 200, stored)
        self.assertEqual(stored.body, dry.body)     # byte for byte
        self.assertEqual(stored.headers["x-plan-sha256"], ro["plan_sha256"])
        self.assertEqual(self.req("GET", f"/v1/rollouts/{rid}/plan?version=2", self.viewer).status, 404)

        waves = [l.split("|") for l in self.db.sql(
            "SELECT idx, name, ws__rfc3339(start_at), ws__rfc3339(end_at), state, settings::text FROM waves"
            f" WHERE rollout_id = {rid} ORDER BY idx").splitlines()]
        self.assertEqual([(int(w[0]), w[1], w[2], w[3], w[4]) for w in waves],
                         [(w["index"], w["name"], w["start"], w["end"], "pending") for w in plan["waves"]])
        settings = {w[1]: json.loads(w[5]) for w in waves}
        for name, s in settings.items():
            self.assertEqual(set(s), SETTINGS_KEYS, name)
            self.assertEqual(set(s["health"]), HEALTH_KEYS, name)
            self.assertEqual(set(s["backup"]), {"enabled", "max_age_s"})
        self.assertEqual(settings["training"]["soak_s"], 3600)
        self.assertEqual(settings["dedicated"]["soak_s"], 86400)
        self.assertEqual(settings["dedicated"]["approval"], {"min": 2, "roles": ["approver"]})
        self.assertEqual(settings["dedicated"]["failure"], {"max_failed": 0, "action": "rollback_wave"})
        self.assertEqual(settings["shared-low-risk"]["failure"], {"max_failed": 1, "action": "halt"})
        self.assertEqual(settings["shared-low-risk"]["max_parallel_per_cluster"], 2)
        self.assertEqual(settings["shared-low-risk"]["backup"], {"enabled": True, "max_age_s": 86400})
        self.assertEqual(settings["shared-low-risk"]["health"]["latency_regression"], 1.5)

        deps = {}
        for line in self.db.sql(
                "SELECT d.slug, w.idx, ws__rfc3339(d.window_start), ws__rfc3339(d.window_end), d.state,"
                " d.attempt, d.previous_version, d.target_version, d.reasons::text FROM deployments d"
                f" JOIN waves w ON w.id = d.wave_id WHERE d.rollout_id = {rid}").splitlines():
            f = line.split("|", 8)
            deps[f[0]] = f[1:]
        expected = {}
        for w in plan["waves"]:
            for t in w["tenants"]:
                expected[t["slug"]] = t
                d = deps[t["slug"]]
                self.assertEqual(int(d[0]), w["index"])
                self.assertEqual((d[3], d[4], d[5], d[6]), ("scheduled", "0", "17.0.3", "17.0.4"))
                self.assertEqual(json.loads(d[7]), t["reasons"])
                got = self.db.sql(f"SELECT '{t['window_start']}'::timestamptz = '{d[1]}'::timestamptz"
                                  f" AND '{t['window_end']}'::timestamptz = '{d[2]}'::timestamptz")
                self.assertEqual(got, "t", (t, d))
        self.assertEqual(set(deps), set(expected))
        self.assertNotIn("legacy-archive", deps)     # frozen: not a candidate

        doc = self.req("GET", f"/v1/rollouts/{rid}", self.viewer).json
        self.assertEqual([w["name"] for w in doc["waves"]], [w["name"] for w in plan["waves"]])
        tenant = doc["waves"][0]["tenants"][0]
        for key in ("slug", "state", "window_start", "window_end", "attempt", "reasons", "gates", "moves"):
            self.assertIn(key, tenant)
        self.assertEqual(doc["created_by"], "token:plat")
        self.assertEqual(self.audit(f"rollout/{rid}", "rollout.create"), ["token:plat"])
        self.assertEqual(self.db.sql(f"SELECT count(*) FROM events WHERE rollout_id = {rid}"
                                     " AND kind = 'rollout.created'"), "1")
        listed = self.req("GET", "/v1/rollouts", self.viewer).json["rollouts"]
        mine = next(x for x in listed if x["id"] == rid)
        self.assertEqual((mine["state"], mine["tenant_count"], mine["wave_count"]),
                         ("planned", len(expected), len(plan["waves"])))

    def test_tenants_can_be_in_one_active_rollout_only(self):
        first = self.create().json["id"]
        r = self.create(policy="training-only", expect=409)
        self.assertIn(f"already in rollout {first} (planned)", r.json["error"]["message"])
        self.assertIn("training-a", r.json["error"]["message"])
        self.assertEqual({(d["tenant"], d["rollout"]) for d in r.json["error"]["details"]},
                         {("training-a", first), ("training-b", first)})
        r = self.req("POST", f"/v1/rollouts/{first}/abort", self.plat, {"reason": "replanned"})
        self.assertEqual(r.status, 200, r)
        second = self.create(policy="training-only")
        self.assertEqual(second.json["tenant_count"], 2)
        # unassigned tenants are reported and not deployed
        unassigned = {u["slug"] for u in second.json["unassigned"]}
        self.assertIn("clinic-north", unassigned)
        self.assertEqual(self.db.sql("SELECT string_agg(slug, ',' ORDER BY slug) FROM deployments"
                                     f" WHERE rollout_id = {second.json['id']}"), "training-a,training-b")

    def test_concurrent_creations_take_a_tenant_once(self):
        results = []

        def post():
            results.append(self.req("POST", "/v1/rollouts", self.plat,
                                    {"release": "17.0.4", "policy": "training-only", "start": START}))
        threads = [threading.Thread(target=post) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for r in results:
            if r.status == 201:
                self.addCleanup(self.abort_quietly, r.json["id"])
        self.assertEqual(sorted(r.status for r in results), [201, 409, 409, 409], results)
        self.assertEqual(self.db.sql("SELECT count(*) FROM deployments d JOIN rollouts r ON r.id = d.rollout_id"
                                     " WHERE d.slug = 'training-a' AND r.state = 'planned'"), "1")

    def test_a_plan_from_an_older_fleet_is_refused(self):
        # What a fleet import between planning and storing looks like to the
        # SQL function: the generation the plan was made from is not the
        # current one.
        plan = self.req("POST", "/v1/rollouts?dry_run=1", self.plat,
                        {"release": "17.0.4", "policy": "training-only", "start": START}).body.decode()
        pid, sha = self.db.sql("SELECT id, sha256 FROM policies WHERE name = 'training-only'").split("|")
        gen = int(self.db.sql("SELECT max(id) FROM fleet_imports"))
        q = ("SELECT ws_rollout_create('17.0.4', 'standard', {pid}, '{sha}', $plan${plan}$plan$, '{settings}',"
             " {gen}, 'token:test', '{start}')")
        args = dict(pid=pid, sha=sha, plan=plan, settings=json.dumps([{}]), start=START)
        with self.assertRaisesRegex(RuntimeError, r"the fleet changed while the plan was made \(generation 0,"):
            self.db.sql(q.format(gen=0, **args))
        with self.assertRaisesRegex(RuntimeError, r"settings of wave 1: soak_s is missing"):
            self.db.sql(q.format(gen=gen, **args))
        self.assertEqual(self.db.sql("SELECT count(*) FROM rollouts WHERE created_by = 'token:test'"), "0")

    def test_create_refusals(self):
        r = self.create(release="99.0.0", expect=422)
        self.assertEqual([d["field"] for d in r.json["error"]["details"]], ["release"])
        r = self.create(policy="no-such-policy", expect=422)
        r = self.create(kind="urgent", expect=422)        # 17.0.4 is standard
        self.assertEqual([d["field"] for d in r.json["error"]["details"]], ["kind"])
        # the urgent policy does not take standard releases: the planner says so
        self.create(policy="urgent-security", expect=422)
        # an urgent release needs role security
        r = self.create(policy="urgent-security", release="17.0.5-hotfix", expect=403)
        self.assertIn("security", r.json["error"]["message"])
        for tok in (self.viewer, self.appr, self.north):
            self.create(token=tok, expect=403)
        self.assertEqual(self.db.sql("SELECT count(*) FROM rollouts WHERE state <> 'aborted'"), "0")
        # break-glass needs its justification and change reference
        r = self.create(policy="urgent-security", release="17.0.5-hotfix", token=self.sec, expect=422)
        self.assertEqual([d["field"] for d in r.json["error"]["details"]], ["break_glass"])
        r = self.create(policy="urgent-security", release="17.0.5-hotfix", token=self.sec,
                        break_glass={"justification": "CVE-2026-1234 exploited in the wild", "change_ref": "CHG-1"})
        self.assertEqual(r.json["plan"]["release"], "17.0.5-hotfix")

    # ---- approvals ------------------------------------------------------------------

    def test_approvals(self):
        r = self.create(policy="platform-approves")
        rid, plan = r.json["id"], r.json["plan"]
        wave = self.wave_index(plan, "shared-high")
        path = f"/v1/rollouts/{rid}/approve"
        # separation of duties, although platform may approve this wave
        r = self.req("POST", path, self.plat, {"wave": wave, "comment": "mine"})
        self.assertEqual(r.status, 403, r)
        self.assertIn("separation of duties", r.json["error"]["message"])
        # a role the policy does not name for the wave
        r = self.req("POST", path, self.sec, {"wave": wave})
        self.assertEqual(r.status, 403, r)
        self.assertIn("approver, platform", r.json["error"]["message"])
        r = self.req("POST", path, self.plat2, {"wave": self.wave_index(plan, "dedicated")})
        self.assertEqual(r.status, 403, r)     # dedicated: approvers only
        for tok in (self.viewer, self.north):
            self.assertEqual(self.req("POST", path, tok, {"wave": wave}).status, 403)

        r = self.req("POST", path, self.appr, {"wave": wave, "comment": "looks good"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["approvals"], r.json["rejections"]), (1, 0))
        r = self.req("POST", path, self.appr, {"wave": wave})
        self.assertEqual(r.status, 409, r)
        self.assertIn("already decided", r.json["error"]["message"])
        r = self.req("POST", f"/v1/rollouts/{rid}/reject", self.plat2, {"wave": wave, "comment": "not yet"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["approvals"], r.json["rejections"]), (1, 1))

        self.assertEqual(self.req("POST", path, self.appr2, {"wave": 99}).status, 404)
        self.assertEqual(self.req("POST", "/v1/rollouts/999999/approve", self.appr2, {"wave": 1}).status, 404)
        r = self.req("POST", path, self.appr2, {"comment": "which wave?"})
        self.assertEqual(r.status, 422, r)
        self.assertEqual([d["field"] for d in r.json["error"]["details"]], ["wave"])

        doc = self.req("GET", f"/v1/rollouts/{rid}", self.viewer).json
        w = next(x for x in doc["waves"] if x["index"] == wave)
        self.assertEqual([(a["actor"], a["role"], a["decision"], a["comment"]) for a in w["approvals"]],
                         [("token:appr", "approver", "approve", "looks good"),
                          ("token:plat2", "platform", "reject", "not yet")])
        self.assertEqual(self.audit(f"rollout/{rid}/wave/{wave}", "wave.approve"), ["token:appr"])
        self.assertEqual(self.audit(f"rollout/{rid}/wave/{wave}", "wave.reject"), ["token:plat2"])
        # decisions end with the rollout
        self.assertEqual(self.req("POST", f"/v1/rollouts/{rid}/abort", self.plat, {}).status, 200)
        self.assertEqual(self.req("POST", path, self.appr2, {"wave": wave}).status, 409)

    # ---- commands ---------------------------------------------------------------------

    def test_commands(self):
        rid = self.create().json["id"]
        base = f"/v1/rollouts/{rid}"
        r = self.req("POST", base + "/pause", self.plat, None)
        self.assertEqual(r.status, 409, r)
        self.assertIn("is planned and cannot be paused", r.json["error"]["message"])
        self.assertEqual(self.req("POST", base + "/start", self.viewer, {}).status, 403)
        self.assertEqual(self.req("POST", base + "/start", self.appr, {}).status, 403)
        r = self.req("POST", base + "/start", self.plat2, {"reason": "go"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["from"], r.json["to"]), ("planned", "approved"))
        r = self.req("POST", base + "/start", self.plat2, {})
        self.assertEqual(r.status, 409, r)
        # The engine takes an approved rollout to running; this suite runs no
        # engine, so that one step is taken here in the database.
        self.db.sql(f"UPDATE rollouts SET state = 'running' WHERE id = {rid}")
        r = self.req("POST", base + "/pause", self.plat, {"reason": "incident 42"})
        self.assertEqual((r.status, r.json.get("to")), (200, "paused"), r)
        doc = self.req("GET", base, self.viewer).json
        self.assertEqual((doc["state"], doc["state_reason"]), ("paused", "incident 42"))
        self.assertEqual(self.req("POST", base + "/pause", self.plat, {}).status, 409)
        r = self.req("POST", base + "/resume", self.sec, {})
        self.assertEqual((r.status, r.json.get("to")), (200, "running"), r)
        r = self.req("POST", base + "/abort", self.plat, {"reason": "superseded"})
        self.assertEqual((r.status, r.json.get("to")), (200, "aborted"), r)
        for action in ("start", "pause", "resume", "abort"):
            self.assertEqual(self.req("POST", f"{base}/{action}", self.plat, {}).status, 409, action)
        self.assertEqual(self.req("POST", base + "/abort", self.plat, {"reason": 5}).status, 422)
        self.assertEqual(self.req("POST", base + "/abort", self.plat, "[1").status, 400)
        self.assertEqual(self.req("POST", "/v1/rollouts/424242/start", self.plat, {}).status, 404)
        self.assertEqual(self.req("POST", "/v1/rollouts/abc/start", self.plat, {}).status, 404)
        self.assertEqual(self.req("GET", "/v1/rollouts/0", self.plat).status, 404)
        actions = self.db.sql(f"SELECT action || ':' || actor FROM audit_log WHERE object = 'rollout/{rid}'"
                              " ORDER BY id").splitlines()
        self.assertEqual(actions, ["rollout.create:token:plat", "rollout.start:token:plat2",
                                   "rollout.pause:token:plat", "rollout.resume:token:sec",
                                   "rollout.abort:token:plat"])

    # ---- tenant scope -------------------------------------------------------------------

    def test_tenant_tokens_see_their_tenants_only(self):
        everyone = self.create().json["id"]
        self.req("POST", f"/v1/rollouts/{everyone}/abort", self.plat, {})
        training = self.create(policy="training-only").json["id"]
        # clinic-north is in the aborted rollout only; training-a in both
        north = [x["id"] for x in self.req("GET", "/v1/rollouts", self.north).json["rollouts"]]
        self.assertIn(everyone, north)
        self.assertNotIn(training, north)
        self.assertEqual(self.req("GET", f"/v1/rollouts/{training}", self.north).status, 404)
        doc = self.req("GET", f"/v1/rollouts/{everyone}", self.north).json
        slugs = [t["slug"] for w in doc["waves"] for t in w["tenants"]]
        self.assertEqual(slugs, ["clinic-north"])
        listed = self.req("GET", "/v1/rollouts", self.trainer).json["rollouts"]
        self.assertEqual({x["id"] for x in listed} & {everyone, training}, {everyone, training})
        self.assertTrue(all(x["tenant_count"] == 1 for x in listed))
        doc = self.req("GET", f"/v1/rollouts/{training}", self.trainer).json
        self.assertEqual([t["slug"] for w in doc["waves"] for t in w["tenants"]], ["training-a"])
        self.assertEqual(doc["unassigned"], [])
        # the plan names everybody: not for tenant tokens
        self.assertEqual(self.req("GET", f"/v1/rollouts/{training}/plan", self.trainer).status, 403)

    # ---- wavectl ---------------------------------------------------------------------------

    def test_cli(self):
        def ctl(*args, token=None):
            return wavectl(*args, token=token or self.plat, url=self.url())

        r = ctl("release", "create", "20.0.0", "--digest", DIGEST, "--notes", "from the cli")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("release 20.0.0 created (standard", r.stdout)
        r = ctl("release", "create", "20.0.0", "--digest", DIGEST)
        self.assertEqual(r.returncode, 1)
        self.assertIn("already exists", r.stderr)
        r = ctl("release", "create", "20.0.1", "--digest", "sha256:nothex")
        self.assertEqual(r.returncode, 1)
        self.assertIn("digest:", r.stderr)
        self.assertEqual(ctl("release", "create", "20.0.2").returncode, 2)       # no --digest
        self.assertEqual(ctl("release", "create", "20.0.2", "--digest", DIGEST, "--kind", "x").returncode, 2)
        r = ctl("release", "create", "20.0.3", "--digest", DIGEST, "--kind", "urgent")
        self.assertEqual(r.returncode, 1)
        r = ctl("release", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("20.0.0", r.stdout)
        self.assertEqual(wavectl("release", "list", token=self.plat, url="http://127.0.0.1:1").returncode, 3)

        r = ctl("rollout", "create", "--release", "20.0.0", "--policy", "standard-quarterly", "--start", START)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Plan for release 20.0.0 with policy standard-quarterly", r.stdout)
        rid = int(r.stdout.split("\nrollout ")[1].split()[0])
        self.addCleanup(self.abort_quietly, rid)
        self.assertIn(f"rollout {rid} created (planned)", r.stdout)
        r = ctl("rollout", "create", "--release", "20.0.0", "--policy", "standard-quarterly", "--start", START)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"already in rollout {rid}", r.stderr)
        self.assertEqual(ctl("rollout", "create", "--release", "20.0.0").returncode, 2)
        self.assertEqual(ctl("rollout", "create", "--release", "20.0.0", "--policy", "p",
                             "--start", "noon").returncode, 2)

        r = ctl("rollout", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, rf"(?m)^{rid} +20\.0\.0 +standard-quarterly +planned ")
        r = ctl("rollout", "show", str(rid))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"rollout {rid}: release 20.0.0 (standard), policy standard-quarterly", r.stdout)
        self.assertRegex(r.stdout, r"wave 1  training  pending  2026-12-01T00:00:00Z \.\. ")
        self.assertRegex(r.stdout, r"(?m)^  training-a +scheduled +2026-12-01T00:00:00Z \.\. \S+ +0 ")
        r = ctl("rollout", "show", str(rid), "--format", "json")
        self.assertEqual(json.loads(r.stdout)["id"], rid)
        r = ctl("rollout", "plan", str(rid), "--format", "json")
        self.assertEqual(json.loads(r.stdout)["release"], "20.0.0")
        self.assertEqual(ctl("rollout", "show", "424242").returncode, 1)
        self.assertEqual(ctl("rollout", "show", "x1").returncode, 2)

        dedicated = next(w["index"] for w in json.loads(r.stdout)["waves"] if w["name"] == "dedicated")
        r = ctl("rollout", "approve", str(rid), "--wave", str(dedicated))
        self.assertEqual(r.returncode, 1)
        self.assertIn("separation of duties", r.stderr)
        r = ctl("rollout", "approve", str(rid), "--wave", str(dedicated), "--comment", "ok", token=self.appr)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("approve recorded (1 approvals, 0 rejections so far)", r.stdout)
        r = ctl("rollout", "reject", str(rid), "--wave", str(dedicated), token=self.appr)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(ctl("rollout", "approve", str(rid), token=self.appr).returncode, 2)   # no --wave

        r = ctl("rollout", "start", str(rid))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"rollout {rid}: planned -> approved", r.stdout)
        r = ctl("rollout", "start", str(rid))
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot be started", r.stderr)
        r = ctl("rollout", "abort", str(rid), "--reason", "cli test")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.db.sql(f"SELECT state, state_reason FROM rollouts WHERE id = {rid}"),
                         "aborted|cli test")
        self.assertEqual(ctl("rollout", "pause").returncode, 2)
        self.assertEqual(ctl("rollout", "frobnicate", "1").returncode, 2)
        for args in (("release", "--help"), ("release", "create", "--help"), ("rollout", "--help"),
                     ("rollout", "create", "--help"), ("rollout", "show", "--help"),
                     ("rollout", "approve", "--help"), ("rollout", "abort", "--help")):
            r = ctl(*args)
            self.assertEqual(r.returncode, 0, args)
            self.assertIn("usage: wavectl", r.stdout)


if __name__ == "__main__":
    main()
