"""Metric gates end to end (policies.md "Metric gates", engine.md "Metric
gate") against a REAL Prometheus: Debian's `prometheus`, started here on a
free port with its own storage, scraping the simulated fleet's /metrics
every second.

A tenant whose `odoo_queue_backlog` is above the gate's max is held at its
window, never deployed, with the reason in its gate row; once the backlog
drops it deploys after the gate's `for`.  With Prometheus stopped, or no
prometheus_url configured, the gate fails closed: held, never deployed,
the failure named."""
import datetime
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import wsharness as h
from simfleet import SimFleet, fleet_for_sim

SCALE = 30                    # 30 s of schedule time in 1 s
RELEASE = "17.0.4"
DIGEST = "sha256:" + "ef" * 32
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

FLEET = """apiVersion: wavesched/v1
kind: Fleet
clusters:
  - {name: shared-1, hosting: shared, region: eu, max_parallel: 4,
     deploy: {executor: webhook, url: "http://127.0.0.1:9/deploy"}}
tenants:
  - {slug: busy-a, cluster: shared-1, criticality: low, timezone: UTC, version: '17.0.3',
     health_url: "http://127.0.0.1:9/t/busy-a/health"}
"""

QUERY = 'odoo_queue_backlog{tenant="{slug}"}'

POLICY = """apiVersion: wavesched/v1
kind: WavePolicy
metadata: {name: metric-gated}
spec:
  release_kinds: [standard]
  schedule: {deploy_estimate: 5m}
  defaults:
    soak: 1m
    gates:
      health: {interval: 30s, timeout: 5s, consecutive_successes: 2}
      metrics:
        - {name: queue-backlog, query: '%s', max: 500, for: 2m}
  waves:
    - {name: all, select: {}}
""" % QUERY


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


