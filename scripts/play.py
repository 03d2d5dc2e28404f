"""scripts/play's story (see scripts/play): three rollouts of the example fleet
on the simulated fleet, told as they happen."""
import os
import signal
import sys
import tempfile
import time

import wsharness as h
from simfleet import SimFleet, fleet_for_sim
from test_engine import Clock, rfc3339, policy_text

SCALE = 20000


def say(msg):
    print(f"==> {msg}", flush=True)


def progress(svc, token, rid, last):
    ro = svc.request("GET", f"/v1/rollouts/{rid}", token=token).json
    line = "  ".join(f"{w['index']}:{w['name']}={w['state']}" for w in ro["waves"])
    if line != last:
        print(f"    [{ro['state']}] {line}", flush=True)
    return ro, line


def play(name, faults=None, kills=0):
    tmp = tempfile.mkdtemp(prefix="ws-play-")
    clock = Clock(SCALE)
    db = h.Database()
    svc = h.Service(db.url, args=clock.args(), extra_env={"WAVESCHED_OUTBOUND_ALLOW": "127.0.0.0/8",
                                                          "WAVESCHED_LEASE_TTL": "2s",
                                                          "WAVESCHED_LOG_LEVEL": "warn"})
    try:
        svc.wait_ready()
        admin = svc.token("admin", name="admin")
        alice = svc.token("platform", name="alice")
        approvers = [svc.token("approver", name=n) for n in ("bob", "carol")]
        backup = svc.token("platform", name="backup-job")
        with SimFleet(tmp, fleet=h.example_fleet(), scenario=faults, converge_ms=20,
                      service=f"http://127.0.0.1:{svc.port}", token_env="WS_BACKUP_TOKEN",
                      backup_interval="6h", env={"WS_BACKUP_TOKEN": backup},
                      time_scale=SCALE, time_origin=rfc3339(clock.origin)) as sim:
            svc.request("PUT", "/v1/fleet", token=admin, body=fleet_for_sim(h.example_fleet(), sim.url),
                        headers={"Content-Type": "application/yaml"})
            svc.request("POST", "/v1/policies", token=alice, body=policy_text("standard.yaml"),
                        headers={"Content-Type": "application/yaml"})
            svc.request("POST", "/v1/releases", token=alice,
                        body={"version": "17.0.4", "digest": "sha256:" + "ab" * 32})
            sim.report_backups()
            r = svc.request("POST", "/v1/rollouts", token=alice,
                            body={"release": "17.0.4", "policy": "standard-quarterly",
                                  "start": rfc3339(clock.now() + 60)})
            rid = r.json["id"]
            say(f"{name}: rollout {rid} planned by alice ({len(r.json['plan']['waves'])} waves); "
                f"bob and carol approve, alice starts it")
            for w in r.json["plan"]["waves"]:
                for tok in approvers:
                    svc.request("POST", f"/v1/rollouts/{rid}/approve", token=tok,
                                body={"wave": w["index"], "comment": "ok"})
            mine = svc.request("POST", f"/v1/rollouts/{rid}/approve", token=alice, body={"wave": 1})
            print(f"    alice approving her own rollout: HTTP {mine.status} ({mine.json['error']['message']})")
            svc.request("POST", f"/v1/rollouts/{rid}/start", token=alice, body={"reason": "play"})
            last, killed, t0 = "", 0, time.time()
            while time.time() - t0 < 600:
                ro, last = progress(svc, admin, rid, last)
                if ro["state"] in ("completed", "halted", "aborted", "rolled_back"):
                    break
                if killed < kills and time.time() - t0 > 3 + 4 * killed:
                    svc.proc.send_signal(signal.SIGKILL)
                    svc.proc.wait()
                    killed += 1
                    print(f"    kill -9 of the leader ({killed}/{kills}); restarting it", flush=True)
                    svc.start()
                time.sleep(0.3)
            calls = sim.calls()
            twice = [k for k, n in calls["deploys"].items() if n > 1]
            say(f"{name}: rollout {ro['state']}" + (f" ({ro['state_reason']})" if ro.get("state_reason") else "")
                + f"; {sum(calls['deploys'].values())} deploys, {len(twice)} deployed twice")
            for w in ro["waves"]:
                for t in w["tenants"]:
                    if t["state"] not in ("healthy",):
                        print(f"    {t['slug']}: {t['state']}" + (f" - {t['state_reason']}" if t.get("state_reason") else ""))
            chain = db.sql("SELECT (ws_audit_verify()).ok").strip()
            print(f"    audit chain verifies: {chain == 't'}")
            return ro["state"], twice
    finally:
        svc.stop(check=False)
        db.drop()


def main():
    h.require_services()
    results = [
        play("1/3 the example rollout"),
        play("2/3 two tenants of wave 3 unhealthy",
             faults={"tenants": {"clinic-north": {"unhealthy_after_version": "17.0.4"},
                                 "clinic-south": {"unhealthy_after_version": "17.0.4"}}}),
        play("3/3 five kill -9 of the leader", kills=5),
    ]
    ok = results[0][0] == "completed" and results[1][0] == "halted" and results[2][0] == "completed" \
        and not any(t for _, t in results)
    say("done: " + ("as expected" if ok else f"NOT as expected: {results}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
