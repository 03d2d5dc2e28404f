"""The kubernetes and command executors end to end (engine.md "Executors").

A small fleet -- four tenants on two clusters, daily windows -- is played by
`wavesched serve --time-scale` against the simulated fleet, once with the
clusters deploying through simfleet's Kubernetes Deployments API and once
through a local command (`simfleet deploy-client`, which posts to simfleet's
deployer and waits for it).  Every case checks, from both ends, that each
outbox intent reached the simulator exactly once under its idempotency key,
and reads the executor's evidence (requests, or argv, exit status and output)
that the engine committed with the intent's result.
"""
import datetime
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

import wsharness as h
from simfleet import SIMFLEET, SimFleet, fleet_for_sim

SCALE = 20000                 # a day in 4.3 s
OLD = "17.0.3"
RELEASE = "17.0.4"
DIGEST = "sha256:" + "cd" * 32
DEPLOY_TOKEN = "deploy-s3cret"

FLEET = """\
apiVersion: wavesched/v1
kind: Fleet
clusters:
  - name: alpha
    hosting: shared
    region: eu-west
    max_parallel: 2
    deploy: {executor: webhook, url: "http://127.0.0.1:9/deploy", timeout: DEPLOY_TIMEOUT}
  - name: beta
    hosting: shared
    region: eu-west
    max_parallel: 2
    deploy: {executor: webhook, url: "http://127.0.0.1:9/deploy", timeout: DEPLOY_TIMEOUT}
tenants:
""" + "".join(f"""\
  - slug: {slug}
    name: Tenant {slug}
    cluster: {cluster}
    criticality: standard
    timezone: UTC
    labels: {{wave: {cluster}}}
    health_url: http://127.0.0.1:9/t/{slug}/health
    version: "{OLD}"
    windows:
      - {{rrule: "FREQ=DAILY", start: "00:00", duration: 8h}}
""" for slug, cluster in (("a1", "alpha"), ("a2", "alpha"), ("b1", "beta"), ("b2", "beta")))

# The health gate is not what this suite tests: a generous latency
# regression keeps a busy machine from failing healthy tenants.
POLICY = """\
apiVersion: wavesched/v1
kind: WavePolicy
metadata:
  name: executors
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
      failure: FIRST_FAILURE
      max_parallel_per_cluster: FIRST_PARALLEL
    - name: second
      select: {clusters: [beta]}
"""

