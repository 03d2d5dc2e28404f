"""The simulated fleet (simfleet) as other suites and the demo use it: every
endpoint and fault, deduplication by idempotency key, Kubernetes
convergence, backup reports to a local receiver, control input validation,
the command line, and a clean exit on SIGTERM/SIGINT (no sanitizer report).

simfleet needs no database: this suite always runs."""
import calendar
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from simfleet import SIMFLEET, SimFleet, fleet_for_sim, query_key

SOURCE_ROOT = os.environ.get("WS_SOURCE_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
EXAMPLE_FLEET = os.path.join(SOURCE_ROOT, "examples", "fleet.yaml")

K8S_PATH = "/apis/apps/v1/namespaces/odoo/deployments/"
MERGE = {"Content-Type": "application/strategic-merge-patch+json"}


def example_fleet():
    with open(EXAMPLE_FLEET) as f:
        return f.read()


def parse_time(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def image_patch(image, labels=None):
    p = {"spec": {"template": {"spec": {"containers": [{"name": "odoo", "image": image}]}}}}
    if labels:
        p["metadata"] = {"labels": labels}
    return p


def wait_for(fn, timeout=10, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Receiver:
    """The service's POST /v1/backups, played by a small local HTTP server:
    records each report with its Authorization header; answers 500 for the
    tenants in `fail`."""

    def __init__(self):
        self.reports = []
        self.fail = set()
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n))
                with outer.lock:
                    outer.reports.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                          "body": body})
                code = 500 if body.get("tenant") in outer.fail else 201
                data = b'{"ok": true}' if code == 201 else b'{"error": {"code": "boom"}}'
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def tenants(self):
        with self.lock:
            return [r["body"]["tenant"] for r in self.reports]

    def clear(self):
        with self.lock:
            self.reports.clear()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class SimCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="simfleet-test-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def sim(self, **kw):
        return SimFleet(self.tmp, **kw)


