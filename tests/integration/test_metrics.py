"""GET /metrics as an operator's Prometheus sees it: the process's own
figures (requests, pool, leadership, engine counters) and the database's
(rollouts, waves and deployments by state, gate results, deploy durations,
audit chain), in a text exposition that `promtool check metrics` (Debian's
prometheus package) accepts without a lint remark."""
import os
import re
import subprocess
import time

from wsharness import SOURCE_ROOT, ServiceCase, example_fleet, main, tool

DIGEST = "sha256:" + "ef" * 32


def samples(text):
    """{(name, labels): value} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$", line)
        assert m, f"not a sample line: {line!r}"
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


class Metrics(ServiceCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.promtool = tool("promtool")
        r = cls.svc.request("PUT", "/v1/fleet", token=cls.admin, body=example_fleet(),
                            headers={"Content-Type": "application/yaml"})
        assert r.status == 200, r
        with open(os.path.join(SOURCE_ROOT, "examples", "policies", "standard.yaml")) as f:
            r = cls.svc.request("POST", "/v1/policies", token=cls.admin, body=f.read(),
                                headers={"Content-Type": "application/yaml"})
        assert r.status == 201, r
        r = cls.svc.request("POST", "/v1/releases", token=cls.admin, body={"version": "17.0.4", "digest": DIGEST})
        assert r.status == 201, r

    def scrape(self):
        r = self.svc.request("GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers["content-type"].startswith("text/plain; version=0.0.4"))
        return r.body.decode()

    def promtool_check(self, text):
        p = subprocess.run([self.promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "", ""), text[:3000])

    def test_exposition_passes_promtool_and_tells_the_state(self):
        plat = self.svc.token("platform", name="plat")
        r = self.svc.request("POST", "/v1/rollouts", token=plat,
                             body={"release": "17.0.4", "policy": "standard-quarterly",
                                   "start": "2026-12-01T00:00:00Z"})
        self.assertEqual(r.status, 201, r)
        rid = r.json["id"]
        self.assertEqual(self.svc.request("POST", f"/v1/rollouts/{rid}/abort", token=plat,
                                          body={"reason": "metrics test"}).status, 200)
        # The engine skips the aborted rollout's tenants on its own time:
        # wait for it, so that the counts below hold still.
        deadline = time.time() + 30
        while time.time() < deadline and self.db.sql(
                f"SELECT count(*) FROM deployments WHERE rollout_id = {rid} AND state = 'scheduled'") != "0":
            time.sleep(0.1)
        r = self.svc.request("POST", "/v1/rollouts", token=plat,
                             body={"release": "17.0.4", "policy": "standard-quarterly",
                                   "start": "2026-12-01T00:00:00Z"})
        self.assertEqual(r.status, 201, r)
        self.addCleanup(self.svc.request, "POST", f"/v1/rollouts/{r.json['id']}/abort", token=plat,
                        body={"reason": "clean-up"})
        text = self.scrape()
        self.promtool_check(text)
        s = samples(text)
        # Every state is a series, zero or not; the counts are the database's.
        self.assertEqual(s[("wavesched_rollouts", '{state="planned"}')], 1)
        self.assertEqual(s[("wavesched_rollouts", '{state="aborted"}')], 1)
        self.assertEqual(s[("wavesched_rollouts", '{state="running"}')], 0)
        waves = int(self.db.sql("SELECT count(*) FROM waves WHERE state = 'pending'"))
        self.assertEqual(s[("wavesched_waves", '{state="pending"}')], waves)
        deps = int(self.db.sql("SELECT count(*) FROM deployments WHERE state = 'scheduled'"))
        self.assertGreater(deps, 0)
        self.assertEqual(s[("wavesched_deployments", '{state="scheduled"}')], deps)
        self.assertEqual(s[("wavesched_audit_chain_length", "")], int(self.db.sql("SELECT count(*) FROM audit_log")))
        self.assertEqual(s[("wavesched_audit_chain_head_id", "")], int(self.db.sql("SELECT max(id) FROM audit_log")))
        self.assertEqual(s[("wavesched_metrics_db_up", "")], 1)
        # No deploy has ended: an empty histogram, with its buckets.
        self.assertEqual(s[("wavesched_deploy_duration_seconds_count", "")], 0)
        self.assertIn(("wavesched_deploy_duration_seconds_bucket", '{le="+Inf"}'), s)
        # One process: it is the leader, at epoch 1 or later.
        self.assertEqual(s[("wavesched_engine_leader", "")], 1)
        self.assertGreaterEqual(s[("wavesched_engine_epoch", "")], 1)
        self.assertIn(("wavesched_engine_transactions_total", ""), s)

    def test_gate_results_and_deploy_durations_from_the_database(self):
        plat = self.svc.token("platform", name="plat2")
        r = self.svc.request("POST", "/v1/rollouts", token=plat,
                             body={"release": "17.0.4", "policy": "standard-quarterly",
                                   "start": "2027-01-01T00:00:00Z"})
        self.assertEqual(r.status, 201, r)
        rid = r.json["id"]
        self.addCleanup(self.svc.request, "POST", f"/v1/rollouts/{rid}/abort", token=plat,
                        body={"reason": "clean-up"})
        # Rows as the engine writes them (this suite runs no fleet): gate
        # results are append-only; a deployment that ended after 90 s.
        self.db.sql(f"INSERT INTO gate_results (rollout_id, gate, result) VALUES ({rid}, 'backup', 'pass'),"
                    f" ({rid}, 'backup', 'pass'), ({rid}, 'health', 'fail')")
        self.db.sql(f"UPDATE deployments SET state = 'healthy', started_at = now() - interval '90 seconds',"
                    f" ended_at = now() WHERE id = (SELECT min(id) FROM deployments WHERE rollout_id = {rid})")
        text = self.scrape()
        self.promtool_check(text)
        s = samples(text)
        self.assertGreaterEqual(s[("wavesched_gate_results_total", '{gate="backup",result="pass"}')], 2)
        self.assertGreaterEqual(s[("wavesched_gate_results_total", '{gate="health",result="fail"}')], 1)
        self.assertEqual(s[("wavesched_deploy_duration_seconds_bucket", '{le="60"}')], 0)
        self.assertEqual(s[("wavesched_deploy_duration_seconds_bucket", '{le="120"}')], 1)
        self.assertEqual(s[("wavesched_deploy_duration_seconds_count", "")], 1)
        self.assertAlmostEqual(s[("wavesched_deploy_duration_seconds_sum", "")], 90, delta=1)

    def test_without_the_database_the_process_figures_remain(self):
        self.db.sql("ALTER FUNCTION ws_metrics_snapshot() RENAME TO ws_metrics_snapshot_away")
        try:
            text = self.scrape()
        finally:
            self.db.sql("ALTER FUNCTION ws_metrics_snapshot_away() RENAME TO ws_metrics_snapshot")
        self.promtool_check(text)
        s = samples(text)
        self.assertEqual(s[("wavesched_metrics_db_up", "")], 0)
        self.assertIn(("wavesched_http_connections", ""), s)


if __name__ == "__main__":
    main()
