"""Release attestations and their gate (issue 7), end to end: the real
service with its engine in accelerated time, the simulated fleet, a real
PostgreSQL, and wavectl.

- a rollout whose policy requires [tests, image-scan] before its first wave
  cannot start without them (409 naming them), nor with a failed image
  scan; once they pass (one recorded with `wavectl release attest`) it
  starts and completes, and its evidence bundle carries them and verifies;
- a requirement of wave 2 only: the rollout starts, wave 2 holds with the
  reason in GET /v1/rollouts/{id} (one gate row, not one per decision),
  and a passing attestation releases it;
- the API's refusals: another digest (422 naming both, nothing stored),
  roles that may not record (403), bad fields, unknown releases.
"""
import datetime
import hashlib
import json
import os
import tempfile
import time
import unittest

import wsharness as h
from simfleet import SimFleet, fleet_for_sim
from wsharness import main, wavectl

SCALE = 20000
DIGEST = "sha256:" + "a7" * 32
OTHER_DIGEST = "sha256:" + "b8" * 32

FIRST_WAVE = """apiVersion: wavesched/v1
kind: WavePolicy
metadata: {name: attest-first}
spec:
  release_kinds: [standard]
  unmatched: skip
  schedule: {respect_windows: false, slot: 30m}
  defaults:
    soak: 10m
    gates: {attestations: [tests, image-scan]}
  waves:
    - name: training
      select: {labels: {env: training}}
"""