WAVES = {"a1": 0, "a2": 0, "b1": 1, "b2": 1}
MOVING = ("deploying", "verifying", "rolling_back")


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ExecutorCase(unittest.TestCase):
    executor = None
    faults = None
    converge_ms = 20
    first_failure = "{max_failed: 0, action: halt}"
    first_parallel = 2
    # Schedule time: 30m is 90 ms at SCALE, so the engine's 2 s floor applies.
    deploy_timeout = "30m"

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ws-executors-")
        self.origin = int(time.time())
        clock = ["--time-scale", str(SCALE), "--time-origin", rfc3339(self.origin)]
        self.db = h.Database()
        # The deployers require a bearer token: kubernetes sends $WS_DEPLOY_TOKEN
        # (token_env), and deploy-client reads $SIMFLEET_TOKEN, which the
        # command inherits from the service.
        self.svc = h.Service(self.db.url, args=clock,
                             extra_env={"WAVESCHED_OUTBOUND_ALLOW": "127.0.0.0/8",
                                        "WAVESCHED_LEASE_TTL": "3s",
                                        "WS_DEPLOY_TOKEN": DEPLOY_TOKEN,
                                        "SIMFLEET_TOKEN": DEPLOY_TOKEN})
        self.sim = None
        try:
            self.svc.wait_ready()
            self.admin = self.svc.token("admin", name="admin")
            self.platform = self.svc.token("platform", name="alice")
            backup_token = self.svc.token("platform", name="backup-job")
            fleet = FLEET.replace("DEPLOY_TIMEOUT", self.deploy_timeout)
            self.sim = SimFleet(self.tmp, fleet=fleet, scenario=self.faults,
                                env={"WS_BACKUP_TOKEN": backup_token,
                                     "SIMFLEET_TOKEN": DEPLOY_TOKEN},
                                converge_ms=self.converge_ms,
                                service=f"http://127.0.0.1:{self.svc.port}",
                                token_env="WS_BACKUP_TOKEN", backup_interval="6h",
                                time_scale=SCALE, time_origin=rfc3339(self.origin))
            self.sim.__enter__()
            fleet = fleet_for_sim(fleet, self.sim.url, executor=self.executor,
                                  token_env="WS_DEPLOY_TOKEN")
            r = self.svc.request("PUT", "/v1/fleet", token=self.admin, body=fleet,
                                 headers={"Content-Type": "application/yaml"})
            self.assertEqual(r.status, 200, r)
            r = self.svc.request("POST", "/v1/policies", token=self.platform,
                                 body=POLICY.replace("FIRST_FAILURE", self.first_failure)
                                 .replace("FIRST_PARALLEL", str(self.first_parallel)),
                                 headers={"Content-Type": "application/yaml"})
            self.assertIn(r.status, (200, 201), r)
            r = self.svc.request("POST", "/v1/releases", token=self.platform,
                                 body={"version": RELEASE, "digest": DIGEST, "kind": "standard"})
            self.assertIn(r.status, (200, 201), r)
            self.assertEqual(self.sim.report_backups()["failed"], 0)
        except BaseException:
            self.tearDown()
            raise

    def tearDown(self):
        try:
            if self.sim is not None:
                self.sim.__exit__(None, None, None)
        finally:
            self.svc.stop()
            self.db.drop()

    # helpers -------------------------------------------------------------

    def now(self):
        return self.origin + (time.time() - self.origin) * SCALE

    def play(self, ends):
        """Creates and starts the rollout, waits until it is in one of `ends`
        with no tenant still moving (a rollout halts before its wave's
        rollbacks end)."""
        return self.wait(self.begin(), ends)

    def begin(self):
        r = self.svc.request("POST", "/v1/rollouts", token=self.platform,
                             body={"release": RELEASE, "policy": "executors",
                                   "start": rfc3339(self.now() + 60)})
        self.assertIn(r.status, (200, 201), r)
        rid = r.json.get("id") or r.json["rollout"]["id"]
        r = self.svc.request("POST", f"/v1/rollouts/{rid}/start", token=self.platform,
                             body={"reason": "executors suite"})
        self.assertEqual(r.status, 200, r)
        return rid

    def wait(self, rid, ends):
        deadline = time.time() + 240
        while time.time() < deadline:
            ro = self.rollout(rid)
            moving = [x for x in self.tenants(ro).values() if x["state"] in MOVING]
            if ro["state"] in ends and not moving:
                return rid, ro
            time.sleep(0.2)
        self.fail(f"rollout {rid} still {ro['state']} after 240 s:\n{json.dumps(ro)[:3000]}\n"
                  f"{self.svc.log()[-4000:]}")

    def rollout(self, rid):
        try:
            r = self.svc.request("GET", f"/v1/rollouts/{rid}", token=self.admin)
        except OSError as e:
            self.fail(f"GET /v1/rollouts/{rid}: {e}; the service's exit status: "
                      f"{self.svc.proc.poll()}\n{self.svc.log()[-6000:]}")
        self.assertEqual(r.status, 200, r)
        return r.json

    def tenants(self, ro):
        return {t["slug"]: t for w in ro["waves"] for t in w["tenants"]}

    def deployment(self, slug):
        """The Deployment simfleet's Kubernetes API keeps for `slug`."""
        r = self.sim.request("GET", f"/apis/apps/v1/namespaces/odoo/deployments/{slug}",
                             headers={"Authorization": f"Bearer {DEPLOY_TOKEN}"})
        self.assertEqual(r.status, 200, r)
        return r.json

    def outbox(self, rid):
        """{key: {"kind", "attempt", "state", "slug", "result"}} of the rollout's intents,
        once none is pending any more (results are committed after the state)."""
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
        """The executor's evidence as the audit log keeps it (what the
        evidence bundle shows): the details of the intent's outbox.done or
        outbox.failed entry."""
        q = ("SELECT coalesce(json_agg(json_build_object('action', action, 'details', details)"
             " ORDER BY id), '[]') FROM audit_log WHERE action IN ('outbox.done', 'outbox.failed')"
             f" AND details ->> 'key' = '{key}'")
        rows = json.loads(self.db.sql(q))
        self.assertEqual(len(rows), 1, rows)
        return rows[0]

    def assert_each_key_called_once(self, rid, rows, reissued=(), maybe_reissued=()):
        """Every intent reached the simulator exactly once under its key and
        deployed once, and nothing else did.  After a crash: twice for the
        keys whose deploy was in flight (`reissued`), once or twice for those
        the dead process had called (`maybe_reissued`: their result may not
        have been committed)."""
        calls = self.sim.calls()
        self.assertEqual(sorted(calls["calls"]), sorted(rows), "keys seen by the simulator")
        for key, row in rows.items():
            self.assertEqual(key, f"{rid}/{row['slug']}/{row['attempt']}")
            n = calls["calls"][key]
            if key in reissued:
                self.assertEqual(n, 2, f"calls under {key}, in flight at the crash")
            elif key in maybe_reissued:
                self.assertIn(n, (1, 2), f"calls under {key}, called before the crash")
            else:
                self.assertEqual(n, 1, f"calls under {key}")
            self.assertEqual(calls["deploys"][key], 1, f"deploys under {key}")

    def assert_completed(self, rid, ro, reissued=(), maybe_reissued=()):
        self.assertEqual(ro["state"], "completed", json.dumps(ro)[:3000])
        t = self.tenants(ro)
        self.assertEqual({s: x["state"] for s, x in t.items()}, dict.fromkeys(WAVES, "healthy"))
        sim = self.sim.tenants()
        for slug in WAVES:
            self.assertEqual(sim[slug]["version"], RELEASE, slug)
            self.assertEqual(sim[slug]["deploys"], 1, slug)
        self.assertEqual([w["state"] for w in ro["waves"]], ["passed", "passed"])
        rows = self.outbox(rid)
        self.assertEqual(sorted(r["slug"] for r in rows.values()), sorted(WAVES))
        for r in rows.values():
            self.assertEqual((r["kind"], r["attempt"], r["state"]), ("deploy", 1, "done"), r)
        self.assert_each_key_called_once(rid, rows, reissued, maybe_reissued)
        return rows


