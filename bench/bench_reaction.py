"""Engine reaction time (issue 4): from a wave passing to the next wave's first
deploy call, p50/p99, with the database round trip of the engine's load query
measured in the same run as the floor it is made of.

A fleet of N tenants, one per wave, without maintenance windows, played in
real time (no time scale) on the simulated fleet.  The rollout is planned to
start two days ago, so every tenant's planned slot is over when its wave
comes: the engine moves it to a slot starting now and deploys at once, and
the next wave is never held back by a window.  Soak 1 s, one health probe to
pass.  The wave's passing is the audit row's time (the database's
clock_timestamp at commit); the deploy call is when the simulator received it
(same machine clock).
"""
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("WS_SOURCE_ROOT", os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import wsharness as h  # noqa: E402
from simfleet import SimFleet, fleet_for_sim  # noqa: E402

N = int(os.environ.get("WS_BENCH_REACTION_WAVES", "100"))
TARGET_P99_MS = 20.0


def fleet_text(n):
    lines = ["apiVersion: wavesched/v1", "kind: Fleet", "clusters:",
             "  - {name: c1, hosting: shared, region: eu, "
             "deploy: {executor: webhook, url: 'http://127.0.0.1:1/deploy'}}", "tenants:"]
    for i in range(n):
        lines.append(f"  - {{slug: t{i:03d}, cluster: c1, criticality: low, version: '1.0.0', "
                     f"health_url: 'http://127.0.0.1:1/t/t{i:03d}/health', labels: {{w: 'w{i:03d}'}}}}")
    lines.append("calendars: []")
    return "\n".join(lines) + "\n"


def policy_text(n):
    waves = "\n".join(f"    - {{name: w{i:03d}, select: {{labels: {{w: 'w{i:03d}'}}}}}}" for i in range(n))
    return f"""apiVersion: wavesched/v1
kind: WavePolicy
metadata: {{name: reaction}}
spec:
  release_kinds: [standard]
  schedule: {{deploy_estimate: 1m}}
  defaults:
    soak: 1s
    gates:
      backup: {{max_age: 24h}}
      health: {{interval: 1s, timeout: 1s, consecutive_successes: 1, max_consecutive_failures: 3,
               max_latency_ms: 2000, latency_regression: 100}}
    failure: {{max_failed: 0, action: halt}}
  waves:
{waves}
"""


def pct(v, p):
    v = sorted(v)
    k = max(0, min(len(v) - 1, int(round(p / 100 * (len(v) - 1)))))
    return v[k]


def main():
    if not h.PG_URL or not h.WAVESCHED:
        print("reaction benchmark: skipped (WS_TEST_PG_URL or WAVESCHED_BIN not set)")
        return 0
    tmp = tempfile.mkdtemp(prefix="ws-bench-reaction-")
    db = h.Database()
    svc = h.Service(db.url, extra_env={"WAVESCHED_OUTBOUND_ALLOW": "127.0.0.0/8",
                                       "WAVESCHED_LOG_LEVEL": os.environ.get("WS_BENCH_LOG", "warn")})
    try:
        svc.wait_ready()
        admin = svc.token("admin")
        platform = svc.token("platform", name="alice")
        backup = svc.token("platform", name="backup-job")
        fleet = fleet_text(N)
        with SimFleet(tmp, fleet=fleet, converge_ms=1, service=f"http://127.0.0.1:{svc.port}",
                      token_env="WS_BACKUP_TOKEN", backup_interval="1h",
                      env={"WS_BACKUP_TOKEN": backup}) as sim:
            r = svc.request("PUT", "/v1/fleet", token=admin, body=fleet_for_sim(fleet, sim.url),
                            headers={"Content-Type": "application/yaml"})
            assert r.status == 200, r
            r = svc.request("POST", "/v1/policies", token=platform, body=policy_text(N),
                            headers={"Content-Type": "application/yaml"})
            assert r.status in (200, 201), r
            r = svc.request("POST", "/v1/releases", token=platform,
                            body={"version": "2.0.0", "digest": "sha256:" + "ef" * 32})
            assert r.status in (200, 201), r
            sim.report_backups()
            # Tenants without windows get 30-minute slots from their wave's
            # start: a week back, every wave's slot has begun, so nothing
            # waits for a window and what is measured is the engine.
            start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=7)
            r = svc.request("POST", "/v1/rollouts", token=platform,
                            body={"release": "2.0.0", "policy": "reaction",
                                  "start": start.strftime("%Y-%m-%dT%H:%M:%SZ")})
            assert r.status in (200, 201), r
            rid = r.json.get("id") or r.json["rollout"]["id"]
            r = svc.request("POST", f"/v1/rollouts/{rid}/start", token=platform, body={})
            assert r.status == 200, r
            t0 = time.time()
            while time.time() - t0 < float(os.environ.get("WS_BENCH_REACTION_WAIT", "600")):
                st = db.sql(f"SELECT state FROM rollouts WHERE id = {rid}").strip()
                if st in ("completed", "halted", "aborted"):
                    break
                time.sleep(0.2)
            assert st == "completed", f"rollout {st}:\n{svc.log()[-3000:]}"
            passed = {}
            for line in db.sql("SELECT object || ' ' || (extract(epoch FROM at) * 1000000)::bigint "
                               "FROM audit_log WHERE action = 'wave.passed'").split("\n"):
                if line.strip():
                    obj, us = line.split()
                    passed[int(obj.rsplit("/", 1)[1])] = int(us)
            calls = sim.calls()
            first = {}
            for key, us in calls["first_at_us"].items():
                slug = key.split("/")[1]
                first[int(slug[1:])] = us
            reactions = []
            for idx in range(1, N):
                # wave idx (1-based) holds tenant t{idx-1}; the next wave's tenant is t{idx}
                if idx in passed and idx in first:
                    reactions.append((first[idx] - passed[idx]) / 1000.0)
            # The floor: round trips of the engine's load query on one
            # connection to the same server, measured now (psql's \timing).
            script = "\\timing on\n" + f"SELECT length(ws_engine_rollout({rid})::text);\n" * 200
            out = subprocess.run(["psql", "-X", "-q", "-t", "-d", db.url], input=script,
                                 capture_output=True, text=True, check=True).stdout
            rtt = [float(l.split()[1]) for l in out.splitlines() if l.startswith("Time:")]
    finally:
        svc.stop(check=False)
        db.drop()
    deploys = sum(calls["deploys"].values())
    print(f"reaction benchmark: {N} waves of one tenant, real time; {deploys} deploy calls, "
          f"{len(reactions)} wave-to-next-deploy samples")
    print(f"  wave passed -> next wave's first deploy call: p50 {pct(reactions, 50):.1f} ms, "
          f"p99 {pct(reactions, 99):.1f} ms, max {max(reactions):.1f} ms "
          f"(target p99 <= {TARGET_P99_MS:.0f} ms: {'met' if pct(reactions, 99) <= TARGET_P99_MS else 'NOT met'})")
    print(f"  floor, same run: one round trip of the engine's load query p50 {pct(rtt, 50):.2f} ms, "
          f"p99 {pct(rtt, 99):.2f} ms (what a wave change cost when each commit was followed by a "
          f"load; now the wave's commit, the baseline probe and the intent's commit come before "
          f"the call, and the rows are reloaded after it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
