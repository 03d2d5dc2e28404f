"""The story scripts/demo tells (see scripts/demo): the example fleet on the
simulated fleet, a standard rollout that one tenant's health halts and rolls
back, the fixed release rolling out until an urgent security patch preempts
it, and the standard rollout resuming on a re-plan.  Everything through the
real service, `wavectl` and the simulated fleet; the schedule runs at
--time-scale so that five weeks pass in a few minutes."""
import os
import re
import subprocess
import sys
import tempfile
import time

import wsharness as h
from simfleet import SimFleet, fleet_for_sim
from test_engine import Clock, rfc3339

SCALE = int(os.environ.get("WAVESCHED_DEMO_SCALE", "40000"))
RUN = os.environ.get("WS_DEMO_RUN", os.path.join(h.SOURCE_ROOT, ".run", "demo"))
KEEP = os.environ.get("WS_DEMO_KEEP") == "1"
POLICIES = os.path.join(h.SOURCE_ROOT, "examples", "policies")
DIGEST = "sha256:" + "5e" * 32


def say(msg):
    print(f"\n==> {msg}", flush=True)


def note(msg):
    print(f"    {msg}", flush=True)


def policy(name, **replace):
    with open(os.path.join(POLICIES, name)) as f:
        text = f.read()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


class Demo:
    def __init__(self):
        os.makedirs(RUN, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="sim-", dir=RUN)
        # One schedule clock for the service and the simulated fleet: from
        # now on, SCALE times faster than real time.
        self.clock = Clock(SCALE)
        origin = rfc3339(self.clock.origin)
        self.db = h.Database()
        self.svc = h.Service(self.db.url, args=self.clock.args(),
                             extra_env={"WAVESCHED_OUTBOUND_ALLOW": "127.0.0.0/8", "WAVESCHED_LOG_LEVEL": "info",
                                        "WAVESCHED_RATE_LIMIT": "off"})
        self.svc.wait_ready()
        self.url = f"http://127.0.0.1:{self.svc.port}"
        self.admin = self.svc.token("admin", name="admin")
        self.alice = self.svc.token("platform", name="alice")          # platform engineer
        self.sam = self.svc.token("security", name="sam")              # security team
        self.bob = self.svc.token("approver", name="bob")
        self.carol = self.svc.token("approver", name="carol")
        self.north = self.svc.token("tenant", "clinic-north", name="clinic-north-owner")
        backup = self.svc.token("platform", name="backup-job")
        faults = {"tenants": {"clinic-north": {"unhealthy_after_version": "17.0.4"}}}
        self.sim = SimFleet(self.tmp, fleet=h.example_fleet(), scenario=faults, converge_ms=20,
                            service=self.url, token_env="WS_BACKUP_TOKEN", backup_interval="2h",
                            env={"WS_BACKUP_TOKEN": backup}, time_scale=SCALE, time_origin=origin)
        self.sim.__enter__()

    def close(self):
        if KEEP:
            with open(os.path.join(RUN, "demo.pids"), "w") as f:
                f.write(f"{self.svc.proc.pid}\n{self.sim.proc.pid}\n")
            return
        self.sim.__exit__(None, None, None)
        self.svc.stop(check=False)
        self.db.drop()

    # ---- helpers --------------------------------------------------------

    def req(self, method, path, token, body=None, ctype=None):
        headers = {"Content-Type": ctype} if ctype else None
        r = self.svc.request(method, path, token=token, body=body, headers=headers)
        if r.status >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {r.status}: {r.body[:400]!r}")
        return r.json if r.body[:1] in (b"{", b"[") else r.body

    def ctl(self, *args, token=None, check=True, quiet=False):
        r = h.wavectl(*args, token=token or self.alice, url=self.url)
        if not quiet:
            sys.stdout.write("".join(f"    {line}\n" for line in r.stdout.splitlines()))
            sys.stdout.write("".join(f"    {line}\n" for line in r.stderr.splitlines()))
            sys.stdout.flush()
        if check and r.returncode not in (0,):
            raise RuntimeError(f"wavectl {' '.join(args)}: exit {r.returncode}")
        return r

    def at(self, hours_from_now):
        return rfc3339(self.clock.now() + hours_from_now * 3600)

    def create(self, release, policy_name, token, start, **extra):
        r = self.req("POST", "/v1/rollouts", token,
                     {"release": release, "policy": policy_name, "start": start, **extra})
        return r["id"], r

    def approve_gated(self, rid):
        ro = self.req("GET", f"/v1/rollouts/{rid}", self.admin)
        for w in ro["waves"]:
            need = (w.get("settings") or {}).get("approval", {}).get("min", 0)
            if w["state"] == "pending" and need > len([a for a in w["approvals"] if a["decision"] == "approve"]):
                for tok in (self.bob, self.carol)[:need]:
                    self.svc.request("POST", f"/v1/rollouts/{rid}/approve", token=tok,
                                     body={"wave": w["index"], "comment": "reviewed the plan and the release notes"})

    def wait(self, rid, states, timeout=600, on_change=None):
        deadline, last = time.time() + timeout, None
        while time.time() < deadline:
            ro = self.req("GET", f"/v1/rollouts/{rid}", self.admin)
            line = f"[{ro['state']}] " + "  ".join(f"{w['index']}.{w['name']}={w['state']}" for w in ro["waves"])
            if line != last:
                note(f"rollout {rid} {line}")
                last = line
                if on_change:
                    on_change(ro)
            if ro["state"] in states:
                return ro
            time.sleep(0.25)
        raise RuntimeError(f"rollout {rid} still {ro['state']} after {timeout}s")