class CrashMidDeploy:
    """kill -9 of the service while a deploy is in flight (the simulator
    takes a second to converge): the restarted service re-issues the pending
    intent under the same key, the simulator counts a second call and does
    not deploy again, and the rollout completes."""
    converge_ms = 1000
    deploy_timeout = "2d"          # 8.6 s: the converge time fits

    def test_reissued_after_kill_9_with_the_same_key(self):
        rid = self.begin()
        deadline = time.time() + 120
        pending = []
        while not pending and time.time() < deadline:
            pending = [k for k, st in self.sim.calls()["states"].items() if st == "pending"]
            time.sleep(0.02)
        self.assertTrue(pending, "no deploy in flight to crash into")
        self.svc.proc.send_signal(signal.SIGKILL)
        self.svc.proc.wait()
        # Calls the dead process started after the look above (a command it
        # spawned posts a moment later): they may be re-issued too.
        time.sleep(0.5)
        before = self.sim.calls()["calls"]
        self.svc.start()
        rid, ro = self.wait(rid, ("completed", "halted", "aborted"))
        self.assert_completed(rid, ro, reissued=pending, maybe_reissued=before)


# Kubernetes -------------------------------------------------------------------

class KubernetesRollout(ExecutorCase):
    executor = "kubernetes"

    def test_every_tenant_patched_once_and_rolled_out(self):
        rid, ro = self.play(("completed", "halted", "aborted"))
        rows = self.assert_completed(rid, ro)
        for key, r in rows.items():
            ev, slug = r["result"], r["slug"]
            url = f"{self.sim.url}/apis/apps/v1/namespaces/odoo/deployments/{slug}"
            self.assertEqual(ev["executor"], "kubernetes")
            self.assertEqual(ev["idempotency_key"], key)
            self.assertEqual(ev["url"], url)
            self.assertEqual(ev["image"], f"registry.example/odoo:{RELEASE}")
            self.assertTrue(ev["ok"], ev)
            self.assertIn("rolled out", ev["reason"])
            first, last = ev["requests"][0], ev["requests"][-1]
            self.assertEqual((first["method"], first["url"], first["status"]), ("PATCH", url, 200))
            self.assertEqual((last["method"], last["status"]), ("GET", 200))
            self.assertIn("updated 2/2, available 2/2", last["state"])
            # The Deployment the simulator keeps carries the new image.
            d = self.deployment(slug)
            self.assertEqual(d["spec"]["template"]["spec"]["containers"][0]["image"],
                             f"registry.example/odoo:{RELEASE}")
            self.assertEqual(d["status"]["observedGeneration"], d["metadata"]["generation"])


