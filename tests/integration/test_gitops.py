"""The gitops executor end to end (executor.h "gitops", docs/gitops.md).

A bare repository in a temporary directory is the GitOps repository; a small
sync agent (gitops_agent.py, a separate process) plays Argo CD: it watches
the branch and, for each tenant file that changed, sets the tenant's version
in the simulated fleet.  `wavesched serve --time-scale` plays a two-wave
rollout of five tenants on two gitops clusters, and the suite reads the
repository itself: one commit per tenant deployment, its trailers naming the
rollout, the wave and the idempotency key, never two commits for one key --
also across a kill -9 of the service between the push and the sync.
Failures: a repository that does not exist (the fetch step named), a sync
never observed (the time-out names the sync).
"""
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import wsharness as h
from simfleet import SimFleet

SCALE = 20000                 # a day in 4.3 s
OLD = "17.0.3"
RELEASE = "17.0.4"
DIGEST = "sha256:" + "ab" * 32
AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gitops_agent.py")
TENANTS = {"a1": "alpha", "a2": "alpha", "a3": "alpha", "b1": "beta", "b2": "beta"}
WAVE_OF = {"alpha": "first", "beta": "second"}
MOVING = ("deploying", "verifying", "rolling_back")


def fleet(sim_url, repo_alpha, repo_beta, timeout, sync_alpha="", windows=True):
    text = "apiVersion: wavesched/v1\nkind: Fleet\nclusters:\n"
    for name, repo, extra in (("alpha", repo_alpha, sync_alpha), ("beta", repo_beta, "")):
        text += (f"  - name: {name}\n    hosting: shared\n    region: eu-west\n"
                 f"    max_parallel: 2\n"
                 f"    deploy: {{executor: gitops, repo: '{repo}', branch: main,"
                 f" path: 'tenants/{{cluster}}/{{slug}}/release.yaml', timeout: {timeout}{extra}}}\n")
    text += "tenants:\n"
    for slug, cluster in TENANTS.items():
        text += (f"  - slug: {slug}\n    name: Tenant {slug}\n    cluster: {cluster}\n"
                 f"    criticality: standard\n    timezone: UTC\n"
                 f"    health_url: {sim_url}/t/{slug}/health\n    version: \"{OLD}\"\n")
        if windows:
            text += "    windows:\n      - {rrule: \"FREQ=DAILY\", start: \"00:00\", duration: 8h}\n"
    return text


POLICY = """\
apiVersion: wavesched/v1
kind: WavePolicy
metadata:
  name: gitops
spec:
  release_kinds: [standard]
  unit: tenant
  unmatched: error
  schedule: {respect_windows: true, horizon: 30d}
  defaults:
    soak: 10m
    max_parallel_per_cluster: 2
    gates:
      backup: {max_age: 24h}
      health: {interval: 30s, timeout: 5s, consecutive_successes: 2, max_consecutive_failures: 2,
               max_latency_ms: 5000, latency_regression: 100}
      approval: {min: 0}
    failure: {max_failed: 0, action: halt}
  waves:
    - name: first
      select: {clusters: [alpha]}
    - name: second
      select: {clusters: [beta]}
"""


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def git(git_dir, *args):
    return subprocess.run(["git", "--git-dir=" + git_dir, *args], check=True, capture_output=True,
                          text=True, timeout=60).stdout


