"""Tenant deferral (issue 6): POST /v1/tenants/{slug}/deferrals and
`wavectl tenant defer`, against the real service and PostgreSQL, on the
example fleet with the standard policy plus `deferral: {max: 45d,
per_tenant: 1}` (the example schedule runs past the holiday freeze: 14d
would refuse every deferral, as the max test shows with `until`).

hq-finance is deferred: it and the tenants that depend on it
(labs-shared-services, payroll-hr) move to a trailing wave "deferred" after
the last wave, each at one of its own windows, the dependents after
hq-finance; the moves show in the tenants' windows and calendar feeds.  A
second deferral, an urgent release, another tenant's slug, a window beyond
`max` and a policy without `deferral` are refused and change nothing.
"""
import datetime
import json
import os
import sys

from test_engine import EngineCase
from wsharness import SOURCE_ROOT, ServiceCase, example_fleet, main, wavectl

try:
    import icalendar
except ImportError:
    sys.path.append("/usr/lib/python3/dist-packages")
    import icalendar

POLICIES = os.path.join(SOURCE_ROOT, "examples", "policies")
START = "2026-12-01T00:00:00Z"
DIGEST = "sha256:" + "ef" * 32
BG = {"justification": "CVE-2026-4242 exploited against Odoo portals", "change_ref": "CHG-7781"}
TENANT = "hq-finance"
DEPENDENTS = {"labs-shared-services", "payroll-hr"}   # depends_on: [hq-finance] in examples/fleet.yaml
FROZEN = "legacy-archive"                           # frozen: true, so in no rollout


def policy_text(fname):
    with open(os.path.join(POLICIES, fname)) as f:
        return f.read()


def deferrable():
    text = policy_text("standard.yaml").replace("name: standard-quarterly", "name: standard-deferrable", 1)
    text = text.replace("  defaults:\n", "  deferral: {max: 45d, per_tenant: 1}\n  defaults:\n", 1)
    assert "deferral:" in text and "standard-deferrable" in text
    return text


