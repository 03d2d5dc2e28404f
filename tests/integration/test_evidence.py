"""Evidence bundles (GET /v1/rollouts/{id}/evidence, `wavectl evidence`):
a rollout created, approved and started through the API, then taken a few
steps by ws_engine_tx -- the leader's own SQL entry point, called here as
the leader would, so that gate results with their evidence, an executor
call and its result and the engine's audit entries exist without running
the engine.  The exported bundle verifies offline; each single edit to the
file -- a details field, a number's spelling, a policy byte, a plan byte, an
approval comment, an executor result, an audit entry removed, two swapped
-- fails with the message that names it.
"""
import copy
import json
import os
import tempfile

import wsharness as h
from wsharness import ServiceCase, example_fleet, main, wavectl

DIGEST = "sha256:" + "ef" * 32
COMMENT = 'ok by me: "quoted", back\\slash, tab\there, é ✓, line\u2028separator'

# Only the training tenants: one wave, a few tenants.
POLICY = """apiVersion: wavesched/v1
kind: WavePolicy
metadata: {name: evidence-policy}
spec:
  release_kinds: [standard]
  unmatched: skip
  schedule: {respect_windows: false, slot: 30m}
  defaults:
    soak: 10m
    gates: {approval: {min: 1, roles: [approver]}}
  waves:
    - name: training
      select: {labels: {env: training}}
"""


class Raw(str):
    """A JSON number kept as written."""


def load(text):
    return json.loads(text, parse_float=Raw, parse_int=Raw)