class KubernetesCrash(CrashMidDeploy, ExecutorCase):
    executor = "kubernetes"


class KubernetesRollsBack(ExecutorCase):
    """a2 turns unhealthy on the new version and the first wave rolls back:
    both Deployments are patched back to the previous image, under new keys.
    One tenant at a time, so that a1 is healthy before a2 deploys: a tenant
    still deploying when the wave fails is not rolled back today
    (engine_decide.c's apply_budget takes only healthy and failed ones)."""
    executor = "kubernetes"
    faults = {"tenants": {"a2": {"unhealthy_after_version": RELEASE}}}
    first_failure = "{max_failed: 0, action: rollback_wave}"
    first_parallel = 1

    def test_rollback_patches_the_previous_image(self):
        rid, ro = self.play(("completed", "halted", "aborted", "rolled_back"))
        self.assertEqual(ro["state"], "rolled_back", json.dumps(ro)[:3000])
        t = self.tenants(ro)
        self.assertEqual((t["a1"]["state"], t["a2"]["state"]), ("rolled_back", "rolled_back"))
        rows = self.outbox(rid)
        self.assertEqual(sorted(rows), sorted(f"{rid}/{s}/{n}" for s in ("a1", "a2") for n in (1, 2)))
        self.assert_each_key_called_once(rid, rows)
        sim = self.sim.tenants()
        for slug in ("a1", "a2"):
            self.assertEqual(sim[slug]["version"], OLD, slug)
            back = rows[f"{rid}/{slug}/2"]
            self.assertEqual((back["kind"], back["state"]), ("rollback", "done"))
            self.assertEqual(back["result"]["image"], f"registry.example/odoo:{OLD}")
            self.assertTrue(back["result"]["rollback"])
            d = self.deployment(slug)
            self.assertEqual(d["spec"]["template"]["spec"]["containers"][0]["image"],
                             f"registry.example/odoo:{OLD}")
            self.assertEqual(d["metadata"]["generation"], 3)   # created, patched, patched back
        for slug in ("b1", "b2"):
            self.assertEqual(sim[slug]["version"], OLD, slug)


class KubernetesProgressDeadline(ExecutorCase):
    """The Deployment reports ProgressDeadlineExceeded (simfleet's
    deploy_fail): the tenant fails at once, with Kubernetes's message."""
    executor = "kubernetes"
    faults = {"tenants": {"a2": {"deploy_fail": True}}}

    def test_progress_deadline_fails_the_tenant(self):
        rid, ro = self.play(("completed", "halted", "aborted"))
        self.assertEqual(ro["state"], "halted", json.dumps(ro)[:3000])
        t = self.tenants(ro)
        self.assertEqual(t["a2"]["state"], "failed")
        url = f"{self.sim.url}/apis/apps/v1/namespaces/odoo/deployments/a2"
        self.assertEqual(t["a2"]["state_reason"],
                         f"deploy failed: kubernetes deployment {url}: progress deadline exceeded")
        self.assertEqual(self.sim.tenants()["a2"]["version"], OLD)
        rows = self.outbox(rid)
        self.assertEqual(rows[f"{rid}/a2/1"]["state"], "failed")
        self.assertEqual(self.sim.calls()["calls"][f"{rid}/a2/1"], 1)