def utc(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


class Defer(ServiceCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        svc = cls.svc
        r = svc.request("PUT", "/v1/fleet", token=cls.admin, body=example_fleet(),
                        headers={"Content-Type": "application/yaml"})
        assert r.status == 200, r
        for text in (policy_text("standard.yaml"), deferrable(), policy_text("urgent-security.yaml")):
            r = svc.request("POST", "/v1/policies", token=cls.admin, body=text,
                            headers={"Content-Type": "application/yaml"})
            assert r.status == 201, r
        cls.plat = svc.token("platform", name="plat")
        cls.sec = svc.token("security", name="sec")
        cls.viewer = svc.token("viewer", name="viewer")
        cls.appr = [svc.token("approver", name=f"appr{i}") for i in (1, 2)]
        cls.owner = svc.token("tenant", TENANT, name="finance-owner")
        cls.north = svc.token("tenant", "clinic-north", name="north-owner")
        for version, kind in (("17.0.4", "standard"), ("17.0.5-hotfix", "urgent")):
            r = svc.request("POST", "/v1/releases", token=cls.admin,
                            body={"version": version, "digest": DIGEST, "kind": kind})
            assert r.status == 201, r
        cls.url = f"http://127.0.0.1:{svc.port}"

    def req(self, method, path, token, body=None):
        return self.svc.request(method, path, token=token, body=body)

    def create(self, policy="standard-deferrable", release="17.0.4", token=None, **extra):
        r = self.req("POST", "/v1/rollouts", token or self.plat,
                     {"release": release, "policy": policy, "start": START, **extra})
        self.assertEqual(r.status, 201, r)
        rid = r.json["id"]
        self.addCleanup(self.req, "POST", f"/v1/rollouts/{rid}/abort", self.admin, {"reason": "clean-up"})
        return rid

    def rollout(self, rid):
        r = self.req("GET", f"/v1/rollouts/{rid}", self.admin)
        self.assertEqual(r.status, 200, r)
        return r.json

    def placed(self, doc):
        return {t["slug"]: (w["index"], w["name"], t["window_start"], t["window_end"])
                for w in doc["waves"] for t in w["tenants"]}

    def defer(self, rid, token=None, slug=TENANT, **body):
        return self.req("POST", f"/v1/tenants/{slug}/deferrals", token or self.owner, {"rollout": rid, **body})

    def windows(self, slug, rid, token=None):
        r = self.req("GET", f"/v1/tenants/{slug}/windows", token or self.admin)
        self.assertEqual(r.status, 200, r)
        found = [w for w in r.json["windows"] if w["rollout"] == rid]
        self.assertEqual(len(found), 1, r.json)
        return found[0]

    def feed_sequence(self, slug, rid, token=None):
        r = self.req("GET", f"/v1/tenants/{slug}/windows.ics", token or self.admin)
        self.assertEqual(r.status, 200, r)
        cal = icalendar.Calendar.from_ical(r.body)
        ev = {str(e["UID"]): e for e in cal.walk("VEVENT")}[f"rollout-{rid}-tenant-{slug}@wavesched"]
        return int(ev["SEQUENCE"]), ev.decoded("DTSTART")

    def audit(self, rid, slug=TENANT):
        rows = self.db.sql(f"SELECT actor || '|' || (details ->> 'reason') || '|' || jsonb_array_length(details -> 'moved')"
                           f"  FROM audit_log WHERE action = 'tenant.defer'"
                           f"   AND object = 'rollout/{rid}/tenant/{slug}' ORDER BY id")
        return [r for r in rows.splitlines() if r]

    def tearDown(self):
        self.assertEqual(self.db.sql("SELECT ok FROM ws_audit_verify()"), "t")

    # ---- accepted once ---------------------------------------------------

    def test_deferral_moves_the_tenant_and_its_dependents_after_the_last_wave(self):
        rid = self.create()
        before = self.rollout(rid)
        old = self.placed(before)
        last = before["waves"][-1]
        self.assertIn(TENANT, old)
        self.assertTrue(DEPENDENTS <= set(old), old)
        seq0, start0 = self.feed_sequence(TENANT, rid, self.owner)
        self.assertEqual(seq0, 0)
        # The dependents make up the whole last wave (overflow-1, with the
        # dedicated wave's two approvals): once they leave it, it goes.
        self.assertEqual((last["name"], {t["slug"] for t in last["tenants"]}), ("overflow-1", DEPENDENTS))
        for tok in self.appr:
            r = self.req("POST", f"/v1/rollouts/{rid}/approve", tok, {"wave": last["index"], "comment": "ok"})
            self.assertEqual(r.status, 200, r)

        r = self.defer(rid, reason="quarter-end close in progress")
        self.assertEqual(r.status, 201, r)
        out = r.json
        self.assertEqual(out["tenant"], TENANT)
        self.assertEqual(out["wave"]["name"], "deferred")
        self.assertEqual(out["waves_dropped"], [{"index": last["index"], "name": "overflow-1"}])
        self.assertEqual(out["wave"]["index"], last["index"])
        self.assertEqual(out["moved"][0]["slug"], TENANT)
        self.assertEqual({m["slug"] for m in out["moved"]}, {TENANT} | DEPENDENTS)

        after = self.rollout(rid)
        new = self.placed(after)
        self.assertEqual([w["name"] for w in after["waves"]],
                         [w["name"] for w in before["waves"][:-1]] + ["deferred"])
        self.assertEqual([w["index"] for w in after["waves"]], list(range(1, len(before["waves"]) + 1)))
        withdrawn = self.db.sql(f"SELECT string_agg(actor || ':' || wave_name, ',' ORDER BY actor)"
                                f"  FROM approvals_withdrawn WHERE rollout_id = {rid}")
        self.assertEqual(withdrawn, "token:appr1:overflow-1,token:appr2:overflow-1")
        self.assertEqual({s for s, p in new.items() if p[1] == "deferred"}, {TENANT} | DEPENDENTS)
        # nobody else moved
        for slug in set(old) - {TENANT} - DEPENDENTS:
            self.assertEqual(new[slug], old[slug], slug)
        # after the last wave's end plus its soak (24h: "dedicated")
        soak_end = utc(last["end"]) + datetime.timedelta(hours=24)
        for slug in {TENANT} | DEPENDENTS:
            self.assertGreaterEqual(utc(new[slug][2]), soak_end, slug)
            # one of the tenant's own windows: same length and local time of day
            o_s, o_e = datetime.datetime.fromisoformat(old[slug][2]), datetime.datetime.fromisoformat(old[slug][3])
            n_s, n_e = datetime.datetime.fromisoformat(new[slug][2]), datetime.datetime.fromisoformat(new[slug][3])
            self.assertEqual(n_e - n_s, o_e - o_s, slug)
            self.assertEqual(n_s.time(), o_s.time(), slug)
        # the dependents come after what they depend on
        for slug in DEPENDENTS:
            self.assertGreaterEqual(utc(new[slug][2]), utc(new[TENANT][3]), slug)
        # within max (45d) of the original window
        self.assertLessEqual(utc(new[TENANT][2]) - utc(old[TENANT][2]), datetime.timedelta(days=45))

        # the tenant's view and feed, with its own token
        w = self.windows(TENANT, rid, self.owner)
        self.assertEqual(w["wave"]["name"], "deferred")
        self.assertEqual(w["sequence"], 1)
        self.assertEqual(len(w["moves"]), 1)
        self.assertIn("deferred by tenant owner hq-finance", w["moves"][0]["reason"])
        self.assertIn("quarter-end close in progress", w["moves"][0]["reason"])
        self.assertEqual(utc(w["moves"][0]["from_start"]), utc(old[TENANT][2]))
        self.assertEqual(utc(w["moves"][0]["to_start"]), utc(new[TENANT][2]))
        seq1, start1 = self.feed_sequence(TENANT, rid, self.owner)
        self.assertEqual(seq1, 1)
        self.assertEqual(start1, utc(new[TENANT][2]))
        self.assertNotEqual(start1, start0)
        for slug in DEPENDENTS:
            w = self.windows(slug, rid)
            self.assertEqual((w["wave"]["name"], w["sequence"]), ("deferred", 1))
            self.assertIn("depends on hq-finance", w["moves"][0]["reason"])

        # recorded and audited
        self.assertEqual(self.audit(rid), ["token:finance-owner|quarter-end close in progress|3"])
        row = self.db.sql(f"SELECT slug, actor, role, jsonb_array_length(moved) FROM deferrals WHERE rollout_id = {rid}")
        self.assertEqual(row, "hq-finance|token:finance-owner|tenant|3")
        ev = self.db.sql(f"SELECT count(*) FROM events WHERE rollout_id = {rid} AND kind = 'deployment.moved'")
        self.assertEqual(ev, "3")

        # ---- refused the second time, nothing changes
        r = self.defer(rid, reason="again")
        self.assertEqual(r.status, 409, r)
        self.assertIn("already deferred", r.json["error"]["message"])
        self.assertEqual(self.placed(self.rollout(rid)), new)
        self.assertEqual(len(self.audit(rid)), 1)

        # a dependent may still defer once; it stays after hq-finance
        r = self.defer(rid, token=self.admin, slug="payroll-hr")
        self.assertEqual(r.status, 201, r)
        self.assertEqual([m["slug"] for m in r.json["moved"]], ["payroll-hr"])
        later = self.placed(self.rollout(rid))
        self.assertGreater(utc(later["payroll-hr"][2]), utc(new["payroll-hr"][2]))
        self.assertEqual(later["payroll-hr"][1], "deferred")
        self.assertEqual(self.windows("payroll-hr", rid)["sequence"], 2)

    # ---- refusals ----------------------------------------------------------

    def test_refusals_change_nothing(self):
        rid = self.create()
        old = self.placed(self.rollout(rid))
        cases = [
            # another tenant's slug: not even its existence is told
            (self.defer(rid, token=self.north), 404, "no such tenant"),
            (self.defer(rid, token=self.owner, slug="no-such-tenant"), 404, "no such tenant"),
            (self.defer(rid, token=self.viewer), 403, "may not defer"),
            # beyond max: no window before 50 days after the original one
            (self.defer(rid, until=(utc(old[TENANT][2]) + datetime.timedelta(days=50)).isoformat()),
             422, "beyond the deferral max of 45d"),
            (self.defer(999999), 404, "tenant hq-finance has no deployment in rollout 999999"),
            # a frozen tenant is in no rollout: the same answer as no rollout
            (self.defer(rid, token=self.admin, slug=FROZEN), 404, f"{FROZEN} has no deployment in rollout {rid}"),
            (self.req("POST", f"/v1/tenants/{TENANT}/deferrals", self.owner, {}), 422, "rollout"),
            (self.defer(rid, until="next tuesday"), 422, "until"),
            (self.defer(rid, colour="blue"), 422, "colour"),
            (self.defer(rid, reason=7), 422, "reason"),
        ]
        for r, status, text in cases:
            self.assertEqual(r.status, status, r)
            self.assertIn(text, json.dumps(r.json["error"]), r)
        self.assertEqual(self.placed(self.rollout(rid)), old)
        self.assertEqual(self.audit(rid), [])
        self.assertEqual(self.db.sql(f"SELECT count(*) FROM deferrals WHERE rollout_id = {rid}"), "0")
        # the same token for its own slug: accepted (no dependents)
        r = self.defer(rid, slug="clinic-north", token=self.north)
        self.assertEqual(r.status, 201, r)
        self.assertEqual([m["slug"] for m in r.json["moved"]], ["clinic-north"])

    def test_commit_guard_refuses_a_stale_placement(self):
        """ws_tenant_defer commits only what was placed from the rows as they
        are: a fleet import, a moved window or a changed plan in between is
        refused, and nothing changes."""
        rid = self.create()
        old = self.placed(self.rollout(rid))
        ctx = json.loads(self.db.sql(f"SELECT ws_defer_context('{TENANT}', {rid})"))
        windows = {s: ctx["open"][s] for s in {TENANT} | DEPENDENTS}
        moves = [{"slug": s, "window_start": "2027-03-01T00:00:00Z", "window_end": "2027-03-01T04:00:00Z"}
                 for s in [TENANT] + sorted(DEPENDENTS)]
        settings = self.db.sql(f"SELECT settings FROM waves WHERE rollout_id = {rid} ORDER BY idx LIMIT 1")

        def commit(generation=ctx["generation"], expected_windows=windows, plan_version=ctx["plan_version"]):
            expected = json.dumps({"plan_version": plan_version, "after": ctx["after"], "windows": expected_windows})
            return self.db.sql(f"SELECT ws_tenant_defer('{TENANT}', {rid}, 'token:t', 'tenant', 'r', NULL,"
                               f" {generation}, '{expected}'::jsonb, '{json.dumps(moves)}'::jsonb,"
                               f" '{settings}'::jsonb, 86400 * 120, 1)")

        stale = dict(windows, **{TENANT: "2026-12-27T07:00:00Z"})
        for kwargs, text in (({"generation": ctx["generation"] + 1}, "the fleet changed"),
                             ({"expected_windows": stale}, "deployments of hq-finance in rollout"),
                             ({"plan_version": ctx["plan_version"] + 1}, "changed while the deferral was placed")):
            with self.assertRaises(RuntimeError) as e:
                commit(**kwargs)
            self.assertIn(text, str(e.exception))
        self.assertEqual(self.placed(self.rollout(rid)), old)
        self.assertEqual(self.audit(rid), [])
        # the same call with the rows as they are goes through
        out = json.loads(commit())
        self.assertEqual(out["wave"]["name"], "deferred")
        got = self.placed(self.rollout(rid))[TENANT]
        self.assertEqual((got[1], utc(got[2]), utc(got[3])),
                         ("deferred", utc("2027-03-01T00:00:00Z"), utc("2027-03-01T04:00:00Z")))

    def test_a_started_deployment_is_not_deferred(self):
        """Only a scheduled or waiting deployment moves, and a tenant whose
        dependent has started cannot move ahead of it.  The state is set as
        the engine would have (a planned rollout: the engine leaves it be)."""
        rid = self.create()
        # a window that has begun: the engine may start it any moment
        sql = f"SELECT ws__rfc3339(window_start) || ',' || ws__rfc3339(window_end) FROM deployments" \
              f" WHERE rollout_id = {rid} AND slug = '{TENANT}'"
        s0, e0 = self.db.sql(sql).split(",")
        self.db.sql(f"UPDATE deployments SET window_start = now() - interval '1 hour',"
                    f" window_end = now() + interval '3 hours' WHERE rollout_id = {rid} AND slug = '{TENANT}'")
        r = self.defer(rid)
        self.assertEqual(r.status, 409, r)
        self.assertIn(f"the window of hq-finance in rollout {rid} began at", r.json["error"]["message"])
        self.db.sql(f"UPDATE deployments SET window_start = '{s0}', window_end = '{e0}'"
                    f" WHERE rollout_id = {rid} AND slug = '{TENANT}'")
        self.db.sql(f"UPDATE deployments SET state = 'deploying', started_at = now()"
                    f" WHERE rollout_id = {rid} AND slug = '{TENANT}'")
        # back before the clean-up abort, so the engine has nothing to finish
        self.addCleanup(self.db.sql, f"UPDATE deployments SET state = 'scheduled', started_at = NULL"
                                     f" WHERE rollout_id = {rid} AND slug = '{TENANT}'")
        old = self.placed(self.rollout(rid))
        r = self.defer(rid)
        self.assertEqual(r.status, 409, r)
        self.assertIn("the deployment of hq-finance in rollout", r.json["error"]["message"])
        self.assertIn("is deploying", r.json["error"]["message"])
        r = self.defer(rid, token=self.admin, slug="integration-hub")
        self.assertEqual(r.status, 422, r)
        self.assertIn("hq-finance depends on a tenant that would move, and its deployment has already started",
                      json.dumps(r.json["error"]["details"]))
        self.assertEqual(self.placed(self.rollout(rid)), old)
        self.assertEqual(self.db.sql(f"SELECT count(*) FROM deferrals WHERE rollout_id = {rid}"), "0")

    def test_a_replan_rebuilds_the_rows_and_the_tenant_may_defer_again(self):
        """A re-plan (planned rollouts only) rebuilds every row from the new
        plan, undoing the moves: the limits count deferrals per plan version."""
        rid = self.create()
        r = self.defer(rid)
        self.assertEqual(r.status, 201, r)
        r = self.req("POST", f"/v1/rollouts/{rid}/replan", self.plat, {"reason": "new quarter dates"})
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("deferred", [w["name"] for w in self.rollout(rid)["waves"]])
        r = self.defer(rid, reason="still closing the books")
        self.assertEqual(r.status, 201, r)
        self.assertEqual(self.db.sql(f"SELECT string_agg(plan_version::text, ',' ORDER BY id) FROM deferrals"
                                     f" WHERE rollout_id = {rid}"), "1,2")
        self.assertEqual(self.defer(rid).status, 409)

    def test_policy_without_deferral_is_refused(self):
        rid = self.create(policy="standard-quarterly")
        r = self.defer(rid)
        self.assertEqual(r.status, 422, r)
        self.assertIn("does not allow deferral", r.json["error"]["message"])
        self.assertEqual(self.audit(rid), [])

    def test_urgent_release_is_refused(self):
        rid = self.create(policy="urgent-security", release="17.0.5-hotfix", token=self.sec, break_glass=BG)
        old = self.placed(self.rollout(rid))
        r = self.defer(rid)
        self.assertEqual(r.status, 422, r)
        self.assertIn("urgent release is never deferred", r.json["error"]["message"])
        self.assertEqual(self.placed(self.rollout(rid)), old)
        self.assertEqual(self.audit(rid), [])

    def test_an_ended_rollout_is_refused(self):
        rid = self.create()
        r = self.req("POST", f"/v1/rollouts/{rid}/abort", self.admin, {"reason": "not this quarter"})
        self.assertEqual(r.status, 200, r)
        r = self.defer(rid)
        self.assertEqual(r.status, 409, r)
        self.assertIn("is aborted", r.json["error"]["message"])

    # ---- wavectl ---------------------------------------------------------

    def test_wavectl_tenant_defer(self):
        rid = self.create()
        out = wavectl("tenant", "defer", TENANT, "--rollout", str(rid), "--until", "2027-03-01T00:00:00Z",
                      token=self.owner, url=self.url)
        self.assertEqual(out.returncode, 1, out)
        self.assertIn("beyond the deferral max of 45d", out.stderr)
        out = wavectl("tenant", "defer", TENANT, "--rollout", str(rid), "--reason", "audit week",
                      "--format", "json", token=self.owner, url=self.url)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout)["reason"], "audit week")
        r = self.req("POST", f"/v1/rollouts/{rid}/replan", self.plat, {"reason": "undo for the text form"})
        self.assertEqual(r.status, 200, r)
        out = wavectl("tenant", "defer", TENANT, "--rollout", str(rid), "--reason", "audit week",
                      token=self.owner, url=self.url)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(f"hq-finance deferred in rollout {rid}", out.stdout)
        for slug in {TENANT} | DEPENDENTS:
            self.assertIn(slug, out.stdout)
        out = wavectl("tenant", "defer", TENANT, "--rollout", str(rid), token=self.owner, url=self.url)
        self.assertEqual(out.returncode, 1, out)
        self.assertIn("already deferred", out.stderr)
        for bad in (["tenant", "defer", TENANT], ["tenant", "defer", TENANT, "--rollout", "x"],
                    ["tenant", "defer", "--rollout", str(rid)]):
            out = wavectl(*bad, token=self.owner, url=self.url)
            self.assertEqual(out.returncode, 2, (bad, out))