class Prometheus:
    """A prometheus child process scraping `target` (host:port) every second."""

    def __init__(self, tmpdir, target):
        self.dir = tempfile.mkdtemp(prefix="prometheus-", dir=tmpdir)
        self.port = h.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global: {scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}\n"
                    "scrape_configs:\n"
                    "  - job_name: simfleet\n"
                    f"    static_configs: [{{targets: ['{target}']}}]\n")
        self.logf = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file", cfg, "--storage.tsdb.path", os.path.join(self.dir, "data"),
             "--web.listen-address", f"127.0.0.1:{self.port}", "--log.level", "warn"],
            stdout=self.logf, stderr=subprocess.STDOUT)

    def log(self):
        with open(os.path.join(self.dir, "prometheus.log"), errors="replace") as f:
            return f.read()

    def query(self, q):
        u = f"{self.url}/api/v1/query?query=" + urllib.parse.quote(q)
        with urllib.request.urlopen(u, timeout=5) as r:
            return json.load(r)

    def wait_value(self, q, value, timeout=30):
        """Until the query answers `value` (as Prometheus writes it)."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}:\n{self.log()}")
            try:
                last = self.query(q)
                res = last["data"]["result"]
                if res and all(s["value"][1] == value for s in res):
                    return
            except OSError as e:
                last = e
            time.sleep(0.2)
        raise AssertionError(f"prometheus: {q} is not {value} after {timeout}s: {last}\n{self.log()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


@unittest.skipUnless(os.access(PROMETHEUS, os.X_OK), "prometheus is not installed")
class MetricGates(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ws-metric-gates-")
        self.origin = int(time.time())
        self.sim = SimFleet(self.tmp, fleet=FLEET, converge_ms=20, time_scale=SCALE,
                            time_origin=rfc3339(self.origin))
        self.sim.__enter__()
        self.prom = Prometheus(self.tmp, f"127.0.0.1:{self.sim.port}")
        self.db = h.Database()
        self.svc = None

    def tearDown(self):
        try:
            twice = {k: n for k, n in self.sim.calls()["deploys"].items() if n > 1}
            self.assertEqual(twice, {}, "deployed twice for one idempotency key")
        finally:
            self.prom.stop()
            self.sim.__exit__(None, None, None)
            if self.svc:
                self.svc.stop()
            self.db.drop()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def serve(self, prometheus_url):
        env = {"WAVESCHED_OUTBOUND_ALLOW": "127.0.0.0/8"}
        if prometheus_url:
            env["WAVESCHED_PROMETHEUS_URL"] = prometheus_url
        self.svc = h.Service(self.db.url, extra_env=env,
                             args=["--time-scale", str(SCALE), "--time-origin", rfc3339(self.origin)])
        self.svc.wait_ready()
        self.admin = self.svc.token("admin", name="admin")
        self.platform = self.svc.token("platform", name="alice")

    def put(self, method, path, body, yaml=False):
        r = self.svc.request(method, path, token=self.admin if "fleet" in path else self.platform,
                             body=body,
                             headers={"Content-Type": "application/yaml"} if yaml else None)
        self.assertIn(r.status, (200, 201), r)
        return r.json

    def rollout(self, rid):
        r = self.svc.request("GET", f"/v1/rollouts/{rid}", token=self.admin)
        self.assertEqual(r.status, 200, r)
        return r.json

    def tenant(self, rid):
        return self.rollout(rid)["waves"][0]["tenants"][0]

    def metric_gates(self, rid):
        return [g for g in self.tenant(rid)["gates"] if g["gate"] == "metrics"]

    def start_rollout(self, policy=POLICY, metrics=None):
        self.put("PUT", "/v1/fleet", fleet_for_sim(FLEET, self.sim.url), yaml=True)
        self.put("POST", "/v1/policies", policy, yaml=True)
        self.put("POST", "/v1/releases", {"version": RELEASE, "digest": DIGEST, "kind": "standard"})
        clock = self.origin + (time.time() - self.origin) * SCALE
        body = self.put("POST", "/v1/rollouts", {"release": RELEASE, "policy": "metric-gated",
                                                 "start": rfc3339(clock + 60)})
        rid = body.get("id") or body["rollout"]["id"]
        settings = self.rollout(rid)["waves"][0]["settings"]
        self.assertEqual(settings["metrics"], metrics or [{"name": "queue-backlog", "query": QUERY,
                                                           "for_s": 120, "max": 500}])
        r = self.svc.request("POST", f"/v1/rollouts/{rid}/start", token=self.platform,
                             body={"reason": "test"})
        self.assertEqual(r.status, 200, r)
        return rid

    def wait_for(self, what, fn, timeout=60):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(0.2)
        self.fail(f"{what} after {timeout}s; last {last}\n{self.svc.log()[-4000:]}")

    def assert_held(self, rid, reason_part, seconds=3):
        """Held at its window: one metrics row "wait" naming `reason_part`,
        still waiting and never called, now and `seconds` later (many
        re-evaluations at 30 s of schedule time each), without a second row."""
        gates = self.wait_for("no metrics wait row", lambda: self.metric_gates(rid))
        self.assertEqual([g["result"] for g in gates], ["wait"], gates)
        self.assertIn(reason_part, gates[0]["evidence"]["reason"])
        time.sleep(seconds)
        t = self.tenant(rid)
        self.assertEqual(t["state"], "waiting_window", t)
        self.assertEqual([g["result"] for g in self.metric_gates(rid)], ["wait"])
        sim = self.sim.tenants()["busy-a"]
        self.assertEqual((sim["deploys"], sim["version"]), (0, "17.0.3"))
        self.assertEqual(self.sim.calls()["by_tenant"].get("busy-a", []), [])
        return gates[0]

    def wait_end(self, rid, timeout=60):
        return self.wait_for("rollout not ended", lambda: (lambda ro: ro if ro["state"] in (
            "completed", "halted", "aborted", "rolled_back") else None)(self.rollout(rid)), timeout)

    def test_held_while_the_backlog_is_high_released_when_it_drops(self):
        self.sim.set_gauges("busy-a", odoo_queue_backlog=700)
        self.prom.wait_value('odoo_queue_backlog{tenant="busy-a"}', "700")
        self.serve(self.prom.url)
        rid = self.start_rollout()
        wait = self.assert_held(rid, "above max 500")
        ev = wait["evidence"]
        reason = ev["reason"]
        self.assertRegex(reason, r'^metric queue-backlog \(query odoo_queue_backlog\{tenant="busy-a"\}\): '
                                 r'sample \{.*tenant="busy-a".*\} = 700 is above max 500$')
        [m] = ev["metrics"]
        self.assertEqual((m["name"], m["query"], m["max"], m["for_s"], m["ok"], m["http_status"]),
                         ("queue-backlog", 'odoo_queue_backlog{tenant="busy-a"}', 500, 120, False, 200))
        self.assertEqual(m["url"], self.prom.url + "/api/v1/query?query=" +
                         urllib.parse.quote('odoo_queue_backlog{tenant="busy-a"}', safe=""))
        self.assertEqual([s["value"] for s in m["samples"]], ["700"])
        self.assertEqual(m["samples"][0]["metric"]["tenant"], "busy-a")
        self.assertIsNone(m["ok_since"])

        # The backlog drops: deployed once the gate has held for 2m.
        self.sim.set_gauges("busy-a", odoo_queue_backlog=100)
        ro = self.wait_end(rid)
        self.assertEqual(ro["state"], "completed", ro)
        t = ro["waves"][0]["tenants"][0]
        self.assertEqual(t["state"], "healthy", t)
        self.assertEqual(self.sim.tenants()["busy-a"]["version"], RELEASE)
        gates = [g for g in t["gates"] if g["gate"] == "metrics"]
        self.assertEqual([g["result"] for g in gates], ["wait", "pass"], gates)
        [m] = gates[1]["evidence"]["metrics"]
        self.assertTrue(m["ok"])
        self.assertEqual([s["value"] for s in m["samples"]], ["100"])
        self.assertGreaterEqual(parse_time(m["checked_at"]) - parse_time(m["ok_since"]), 120, m)
        self.assertNotIn("reason", gates[1]["evidence"])
        # The deploy came after the pass.
        self.assertGreaterEqual(parse_time(t["started_at"]), parse_time(gates[1]["at"]))

        # The evidence bundle carries both rows with their samples.
        r = self.svc.request("GET", f"/v1/rollouts/{rid}/evidence", token=self.admin)
        self.assertEqual(r.status, 200, r)
        text = json.dumps(r.json)
        self.assertIn('"gate": "metrics"', text)
        self.assertIn('"value": "700"', text)
        self.assertIn('"value": "100"', text)

    def test_prometheus_down_fails_closed(self):
        self.sim.set_gauges("busy-a", odoo_queue_backlog=0)
        self.prom.wait_value('odoo_queue_backlog{tenant="busy-a"}', "0")
        url = self.prom.url
        self.prom.stop()
        self.serve(url)
        rid = self.start_rollout()
        wait = self.assert_held(rid, f"Prometheus {url}: ")
        self.assertRegex(wait["evidence"]["reason"],
                         r'^metric queue-backlog \(query odoo_queue_backlog\{tenant="busy-a"\}\): '
                         r'Prometheus http://127\.0\.0\.1:\d+: .*(refused|connect)')
        [m] = wait["evidence"]["metrics"]
        self.assertIsNone(m["http_status"])
        self.assertEqual(m["samples"], [])
        r = self.svc.request("POST", f"/v1/rollouts/{rid}/abort", token=self.platform,
                             body={"reason": "test over"})
        self.assertEqual(r.status, 200, r)
        # An abort does not wait for the checks: the tenant is skipped.
        t = self.wait_for("not skipped", lambda: (lambda x: x if x["state"] == "skipped" else None)(
            self.tenant(rid)), timeout=20)
        self.assertEqual(t["state_reason"], "rollout aborted")
        self.assertEqual(self.sim.tenants()["busy-a"]["deploys"], 0)

    def test_answers_prometheus_refuses_or_leaves_empty_fail_closed(self):
        """A query Prometheus cannot parse (HTTP 400, its error named) and
        one that matches no series (empty result) both hold the tenant;
        the row's evidence has each metric's own reason."""
        policy = POLICY.replace(
            "        - {name: queue-backlog, query: '%s', max: 500, for: 2m}\n" % QUERY,
            "        - {name: broken, query: 'odoo_queue_backlog{tenant=', max: 1}\n"
            "        - {name: nothing, query: 'odoo_no_such_metric{tenant=\"{slug}\"}', min: 0}\n")
        self.sim.set_gauges("busy-a", odoo_queue_backlog=0)
        self.prom.wait_value('odoo_queue_backlog{tenant="busy-a"}', "0")
        self.serve(self.prom.url)
        rid = self.start_rollout(policy, [
            {"name": "broken", "query": "odoo_queue_backlog{tenant=", "for_s": 0, "max": 1},
            {"name": "nothing", "query": 'odoo_no_such_metric{tenant="{slug}"}', "for_s": 0, "min": 0}])
        wait = self.assert_held(rid, "metric broken (query odoo_queue_backlog{tenant=): HTTP 400: "
                                     'status "error": bad_data: ', seconds=2)
        broken, nothing = wait["evidence"]["metrics"]
        self.assertEqual((broken["http_status"], broken["samples"], broken["ok"]), (400, [], False))
        self.assertEqual(nothing["reason"], 'metric nothing (query odoo_no_such_metric{tenant="busy-a"}): '
                                            "empty result (no series matched)")
        self.assertEqual((nothing["http_status"], nothing["samples"]), (200, []))

    def test_without_prometheus_url_fails_closed(self):
        self.sim.set_gauges("busy-a", odoo_queue_backlog=0)
        self.serve(None)
        rid = self.start_rollout()
        wait = self.assert_held(rid, "prometheus_url is not configured", seconds=2)
        self.assertEqual(wait["evidence"]["reason"],
                         'metric queue-backlog (query odoo_queue_backlog{tenant="busy-a"}): '
                         'prometheus_url is not configured')
        self.assertIsNone(wait["evidence"]["metrics"][0]["url"])


if __name__ == "__main__":
    h.main()
