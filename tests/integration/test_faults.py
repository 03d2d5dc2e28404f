"""Crash safety of the engine (issue 4, engine.md "Leadership and crash
safety"), looped in one program:

  * kill -9 of the leader at random moments of a multi-wave rollout, again
    and again (WS_FAULT_KILLS, default 50), each time restarted: zero double
    deploys per idempotency key, zero lost transitions, zero skipped gates,
    and the rollout finishes;
  * two `serve` processes, the leader killed: the other takes over (the
    takeover time is printed);
  * the leader SIGSTOPped past its lease, then resumed: it writes nothing
    with its stale epoch;
  * PostgreSQL restarted mid-wave; Redis stopped and started.

A small fleet with daily windows keeps a multi-wave rollout to a minute or two
of real time at the chosen time scale.  Every scenario ends with the same
invariants, read from the database and the simulator.
"""
import datetime
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import wsharness as h
from simfleet import SimFleet, fleet_for_sim

SCALE = 2000                  # a day in 43 s
RELEASE = "2.0.0"
DIGEST = "sha256:" + "cd" * 32
KILLS = int(os.environ.get("WS_FAULT_KILLS", "50"))

FLEET = """apiVersion: wavesched/v1
kind: Fleet
clusters:
%(clusters)s
tenants:
%(tenants)s
calendars: []
"""

POLICY = """apiVersion: wavesched/v1
kind: WavePolicy
metadata: {name: faults}
spec:
  release_kinds: [standard]
  schedule: {horizon: 30d, deploy_estimate: 20m}
  defaults:
    soak: 30m
    max_parallel_per_cluster: 2
    gates:
      backup: {max_age: 24h}
      health: {interval: 1m, timeout: 5s, consecutive_successes: 2, max_consecutive_failures: 3,
               max_latency_ms: 2000, latency_regression: 50}
    failure: {max_failed: 0, action: halt}
  waves:
    - {name: first, select: {labels: {ring: '1'}}}
    - {name: second, select: {labels: {ring: '2'}}}
    - {name: third, select: {}}
"""