def main():
    h.require_services()
    d = Demo()
    summary = []
    try:
        say("the example fleet, pointed at the simulated fleet; policies; the releases")
        d.req("PUT", "/v1/fleet", d.admin, fleet_for_sim(h.example_fleet(), d.sim.url), "application/yaml")
        # The standard policy, with the low-risk wave rolled back on its first failure.
        d.req("POST", "/v1/policies", d.alice,
              policy("standard.yaml", **{"failure: {max_failed: 1, action: halt}":
                                         "failure: {max_failed: 0, action: rollback_wave}"}),
              "application/yaml")
        d.req("POST", "/v1/policies", d.sam, policy("urgent-security.yaml"), "application/yaml")
        for version, kind, notes in (("17.0.4", "standard", "quarterly functional release"),
                                     ("17.0.5", "standard", "17.0.4 with the clinic module fixed"),
                                     ("17.0.5-sec1", "urgent", "fix for an authentication bypass")):
            d.req("POST", "/v1/releases", d.sam if kind == "urgent" else d.alice,
                  {"version": version, "digest": DIGEST, "kind": kind, "notes": notes})
        d.sim.report_backups()
        d.ctl("tenant", "list", token=d.admin)

        # ---- 1. a standard rollout that a tenant's health stops ------------------
        say("1. alice plans release 17.0.4 with the standard policy (wavectl rollout create)")
        r = d.ctl("rollout", "create", "--release", "17.0.4", "--policy", "standard-quarterly",
                  "--start", d.at(1), token=d.alice, quiet=True)
        for line in r.stdout.splitlines():
            if line.startswith(("Plan for", "Wave ", "rollout ", "  - ")):
                note(line)
        r1 = int(re.search(r"rollout (\d+) created", r.stdout).group(1))
        note("alice may not approve her own rollout:")
        d.ctl("rollout", "approve", str(r1), "--wave", "4", token=d.alice, check=False)
        d.approve_gated(r1)
        note("bob and carol approved the gated waves; alice starts it, and we watch it live:")
        d.ctl("rollout", "start", str(r1), "--reason", "quarterly release", token=d.alice)
        sys.stdout.flush()
        watch = subprocess.run([h.WAVECTL, "rollout", "status", str(r1), "--watch"],
                               env=dict(os.environ, WAVESCHED_URL=d.url, WAVESCHED_TOKEN=d.alice), timeout=900)
        note(f"(wavectl rollout status --watch exited {watch.returncode}: "
             f"{'the rollout did not complete' if watch.returncode == 1 else 'completed'})")
        ro1 = d.wait(r1, ("completed", "rolled_back", "aborted"))
        failed = [t for w in ro1["waves"] for t in w["tenants"] if t["state"] in ("failed", "rolled_back")]
        for t in failed:
            note(f"{t['slug']}: {t['state']} - {t.get('state_reason') or ''}")
        evidence = os.path.join(RUN, f"evidence-rollout-{r1}.json")
        with open(evidence, "wb") as f:
            f.write(h.wavectl("evidence", str(r1), token=d.admin, url=d.url).stdout.encode())
        v = h.wavectl("evidence", "verify", evidence)
        note(f"evidence exported to {os.path.relpath(evidence, h.SOURCE_ROOT)}; "
             f"wavectl evidence verify: {(v.stdout or v.stderr).strip().splitlines()[0]}")
        summary.append(f"rollout {r1} (17.0.4): {ro1['state']} - {ro1.get('state_reason')}; "
                       f"evidence in {os.path.relpath(evidence, h.SOURCE_ROOT)}")

        # ---- 2. the fixed release, and an urgent patch that preempts it ----------
        say("2. alice rolls out the fixed release 17.0.5")
        r2, _ = d.create("17.0.5", "standard-quarterly", d.alice, d.at(1))
        d.approve_gated(r2)
        d.req("POST", f"/v1/rollouts/{r2}/start", d.alice, {"reason": "fixed release"})
        d.wait(r2, ("running",))
        deadline = time.time() + 300
        while time.time() < deadline:
            ro = d.req("GET", f"/v1/rollouts/{r2}", d.admin)
            if sum(w["state"] == "passed" for w in ro["waves"]) >= 2:
                break
            time.sleep(0.25)
        say("   an authentication bypass is reported: sam (security) ships 17.0.5-sec1 as urgent, "
            "with break-glass over soft blackouts")
        note("without a justification and a change reference, break-glass is refused:")
        r = d.svc.request("POST", "/v1/rollouts", token=d.sam,
                          body={"release": "17.0.5-sec1", "policy": "urgent-security"})
        note(f"HTTP {r.status}: {r.json['error']['details'][0]['message']}")
        body = {"release": "17.0.5-sec1", "policy": "urgent-security",
                "break_glass": {"justification": "authentication bypass exploited in the wild (CVE-2026-4242)",
                                "change_ref": "CHG-2026-1207"}}
        created = d.req("POST", "/v1/rollouts", d.sam, body)
        r3 = created["id"]
        note(f"urgent rollout {r3} created; review {created['review']['id']} opened, due {created['review']['due_at']}")
        d.req("POST", f"/v1/rollouts/{r3}/start", d.sam, {"reason": "urgent security patch"})
        ro2 = d.wait(r2, ("preempted", "completed", "halted"))
        note(f"rollout {r2}: {ro2['state']} - {ro2.get('state_reason')}")
        ro3 = d.wait(r3, ("completed", "halted", "rolled_back"))
        note(f"urgent rollout {r3}: {ro3['state']}")
        say("   the urgent rollout is done: the standard one resumes on a re-plan")
        ro2 = d.wait(r2, ("running", "completed", "halted"))
        plans = d.req("GET", f"/v1/rollouts/{r2}/plans", d.admin)["plans"]
        if len(plans) > 1:
            diff = plans[-1]["diff"] or {}
            note(f"plan version {plans[-1]['version']}: {plans[-1]['reason']}")
            for x in diff.get("on_urgent", []):
                note(f"  {x.get('slug')}: already on {x.get('version') or x.get('release')} (urgent rollout {r3}): dropped")
            note(f"  moved {len(diff.get('moved', []))}, unchanged {diff.get('unchanged')}, "
                 f"approvals withdrawn {len(diff.get('approvals_withdrawn', []))}")
        d.approve_gated(r2)
        ro2 = d.wait(r2, ("completed", "halted", "rolled_back"), on_change=lambda ro: d.approve_gated(r2))
        summary.append(f"rollout {r2} (17.0.5): preempted by urgent rollout {r3} at a wave boundary, "
                       f"resumed on plan version {ro2['plan_version']}, {ro2['state']}")
        summary.append(f"urgent rollout {r3} (17.0.5-sec1): {ro3['state']}; break-glass review "
                       f"{created['review']['id']} open (wavectl review list)")

        say("what the tenants run now (wavectl tenant list)")
        d.ctl("tenant", "list", token=d.admin)
        calls = d.sim.calls()
        twice = [k for k, n in calls["deploys"].items() if n > 1]
        chain = d.ctl("audit", "verify", token=d.admin, quiet=True)
        summary.append(f"{sum(calls['deploys'].values())} deploy calls, {len(twice)} deployed twice for one key; "
                       f"audit chain: {chain.stdout.strip().splitlines()[0] if chain.stdout else chain.stderr.strip()}")
        ok = ro1["state"] == "rolled_back" and ro2["state"] == "completed" and ro3["state"] == "completed" and not twice
    finally:
        say("summary")
        for line in summary:
            note(line)
        if KEEP:
            note(f"the web page: {d.url}/  (clinic-north's owner token: {d.north}; "
                 f"platform token: {d.alice})")
            note(f"export WAVESCHED_URL={d.url} WAVESCHED_TOKEN={d.admin}   # admin, for wavectl")
            note("stop everything with: scripts/demo --stop")
        else:
            note(f"the web page was at {d.url}/ with a tenant token such as clinic-north's; "
                 "run 'scripts/demo --keep' to leave it up and explore")
            note("everything it started is stopped")
        d.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