LATER_WAVE = """apiVersion: wavesched/v1
kind: WavePolicy
metadata: {name: attest-later}
spec:
  release_kinds: [standard]
  unmatched: skip
  schedule: {respect_windows: false, slot: 30m}
  defaults:
    soak: 10m
  waves:
    - name: staging
      select: {labels: {env: staging}}
    - name: training
      select: {labels: {env: training}}
      gates: {attestations: [image-scan]}
"""


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class AttestationSuite(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ws-attest-")
        cls.origin = int(time.time())
        cls.db = h.Database()
        cls.svc = h.Service(cls.db.url, args=["--time-scale", str(SCALE), "--time-origin", rfc3339(cls.origin)],
                            extra_env={"WAVESCHED_OUTBOUND_ALLOW": "127.0.0.0/8", "WAVESCHED_LEASE_TTL": "3s"})
        cls.svc.wait_ready()
        svc = cls.svc
        cls.admin = svc.token("admin", name="admin")
        cls.plat = svc.token("platform", name="alice")
        cls.ci = svc.token("platform", name="ci")
        cls.sec = svc.token("security", name="sec")
        cls.viewer = svc.token("viewer", name="view")
        cls.appr = svc.token("approver", name="appr")
        cls.tenant = svc.token("tenant", "training-a", name="owner")
        cls.url = f"http://127.0.0.1:{svc.port}"
        backup = svc.token("platform", name="backup-job")
        cls.sim = SimFleet(cls.tmp, fleet=h.example_fleet(), env={"WS_BACKUP_TOKEN": backup},
                           converge_ms=20, service=cls.url, token_env="WS_BACKUP_TOKEN",
                           backup_interval="6h", time_scale=SCALE, time_origin=rfc3339(cls.origin))
        cls.sim.__enter__()
        fleet = fleet_for_sim(h.example_fleet(), cls.sim.url, executor="webhook")
        r = svc.request("PUT", "/v1/fleet", token=cls.admin, body=fleet, headers={"Content-Type": "application/yaml"})
        assert r.status == 200, r
        for text in (FIRST_WAVE, LATER_WAVE):
            r = svc.request("POST", "/v1/policies", token=cls.plat, body=text,
                            headers={"Content-Type": "application/yaml"})
            assert r.status == 201, r
        assert cls.sim.report_backups()["failed"] == 0

    @classmethod
    def tearDownClass(cls):
        try:
            calls = cls.sim.calls()
            assert not {k: n for k, n in calls["deploys"].items() if n > 1}, calls
        finally:
            cls.sim.__exit__(None, None, None)
            cls.svc.stop()
            cls.db.drop()

    # ---- helpers ------------------------------------------------------------------

    def now(self):
        return self.origin + (time.time() - self.origin) * SCALE

    def release(self, version):
        r = self.svc.request("POST", "/v1/releases", token=self.plat, body={"version": version, "digest": DIGEST})
        self.assertEqual(r.status, 201, r)

    def attest(self, version, name, result, token=None, digest=DIGEST, document=None, produced_by="ci: pipeline 4411"):
        return self.svc.request("POST", f"/v1/releases/{version}/attestations", token=token or self.ci,
                                body={"name": name, "result": result, "digest": digest,
                                      "document": document if document is not None else {"name": name, "ok": result},
                                      "produced_by": produced_by})

    def rollout(self, version, policy):
        r = self.svc.request("POST", "/v1/rollouts", token=self.plat,
                             body={"release": version, "policy": policy, "start": rfc3339(self.now() + 60)})
        self.assertEqual(r.status, 201, r)
        return r.json["id"]

    def get(self, rid):
        r = self.svc.request("GET", f"/v1/rollouts/{rid}", token=self.viewer)
        self.assertEqual(r.status, 200, r)
        return r.json

    def start(self, rid):
        return self.svc.request("POST", f"/v1/rollouts/{rid}/start", token=self.plat, body={"reason": "go"})

    def wait_for(self, rid, pred, what, timeout=40):
        deadline = time.time() + timeout
        ro = None
        while time.time() < deadline:
            ro = self.get(rid)
            if pred(ro):
                return ro
            time.sleep(0.1)
        self.fail(f"rollout {rid}: {what} not reached after {timeout}s:\n{json.dumps(ro)[:3000]}\n"
                  f"{self.svc.log()[-3000:]}")

    def attest_gates(self, wave):
        return [g for g in wave["gates"] if g["gate"] == "attestations"]

    # ---- a requirement of the first wave -----------------------------------------------

    def test_first_wave_cannot_start_without_them(self):
        self.release("20.1.0")
        rid = self.rollout("20.1.0", "attest-first")
        r = self.start(rid)
        self.assertEqual(r.status, 409, r)
        msg = r.json["error"]["message"]
        self.assertIn(f"rollout {rid} cannot start: wave 1 (training) requires attestations of release 20.1.0", msg)
        self.assertIn("tests missing, image-scan missing", msg)
        self.assertEqual([d["field"] for d in r.json["error"]["details"]], ["attestations.tests", "attestations.image-scan"])
        self.assertEqual(self.get(rid)["state"], "planned")

        # A failed scan blocks too, naming who recorded it.
        self.assertEqual(self.attest("20.1.0", "tests", "passed").status, 201)
        r = self.attest("20.1.0", "image-scan", "failed", document={"critical": 2, "high": 7})
        self.assertEqual(r.status, 201, r)
        failed = r.json
        self.assertEqual((failed["name"], failed["result"], failed["recorded_by"], failed["produced_by"]),
                         ("image-scan", "failed", "token:ci", "ci: pipeline 4411"))
        r = self.start(rid)
        self.assertEqual(r.status, 409, r)
        self.assertIn("image-scan failed (recorded", r.json["error"]["message"])
        self.assertIn("by token:ci", r.json["error"]["message"])
        self.assertNotIn("tests", r.json["error"]["message"].split("20.1.0:")[1])

        # The passing scan, through wavectl, with the digest from the in-toto subject.
        statement = {"_type": "https://in-toto.io/Statement/v1",
                     "subject": [{"name": "odoo-erp", "digest": {"sha256": DIGEST[7:]}}],
                     "predicateType": "https://cosign.sigstore.dev/attestation/vuln/v1",
                     "predicate": {"scanner": {"uri": "trivy", "result": {"critical": 0}}}}
        path = os.path.join(self.tmp, "scan.json")
        with open(path, "w") as f:
            json.dump(statement, f)
        out = wavectl("release", "attest", "20.1.0", "--name", "image-scan", "--result", "passed",
                      "--document", path, "--produced-by", "ci: pipeline 4412 (trivy)", token=self.ci, url=self.url)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("attestation image-scan of release 20.1.0 recorded: passed", out.stdout)
        out = wavectl("release", "attestations", "20.1.0", token=self.viewer, url=self.url)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("3 attestation(s)", out.stdout)
        self.assertIn("image-scan passed", out.stdout)
        self.assertIn("ci: pipeline 4412 (trivy)", out.stdout)
        out = wavectl("release", "show", "20.1.0", token=self.viewer, url=self.url)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("attestations (latest of each name):", out.stdout)
        self.assertRegex(out.stdout, r"\n\d+ +image-scan +passed ")

        r = self.start(rid)
        self.assertEqual(r.status, 200, r)
        ro = self.wait_for(rid, lambda ro: ro["state"] in ("completed", "halted"), "completed")
        self.assertEqual(ro["state"], "completed", ro)
        rows = self.attest_gates(ro["waves"][0])
        self.assertEqual([g["result"] for g in rows], ["pass"])
        byname = {a["name"]: a for a in rows[0]["evidence"]["attestations"]}
        self.assertEqual(byname["image-scan"]["produced_by"], "ci: pipeline 4412 (trivy)")
        self.assertEqual(byname["tests"]["result"], "passed")

        # The release shows the latest of each name; the list has all three.
        rel = self.svc.request("GET", "/v1/releases/20.1.0", token=self.appr).json
        self.assertEqual({k: v["result"] for k, v in rel["attestations"].items()},
                         {"tests": "passed", "image-scan": "passed"})
        lst = self.svc.request("GET", "/v1/releases/20.1.0/attestations", token=self.viewer).json
        self.assertEqual([(a["name"], a["result"]) for a in lst["attestations"]],
                         [("tests", "passed"), ("image-scan", "failed"), ("image-scan", "passed")])
        self.assertEqual(lst["attestations"][2]["document"], statement)

        # The evidence bundle: every attestation with its document, and the gate per wave.
        r = self.svc.request("GET", f"/v1/rollouts/{rid}/evidence", token=self.viewer)
        self.assertEqual(r.status, 200, r)
        bundle = json.loads(r.body)
        self.assertEqual([a["id"] for a in bundle["attestations"]], [a["id"] for a in lst["attestations"]])
        self.assertEqual(bundle["attestations"][1]["document"], {"critical": 2, "high": 7})
        self.assertEqual([(g["wave"], [x["result"] for x in g["results"]]) for g in bundle["attestation_gates"]],
                         [(1, ["pass"])])
        path = os.path.join(self.tmp, "bundle.json")
        with open(path, "wb") as f:
            f.write(r.body)
        out = wavectl("evidence", "verify", path)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("3 attestation(s) of the release: each document matches its sha256", out.stdout)
        # One edit of a document fails, naming it.
        text = r.body.decode().replace('"high": 7', '"high": 6')
        with open(path, "w") as f:
            f.write(text)
        out = wavectl("evidence", "verify", path)
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn(f"attestations[1] (image-scan, id {failed['id']}): document does not match its sha256",
                      out.stderr)

    # ---- a requirement of wave 2 only ------------------------------------------------------

    def test_later_wave_holds_until_it_passes(self):
        self.release("20.2.0")
        self.assertEqual(self.attest("20.2.0", "image-scan", "failed").status, 201)
        rid = self.rollout("20.2.0", "attest-later")
        self.assertEqual(self.start(rid).status, 200)
        ro = self.wait_for(rid, lambda ro: self.attest_gates(ro["waves"][1]), "wave 2 holding")
        self.assertEqual(ro["waves"][0]["state"], "passed")
        self.assertEqual(ro["waves"][1]["state"], "pending")
        self.assertEqual(ro["state"], "running")
        rows = self.attest_gates(ro["waves"][1])
        self.assertEqual([g["result"] for g in rows], ["fail"])
        self.assertIn("wave 2 waits for attestations: image-scan failed (recorded", rows[0]["evidence"]["reason"])
        self.assertEqual(self.attest_gates(ro["waves"][0]), [])
        # Waking the engine with something that changes nothing for the wave
        # writes no second row.
        self.assertEqual(self.attest("20.2.0", "tests", "passed").status, 201)
        time.sleep(1.0)
        ro = self.get(rid)
        self.assertEqual([g["result"] for g in self.attest_gates(ro["waves"][1])], ["fail"])
        self.assertEqual(ro["waves"][1]["state"], "pending")
        # A passing scan releases it.
        self.assertEqual(self.attest("20.2.0", "image-scan", "passed").status, 201)
        ro = self.wait_for(rid, lambda ro: ro["state"] in ("completed", "halted"), "completed")
        self.assertEqual(ro["state"], "completed")
        self.assertEqual([g["result"] for g in self.attest_gates(ro["waves"][1])], ["fail", "pass"])

    # ---- refusals ---------------------------------------------------------------------------

    def test_refusals(self):
        self.release("20.3.0")
        path = "/v1/releases/20.3.0/attestations"
        r = self.attest("20.3.0", "tests", "passed", digest=OTHER_DIGEST)
        self.assertEqual(r.status, 422, r)
        self.assertIn(OTHER_DIGEST, r.json["error"]["message"])
        self.assertIn(DIGEST, r.json["error"]["message"])
        self.assertEqual(r.json["error"]["details"][0]["field"], "digest")
        for tok in (self.viewer, self.appr, self.tenant):
            self.assertEqual(self.attest("20.3.0", "tests", "passed", token=tok).status, 403)
        self.assertEqual(self.svc.request("POST", path, body={"name": "tests"}).status, 401)
        self.assertEqual(self.svc.request("GET", path, token=self.tenant).status, 403)
        # Nothing of the above was stored.
        r = self.svc.request("GET", path, token=self.viewer)
        self.assertEqual((r.status, r.json["attestations"]), (200, []))
        self.assertEqual(self.db.sql("SELECT count(*) FROM release_attestations a JOIN releases r "
                                     "ON r.id = a.release_id WHERE r.version = '20.3.0'"), "0")
        # Each bad field is named.
        r = self.svc.request("POST", path, token=self.ci,
                             body={"name": "Image Scan", "result": "ok", "digest": "sha256:12", "document": [1],
                                   "produced_by": "", "extra": 1})
        self.assertEqual(r.status, 422, r)
        self.assertEqual(sorted(d["field"] for d in r.json["error"]["details"]),
                         ["digest", "document", "extra", "name", "produced_by", "result"])
        r = self.svc.request("POST", path, token=self.ci, body={"name": "tests", "result": "passed",
                             "digest": DIGEST, "produced_by": "x", "document": {"blob": "x" * 70000}})
        self.assertEqual(r.status, 422, r)
        self.assertIn("at most 65536", r.json["error"]["details"][0]["message"])
        # Under the cap written compactly, over it as stored (jsonb adds a
        # space after each ":" and ","): refused by the database, naming it.
        r = self.svc.request("POST", path, token=self.ci, body={"name": "tests", "result": "passed",
                             "digest": DIGEST, "produced_by": "x", "document": {f"k{i}": i for i in range(5100)}})
        self.assertEqual(r.status, 422, r)
        self.assertEqual(r.json["error"]["details"][0]["field"], "document")
        self.assertIn("as stored", r.json["error"]["message"])
        r = self.svc.request("POST", path, token=self.ci, body=b'{"name": "tests", ')
        self.assertEqual(r.status, 400, r)
        self.assertEqual(self.attest("9.9.9", "tests", "passed").status, 404)
        self.assertEqual(self.svc.request("GET", "/v1/releases/9.9.9/attestations", token=self.viewer).status, 404)
        # security may record; the row is append-only.
        r = self.attest("20.3.0", "signature", "passed", token=self.sec, document={"sig": "MEUC"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["sha256"], hashlib.sha256(b'{"sig": "MEUC"}').hexdigest())
        # Announced without a rollout: this release has none.
        self.assertEqual(self.db.sql("SELECT coalesce(rollout_id::text, '-') || ' ' || (payload ->> 'name') FROM events "
                                     "WHERE kind = 'release.attestation' AND payload ->> 'release' = '20.3.0'"),
                         "- signature")
        for change in ("UPDATE release_attestations SET result = 'failed'", "DELETE FROM release_attestations"):
            with self.assertRaisesRegex(RuntimeError, "release_attestations rows cannot be changed or removed"):
                self.db.sql(change)
        # wavectl: a document without a subject needs --digest; a subject that
        # differs from --digest is refused before anything is sent.
        doc = os.path.join(self.tmp, "plain.json")
        with open(doc, "w") as f:
            json.dump({"passed": 412}, f)
        out = wavectl("release", "attest", "20.3.0", "--name", "tests", "--result", "passed", "--document", doc,
                      token=self.ci, url=self.url)
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("give the artifact's digest with --digest", out.stderr)
        out = wavectl("release", "attest", "20.3.0", "--name", "tests", "--result", "passed", "--document", doc,
                      "--digest", OTHER_DIGEST, token=self.ci, url=self.url)
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn("is not the digest of release 20.3.0", out.stderr)
        with open(doc, "w") as f:
            json.dump({"subject": [{"name": "odoo-erp", "digest": {"sha256": DIGEST[7:]}}]}, f)
        out = wavectl("release", "attest", "20.3.0", "--name", "tests", "--result", "passed", "--document", doc,
                      "--digest", OTHER_DIGEST, token=self.ci, url=self.url)
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertIn(f"the in-toto subject digest {DIGEST} is not --digest {OTHER_DIGEST}", out.stderr)
        self.assertEqual(len(self.svc.request("GET", path, token=self.viewer).json["attestations"]), 1)


if __name__ == "__main__":
    main()