class DeferredWaveRuns(EngineCase):
    """A short engine play (test_engine.py's, on the simulated fleet): a
    deferral made while the rollout runs appends the deferred wave, which
    the engine picks up and runs after every other wave."""
    policy_changes = {"name: standard-quarterly": "name: standard-deferrable",
                      "  defaults:\n": "  deferral: {max: 45d, per_tenant: 1}\n  defaults:\n"}

    def test_the_deferred_wave_runs_last(self):
        owner = self.svc.token("tenant", TENANT, name="finance-owner")
        rid = self.create_rollout()
        self.approve_all(rid)
        self.start(rid)
        r = self.svc.request("POST", f"/v1/tenants/{TENANT}/deferrals", token=owner,
                             body={"rollout": rid, "reason": "year-end"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual({m["slug"] for m in r.json["moved"]}, {TENANT} | DEPENDENTS)
        ro = self.wait_state(rid, ("completed", "halted", "aborted"))
        self.assertEqual(ro["state"], "completed", ro)
        waves = ro["waves"]
        self.assertEqual(waves[-1]["name"], "deferred")
        self.assertTrue(all(w["state"] == "passed" for w in waves), [(w["name"], w["state"]) for w in waves])
        self.assertEqual({t["slug"] for t in waves[-1]["tenants"]}, {TENANT} | DEPENDENTS)
        before_last = max(utc(w["ended_at"]) for w in waves[:-1])
        for t in waves[-1]["tenants"]:
            self.assertEqual(t["state"], "healthy", t)
            self.assertGreaterEqual(utc(t["started_at"]), before_last, t)
            self.assertGreaterEqual(utc(t["started_at"]), utc(t["window_start"]), t)
        versions = {s: t["version"] for s, t in self.sim.tenants().items()}
        for slug in {TENANT} | DEPENDENTS:
            self.assertEqual(versions[slug], "17.0.4", slug)


if __name__ == "__main__":
    main()