class Health(SimCase):

    def test_fleet_tenants_answer_with_their_version_and_others_get_404(self):
        with self.sim(fleet=example_fleet()) as sim:
            r = sim.health("hq-finance")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json, {"status": "ok", "slug": "hq-finance", "version": "17.0.3"})
            self.assertEqual(sim.health("legacy-archive").json["version"], "16.0.9")
            r = sim.health("no-such-tenant")
            self.assertEqual(r.status, 404)
            self.assertIn('unknown tenant "no-such-tenant"', r.json["error"]["message"])
            self.assertNotIn("no-such-tenant", sim.tenants())
            self.assertEqual(len(sim.tenants()), 15)

    def test_without_fleet_any_slug_starts_at_version_0(self):
        with self.sim() as sim:
            self.assertEqual(sim.health("whatever-1").json["version"], "0")
            self.assertEqual(sim.request("GET", "/t/Bad_Slug/health").status, 404)
            self.assertEqual(list(sim.tenants()), ["whatever-1"])
            self.assertEqual(sim.request("POST", "/t/x/health").status, 405)
            self.assertEqual(sim.request("GET", "/nope").status, 404)

    def test_unhealthy_after_version_turns_503_once_deployed(self):
        with self.sim(converge_ms=50) as sim:
            sim.set_fault("t1", unhealthy_after_version="2.0")
            self.assertEqual(sim.health("t1").status, 200)
            self.assertTrue(sim.tenants()["t1"]["healthy"])
            r = sim.request("POST", "/deploy", body={"tenant": "t1", "version": "2.0",
                                                      "idempotency_key": "r/t1/1"})
            self.assertEqual(r.status, 202)
            wait_for(lambda: sim.tenants()["t1"]["version"] == "2.0", what="deploy")
            r = sim.health("t1")
            self.assertEqual(r.status, 503)
            self.assertEqual(r.json["status"], "unhealthy")
            self.assertEqual(r.json["reason"], "unhealthy_after_version")
            self.assertFalse(sim.tenants()["t1"]["healthy"])

    def test_http_500_and_flapping(self):
        with self.sim() as sim:
            sim.set_fault("a", http_500=True)
            self.assertEqual(sim.health("a").status, 500)
            sim.set_fault("b", flap_every=2)
            self.assertEqual([sim.health("b").status for _ in range(7)],
                             [200, 200, 503, 503, 200, 200, 503])
            sim.clear_fault("b")
            self.assertEqual([sim.health("b").status for _ in range(3)], [200, 200, 200])

    def test_latency_and_latency_regression_after_version(self):
        with self.sim(converge_ms=20) as sim:
            sim.set_fault("slow", latency_ms=200)
            t0 = time.monotonic()
            self.assertEqual(sim.health("slow").status, 200)
            self.assertGreaterEqual(time.monotonic() - t0, 0.2)
            # The factor applies only once the tenant runs the given version.
            sim.set_fault("reg", latency_ms=40, latency_factor=50, latency_after_version="2.0")
            t0 = time.monotonic()
            sim.health("reg")
            before = time.monotonic() - t0
            self.assertGreaterEqual(before, 0.04)
            self.assertLess(before, 1.5)
            sim.request("POST", "/deploy", body={"tenant": "reg", "version": "2.0",
                                                  "idempotency_key": "k-reg"})
            wait_for(lambda: sim.tenants()["reg"]["version"] == "2.0", what="deploy")
            t0 = time.monotonic()
            self.assertEqual(sim.health("reg").status, 200)
            self.assertGreaterEqual(time.monotonic() - t0, 2.0)

    def test_hang_holds_the_connection_until_the_client_gives_up(self):
        with self.sim() as sim:
            sim.set_fault("stuck", hang=True)
            with self.assertRaises(socket.timeout):
                sim.health("stuck", timeout=0.5)
            # Other tenants are not affected, and the sweep lets the
            # abandoned request go (the clean exit under LSan proves it).
            self.assertEqual(sim.health("fine").status, 200)
            self.assertFalse(sim.tenants()["stuck"]["healthy"])
            time.sleep(0.6)

    def test_a_hanging_request_is_answered_when_simfleet_stops(self):
        sim = self.sim().start()
        sim.set_fault("stuck", hang=True)
        s = socket.create_connection(("127.0.0.1", sim.port))
        s.sendall(b"GET /t/stuck/health HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        sim.stop()   # exit 0, clean log
        s.settimeout(5)
        data = s.recv(4096)
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 503"), data)

    def test_many_concurrent_connections(self):
        """The engine's probes come in bursts over many connections."""
        with self.sim() as sim:
            socks = [socket.create_connection(("127.0.0.1", sim.port)) for _ in range(300)]
            for i, s in enumerate(socks):
                s.sendall(f"GET /t/t{i % 50}/health HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 3)
            answered = 0
            for s in socks:
                s.settimeout(10)
                data = b""
                while data.count(b"HTTP/1.1 200") < 3:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                answered += data.count(b"HTTP/1.1 200")
                s.close()
            self.assertEqual(answered, 900)
            self.assertEqual(sum(t["health_requests"] for t in sim.tenants().values()), 900)


class Backups(SimCase):

    def test_backup_status_follows_the_fault(self):
        with self.sim() as sim:
            now = time.time()
            r = sim.request("GET", "/t/a/backup")
            self.assertEqual(r.status, 200)
            self.assertLess(abs(parse_time(r.json["last_success"]) - now), 5)
            sim.set_fault("b", backup="stale")
            age = now - parse_time(sim.request("GET", "/t/b/backup").json["last_success"])
            self.assertLess(abs(age - 48 * 3600), 5)
            sim.set_fault("c", backup="stale", backup_age="3h")
            age = now - parse_time(sim.request("GET", "/t/c/backup").json["last_success"])
            self.assertLess(abs(age - 3 * 3600), 5)
            sim.set_fault("d", backup="missing")
            r = sim.request("GET", "/t/d/backup")
            self.assertEqual(r.status, 404)
            self.assertEqual(r.json["error"]["code"], "no_backup")

    def test_backup_status_fails_like_health(self):
        """A gate with `source: http` must survive a status service that
        fails or never answers: the tenant's http_500 and hang faults apply
        to its backup status too, and win over the backup fault."""
        with self.sim() as sim:
            sim.set_fault("e", http_500=True)
            r = sim.request("GET", "/t/e/backup")
            self.assertEqual(r.status, 500)
            self.assertNotIn("last_success", r.json)
            self.assertIn("http_500", r.json["error"]["message"])
            sim.set_fault("f", http_500=True, backup="missing")
            self.assertEqual(sim.request("GET", "/t/f/backup").status, 500)
            sim.set_fault("g", hang=True, backup="stale")
            with self.assertRaises(socket.timeout):
                sim.request("GET", "/t/g/backup", timeout=0.5)
            # other tenants answer; clearing the fault answers again
            self.assertEqual(sim.request("GET", "/t/a/backup").status, 200)
            self.assertEqual(sim.request("DELETE", "/_sim/faults/e").status // 100, 2)
            r = sim.request("GET", "/t/e/backup")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json["tenant"], "e")
            time.sleep(0.6)   # the sweep lets the abandoned request go

    def test_schedule_time_is_scaled_from_the_origin(self):
        origin = int(time.time()) - 10
        origin_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(origin))
        with self.sim(time_scale=1000, time_origin=origin_text) as sim:
            before = time.time()
            got = parse_time(sim.request("GET", "/t/a/backup").json["last_success"])
            after = time.time()
            # Bounds from the wall clock around the call (whole seconds shown).
            self.assertGreaterEqual(got, origin + (before - origin) * 1000 - 2)
            self.assertLessEqual(got, origin + (after - origin) * 1000 + 2)
            self.assertGreater(got - time.time(), 9000)   # ~10 s of wall = ~10,000 s scheduled

    def test_reports_to_the_service(self):
        rcv = Receiver()
        try:
            with self.sim(service=rcv.url, token_env="SIM_SVC_TOKEN", backup_interval="1h",
                          env={"SIM_SVC_TOKEN": "s3cret"}) as sim:
                # Tenants exist once mentioned; the start-up round had none.
                for slug in ("fresh-one", "stale-one", "gone-one"):
                    sim.health(slug)
                sim.set_fault("stale-one", backup="stale")
                sim.set_fault("gone-one", backup="missing")
                rcv.clear()
                now = time.time()
                self.assertEqual(sim.report_backups(), {"reported": 2, "failed": 0, "skipped": 1})
                self.assertEqual(sorted(rcv.tenants()), ["fresh-one", "stale-one"])
                by = {r["body"]["tenant"]: r for r in rcv.reports}
                for r in by.values():
                    self.assertEqual(r["path"], "/v1/backups")
                    self.assertEqual(r["auth"], "Bearer s3cret")
                    self.assertEqual(set(r["body"]), {"tenant", "completed_at", "location",
                                                      "size_bytes", "checksum"})
                    self.assertRegex(r["body"]["checksum"], r"^sha256:[0-9a-f]{64}$")
                    self.assertGreater(r["body"]["size_bytes"], 0)
                self.assertLess(abs(parse_time(by["fresh-one"]["body"]["completed_at"]) - now), 5)
                stale_age = now - parse_time(by["stale-one"]["body"]["completed_at"])
                self.assertLess(abs(stale_age - 48 * 3600), 5)
                # A refusing service is counted as failed, and retried next round.
                rcv.fail.add("fresh-one")
                self.assertEqual(sim.report_backups(), {"reported": 1, "failed": 1, "skipped": 1})
                rcv.fail.clear()
                self.assertEqual(sim.report_backups()["reported"], 2)
        finally:
            rcv.close()

    def test_reports_every_interval_of_schedule_time(self):
        rcv = Receiver()
        try:
            # 60 s of schedule time at scale 600 = 100 ms of real time.
            with self.sim(fleet=example_fleet(), service=rcv.url, backup_interval="60s",
                          time_scale=600) as sim:
                wait_for(lambda: len(rcv.tenants()) >= 15 * 3, what="three rounds of reports")
                self.assertEqual(set(rcv.tenants()), set(sim.tenants()))
                self.assertTrue(all(r["auth"] is None for r in rcv.reports))
        finally:
            rcv.close()

    def test_unreachable_service_is_logged_not_fatal(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
        s.close()
        with self.sim(service=dead, backup_interval="1h") as sim:
            sim.health("a")
            self.assertEqual(sim.report_backups(), {"reported": 0, "failed": 1, "skipped": 0})
            self.assertEqual(sim.health("a").status, 200)
        self.assertIn("tenant=a backup report to", sim.log())

    def test_report_without_service_is_409(self):
        with self.sim() as sim:
            r = sim.request("POST", "/_sim/backups/report")
            self.assertEqual(r.status, 409)
            self.assertIn("--service", r.json["error"]["message"])


class Webhook(SimCase):

    def deploy(self, sim, tenant, version, key, headers=None, **extra):
        body = {"rollout": "r1", "tenant": tenant, "cluster": "c1", "version": version,
                "previous_version": "0", "artifact": "sha256:" + "0" * 64, "idempotency_key": key}
        body.update(extra)
        return sim.request("POST", "/deploy", body=body, headers=headers)

    def status(self, sim, key):
        return sim.request("GET", "/deploy/status?key=" + query_key(key))

    def test_deploy_converges_and_a_repeated_key_does_not_deploy_again(self):
        with self.sim(fleet=example_fleet(), converge_ms=300) as sim:
            key = "r1/clinic-north/1"
            r = self.deploy(sim, "clinic-north", "18.0", key)
            self.assertEqual((r.status, r.json), (202, {"accepted": True}))
            self.assertEqual(self.status(sim, key).json["state"], "pending")
            self.assertEqual(sim.tenants()["clinic-north"]["version"], "17.0.3")
            # The same attempt re-issued (after a crash): answered as the first.
            r = self.deploy(sim, "clinic-north", "18.0", key)
            self.assertEqual((r.status, r.json), (202, {"accepted": True}))
            wait_for(lambda: self.status(sim, key).json["state"] == "done", what="done")
            self.assertEqual(sim.tenants()["clinic-north"]["version"], "18.0")
            self.assertEqual(sim.health("clinic-north").json["version"], "18.0")
            r = self.deploy(sim, "clinic-north", "18.0", key)
            self.assertEqual(r.status, 202)
            calls = sim.calls()
            self.assertEqual(calls["calls"][key], 3)
            self.assertEqual(calls["deploys"][key], 1)
            self.assertEqual(calls["by_tenant"], {"clinic-north": [key]})
            # the first request's time, not the last: within this test's run
            self.assertLessEqual(abs(calls["first_at_us"][key] / 1e6 - time.time()), 60)
            self.assertEqual(sim.tenants()["clinic-north"]["deploys"], 1)
            # A new attempt is a new key: deployed again.
            self.assertEqual(self.deploy(sim, "clinic-north", "18.0.1", "r1/clinic-north/2").status, 202)
            self.assertEqual(sim.calls()["by_tenant"]["clinic-north"], [key, "r1/clinic-north/2"])

    def test_a_key_reused_for_another_deploy_is_a_conflict(self):
        with self.sim() as sim:
            self.assertEqual(self.deploy(sim, "a", "2.0", "k1").status, 202)
            r = self.deploy(sim, "b", "2.0", "k1")
            self.assertEqual(r.status, 409)
            self.assertIn('"k1"', r.json["error"]["message"])
            self.assertEqual(self.deploy(sim, "a", "3.0", "k1").status, 409)
            self.assertEqual(sim.calls()["deploys"]["k1"], 1)

    def test_deploy_fail_and_deploy_reject(self):
        with self.sim(converge_ms=50) as sim:
            sim.set_fault("f", deploy_fail=True)
            self.assertEqual(self.deploy(sim, "f", "2.0", "kf").status, 202)
            wait_for(lambda: self.status(sim, "kf").json["state"] == "failed", what="failed")
            self.assertEqual(sim.tenants()["f"]["version"], "0")
            sim.set_fault("r", deploy_reject=True)
            r = self.deploy(sim, "r", "2.0", "kr")
            self.assertEqual(r.status, 500)
            self.assertEqual(r.json["error"]["code"], "deploy_rejected")
            self.assertEqual(self.status(sim, "kr").status, 404)
            # Rejected means not accepted: a retry with the key, once the
            # deployer is back, deploys (once).
            sim.clear_fault("r")
            self.assertEqual(self.deploy(sim, "r", "2.0", "kr").status, 202)
            wait_for(lambda: self.status(sim, "kr").json["state"] == "done", what="done")
            c = sim.calls()
            self.assertEqual((c["calls"]["kr"], c["deploys"]["kr"]), (2, 1))

    def test_bad_deploy_bodies_name_the_field(self):
        with self.sim(fleet=example_fleet()) as sim:
            r = sim.request("POST", "/deploy", body='{"tenant": "hq-finance",',
                            headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 400)
            self.assertRegex(r.json["error"]["message"], r"^body:1:\d+: ")
            r = sim.request("POST", "/deploy", body={"tenant": "hq-finance", "version": "18.0"})
            self.assertEqual(r.status, 400)
            self.assertEqual(r.json["error"]["details"][0]["field"], "idempotency_key")
            r = self.deploy(sim, "hq-finance", 18, "k")
            self.assertEqual(r.json["error"]["details"][0]["field"], "version")
            r = self.deploy(sim, "hq-finance", "18.0", "k", previous_version=["x"])
            self.assertEqual(r.json["error"]["details"][0]["field"], "previous_version")
            r = self.deploy(sim, "nobody", "18.0", "k")
            self.assertEqual(r.status, 404)
            self.assertEqual(sim.request("GET", "/deploy").status, 405)
            self.assertEqual(sim.request("GET", "/deploy/status").status, 400)
            self.assertEqual(self.status(sim, "never-seen").status, 404)
            self.assertEqual(sim.calls()["calls"], {})

    def test_bearer_token_when_simfleet_token_is_set(self):
        with self.sim(env={"SIMFLEET_TOKEN": "tok-123"}) as sim:
            self.assertEqual(self.deploy(sim, "a", "2", "k").status, 401)
            r = self.deploy(sim, "a", "2", "k", headers={"Authorization": "Bearer nope-123"})
            self.assertEqual(r.status, 401)
            self.assertEqual(r.headers["www-authenticate"], "Bearer")
            r = self.deploy(sim, "a", "2", "k", headers={"Authorization": "Bearer tok-123"})
            self.assertEqual(r.status, 202)
            self.assertEqual(sim.request("GET", K8S_PATH + "a").status, 401)
            self.assertEqual(sim.request("GET", K8S_PATH + "a",
                                         headers={"Authorization": "Bearer tok-123"}).status, 200)
            # Refused calls never reached the deployer.
            self.assertEqual(sim.calls()["calls"], {"k": 1})


class Kubernetes(SimCase):

    def patch(self, sim, name, body, key=None, headers=MERGE):
        h = dict(headers)
        if key:
            h["Idempotency-Key"] = key
        return sim.request("PATCH", K8S_PATH + name, body=json.dumps(body), headers=h)

    def test_patch_converges_after_converge_ms(self):
        with self.sim(fleet=example_fleet(), converge_ms=300) as sim:
            r = sim.request("GET", K8S_PATH + "clinic-east")
            self.assertEqual(r.status, 200)
            st = r.json["status"]
            self.assertEqual(st["updatedReplicas"], st["replicas"])
            self.assertTrue(r.json["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":17.0.3"))
            r = self.patch(sim, "clinic-east", image_patch("registry.example/odoo:18.0"), key="r/ce/1")
            self.assertEqual(r.status, 200)
            gen = r.json["metadata"]["generation"]
            st = r.json["status"]
            self.assertLess(st["observedGeneration"], gen)
            self.assertNotEqual(st["updatedReplicas"], st["replicas"])

            def converged():
                d = sim.request("GET", K8S_PATH + "clinic-east").json
                s = d["status"]
                return s["observedGeneration"] == d["metadata"]["generation"] and \
                    s["updatedReplicas"] == s["availableReplicas"] == s["replicas"] and d
            d = wait_for(converged, what="convergence")
            self.assertEqual(d["spec"]["template"]["spec"]["containers"][0]["image"],
                             "registry.example/odoo:18.0")
            self.assertEqual(sim.tenants()["clinic-east"]["version"], "18.0")
            # The same key again: the Deployment is not changed again.
            r = self.patch(sim, "clinic-east", image_patch("registry.example/odoo:18.0"), key="r/ce/1")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json["metadata"]["generation"], gen)
            c = sim.calls()
            self.assertEqual((c["calls"]["r/ce/1"], c["deploys"]["r/ce/1"]), (2, 1))

    def test_deploy_fail_never_converges(self):
        with self.sim(converge_ms=50) as sim:
            sim.set_fault("web", deploy_fail=True)
            self.assertEqual(self.patch(sim, "web", image_patch("odoo:2.0"), key="k").status, 200)
            wait_for(lambda: sim.calls()["states"]["k"] == "failed", what="failure")
            d = sim.request("GET", K8S_PATH + "web").json
            self.assertNotEqual(d["status"]["updatedReplicas"], d["status"]["replicas"])
            self.assertEqual(d["status"]["conditions"][0]["reason"], "ProgressDeadlineExceeded")
            self.assertEqual(sim.tenants()["web"]["version"], "0")

    def test_tenant_label_and_image_digest(self):
        with self.sim(converge_ms=10) as sim:
            body = image_patch("reg:5000/odoo:3.1@sha256:" + "a" * 64,
                               labels={"wavesched.io/tenant": "real-tenant"})
            self.assertEqual(self.patch(sim, "deploy-7", body).status, 200)
            wait_for(lambda: sim.tenants().get("real-tenant", {}).get("version") == "3.1",
                     what="deploy")
            self.assertNotIn("deploy-7", sim.tenants())
            # Without Idempotency-Key every PATCH is its own deploy.
            self.assertEqual(self.patch(sim, "deploy-7", body).status, 200)
            self.assertEqual(len(sim.calls()["by_tenant"]["real-tenant"]), 2)

    def test_bad_patches(self):
        with self.sim(fleet=example_fleet()) as sim:
            r = self.patch(sim, "clinic-east", {"spec": {}})
            self.assertEqual(r.status, 422)
            self.assertEqual(r.json["kind"], "Status")
            self.assertIn("spec.template.spec.containers", r.json["message"])
            r = self.patch(sim, "clinic-east", image_patch("registry:5000/odoo"))
            self.assertEqual(r.status, 422)
            self.assertIn("containers[0].image", r.json["message"])
            self.assertIn("no tag", r.json["message"])
            r = self.patch(sim, "clinic-east", image_patch(42))
            self.assertEqual(r.status, 422)
            r = self.patch(sim, "clinic-east", [], headers={"Content-Type": "application/json-patch+json"})
            self.assertEqual(r.status, 415)
            r = sim.request("PATCH", K8S_PATH + "clinic-east", body="{nope", headers=MERGE)
            self.assertEqual(r.status, 400)
            self.assertIn("body:1:", r.json["message"])
            r = self.patch(sim, "not-a-tenant", image_patch("odoo:1"))
            self.assertEqual(r.status, 404)
            self.assertEqual(r.json["reason"], "NotFound")
            self.assertEqual(sim.request("GET", K8S_PATH + "not-a-tenant").status, 404)
            self.assertEqual(sim.request("DELETE", K8S_PATH + "clinic-east").status, 405)
            self.assertEqual(sim.calls()["calls"], {})


class Control(SimCase):

    def test_bad_fault_specs_get_400_naming_the_field(self):
        with self.sim() as sim:
            cases = [
                ({"latncy_ms": 5}, "latncy_ms"),
                ({"latency_ms": "5"}, "latency_ms"),
                ({"latency_ms": -1}, "latency_ms"),
                ({"latency_factor": 0}, "latency_factor"),
                ({"latency_after_version": "2"}, "latency_after_version"),
                ({"hang": "yes"}, "hang"),
                ({"flap_every": 0}, "flap_every"),
                ({"backup": "old"}, "backup"),
                ({"backup": "stale", "backup_age": "soon"}, "backup_age"),
                ({"queue_backlog": 1.5}, "queue_backlog"),
                ({"unhealthy_after_version": ""}, "unhealthy_after_version"),
            ]
            for spec, field in cases:
                r = sim.request("PUT", "/_sim/faults/a", body=spec)
                self.assertEqual(r.status, 400, spec)
                self.assertEqual(r.json["error"]["details"][0]["field"], field, spec)
                self.assertIn(field, r.json["error"]["message"], spec)
            r = sim.request("PUT", "/_sim/faults/a", body="[1]", headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 400)
            r = sim.request("PUT", "/_sim/faults/a", body="{", headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 400)
            self.assertRegex(r.json["error"]["message"], r"^body:1:\d+: ")
            # Nothing was set by the refused specs.
            self.assertEqual(sim.health("a").status, 200)
            self.assertIsNone(sim.tenants()["a"]["fault"])

    def test_faults_for_unknown_tenants_with_a_fleet(self):
        with self.sim(fleet=example_fleet()) as sim:
            self.assertEqual(sim.request("PUT", "/_sim/faults/nobody", body={"hang": True}).status, 404)
            self.assertEqual(sim.request("DELETE", "/_sim/faults/nobody").status, 404)
            self.assertEqual(sim.set_fault("clinic-west", http_500=True)["fault"], {"http_500": True})
            self.assertEqual(sim.tenants()["clinic-west"]["fault"], {"http_500": True})
            self.assertIsNone(sim.clear_fault("clinic-west")["fault"])
            self.assertEqual(sim.health("clinic-west").status, 200)

    def test_scenario_faults_and_reset(self):
        scenario = {"tenants": {"clinic-north": {"http_500": True},
                                "rehab-partners": {"queue_backlog": 7}}}
        with self.sim(fleet=example_fleet(), scenario=scenario, converge_ms=10) as sim:
            self.assertEqual(sim.health("clinic-north").status, 500)
            sim.clear_fault("clinic-north")
            sim.set_fault("training-a", hang=True)
            sim.request("POST", "/deploy", body={"tenant": "clinic-south", "version": "18.0",
                                                  "idempotency_key": "k"})
            wait_for(lambda: sim.tenants()["clinic-south"]["version"] == "18.0", what="deploy")
            self.assertEqual(sim.reset(), {"reset": True})
            t = sim.tenants()
            self.assertEqual(t["clinic-south"]["version"], "17.0.3")
            self.assertEqual(t["clinic-north"]["fault"], {"http_500": True})
            self.assertIsNone(t["training-a"]["fault"])
            self.assertEqual(sim.calls(), {"calls": {}, "deploys": {}, "states": {}, "by_tenant": {},
                                           "first_at_us": {}})
            self.assertEqual(sim.health("clinic-north").status, 500)

    def test_reset_while_a_deploy_is_pending(self):
        with self.sim(converge_ms=2000) as sim:
            sim.request("POST", "/deploy", body={"tenant": "a", "version": "2", "idempotency_key": "k"})
            sim.reset()
            time.sleep(0.1)
            self.assertEqual(sim.tenants()["a"]["version"], "0")

    def test_metrics(self):
        with self.sim(scenario={"tenants": {"busy": {"queue_backlog": 42}}}) as sim:
            sim.set_fault("down", http_500=True)
            sim.health("down")
            sim.health("busy")
            sim.health("busy")
            m = sim.metrics()
            self.assertIn("# TYPE simfleet_tenant_up gauge", m)
            self.assertIn('simfleet_tenant_up{tenant="down"} 0', m)
            self.assertIn('simfleet_tenant_up{tenant="busy"} 1', m)
            self.assertIn('simfleet_queue_backlog{tenant="busy"} 42', m)
            self.assertIn('simfleet_queue_backlog{tenant="down"} 0', m)
            self.assertIn('simfleet_health_requests_total{tenant="busy"} 2', m)
            self.assertIn('simfleet_tenant_version_info{tenant="busy",version="0"} 1', m)


class CommandLine(SimCase):

    def run_sim(self, *args, env=None):
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run([SIMFLEET, *args], capture_output=True, text=True, timeout=60, env=e)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_help_and_usage_errors(self):
        for args in (["--help"], ["fleet-for", "--help"], ["deploy-client", "--help"]):
            r = self.run_sim(*args)
            self.assertEqual(r.returncode, 0, args)
            self.assertIn("usage: simfleet", r.stdout)
        for args, text in ((["--frobnicate"], 'unknown option "--frobnicate"'),
                           (["--converge-ms", "soon"], "--converge-ms"),
                           (["--time-scale", "0.5"], "--time-scale"),
                           (["--time-origin", "yesterday"], "--time-origin"),
                           (["--backup-interval", "0s", "--service", "http://x"], "--backup-interval"),
                           (["--service", "ftp://x"], "--service"),
                           (["--listen", "nowhere"], "listen address"),
                           (["--service", "http://127.0.0.1:1", "--token-env", "SIM_UNSET_VAR"],
                            "SIM_UNSET_VAR"),
                           (["extra"], 'unexpected argument "extra"'),
                           (["fleet-for", EXAMPLE_FLEET], "--base"),
                           (["fleet-for", "--base", "http://x", "--executor", "ssh", EXAMPLE_FLEET],
                            "--executor")):
            r = self.run_sim(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(text, r.stderr, args)
            self.assertTrue(r.stderr.startswith("simfleet: "), r.stderr)

    def test_invalid_files_exit_1_with_positions(self):
        bad = self.write("bad.yaml", example_fleet().replace("criticality: critical", "critcality: critical", 1))
        r = self.run_sim("--fleet", bad)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"simfleet: .*bad\.yaml:\d+:\d+: .*critcality")
        sc = self.write("s.json", json.dumps({"tenants": {"hq-finance": {"latency_ms": "x"},
                                                          "ghost": {}}}))
        r = self.run_sim("--fleet", EXAMPLE_FLEET, "--scenario", sc)
        self.assertEqual(r.returncode, 1)
        self.assertIn("tenants.hq-finance.latency_ms", r.stderr)
        self.assertIn("tenants.ghost: unknown tenant", r.stderr)
        self.assertNotIn("Sanitizer", r.stderr)
        r = self.run_sim("--scenario", self.write("t.json", "{nope"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("t.json:1:", r.stderr)

    def test_sigint_is_a_clean_exit_too(self):
        sim = self.sim().start()
        sim.health("a")
        sim.stop(sig=signal.SIGINT)
        self.assertIn("SIGINT: stopping", sim.log())

    def test_fleet_for_points_the_example_fleet_at_the_simulator(self):
        base = "http://127.0.0.1:9999"
        doc = json.loads(fleet_for_sim(example_fleet(), base, fmt="json"))
        self.assertEqual(len(doc["tenants"]), 15)
        for t in doc["tenants"]:
            self.assertEqual(t["health_url"], f"{base}/t/{t['slug']}/health")
        for c in doc["clusters"]:
            self.assertEqual(c["deploy"], {"executor": "webhook", "url": base + "/deploy",
                                           "status_url": base + "/deploy/status?key={key}"})
        doc = json.loads(fleet_for_sim(example_fleet(), base + "/", executor="kubernetes",
                                       token_env="K8S_TOKEN", fmt="json"))
        self.assertEqual(doc["clusters"][0]["deploy"]["api_url"], base)
        self.assertEqual(doc["clusters"][0]["deploy"]["deployment"], "{slug}")
        self.assertEqual(doc["clusters"][0]["deploy"]["token_env"], "K8S_TOKEN")
        # The YAML form is a valid fleet: simfleet itself loads it.
        yaml_text = fleet_for_sim(example_fleet(), base, executor="command")
        self.assertIn("deploy-client", yaml_text)
        with self.sim(fleet=yaml_text) as sim:
            self.assertEqual(sorted(sim.tenants()), sorted(t["slug"] for t in doc["tenants"]))
        # and the offline planner takes both forms
        wavectl = os.environ.get("WAVECTL_BIN")
        if wavectl:
            policy = os.path.join(SOURCE_ROOT, "examples", "policies", "standard.yaml")
            for fmt in ("yaml", "json"):
                path = self.write("fleet." + fmt, fleet_for_sim(example_fleet(), base, fmt=fmt))
                r = subprocess.run([wavectl, "plan", "--fleet", path, "--policy", policy,
                                    "--release", "18.0"], capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)

    def test_deploy_client_is_what_the_command_executor_runs(self):
        with self.sim(fleet=example_fleet(), converge_ms=50) as sim:
            doc = json.loads(fleet_for_sim(example_fleet(), sim.url, executor="command", fmt="json"))
            argv = doc["clusters"][0]["deploy"]["argv"]
            subst = {"{slug}": "training-a", "{version}": "18.0", "{previous_version}": "17.0.3"}
            r = subprocess.run([subst.get(a, a) for a in argv], capture_output=True, text=True,
                               timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(sim.tenants()["training-a"]["version"], "18.0")
            sim.set_fault("training-b", deploy_fail=True)
            r = subprocess.run([SIMFLEET, "deploy-client", "--url", sim.url, "--tenant", "training-b",
                                "--version", "18.0", "--key", "cmd-1"], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 1)
            self.assertIn("deploy failed", r.stderr)
            self.assertEqual(sim.calls()["deploys"]["cmd-1"], 1)
        r = subprocess.run([SIMFLEET, "deploy-client", "--url", sim.url, "--tenant", "a",
                            "--version", "1"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 3)


if __name__ == "__main__":
    if not SIMFLEET:
        print("SIMFLEET_BIN not set: run through meson test", file=sys.stderr)
        sys.exit(77)
    unittest.main(verbosity=2)
