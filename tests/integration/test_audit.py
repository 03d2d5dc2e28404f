"""The audit log through the API and wavectl (api.md "Audit"): every kind of
mutating request leaves its entry, entries are listed with filters and
pages, only the roles that read the whole fleet see them, and the chain
check names what was done to the table behind the service's back -- an
edited, a deleted and two swapped entries, and a removed tail against a
head recorded before.

Tampering is done as the database superuser with the triggers off
(session_replication_role = replica), each test restoring the table from a
copy afterwards, so that the suite's tests stay independent.
"""
import json
import os
import subprocess
import uuid

import wsharness as h
from wsharness import ServiceCase, example_fleet, main, wavectl

POLICIES = os.path.join(h.SOURCE_ROOT, "examples", "policies")
DIGEST = "sha256:" + "cd" * 32


def policy_text(fname):
    with open(os.path.join(POLICIES, fname)) as f:
        return f.read()


class Audit(ServiceCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.plat = cls.svc.token("platform", name="plat")
        cls.sec = cls.svc.token("security", name="sec")
        cls.appr = cls.svc.token("approver", name="appr")
        cls.viewer = cls.svc.token("viewer", name="view")
        r = cls.svc.request("PUT", "/v1/fleet", token=cls.plat, body=example_fleet(),
                            headers={"Content-Type": "application/yaml"})
        assert r.status == 200, r

    # ---- helpers ------------------------------------------------------------

    def req(self, path, token=None):
        return self.svc.request("GET", path, token=token or self.viewer)

    def entries(self, action, object_=None):
        q = f"SELECT actor || ' ' || object || ' ' || details::text FROM audit_log WHERE action = '{action}'"
        if object_:
            q += f" AND object = '{object_}'"
        return self.db.sql(q + " ORDER BY id").splitlines()

    def count(self):
        return int(self.db.sql("SELECT count(*) FROM audit_log"))

    def ctl(self, *args, token=None):
        return wavectl(*args, token=token or self.viewer, url=f"http://127.0.0.1:{self.svc.port}")

    def tamper(self, sql):
        """Runs sql with the append-only triggers off; the table comes back
        as it was when the test ends."""
        self.db.sql("DROP TABLE IF EXISTS audit_copy; CREATE TABLE audit_copy AS SELECT * FROM audit_log")
        self.addCleanup(self.db.sql, "SET session_replication_role = replica; DELETE FROM audit_log; "
                        "INSERT INTO audit_log SELECT * FROM audit_copy; DROP TABLE audit_copy")
        self.db.sql("SET session_replication_role = replica; " + sql)

    def append(self, n):
        for i in range(n):
            self.db.sql(f"SELECT ws_audit_append('tester', 'test.tamper', 'test/{i}', '{{\"i\": {i}}}')")
        return [int(x) for x in self.db.sql("SELECT id FROM audit_log ORDER BY id DESC LIMIT %d" % n).split()][::-1]

    def broken(self, path="/v1/audit/verify"):
        r = self.req(path)
        self.assertEqual(r.status, 200, r)
        self.assertFalse(r.json["ok"], r.json)
        return r.json["first_broken"]

    # ---- every mutating request ------------------------------------------------

    def test_fleet_import_audited(self):
        before = self.count()
        r = self.import_fleet(example_fleet(), token=self.plat, dry_run=True)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.count(), before)      # a dry run changes nothing
        r = self.import_fleet(example_fleet(), token=self.plat)
        self.assertEqual(r.status, 200, r)
        last = self.entries("fleet.import")[-1]
        actor, obj, details = last.split(" ", 2)
        self.assertEqual((actor, obj), ("token:plat", "fleet"))
        details = json.loads(details)
        self.assertEqual(details["generation"], r.json["generation"])
        self.assertRegex(details["sha256"], "^[0-9a-f]{64}$")
        self.assertEqual(self.count(), before + 1)
        # a refused import writes nothing, audit included
        r = self.import_fleet("tenants: [{slug: BAD}]\n", token=self.plat)
        self.assertGreaterEqual(r.status, 400)
        self.assertEqual(self.count(), before + 1)

    def test_policy_store_audited(self):
        text = policy_text("standard.yaml").replace("name: standard-quarterly", "name: audited-policy")
        r = self.svc.request("POST", "/v1/policies", token=self.sec, body=text,
                             headers={"Content-Type": "application/yaml"})
        self.assertEqual(r.status, 201, r)
        rows = self.entries("policy.store", "policy/audited-policy/1")
        self.assertEqual(len(rows), 1)
        actor, _, details = rows[0].split(" ", 2)
        self.assertEqual(actor, "token:sec")
        sha = self.db.sql("SELECT sha256 FROM policies WHERE name = 'audited-policy' AND version = 1")
        self.assertEqual(json.loads(details), {"name": "audited-policy", "version": 1, "sha256": sha})
        before = self.count()
        r = self.svc.request("POST", "/v1/policies", token=self.sec, body=text,
                             headers={"Content-Type": "application/yaml"})
        self.assertEqual(r.status, 200, r)          # same text: nothing stored
        self.assertEqual(self.count(), before)

    def test_tokens_audited(self):
        r = self.svc.request("POST", "/v1/tokens", token=self.admin,
                             body={"role": "tenant", "tenants": ["clinic-north"], "name": "north-audit"})
        self.assertEqual(r.status, 201, r)
        tid = r.json["id"]
        rows = self.entries("token.create", f"token/{tid}")
        self.assertEqual(len(rows), 1)
        actor, _, details = rows[0].split(" ", 2)
        self.assertEqual(actor, "token:test-admin")
        details = json.loads(details)
        self.assertEqual(details, {"name": "north-audit", "role": "tenant", "tenants": ["clinic-north"]})
        self.assertNotIn(r.json["token"], rows[0])  # the secret is never recorded
        # the command line's tokens too (it writes to the database directly)
        self.svc.token("viewer", name="cli-made")
        tid2 = self.db.sql("SELECT id FROM api_tokens WHERE name = 'cli-made'")
        self.assertEqual(self.db.sql(f"SELECT actor FROM audit_log WHERE object = 'token/{tid2}'"),
                         "wavesched token create")
        # revoking: once audited, twice not
        r = self.svc.request("DELETE", f"/v1/tokens/{tid}", token=self.admin)
        self.assertEqual(r.status, 200, r)
        self.assertEqual([x.split(" ")[0] for x in self.entries("token.revoke", f"token/{tid}")],
                         ["token:test-admin"])
        r = self.svc.request("DELETE", f"/v1/tokens/{tid}", token=self.admin)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(self.entries("token.revoke", f"token/{tid}")), 1)
        self.assertEqual(self.svc.request("DELETE", f"/v1/tokens/{uuid.uuid4()}", token=self.admin).status, 404)

    def test_release_and_rollout_requests_audited(self):
        r = self.svc.request("POST", "/v1/releases", token=self.plat, body={"version": "9.9.9", "digest": DIGEST})
        self.assertEqual(r.status, 201, r)
        self.assertEqual([x.split(" ")[0] for x in self.entries("release.create", "release/9.9.9")], ["token:plat"])

    # ---- reading -----------------------------------------------------------------

    def test_list_filters_and_pages(self):
        for obj in ("rollout/7", "rollout/7/wave/0", "rollout/70", "rollout/7/tenant/a"):
            self.db.sql(f"SELECT ws_audit_append('filter-actor', 'test.filter', '{obj}', '{{\"n\": 1.50}}')")
        r = self.req("/v1/audit?actor=filter-actor&object=rollout/7")
        self.assertEqual(r.status, 200, r)
        self.assertEqual([e["object"] for e in r.json["entries"]],
                         ["rollout/7", "rollout/7/wave/0", "rollout/7/tenant/a"])
        self.assertIsNone(r.json["next_after_id"])
        e = r.json["entries"][0]
        self.assertEqual(set(e), {"id", "at", "actor", "action", "object", "details", "prev_hash", "hash"})
        self.assertRegex(e["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        self.assertIn('"n": 1.50', r.body.decode())   # numbers as stored
        # pages, oldest first
        seen, after = [], None
        while True:
            q = "/v1/audit?actor=filter-actor&limit=2" + (f"&after_id={after}" if after else "")
            page = self.req(q).json
            seen += [x["object"] for x in page["entries"]]
            after = page["next_after_id"]
            if after is None:
                break
        self.assertEqual(seen, ["rollout/7", "rollout/7/wave/0", "rollout/70", "rollout/7/tenant/a"])
        # since: nothing in the future, everything since long ago
        self.assertEqual(self.req("/v1/audit?since=2999-01-01T00:00:00Z").json["entries"], [])
        self.assertEqual(len(self.req("/v1/audit?actor=filter-actor&since=2000-01-01T00:00:00Z").json["entries"]), 4)
        ids = [x["id"] for x in self.req("/v1/audit?limit=1000").json["entries"]]
        self.assertEqual(ids, sorted(ids))
        # wavectl
        out = self.ctl("audit", "list", "--actor", "filter-actor", "--object", "rollout/7")
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        self.assertEqual(len(lines), 4)           # header and three entries
        self.assertTrue(all("test.filter" in l for l in lines[1:]))

    def test_list_refuses_bad_queries(self):
        for q, field in (("since=yesterday", "since"), ("limit=0", "limit"), ("limit=1001", "limit"),
                         ("limit=x", "limit"), ("after_id=-3", "after_id"), ("after_id=abc", "after_id"),
                         ("actor=" + "a" * 300, "actor"), ("object=%01", "object")):
            r = self.req("/v1/audit?" + q)
            self.assertEqual(r.status, 400, (q, r))
            self.assertEqual([d["field"] for d in r.json["error"]["details"]], [field], q)
        for q in ("known_id=0", "known_id=1&known_hash=XYZ", "known_hash=" + "a" * 64):
            self.assertEqual(self.req("/v1/audit/verify?" + q).status, 400, q)
        r = self.ctl("audit", "verify", "--known", "12")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(self.ctl("audit", "list", "--limit", "0").returncode, 2)
        for args in (("audit", "--help"), ("audit", "verify", "--help"), ("audit", "list", "--help")):
            r = self.ctl(*args)
            self.assertEqual(r.returncode, 0, args)
            self.assertIn("usage: wavectl audit", r.stdout)

    def test_roles(self):
        north = self.svc.token("tenant", "clinic-north", name="north")
        for path in ("/v1/audit", "/v1/audit/verify"):
            self.assertEqual(self.req(path, north).status, 403, path)
            self.assertEqual(self.svc.request("GET", path).status, 401, path)
            for tok in (self.admin, self.plat, self.sec, self.appr, self.viewer):
                self.assertEqual(self.req(path, tok).status, 200, path)
        r = self.ctl("audit", "verify", token=north)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("HTTP 403", r.stderr)

    # ---- the chain check ------------------------------------------------------------

    def test_verify_whole(self):
        r = self.req("/v1/audit/verify")
        self.assertEqual(r.status, 200, r)
        head = self.db.sql("SELECT id || ' ' || hash FROM audit_log ORDER BY id DESC LIMIT 1").split()
        self.assertEqual(r.json, {"ok": True, "entries": self.count(), "verified": self.count(),
                                  "head": {"id": int(head[0]), "hash": head[1]}, "first_broken": None})
        out = self.ctl("audit", "verify")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(f"head {head[0]}:{head[1]}", out.stdout)
        out = self.ctl("audit", "verify", "--known", f"{head[0]}:{head[1]}")
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_edited_entry(self):
        ids = self.append(3)
        self.tamper(f"UPDATE audit_log SET details = '{{\"i\": 99}}' WHERE id = {ids[1]}")
        bad = self.broken()
        self.assertEqual((bad["id"], bad["reason"]), (ids[1], "edited"))
        out = self.ctl("audit", "verify")
        self.assertEqual(out.returncode, 1)
        self.assertIn(f"audit entry {ids[1]}: hash does not match its fields (edited)", out.stderr)

    def test_deleted_entry(self):
        ids = self.append(3)
        self.tamper(f"DELETE FROM audit_log WHERE id = {ids[1]}")
        bad = self.broken()
        self.assertEqual((bad["id"], bad["reason"]), (ids[2], "deleted"))
        out = self.ctl("audit", "verify")
        self.assertEqual(out.returncode, 1)
        self.assertIn(f"audit entry {ids[2]}: does not follow entry {ids[0]}", out.stderr)
        self.assertIn("(deleted)", out.stderr)

    def test_reordered_entries(self):
        ids = self.append(3)
        a, b = ids[0], ids[2]
        cols = "at, actor, action, object, details, prev_hash, hash"
        self.tamper(f"UPDATE audit_log t SET ({cols}) = (SELECT {cols} FROM audit_log s "
                    f"WHERE s.id = CASE t.id WHEN {a} THEN {b} ELSE {a} END) WHERE t.id IN ({a}, {b})")
        bad = self.broken()
        self.assertEqual((bad["id"], bad["reason"]), (a, "reordered"))
        out = self.ctl("audit", "verify")
        self.assertEqual(out.returncode, 1)
        self.assertIn(f"audit entry {a}: holds the entry written as entry {b} (reordered)", out.stderr)

    def test_truncated_tail(self):
        ids = self.append(3)
        head = self.db.sql(f"SELECT hash FROM audit_log WHERE id = {ids[2]}")
        self.tamper(f"DELETE FROM audit_log WHERE id >= {ids[1]}")
        # What is left is a valid chain ...
        r = self.req("/v1/audit/verify")
        self.assertTrue(r.json["ok"], r.json)
        self.assertEqual(r.json["head"]["id"], ids[0])
        # ... which the head recorded before shows cut short.
        bad = self.broken(f"/v1/audit/verify?known_id={ids[2]}&known_hash={head}")
        self.assertEqual((bad["id"], bad["reason"]), (ids[2], "truncated"))
        out = self.ctl("audit", "verify", "--known", f"{ids[2]}:{head}")
        self.assertEqual(out.returncode, 1)
        self.assertIn(f"audit entry {ids[2]}: the head recorded earlier is gone", out.stderr)
        self.assertIn("(truncated)", out.stderr)

    def test_rewritten_known_head(self):
        ids = self.append(1)
        self.assertEqual(self.req(f"/v1/audit/verify?known_id={ids[0]}&known_hash={'0' * 64}").json["first_broken"]
                         ["reason"], "rewritten")

    def test_service_role_cannot_rewrite(self):
        """The owner of audit_log -- the role that ran the migrations -- has
        no UPDATE, DELETE or TRUNCATE on it (superusers, like the one the
        suites use, have every privilege; hence a role of its own here)."""
        role = "ws_owner_" + uuid.uuid4().hex[:8]
        dbname = "ws_own_" + uuid.uuid4().hex[:8]
        h.psql(self.db.admin_url, f"CREATE ROLE {role} LOGIN")
        h.psql(self.db.admin_url, f"CREATE DATABASE {dbname} OWNER {role}")
        try:
            url = h.db_url(self.db.admin_url, dbname).replace("user=postgres", f"user={role}")
            self.assertIn(f"user={role}", url)
            env = dict(self.svc.env, WAVESCHED_DATABASE_URL=url)
            out = subprocess.run([h.WAVESCHED, "migrate"], env=env, capture_output=True, text=True, timeout=120)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(h.psql(url, "SELECT ws_audit_append('me', 'test', 'x')"), "1")
            for sql in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
                with self.assertRaises(RuntimeError) as cm:
                    h.psql(url, "ALTER TABLE audit_log DISABLE TRIGGER USER; " + sql)
                self.assertIn("permission denied for table audit_log", str(cm.exception))
            self.assertEqual(h.psql(url, "SELECT (ws_audit_check() ->> 'ok')"), "true")
        finally:
            h.psql(self.db.admin_url, f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
            h.psql(self.db.admin_url, f"DROP ROLE IF EXISTS {role}")


if __name__ == "__main__":
    main()