def dump(v):
    """JSON with the numbers as they were read; non-ASCII escaped (a bundle
    re-written by a tool stays verifiable)."""
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, dict):
        return "{" + ", ".join(json.dumps(k) + ": " + dump(x) for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(dump(x) for x in v) + "]"
    return json.dumps(v)


class Evidence(ServiceCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        svc = cls.svc
        cls.plat = svc.token("platform", name="plat")
        cls.appr = svc.token("approver", name="appr")
        cls.viewer = svc.token("viewer", name="view")
        cls.north = svc.token("tenant", "training-a", name="trainer")
        r = svc.request("PUT", "/v1/fleet", token=cls.plat, body=example_fleet(),
                        headers={"Content-Type": "application/yaml"})
        assert r.status == 200, r
        r = svc.request("POST", "/v1/policies", token=cls.plat, body=POLICY,
                        headers={"Content-Type": "application/yaml"})
        assert r.status == 201, r
        r = svc.request("POST", "/v1/releases", token=cls.plat,
                        body={"version": "18.1.0", "digest": DIGEST, "notes": "evidence suite"})
        assert r.status == 201, r
        # Attestations of the release (issue 7), recorded before the rollout
        # so that their audit entries stay outside its stretch of the log.
        cls.attestations = []
        for name, result, document in (("tests", "passed", {"passed": 412, "failed": 0, "suite": "unit"}),
                                       ("image-scan", "failed", {"critical": 2, "scanner": "trivy"}),
                                       ("image-scan", "passed", {"critical": 0, "scanner": "trivy"})):
            r = svc.request("POST", "/v1/releases/18.1.0/attestations", token=cls.plat,
                            body={"name": name, "result": result, "digest": DIGEST, "document": document,
                                  "produced_by": "ci: pipeline 7"})
            assert r.status == 201, r
            cls.attestations.append(r.json)
        r = svc.request("POST", "/v1/rollouts", token=cls.plat,
                        body={"release": "18.1.0", "policy": "evidence-policy", "start": "2026-12-01T00:00:00Z"})
        assert r.status == 201, r
        cls.rid = rid = r.json["id"]
        r = svc.request("POST", f"/v1/rollouts/{rid}/approve", token=cls.appr, body={"wave": 1, "comment": COMMENT})
        assert r.status == 200, r
        # An entry about something else in the middle of the rollout's:
        # the bundle carries it as a link only.
        r = svc.request("POST", "/v1/releases", token=cls.plat, body={"version": "18.1.1", "digest": DIGEST})
        assert r.status == 201, r
        r = svc.request("POST", f"/v1/rollouts/{rid}/start", token=cls.plat, body={"reason": "go"})
        assert r.status == 200, r
        cls.engine_steps()
        r = svc.request("GET", f"/v1/rollouts/{rid}/evidence", token=cls.viewer)
        assert r.status == 200, r
        cls.bundle_text = r.body.decode()
        cls.tmp = tempfile.mkdtemp(prefix="ws-evidence-")

    @classmethod
    def engine_tx(cls, epoch, ops):
        text = dump(ops).replace("'", "''")
        return json.loads(cls.db.sql(f"SELECT ws_engine_tx({epoch}, '{text}'::jsonb)"))

    @classmethod
    def engine_steps(cls):
        """What the leader writes for the first tenant of the wave: the
        rollout running, a backup gate, the deploy intent and its result,
        a health gate, the tenant healthy."""
        rid, db = cls.rid, cls.db
        epoch = int(db.sql("SELECT epoch FROM ws_lease_acquire('evidence-suite', 600000)"))
        wave = int(db.sql(f"SELECT id FROM waves WHERE rollout_id = {rid} AND idx = 1"))
        dep, slug = db.sql(f"SELECT id || ' ' || slug FROM deployments WHERE rollout_id = {rid} "
                           "ORDER BY id LIMIT 1").split()
        dep = int(dep)
        cls.slug = slug
        cls.engine_tx(epoch, [
            {"op": "rollout", "id": rid, "from": "approved", "to": "running"},
            {"op": "wave", "id": wave, "from": "pending", "to": "backup_check"},
            {"op": "gate", "rollout": rid, "wave": wave, "deployment": dep, "gate": "backup", "result": "pass",
             "evidence": {"backup_id": 12, "age_s": Raw("3600.50"), "location": "s3://b/x", "max_age_s": 86400}},
            {"op": "wave", "id": wave, "from": "backup_check", "to": "deploying"},
            {"op": "deployment", "id": dep, "from": "scheduled", "to": "waiting_window"},
            {"op": "deployment", "id": dep, "from": "waiting_window", "to": "deploying", "set": {"attempt": 1}},
            {"op": "outbox", "deployment": dep, "kind": "deploy", "attempt": 1,
             "request": {"version": "18.1.0", "tenant": slug}},
        ])
        oid = int(db.sql(f"SELECT id FROM outbox WHERE rollout_id = {rid}"))
        cls.engine_tx(epoch, [
            {"op": "outbox_done", "id": oid, "state": "done", "result": {"status": 200, "took_ms": Raw("1.50")}},
            {"op": "deployment", "id": dep, "from": "deploying", "to": "verifying"},
            {"op": "gate", "rollout": rid, "wave": wave, "deployment": dep, "gate": "health", "result": "pass",
             "evidence": {"samples": [{"status": 200, "latency_ms": Raw("12.25")}, {"status": 200, "latency_ms": Raw("9.0")}],
                          "baseline_ms": 10}},
            {"op": "deployment", "id": dep, "from": "verifying", "to": "healthy"},
        ])

    # ---- helpers --------------------------------------------------------------

    def write(self, text, name="bundle.json"):
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def verify(self, text):
        return wavectl("evidence", "verify", self.write(text))

    def refused(self, text, *expect):
        out = self.verify(text)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        for e in expect:
            self.assertIn(e, out.stderr)
        return out.stderr

    def doc(self):
        return load(self.bundle_text)

    def entries(self, doc, action=None):
        return [e for e in doc["audit"]["entries"] if "actor" in e and (action is None or e["action"] == action)]

    # ---- the bundle -------------------------------------------------------------

    def test_bundle_contents(self):
        doc = json.loads(self.bundle_text)
        self.assertEqual(doc["format"], "wavesched-evidence/1")
        self.assertEqual(doc["rollout"]["id"], self.rid)
        self.assertEqual(doc["rollout"]["state"], "running")
        self.assertEqual((doc["release"]["version"], doc["release"]["digest"], doc["release"]["kind"],
                          doc["release"]["created_by"]), ("18.1.0", DIGEST, "standard", "token:plat"))
        self.assertEqual(doc["policy"]["text"], POLICY)
        self.assertEqual(doc["policy"]["name"], "evidence-policy")
        self.assertEqual([p["version"] for p in doc["plans"]], [1])
        self.assertEqual(doc["waves"][0]["approvals"][0]["comment"], COMMENT)
        self.assertEqual([(g["gate"], g["tenant"]) for g in doc["gate_results"]],
                         [("backup", self.slug), ("health", self.slug)])
        self.assertEqual(doc["gate_results"][1]["evidence"]["samples"][0]["latency_ms"], 12.25)
        self.assertEqual([(c["kind"], c["state"], c["result"]["status"]) for c in doc["executor_calls"]],
                         [("deploy", "done", 200)])
        actions = [e["action"] for e in self.entries(doc)]
        for a in ("rollout.create", "wave.approve", "rollout.start", "rollout.running", "wave.deploying",
                  "outbox.deploy", "outbox.done", "deployment.healthy"):
            self.assertIn(a, actions)
        self.assertTrue(all(e["object"] == f"rollout/{self.rid}" or e["object"].startswith(f"rollout/{self.rid}/")
                            for e in self.entries(doc)))
        links = [e for e in doc["audit"]["entries"] if "actor" not in e]
        self.assertEqual(len(links), 1)
        self.assertEqual(set(links[0]), {"id", "prev_hash", "hash"})
        self.assertEqual(self.db.sql(f"SELECT object FROM audit_log WHERE id = {links[0]['id']}"), "release/18.1.1")
        self.assertTrue(doc["audit"]["check"]["ok"])
        # the check covers the rollout's stretch of the log; the head is the log's
        self.assertEqual(doc["audit"]["check"]["entries"], len(doc["audit"]["entries"]))
        self.assertEqual(doc["audit"]["check"]["head"]["id"],
                         int(self.db.sql("SELECT max(id) FROM audit_log")))
        self.assertIn('"took_ms": 1.50', self.bundle_text)    # numbers as the database keeps them
        self.assertIn('"age_s": 3600.50', self.bundle_text)

    def test_roles_and_not_found(self):
        path = f"/v1/rollouts/{self.rid}/evidence"
        self.assertEqual(self.svc.request("GET", path, token=self.north).status, 403)
        self.assertEqual(self.svc.request("GET", path).status, 401)
        for tok in (self.admin, self.plat, self.appr):
            self.assertEqual(self.svc.request("GET", path, token=tok).status, 200)
        for bad in ("999999", "0", "x1"):
            r = self.svc.request("GET", f"/v1/rollouts/{bad}/evidence", token=self.viewer)
            self.assertEqual(r.status, 404, bad)
        out = wavectl("evidence", "999999", token=self.viewer, url=f"http://127.0.0.1:{self.svc.port}")
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn("no such rollout", out.stderr)
        self.assertEqual(wavectl("evidence").returncode, 2)
        self.assertEqual(wavectl("evidence", "verify").returncode, 2)
        for args in (("evidence", "--help"), ("evidence", "verify", "--help")):
            out = wavectl(*args)
            self.assertEqual(out.returncode, 0)
            self.assertIn("usage: wavectl evidence", out.stdout)

    def test_wavectl_exports_and_verifies(self):
        out = wavectl("evidence", str(self.rid), token=self.viewer, url=f"http://127.0.0.1:{self.svc.port}")
        self.assertEqual(out.returncode, 0, out.stderr)
        exported = json.loads(out.stdout)
        self.assertEqual(exported["rollout"], json.loads(self.bundle_text)["rollout"])
        out = self.verify(out.stdout)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(f"evidence for rollout {self.rid} (release 18.1.0, policy evidence-policy): consistent",
                      out.stdout)
        self.assertIn("1 approval(s) and 1 executor call(s) match the audit entries", out.stdout)
        self.assertIn("2 gate result(s) included", out.stdout)
        self.assertIn("linked through 1 other entries", out.stdout)
        self.assertIn("the states of the rollout, its waves and deployments (4) are where", out.stdout)
        last = self.entries(self.doc())[-1]
        self.assertIn(f"wavectl audit verify --known {last['id']}:{last['hash']}", out.stdout)
        # The line it prints checks against the live log.
        r = wavectl("audit", "verify", "--known", f"{last['id']}:{last['hash']}", token=self.viewer,
                    url=f"http://127.0.0.1:{self.svc.port}")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_rewritten_file_still_verifies(self):
        """Pretty-printed or re-serialised with escapes, the values are the same."""
        out = self.verify(dump(self.doc()))
        self.assertEqual(out.returncode, 0, out.stderr)
        # json's floats lose "1.50" and "3600.50": put them back as written
        pretty = (json.dumps(json.loads(self.bundle_text), indent=2, ensure_ascii=True)
                  .replace('"took_ms": 1.5\n', '"took_ms": 1.50\n').replace('"age_s": 3600.5,', '"age_s": 3600.50,'))
        out = self.verify(pretty)
        self.assertEqual(out.returncode, 0, out.stderr)

    # ---- single edits ---------------------------------------------------------------

    def test_edited_details_field(self):
        doc = self.doc()
        e = self.entries(doc, "rollout.create")[0]
        e["details"]["tenants"] = Raw(str(int(e["details"]["tenants"]) + 1))
        self.refused(dump(doc), f"audit entry {e['id']}: hash does not match its fields (edited)")

    def test_number_spelling_is_an_edit(self):
        doc = self.doc()
        e = self.entries(doc, "outbox.done")[0]
        self.assertEqual(e["details"]["result"]["took_ms"], "1.50")
        e["details"]["result"]["took_ms"] = Raw("1.5")
        self.refused(dump(doc), f"audit entry {e['id']}: hash does not match its fields (edited)")

    def test_edited_actor_and_time(self):
        for field, value in (("actor", "token:someone-else"), ("at", None)):
            doc = self.doc()
            e = self.entries(doc, "wave.approve")[0]
            e[field] = value or e["at"].replace(".", ".9")[:27] + "Z"
            self.refused(dump(doc), f"audit entry {e['id']}:")

    def test_policy_byte(self):
        doc = self.doc()
        doc["policy"]["text"] = doc["policy"]["text"].replace("soak: 10m", "soak: 1m")
        self.refused(dump(doc), "policy evidence-policy: sha256 does not match the policy text")

    def test_policy_sha_swapped_with_text(self):
        """A new text with its own sha256 is consistent by itself, but not
        with the rollout and its creation entry."""
        import hashlib
        doc = self.doc()
        doc["policy"]["text"] += "# more\n"
        doc["policy"]["sha256"] = hashlib.sha256(doc["policy"]["text"].encode()).hexdigest()
        self.refused(dump(doc), f"rollout {self.rid}: policy_sha256 is not the sha256 of the bundle's policy")
        doc["rollout"]["policy_sha256"] = doc["policy"]["sha256"]
        self.refused(dump(doc), "(rollout.create): records another policy sha256")

    def test_plan_byte(self):
        doc = self.doc()
        doc["plans"][0]["plan"] = doc["plans"][0]["plan"].replace("training", "trainin9", 1)
        self.refused(dump(doc), "plan version 1: sha256 does not match the plan text")

    def test_approval_comment(self):
        doc = self.doc()
        doc["waves"][0]["approvals"][0]["comment"] = "not what was said"
        self.refused(dump(doc), "wave 1: the approve by token:appr", "matches no audit entry")

    def test_approval_removed(self):
        doc = self.doc()
        doc["waves"][0]["approvals"] = []
        e = self.entries(doc, "wave.approve")[0]
        self.refused(dump(doc), f"audit entry {e['id']}: the decision of token:appr on wave 1 is missing")

    def test_executor_result(self):
        doc = self.doc()
        doc["executor_calls"][0]["result"]["status"] = Raw("500")
        self.refused(dump(doc), f"executor call {doc['executor_calls'][0]['id']} (deploy of {self.slug}): "
                     "its result is not the one the audit entries recorded")

    def test_states(self):
        doc = self.doc()
        dep = next(d for d in doc["deployments"] if d["tenant"] == self.slug)
        healthy = next(e for e in self.entries(doc, "deployment.healthy"))
        dep["state"] = "failed"
        self.refused(dump(doc), f"deployment of {self.slug}: state failed, but its last audit entry "
                     f"({healthy['id']}) moved it to healthy")
        doc = self.doc()
        other = next(d for d in doc["deployments"] if d["tenant"] != self.slug)
        other["state"] = "healthy"
        self.refused(dump(doc), f"deployment of {other['tenant']}: state healthy, but no audit entry moved it "
                     "from scheduled")
        doc = self.doc()
        doc["rollout"]["state"] = "completed"
        self.refused(dump(doc), f"rollout/{self.rid}: state completed, but its last audit entry")
        doc = self.doc()
        doc["waves"][0]["state"] = "passed"
        self.refused(dump(doc), "wave 1: state passed, but its last audit entry", "moved it to deploying")

    def test_entry_removed(self):
        doc = self.doc()
        entries = doc["audit"]["entries"]
        i = next(k for k, e in enumerate(entries) if e.get("action") == "wave.approve")
        removed, after = entries[i], entries[i + 1]
        del entries[i]
        self.refused(dump(doc), f"audit entry {after['id']}: does not follow entry {entries[i - 1]['id']}",
                     "(deleted)")
        self.assertIsNotNone(removed)

    def test_first_entry_removed(self):
        doc = self.doc()
        del doc["audit"]["entries"][0]
        self.refused(dump(doc), f"audit: no rollout.create entry for rollout {self.rid}")

    def test_entries_swapped(self):
        doc = self.doc()
        entries = doc["audit"]["entries"]
        entries[-1], entries[-2] = entries[-2], entries[-1]
        self.refused(dump(doc), f"audit entry {entries[-2]['id']}: was written after entry {entries[-1]['id']}, "
                     "which the file stores elsewhere (reordered)")

    def test_contents_swapped_ids_kept(self):
        doc = self.doc()
        full = self.entries(doc)
        a, b = full[1], full[2]
        ida, idb = a["id"], b["id"]
        a_copy = copy.deepcopy(a)
        a.clear()
        a.update(b, id=ida)
        b.clear()
        b.update(a_copy, id=idb)
        self.refused(dump(doc), f"audit entry {ida}: holds the entry written as entry {idb} (reordered)")

    def test_service_saw_a_broken_chain(self):
        doc = self.doc()
        doc["audit"]["check"] = {"ok": False, "first_broken": {"id": 1, "reason": "edited",
                                                                "message": "audit entry 1: hash does not match"}}
        self.refused(dump(doc), "the service found the audit log broken when it made this bundle")

    def test_bundle_of_a_tampered_log(self):
        """The link in the middle of the rollout's entries edited in the
        database: the service's check in the bundle names it, and the
        offline verifier refuses the bundle."""
        link = next(e for e in self.doc()["audit"]["entries"] if "actor" not in e)
        self.db.sql("DROP TABLE IF EXISTS audit_copy; CREATE TABLE audit_copy AS SELECT * FROM audit_log")
        self.addCleanup(self.db.sql, "SET session_replication_role = replica; DELETE FROM audit_log; "
                        "INSERT INTO audit_log SELECT * FROM audit_copy; DROP TABLE audit_copy")
        self.db.sql("SET session_replication_role = replica; "
                    f"UPDATE audit_log SET actor = 'mallory' WHERE id = {link['id']}")
        r = self.svc.request("GET", f"/v1/rollouts/{self.rid}/evidence", token=self.viewer)
        self.assertEqual(r.status, 200, r)
        check = r.json["audit"]["check"]
        self.assertFalse(check["ok"])
        self.assertEqual((check["first_broken"]["id"], check["first_broken"]["reason"]), (int(link["id"]), "edited"))
        self.refused(r.body.decode(), "the service found the audit log broken when it made this bundle: "
                     f"audit entry {link['id']}: hash does not match its fields (edited)")

    def test_not_a_bundle(self):
        self.refused("{\"format\": \"something else\"}", "not an evidence bundle")
        err = self.refused("{\"format\": ", "bundle.json:2:1: did not find expected node content")
        self.assertTrue(err.startswith("wavectl: "), err)
        out = wavectl("evidence", "verify", os.path.join(self.tmp, "missing.json"))
        self.assertEqual(out.returncode, 1)
        self.assertIn("cannot open", out.stderr)


    # ---- attestations (issue 7) -------------------------------------------------------

    def test_attestations_in_the_bundle(self):
        doc = json.loads(self.bundle_text)
        self.assertEqual([(a["id"], a["name"], a["result"], a["sha256"]) for a in doc["attestations"]],
                         [(a["id"], a["name"], a["result"], a["sha256"]) for a in self.attestations])
        self.assertEqual(doc["attestations"][1]["document"], {"critical": 2, "scanner": "trivy"})
        self.assertEqual(doc["attestation_gates"], [])   # the policy requires none
        out = self.verify(self.bundle_text)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("3 attestation(s) of the release: each document matches its sha256 and is bound to "
                      "the release digest", out.stdout)

    def test_attestation_edits(self):
        a = self.attestations[1]
        doc = self.doc()
        doc["attestations"][1]["document"]["critical"] = Raw("0")
        self.refused(dump(doc), f"attestations[1] (image-scan, id {a['id']}): document does not match its "
                     f"sha256 {a['sha256']}")
        doc = self.doc()
        doc["attestations"][1]["result"] = "passed"
        doc["attestations"][1]["sha256"] = doc["attestations"][2]["sha256"]
        self.refused(dump(doc), f"attestations[1] (image-scan, id {a['id']}): document does not match")
        doc = self.doc()
        doc["attestations"][0]["digest"] = "sha256:" + "00" * 32
        self.refused(dump(doc), f"attestations[0] (tests, id {self.attestations[0]['id']}): bound to digest "
                     f"sha256:{'00' * 32}, not the release's {DIGEST}")
        doc = self.doc()
        doc["attestation_gates"] = [{"wave": 1, "name": "training", "required": ["image-scan"], "results": [
            {"id": 1, "result": "pass", "at": "2026-12-01T00:00:00Z", "evidence": {"attestations": [
                {"name": "image-scan", "id": a["id"], "result": "passed", "sha256": a["sha256"]}]}}]}]
        self.refused(dump(doc), "attestation_gates[0].results[0].evidence.attestations[0]: "
                     f"attestation {a['id']} is not in the bundle with that sha256 and result")


if __name__ == "__main__":
    main()