def small_fleet(clusters=3, per_cluster=4):
    cl, tn = [], []
    for c in range(clusters):
        cl.append(f"  - {{name: c{c}, hosting: shared, region: eu, max_parallel: 2, "
                  f"deploy: {{executor: webhook, url: 'http://127.0.0.1:1/deploy'}}}}")
        for i in range(per_cluster):
            ring = 1 if i == 0 else 2 if i == 1 else 3
            hour = (2 * i + c) % 24
            tn.append(f"  - slug: t{c}-{i}\n    cluster: c{c}\n    criticality: low\n"
                      f"    timezone: UTC\n    version: '1.0.0'\n"
                      f"    health_url: 'http://127.0.0.1:1/t/t{c}-{i}/health'\n"
                      f"    labels: {{ring: '{ring}'}}\n"
                      f"    windows: [{{rrule: 'FREQ=DAILY', start: '{hour:02d}:00', duration: 6h}}]")
    return FLEET % {"clusters": "\n".join(cl), "tenants": "\n".join(tn)}


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FaultCase(unittest.TestCase):
    processes = 1
    private_pg = False      # a PostgreSQL of its own, to restart without disturbing other suites
    redis = False           # a Redis of its own, to stop and start

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ws-faults-")
        self.origin = int(time.time())
        self.pg_dir = self.redis_dir = None
        pg_url = None
        if self.private_pg:
            self.pg_dir = os.path.join(self.tmp, "pg")
            subprocess.run([os.path.join(h.HARNESS, "pg.sh"), "start", self.pg_dir], check=True,
                           capture_output=True)
            pg_url = subprocess.run([os.path.join(h.HARNESS, "pg.sh"), "url", self.pg_dir], check=True,
                                    capture_output=True, text=True).stdout.strip()
        redis_url = None
        if self.redis:
            self.redis_dir = os.path.join(self.tmp, "redis")
            subprocess.run([os.path.join(h.HARNESS, "redis.sh"), "start", self.redis_dir], check=True,
                           capture_output=True)
            redis_url = subprocess.run([os.path.join(h.HARNESS, "redis.sh"), "url", self.redis_dir],
                                       check=True, capture_output=True, text=True).stdout.strip()
        self.db = h.Database(pg_url)
        args = ["--time-scale", str(SCALE), "--time-origin", rfc3339(self.origin)]
        env = {"WAVESCHED_OUTBOUND_ALLOW": "127.0.0.0/8", "WAVESCHED_LEASE_TTL": "2s"}
        self.svcs = [h.Service(self.db.url, redis_url=redis_url, args=args, extra_env=env,
                               migrate=(i == 0))
                     for i in range(self.processes)]
        self.svc = self.svcs[0]
        self.svc.wait_ready()
        self.admin = self.svc.token("admin", name="admin")
        self.platform = self.svc.token("platform", name="alice")
        backup = self.svc.token("platform", name="backup-job")
        fleet = small_fleet()
        self.sim = SimFleet(self.tmp, fleet=fleet, env={"WS_BACKUP_TOKEN": backup}, converge_ms=20,
                            service=f"http://127.0.0.1:{self.svc.port}", token_env="WS_BACKUP_TOKEN",
                            backup_interval="4h", time_scale=SCALE, time_origin=rfc3339(self.origin))
        self.sim.__enter__()
        r = self.svc.request("PUT", "/v1/fleet", token=self.admin,
                             body=fleet_for_sim(fleet, self.sim.url), headers={"Content-Type": "application/yaml"})
        self.assertEqual(r.status, 200, r)
        r = self.svc.request("POST", "/v1/policies", token=self.platform, body=POLICY,
                             headers={"Content-Type": "application/yaml"})
        self.assertIn(r.status, (200, 201), r)
        r = self.svc.request("POST", "/v1/releases", token=self.platform,
                             body={"version": RELEASE, "digest": DIGEST})
        self.assertIn(r.status, (200, 201), r)
        self.sim.report_backups()

    def tearDown(self):
        try:
            self.sim.__exit__(None, None, None)
        finally:
            for s in self.svcs:
                try:
                    s.stop(check=False)
                except Exception:
                    pass
            try:
                self.db.drop()
            finally:
                if self.pg_dir:
                    subprocess.run([os.path.join(h.HARNESS, "pg.sh"), "clean", self.pg_dir],
                                   capture_output=True)
                if self.redis_dir:
                    subprocess.run([os.path.join(h.HARNESS, "redis.sh"), "clean", self.redis_dir],
                                   capture_output=True)
                shutil.rmtree(self.tmp, ignore_errors=True)

    def now(self):
        return self.origin + (time.time() - self.origin) * SCALE

    def create_and_start(self):
        r = self.svc.request("POST", "/v1/rollouts", token=self.platform,
                             body={"release": RELEASE, "policy": "faults", "start": rfc3339(self.now() + 60)})
        self.assertIn(r.status, (200, 201), r)
        rid = r.json.get("id") or r.json["rollout"]["id"]
        r = self.svc.request("POST", f"/v1/rollouts/{rid}/start", token=self.platform, body={})
        self.assertEqual(r.status, 200, r)
        return rid

    def state(self, rid):
        return self.db.sql(f"SELECT state FROM rollouts WHERE id = {rid}").strip()

    def wait_done(self, rid, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.state(rid)
            if st in ("completed", "halted", "aborted", "rolled_back"):
                return st
            time.sleep(0.3)
        self.fail(f"rollout {rid} is still {self.state(rid)}:\n{self.svc.log()[-5000:]}")

    def check_invariants(self, rid):
        # every tenant deployed at most once per key, and once in all
        calls = self.sim.calls()
        twice = {k: n for k, n in calls["deploys"].items() if n > 1}
        self.assertEqual(twice, {}, "a deploy happened twice for one idempotency key")
        for slug, keys in calls["by_tenant"].items():
            done = [k for k in keys if calls["states"].get(k) == "done"]
            self.assertLessEqual(len(done), 1, f"{slug} deployed by {done}")
        # no lost transitions: every deployment settled, the rollout complete
        states = self.db.sql(f"SELECT string_agg(slug || '=' || state, ',' ORDER BY slug) "
                             f"FROM deployments WHERE rollout_id = {rid}").strip()
        self.assertNotIn("waiting_window", states)
        self.assertNotIn("deploying", states)
        self.assertNotIn("verifying", states)
        # no skipped gates: each healthy tenant passed the backup and health gates
        missing = self.db.sql(
            "SELECT string_agg(d.slug, ',') FROM deployments d WHERE d.rollout_id = %d "
            "AND d.state = 'healthy' AND (NOT EXISTS (SELECT 1 FROM gate_results g WHERE "
            "g.deployment_id = d.id AND g.gate = 'backup' AND g.result = 'pass') OR NOT EXISTS "
            "(SELECT 1 FROM gate_results g WHERE g.deployment_id = d.id AND g.gate = 'health' "
            "AND g.result = 'pass'))" % rid).strip()
        self.assertEqual(missing, "", f"healthy without their gates: {missing}")
        # deployed only after its backup gate passed
        early = self.db.sql(
            "SELECT count(*) FROM outbox o JOIN deployments d ON d.id = o.deployment_id "
            "WHERE o.rollout_id = %d AND o.kind = 'deploy' AND NOT EXISTS (SELECT 1 FROM gate_results g "
            "WHERE g.deployment_id = d.id AND g.gate = 'backup' AND g.result = 'pass' "
            "AND g.recorded_at <= o.created_at)" % rid).strip()
        self.assertEqual(early, "0")
        # the audit chain is whole, and epochs never go back along it
        self.assertIn("t", self.db.sql("SELECT (ws_audit_verify()).ok").strip() or "t")
        back = self.db.sql(
            "SELECT count(*) FROM (SELECT (details->>'epoch')::bigint AS e, lag((details->>'epoch')::bigint) "
            "OVER (ORDER BY id) AS p FROM audit_log WHERE details ? 'epoch') x WHERE e < p").strip()
        self.assertEqual(back, "0", "a write with an older epoch after a newer one")

    def leader_pid(self):
        holder = self.db.sql("SELECT holder FROM engine_lease WHERE expires_at > clock_timestamp()").strip()
        if not holder:
            return None
        try:
            return int(holder.split(":")[1])
        except (IndexError, ValueError):
            return None


class KillTheLeader(FaultCase):
    def test_kill_9_at_random_moments(self):
        rid = self.create_and_start()
        rnd = random.Random(int(os.environ.get("WS_FAULT_SEED", "4")))
        kills = 0
        deadline = time.time() + 600
        while kills < KILLS and time.time() < deadline:
            time.sleep(rnd.uniform(0.05, 0.8))
            if self.state(rid) in ("completed", "halted", "aborted"):
                break
            self.svc.proc.send_signal(signal.SIGKILL)
            self.svc.proc.wait()
            kills += 1
            self.svc.start()
        st = self.wait_done(rid, timeout=400)
        print(f"\n{kills} kills of the leader; rollout {st}", flush=True)
        self.assertEqual(st, "completed", self.svc.log()[-5000:])
        self.assertGreaterEqual(kills, min(KILLS, 20))
        self.check_invariants(rid)


class TwoProcesses(FaultCase):
    processes = 2

    def test_takeover_when_the_leader_dies(self):
        rid = self.create_and_start()
        time.sleep(3)
        pid = self.leader_pid()
        self.assertIsNotNone(pid)
        leader = next(s for s in self.svcs if s.proc.pid == pid)
        other = next(s for s in self.svcs if s is not leader)
        epoch = int(self.db.sql("SELECT epoch FROM engine_lease").strip())
        t0 = time.time()
        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait()
        while time.time() - t0 < 30:
            e = int(self.db.sql("SELECT epoch FROM engine_lease").strip())
            if e > epoch and self.leader_pid() == other.proc.pid:
                break
            time.sleep(0.05)
        took = time.time() - t0
        print(f"\ntakeover after kill -9 of the leader: {took:.2f} s", flush=True)
        self.assertLess(took, 10)
        leader.start()
        self.assertEqual(self.wait_done(rid), "completed")
        self.check_invariants(rid)

    def test_stopped_leader_writes_nothing_stale(self):
        rid = self.create_and_start()
        time.sleep(3)
        pid = self.leader_pid()
        leader = next(s for s in self.svcs if s.proc.pid == pid)
        old = int(self.db.sql("SELECT epoch FROM engine_lease").strip())
        leader.proc.send_signal(signal.SIGSTOP)
        time.sleep(5)   # well past its 2 s lease: the other one leads
        self.assertGreater(int(self.db.sql("SELECT epoch FROM engine_lease").strip()), old)
        leader.proc.send_signal(signal.SIGCONT)
        time.sleep(2)
        stale = self.db.sql(f"SELECT count(*) FROM audit_log WHERE (details->>'epoch')::bigint = {old} "
                            f"AND at > clock_timestamp() - interval '2 s'").strip()
        self.assertEqual(stale, "0", "the resumed old leader wrote with its stale epoch")
        self.assertEqual(self.wait_done(rid), "completed")
        self.check_invariants(rid)


class PostgresRestart(FaultCase):
    private_pg = True

    def test_postgres_restart_mid_wave(self):
        rid = self.create_and_start()
        time.sleep(4)
        subprocess.run([os.path.join(h.HARNESS, "pg.sh"), "restart", self.pg_dir],
                       check=True, capture_output=True)
        self.assertEqual(self.wait_done(rid), "completed", self.svc.log()[-5000:])
        self.check_invariants(rid)


class RedisStopStart(FaultCase):
    redis = True

    def test_redis_down_and_back(self):
        rid = self.create_and_start()
        time.sleep(2)
        redis = os.path.join(h.HARNESS, "redis.sh")
        subprocess.run([redis, "stop", self.redis_dir], check=True, capture_output=True)
        time.sleep(3)
        r = self.svc.request("GET", "/readyz")
        self.assertEqual(r.status, 200, r)   # Redis is optional: ready without it
        self.assertEqual(r.json["checks"]["redis"], "down")
        subprocess.run([redis, "start", self.redis_dir], check=True, capture_output=True)
        self.assertEqual(self.wait_done(rid), "completed", self.svc.log()[-5000:])
        deadline = time.time() + 20
        while time.time() < deadline and self.svc.request("GET", "/readyz").json["checks"].get("redis") != "up":
            time.sleep(0.2)
        self.assertEqual(self.svc.request("GET", "/readyz").json["checks"].get("redis"), "up")
        self.check_invariants(rid)


if __name__ == "__main__":
    h.main()