class KubernetesNeverConverges(ExecutorCase):
    """Deployments accepted but never rolled out within the deploy time-out
    (the simulator converges after 10 minutes): the first wave's tenants fail
    with the time-out and the rollout halts before the second wave."""
    executor = "kubernetes"
    converge_ms = 600000
    deploy_timeout = "1d"   # 4.3 s: room for the PATCH and a GET that reads the last state

    def test_time_out_fails_the_tenant(self):
        rid, ro = self.play(("completed", "halted", "aborted"))
        self.assertEqual(ro["state"], "halted", json.dumps(ro)[:3000])
        t = self.tenants(ro)
        failed = [s for s in ("a1", "a2") if t[s]["state"] == "failed"]
        self.assertTrue(failed, t)
        for slug in failed:
            reason = t[slug]["state_reason"]
            self.assertIn("deploy failed: kubernetes deploy timed out after", reason)
            self.assertIn("last state: generation 2 observed 1, updated 0/2", reason)
        for slug in ("b1", "b2"):
            self.assertIn(t[slug]["state"], ("scheduled", "skipped"), slug)
        sim = self.sim.tenants()
        for slug in WAVES:
            self.assertEqual(sim[slug]["version"], OLD, slug)
        rows = self.outbox(rid)
        self.assertEqual(sorted(r["slug"] for r in rows.values()), sorted(failed))
        for r in rows.values():
            self.assertEqual(r["state"], "failed")
            self.assertFalse(r["result"]["ok"])
            self.assertIn("timed out", r["result"]["reason"])
        calls = self.sim.calls()
        for key in rows:
            self.assertEqual(calls["calls"][key], 1)
            self.assertEqual(calls["states"][key], "pending")


# Command ----------------------------------------------------------------------

class CommandRollout(ExecutorCase):
    executor = "command"

    def test_every_tenant_deployed_once_with_its_output(self):
        rid, ro = self.play(("completed", "halted", "aborted"))
        rows = self.assert_completed(rid, ro)
        for key, r in rows.items():
            ev, slug = r["result"], r["slug"]
            self.assertEqual(ev["executor"], "command")
            self.assertEqual(ev["idempotency_key"], key)
            self.assertEqual(ev["exit_status"], 0, ev)
            self.assertTrue(ev["ok"], ev)
            argv = ev["argv"]
            self.assertEqual(argv[1], "deploy-client")
            self.assertEqual(argv[argv.index("--tenant") + 1], slug)
            self.assertEqual(argv[argv.index("--version") + 1], RELEASE)
            self.assertEqual(argv[argv.index("--previous-version") + 1], OLD)
            self.assertEqual(argv[argv.index("--key") + 1], key)
            self.assertEqual(ev["output"],
                             f"tenant {slug} version {RELEASE} key {key}: deploy done\n")
            self.assertFalse(ev["output_truncated"])
            a = self.audited(key)
            self.assertEqual(a["action"], "outbox.done")
            self.assertEqual(a["details"]["result"], ev)


