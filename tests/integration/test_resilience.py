"""The service survives PostgreSQL restarting under it, runs without Redis,
and drains on SIGTERM."""
import os
import signal
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from wsharness import HARNESS, REDIS_URL, Database, Service, example_fleet, main, tool


class PostgresRestart(unittest.TestCase):
    """Uses a private PostgreSQL so restarting it disturbs no other suite."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ws-restart-")
        self.pg = os.path.join(HARNESS, "pg.sh")
        subprocess.run([self.pg, "start", os.path.join(self.dir, "pg")], check=True, capture_output=True)
        url = subprocess.run([self.pg, "url", os.path.join(self.dir, "pg")], check=True,
                             capture_output=True, text=True).stdout.strip()
        self.db = Database(url)

    def tearDown(self):
        # clean: stops the server and removes its data, wherever pg.sh put it
        subprocess.run([self.pg, "clean", os.path.join(self.dir, "pg")], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_survives_restart(self):
        svc = Service(self.db.url)
        try:
            svc.wait_ready()
            admin = svc.token("admin")
            r = svc.request("PUT", "/v1/fleet", token=admin, body=example_fleet(),
                            headers={"Content-Type": "application/yaml"})
            self.assertEqual(r.status, 200, r)
            subprocess.run([self.pg, "stop", os.path.join(self.dir, "pg")], check=True, capture_output=True)
            # while it is down: fail closed with 503, never hang, never crash
            r = svc.request("GET", "/v1/tenants", token=admin, timeout=60)
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json["error"]["code"], "unavailable")
            self.assertEqual(svc.request("GET", "/readyz").status, 503)
            self.assertEqual(svc.request("GET", "/healthz").status, 200)
            subprocess.run([self.pg, "start", os.path.join(self.dir, "pg")], check=True, capture_output=True)
            deadline = time.time() + 30
            status = None
            while time.time() < deadline:
                status = svc.request("GET", "/v1/tenants", token=admin).status
                if status == 200:
                    break
                time.sleep(0.2)
            self.assertEqual(status, 200)
            self.assertEqual(len(svc.request("GET", "/v1/tenants", token=admin).json["tenants"]), 15)
            log = svc.stop()
            self.assertIn("pg", log)
        finally:
            if svc.proc.poll() is None:
                svc.stop(check=False)
            self.db.drop()


class WithoutRedis(unittest.TestCase):

    def setUp(self):
        self.db = Database()

    def tearDown(self):
        self.db.drop()

    def test_no_redis_configured(self):
        svc = Service(self.db.url)
        try:
            r = svc.wait_ready()
            self.assertEqual(r.json["checks"]["redis"], "disabled")
        finally:
            svc.stop()

    def test_redis_unreachable(self):
        svc = Service(self.db.url, redis_url="unix:///nonexistent/redis.sock")
        try:
            r = svc.wait_ready()
            self.assertIn(r.json["checks"]["redis"], ("down", "connecting"))
            admin = svc.token("admin")
            r = svc.request("PUT", "/v1/fleet", token=admin, body=example_fleet(),
                            headers={"Content-Type": "application/yaml"})
            self.assertEqual(r.status, 200)
        finally:
            svc.stop()

    @unittest.skipUnless(REDIS_URL, "no Redis started by the harness")
    def test_redis_up(self):
        svc = Service(self.db.url, redis_url=REDIS_URL)
        try:
            deadline = time.time() + 10
            state = None
            while time.time() < deadline:
                state = svc.request("GET", "/readyz").json["checks"]["redis"]
                if state == "up":
                    break
                time.sleep(0.1)
            self.assertEqual(state, "up")
        finally:
            svc.stop()


class Drain(unittest.TestCase):

    def test_sigterm_lets_requests_in_flight_finish(self):
        db = Database()
        svc = Service(db.url)
        holder = None
        try:
            svc.wait_ready()
            admin = svc.token("admin")
            # Hold the import lock from another session so the import is
            # certainly in flight (waiting in PostgreSQL) when SIGTERM comes.
            holder = subprocess.Popen([tool("psql"), db.url, "-XAtq", "-c",
                                       "SELECT pg_advisory_lock(hashtext('wavesched.fleet_import'))",
                                       "-c", "SELECT pg_sleep(2)"], stdout=subprocess.DEVNULL)
            time.sleep(0.3)
            results = []
            t = threading.Thread(target=lambda: results.append(
                svc.request("PUT", "/v1/fleet", token=admin, body=example_fleet(),
                            headers={"Content-Type": "application/yaml"})))
            t.start()
            deadline = time.time() + 10
            while time.time() < deadline and db.sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%ws_fleet_import(%' "
                    "AND wait_event_type = 'Lock'") != "1":
                time.sleep(0.02)
            svc.proc.send_signal(signal.SIGTERM)
            t.join(timeout=30)
            svc.proc.wait(timeout=30)
            self.assertEqual(svc.proc.returncode, 0, svc.log()[-3000:])
            self.assertEqual(len(results), 1)
            self.assertEqual(results[0].status, 200, results[0])
            self.assertIn("draining", svc.log())
        finally:
            if holder:
                holder.wait()
            svc.stop()
            db.drop()


if __name__ == "__main__":
    main()