class GitopsCase(unittest.TestCase):
    # Schedule time: 2d is 8.6 s at SCALE.
    deploy_timeout = "2d"
    beta_repo = None          # None: the same repository as alpha
    hold = False              # the agent starts holding its syncs
    windows = True            # each tenant has a daily 8h window
    status_sync = False       # alpha observes the sync through the agent's status URL

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ws-gitops-")
        self.repo = os.path.join(self.tmp, "fleet.git")
        work = os.path.join(self.tmp, "work")
        subprocess.run(f"set -e; git init -q --bare -b main {self.repo}; git init -q -b main {work};"
                       f"echo '# tenants' > {work}/README; git -C {work} add README;"
                       f"git -C {work} -c user.name=t -c user.email=t@t commit -q -m init;"
                       f"git -C {work} push -q {self.repo} main", shell=True, check=True,
                       capture_output=True, timeout=60)
        self.hold_file = os.path.join(self.tmp, "hold")
        if self.hold:
            open(self.hold_file, "w").close()
        self.origin = int(time.time())
        clock = ["--time-scale", str(SCALE), "--time-origin", rfc3339(self.origin)]
        self.db = h.Database()
        self.svc = h.Service(self.db.url, args=clock,
                             extra_env={"WAVESCHED_OUTBOUND_ALLOW": "127.0.0.0/8",
                                        "WAVESCHED_LEASE_TTL": "3s",
                                        "WAVESCHED_STATE_DIR": os.path.join(self.tmp, "state")})
        self.sim = None
        self.agent = None
        try:
            self.svc.wait_ready()
            self.admin = self.svc.token("admin", name="admin")
            self.platform = self.svc.token("platform", name="alice")
            backup_token = self.svc.token("platform", name="backup-job")
            self.sim = SimFleet(self.tmp, fleet=fleet("http://127.0.0.1:9", self.repo, self.repo,
                                                      self.deploy_timeout),
                                env={"WS_BACKUP_TOKEN": backup_token}, converge_ms=20,
                                service=f"http://127.0.0.1:{self.svc.port}",
                                token_env="WS_BACKUP_TOKEN", backup_interval="6h",
                                time_scale=SCALE, time_origin=rfc3339(self.origin))
            self.sim.__enter__()
            self.start_agent()
            sync_alpha = ""
            if self.status_sync:
                sync_alpha = (f", sync: status_url, status_url: "
                              f"'http://127.0.0.1:{self.agent_port}/api/v1/applications/{{slug}}'")
            text = fleet(self.sim.url, self.repo, self.beta_repo or self.repo, self.deploy_timeout,
                         sync_alpha, windows=self.windows)
            r = self.svc.request("PUT", "/v1/fleet", token=self.admin, body=text,
                                 headers={"Content-Type": "application/yaml"})
            self.assertEqual(r.status, 200, r)
            r = self.svc.request("POST", "/v1/policies", token=self.platform, body=POLICY,
                                 headers={"Content-Type": "application/yaml"})
            self.assertIn(r.status, (200, 201), r)
            r = self.svc.request("POST", "/v1/releases", token=self.platform,
                                 body={"version": RELEASE, "digest": DIGEST, "kind": "standard"})
            self.assertIn(r.status, (200, 201), r)
            self.assertEqual(self.sim.report_backups()["failed"], 0)
        except BaseException:
            self.tearDown()
            raise

    def start_agent(self):
        port_file = os.path.join(self.tmp, "agent.port")
        self.agent_log = open(os.path.join(self.tmp, "agent.log"), "wb")
        self.agent = subprocess.Popen([sys.executable, AGENT, "--git-dir", self.repo,
                                       "--sim", self.sim.url, "--hold-file", self.hold_file,
                                       "--port-file", port_file,
                                       "--log", os.path.join(self.tmp, "applied.jsonl")],
                                      stdout=self.agent_log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while not os.path.exists(port_file):
            if self.agent.poll() is not None or time.time() > deadline:
                self.fail(f"the sync agent did not start: {self.agent.poll()}")
            time.sleep(0.02)
        with open(port_file) as f:
            self.agent_port = int(f.read())

    def tearDown(self):
        try:
            if self.agent is not None and self.agent.poll() is None:
                self.agent.send_signal(signal.SIGTERM)
                self.agent.wait(timeout=30)
                self.agent_log.close()
            if self.sim is not None:
                self.sim.__exit__(None, None, None)
        finally:
            self.svc.stop()
            self.db.drop()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # helpers -------------------------------------------------------------

    def now(self):
        return self.origin + (time.time() - self.origin) * SCALE

    def begin(self):
        r = self.svc.request("POST", "/v1/rollouts", token=self.platform,
                             body={"release": RELEASE, "policy": "gitops",
                                   "start": rfc3339(self.now() + 60)})
        self.assertIn(r.status, (200, 201), r)
        rid = r.json.get("id") or r.json["rollout"]["id"]
        r = self.svc.request("POST", f"/v1/rollouts/{rid}/start", token=self.platform,
                             body={"reason": "gitops suite"})
        self.assertEqual(r.status, 200, r)
        return rid

    def wait(self, rid, ends=("completed", "halted", "aborted")):
        deadline = time.time() + 240
        while time.time() < deadline:
            ro = self.rollout(rid)
            moving = [x for x in self.tenants(ro).values() if x["state"] in MOVING]
            if ro["state"] in ends and not moving:
                return ro
            time.sleep(0.2)
        self.fail(f"rollout {rid} still {ro['state']} after 240 s:\n{json.dumps(ro)[:3000]}\n"
                  f"{self.svc.log()[-4000:]}")

    def rollout(self, rid):
        r = self.svc.request("GET", f"/v1/rollouts/{rid}", token=self.admin)
        self.assertEqual(r.status, 200, r)
        return r.json

    def tenants(self, ro):
        return {t["slug"]: t for w in ro["waves"] for t in w["tenants"]}

    def outbox(self, rid):
        """{key: {"kind", "attempt", "state", "slug", "result"}}, once none is pending."""
        q = ("SELECT coalesce(json_object_agg(o.idempotency_key, json_build_object("
             "'kind', o.kind, 'attempt', o.attempt, 'state', o.state, 'slug', d.slug,"
             " 'result', o.result)), '{}') FROM outbox o JOIN deployments d ON d.id = o.deployment_id"
             f" WHERE o.rollout_id = {int(rid)}")
        deadline = time.time() + 30
        while True:
            rows = json.loads(self.db.sql(q))
            if all(x["state"] != "pending" for x in rows.values()) or time.time() > deadline:
                return rows
            time.sleep(0.2)

    def audited(self, key):
        q = ("SELECT coalesce(json_agg(json_build_object('action', action, 'details', details)"
             " ORDER BY id), '[]') FROM audit_log WHERE action IN ('outbox.done', 'outbox.failed')"
             f" AND details ->> 'key' = '{key}'")
        rows = json.loads(self.db.sql(q))
        self.assertEqual(len(rows), 1, rows)
        return rows[0]

    def commits(self):
        """[{"sha", "subject", "Wavesched-Rollout", "Wavesched-Wave",
        "Idempotency-Key"}] of the branch, oldest first, the initial commit
        left out."""
        fmt = ("%H%x1f%s%x1f%(trailers:key=Wavesched-Rollout,valueonly)%x1f"
               "%(trailers:key=Wavesched-Wave,valueonly)%x1f"
               "%(trailers:key=Idempotency-Key,valueonly)%x1e")
        out = git(self.repo, "log", "--reverse", "--format=" + fmt, "main")
        rows = []
        for rec in out.split("\x1e"):
            rec = rec.strip("\n")
            if not rec:
                continue
            sha, subject, ro, wave, key = [x.strip() for x in rec.split("\x1f")]
            if subject == "init":
                continue
            rows.append({"sha": sha, "subject": subject, "Wavesched-Rollout": ro,
                         "Wavesched-Wave": wave, "Idempotency-Key": key})
        return rows

    def file_at(self, sha, slug):
        return json.loads(git(self.repo, "show", f"{sha}:tenants/{TENANTS[slug]}/{slug}/release.yaml"))

    def assert_one_commit_per_deployment(self, rid, rows):
        """Exactly one commit per outbox key, nothing else, with its
        trailers and file; the evidence shows the commit."""
        commits = self.commits()
        keys = [c["Idempotency-Key"] for c in commits]
        self.assertEqual(len(keys), len(set(keys)), f"a key committed twice: {keys}")
        self.assertEqual(sorted(keys), sorted(rows), "one commit per deployment")
        by_key = {c["Idempotency-Key"]: c for c in commits}
        for key, row in rows.items():
            c, slug = by_key[key], row["slug"]
            self.assertEqual(c["subject"], f"wavesched: deploy {slug} {RELEASE}")
            self.assertEqual(c["Wavesched-Rollout"], str(rid))
            self.assertEqual(c["Wavesched-Wave"], WAVE_OF[TENANTS[slug]])
            doc = self.file_at(c["sha"], slug)
            self.assertEqual((doc["tenant"], doc["cluster"], doc["version"], doc["previous_version"],
                              doc["artifact"], doc["rollout"], doc["idempotency_key"]),
                             (slug, TENANTS[slug], RELEASE, OLD, DIGEST, str(rid), key))
            ev = row["result"]
            self.assertEqual(ev["executor"], "gitops")
            self.assertEqual(ev["commit"], c["sha"], ev)
            self.assertEqual(ev["repo"], self.repo)
            self.assertEqual(ev["path"], f"tenants/{TENANTS[slug]}/{slug}/release.yaml")
            self.assertTrue(ev["ok"], ev)
            self.assertEqual(self.audited(key)["details"]["result"]["commit"], c["sha"])
        return by_key

    def assert_completed(self, rid, ro):
        self.assertEqual(ro["state"], "completed", json.dumps(ro)[:3000])
        self.assertEqual({s: x["state"] for s, x in self.tenants(ro).items()},
                         dict.fromkeys(TENANTS, "healthy"))
        sim = self.sim.tenants()
        for slug in TENANTS:
            self.assertEqual(sim[slug]["version"], RELEASE, slug)
        rows = self.outbox(rid)
        self.assertEqual(sorted(r["slug"] for r in rows.values()), sorted(TENANTS))
        for r in rows.values():
            self.assertEqual((r["kind"], r["attempt"], r["state"]), ("deploy", 1, "done"), r)
        return rows


class GitopsRollout(GitopsCase):
    def test_one_commit_per_tenant_and_every_tenant_at_the_new_version(self):
        rid = self.begin()
        ro = self.wait(rid)
        rows = self.assert_completed(rid, ro)
        by_key = self.assert_one_commit_per_deployment(rid, rows)
        # The evidence bundle carries each deployment's commit.
        r = self.svc.request("GET", f"/v1/rollouts/{rid}/evidence", token=self.admin)
        self.assertEqual(r.status, 200, r)
        bundle = r.body.decode() if isinstance(r.body, bytes) else r.body
        for c in by_key.values():
            self.assertIn(c["sha"], bundle)
        for row in rows.values():
            ev = row["result"]
            self.assertTrue(ev["committed"], ev)
            self.assertEqual(ev["sync"], "health")
            self.assertIn(f"reports version {RELEASE}", ev["reason"])
        # The agent applied each tenant's version once, from its commit.
        with open(os.path.join(self.tmp, "applied.jsonl")) as f:
            applied = [json.loads(x) for x in f]
        self.assertEqual(sorted(a["tenant"] for a in applied), sorted(TENANTS))


class GitopsStatusUrl(GitopsCase):
    """alpha observes the sync through an Argo CD-style Application status
    (the agent's); its revision is the tip of the sync, often another
    tenant's later commit, which contains ours."""
    status_sync = True

    def test_argo_status_observed(self):
        rid = self.begin()
        ro = self.wait(rid)
        rows = self.assert_completed(rid, ro)
        self.assert_one_commit_per_deployment(rid, rows)
        for row in rows.values():
            ev = row["result"]
            if TENANTS[row["slug"]] == "alpha":
                self.assertEqual(ev["sync"], "status_url")
                self.assertIn("synced and healthy", ev["reason"])
                self.assertEqual(ev["sync_url"],
                                 f"http://127.0.0.1:{self.agent_port}/api/v1/applications/{row['slug']}")


class GitopsKilledBetweenPushAndSync(GitopsCase):
    """kill -9 of the service after a commit is pushed and before the agent
    syncs it: the restarted leader re-issues the intent with the same key,
    finds the commit by its trailer, does not commit again, and the rollout
    finishes."""
    hold = True
    # The held syncs take a day of schedule time, which the expected-duration
    # rule then expects of every later tenant of the release: no 8h window
    # is long enough, and they would be skipped.  Without windows each gets
    # a slot as long as it needs.
    windows = False

    def test_no_second_commit_after_kill_9(self):
        rid = self.begin()
        deadline = time.time() + 120
        pushed = []
        while not pushed and time.time() < deadline:
            pushed = [c["Idempotency-Key"] for c in self.commits()]
            time.sleep(0.02)
        self.assertTrue(pushed, "no commit to crash after")
        self.svc.proc.send_signal(signal.SIGKILL)
        self.svc.proc.wait()
        time.sleep(0.5)
        pushed = [c["Idempotency-Key"] for c in self.commits()]
        self.assertEqual(self.sim.tenants()[self.outbox_slug(pushed[0])]["version"], OLD,
                         "synced before the kill: the test proves nothing")
        self.svc.start()
        # The new leader (after the dead one's lease) finds the pushed
        # commits; then the agent may sync.
        time.sleep(4)
        os.unlink(self.hold_file)
        ro = self.wait(rid)
        rows = self.assert_completed(rid, ro)
        self.assert_one_commit_per_deployment(rid, rows)
        for key in pushed:
            ev = rows[key]["result"]
            self.assertTrue(ev.get("found_by_key"), ev)
            self.assertFalse(ev["committed"], ev)

    @staticmethod
    def outbox_slug(key):
        return key.split("/")[1]


class GitopsRepositoryMissing(GitopsCase):
    """beta's repository does not exist: its tenants fail with a reason
    naming the fetch and the repository; nothing else is committed."""

    def setUp(self):
        self.beta_repo = "/nonexistent/wavesched-gitops/fleet.git"
        super().setUp()

    def test_unreachable_repository_fails_naming_the_step(self):
        rid = self.begin()
        ro = self.wait(rid)
        self.assertEqual(ro["state"], "halted", json.dumps(ro)[:3000])
        t = self.tenants(ro)
        failed = [s for s in ("b1", "b2") if t[s]["state"] == "failed"]
        self.assertTrue(failed, t)
        for slug in failed:
            reason = t[slug]["state_reason"]
            self.assertTrue(reason.startswith(f"deploy failed: gitops fetch: {self.beta_repo}: "
                                              "git exited with status 128: "), reason)
            self.assertIn("does not appear to be a git repository", reason)
            self.assertEqual(self.sim.tenants()[slug]["version"], OLD)
        for slug in ("a1", "a2", "a3"):
            self.assertEqual(t[slug]["state"], "healthy")
        self.assertEqual(sorted(c["Idempotency-Key"].split("/")[1] for c in self.commits()),
                         ["a1", "a2", "a3"])


class GitopsNeverSynced(GitopsCase):
    """The agent holds every sync: the first wave's tenants time out with a
    reason naming the sync and the commit; each key was committed once."""
    hold = True
    deploy_timeout = "30m"         # 90 ms at SCALE: the engine's 2 s floor applies

    def test_sync_time_out_names_the_sync(self):
        rid = self.begin()
        ro = self.wait(rid)
        self.assertEqual(ro["state"], "halted", json.dumps(ro)[:3000])
        t = self.tenants(ro)
        failed = [s for s in ("a1", "a2", "a3") if t[s]["state"] == "failed"]
        self.assertTrue(failed, t)
        rows = self.outbox(rid)
        by_key = {c["Idempotency-Key"]: c["sha"] for c in self.commits()}
        for slug in failed:
            key = f"{rid}/{slug}/1"
            reason = t[slug]["state_reason"]
            self.assertRegex(reason, r"^deploy failed: gitops sync: timed out after \d+ ms waiting "
                                     f"for commit {by_key[key]} to be applied ")
            self.assertIn(f"last state: version {OLD}", reason)
            self.assertEqual(rows[key]["result"]["commit"], by_key[key])
        for slug in ("b1", "b2"):
            self.assertIn(t[slug]["state"], ("scheduled", "skipped"), slug)
        keys = list(by_key)
        self.assertEqual(len(self.commits()), len(keys))


class SimVersions(unittest.TestCase):
    """simfleet's PUT /_sim/versions/{slug}, the agent's way in: the health
    endpoint reports the version set; bad bodies and unknown tenants are
    refused and change nothing."""

    def test_set_version(self):
        tmp = tempfile.mkdtemp(prefix="ws-gitops-sim-")
        try:
            with SimFleet(tmp, fleet=fleet("http://127.0.0.1:9", "/r.git", "/r.git", "10m")) as sim:
                self.assertEqual(sim.health("a1").json["version"], OLD)
                self.assertEqual(sim.set_version("a1", RELEASE), {"tenant": "a1", "version": RELEASE})
                self.assertEqual(sim.health("a1").json["version"], RELEASE)
                for body in ({"version": ""}, {"version": 17}, {}, {"version": "x" * 129}):
                    r = sim.request("PUT", "/_sim/versions/a1", body=body)
                    self.assertEqual(r.status, 400, r)
                    self.assertEqual(r.json["error"]["details"][0]["field"], "version")
                r = sim.request("PUT", "/_sim/versions/a1", body="not json",
                                headers={"Content-Type": "application/json"})
                self.assertEqual(r.status, 400, r)
                r = sim.request("PUT", "/_sim/versions/zz9", body={"version": RELEASE})
                self.assertEqual(r.status, 404, r)
                r = sim.request("GET", "/_sim/versions/a1")
                self.assertEqual(r.status, 405, r)
                self.assertEqual(sim.tenants()["a1"]["version"], RELEASE)
                self.assertEqual(sim.tenants()["a1"]["deploys"], 0)   # no deploy counted
                self.assertEqual(sim.calls()["calls"], {})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    h.main()