class CommandFails(ExecutorCase):
    """deploy-client exits 1 when the deployer reports the deploy failed: the
    tenant fails with the exit status and the command's last words."""
    executor = "command"
    faults = {"tenants": {"a2": {"deploy_fail": True}}}

    def test_non_zero_exit_fails_the_tenant(self):
        rid, ro = self.play(("completed", "halted", "aborted"))
        self.assertEqual(ro["state"], "halted", json.dumps(ro)[:3000])
        t = self.tenants(ro)
        self.assertEqual(t["a2"]["state"], "failed")
        key = f"{rid}/a2/1"
        reason = t["a2"]["state_reason"]
        self.assertRegex(reason, r"^deploy failed: command \S+simfleet exited with status 1: ")
        self.assertTrue(reason.endswith(f"simfleet: tenant a2 version {RELEASE} key {key}: "
                                        "deploy failed"), reason)
        for slug in ("b1", "b2"):
            self.assertIn(t[slug]["state"], ("scheduled", "skipped"), slug)
            self.assertEqual(self.sim.tenants()[slug]["version"], OLD, slug)
        rows = self.outbox(rid)
        ev = rows[key]["result"]
        self.assertEqual(rows[key]["state"], "failed")
        self.assertEqual(ev["exit_status"], 1)
        self.assertEqual(ev["output"],
                         f"simfleet: tenant a2 version {RELEASE} key {key}: deploy failed\n")
        self.assertIn("exited with status 1", ev["reason"])
        a = self.audited(key)
        self.assertEqual(a["action"], "outbox.failed")
        self.assertEqual(a["details"]["result"]["output"], ev["output"])
        calls = self.sim.calls()
        self.assertEqual(calls["calls"][key], 1)
        self.assertEqual(calls["states"][key], "failed")


class CommandCrash(CrashMidDeploy, ExecutorCase):
    executor = "command"


class CommandRollsBack(ExecutorCase):
    """a2 turns unhealthy on the new version and the first wave rolls back:
    the previous version goes through the same command, under new keys."""
    executor = "command"
    faults = {"tenants": {"a2": {"unhealthy_after_version": RELEASE}}}
    first_failure = "{max_failed: 0, action: rollback_wave}"
    first_parallel = 1

    def test_rollback_runs_the_command_with_the_previous_version(self):
        rid, ro = self.play(("completed", "halted", "aborted", "rolled_back"))
        self.assertEqual(ro["state"], "rolled_back", json.dumps(ro)[:3000])
        t = self.tenants(ro)
        self.assertEqual(t["a1"]["state"], "rolled_back")
        self.assertEqual(t["a2"]["state"], "rolled_back")
        for slug in ("b1", "b2"):
            self.assertEqual(t[slug]["state"], "scheduled", slug)
        sim = self.sim.tenants()
        for slug in WAVES:
            self.assertEqual(sim[slug]["version"], OLD, slug)
        self.assertEqual(sim["a1"]["deploys"], 2)
        self.assertEqual(sim["a2"]["deploys"], 2)
        rows = self.outbox(rid)
        self.assertEqual(sorted(rows), sorted([f"{rid}/a1/1", f"{rid}/a1/2",
                                               f"{rid}/a2/1", f"{rid}/a2/2"]))
        self.assert_each_key_called_once(rid, rows)
        for slug in ("a1", "a2"):
            back = rows[f"{rid}/{slug}/2"]
            self.assertEqual((back["kind"], back["state"]), ("rollback", "done"))
            ev = back["result"]
            self.assertTrue(ev["rollback"])
            argv = ev["argv"]
            self.assertEqual(argv[argv.index("--version") + 1], OLD)
            self.assertEqual(argv[argv.index("--previous-version") + 1], RELEASE)
            self.assertEqual(ev["output"],
                             f"tenant {slug} version {OLD} key {rid}/{slug}/2: deploy done\n")


class DeployClientKey(unittest.TestCase):
    """deploy-client without --key takes the key the command executor puts
    in its environment, so a fleet's own argv deduplicates too."""

    def test_key_from_the_environment(self):
        tmp = tempfile.mkdtemp(prefix="ws-executors-")
        with SimFleet(tmp, fleet=FLEET.replace("DEPLOY_TIMEOUT", "30m"), converge_ms=10) as sim:
            env = dict(os.environ, WAVESCHED_IDEMPOTENCY_KEY="7/b1/1")
            argv = [SIMFLEET, "deploy-client", "--url", sim.url, "--tenant", "b1",
                    "--version", RELEASE]
            for _ in range(2):
                r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout, f"tenant b1 version {RELEASE} key 7/b1/1: deploy done\n")
            calls = sim.calls()
            self.assertEqual((calls["calls"], calls["deploys"]), ({"7/b1/1": 2}, {"7/b1/1": 1}))


if __name__ == "__main__":
    h.main()
