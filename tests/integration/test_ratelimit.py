"""Per-token rate limiting (api.md: 429 with Retry-After): one budget per
token shared by every API process through a real Redis, a local budget per
process when Redis is not there, and never an error because Redis is gone.
"""
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import wsharness as h

# One request a minute, three at once: nothing refills during a test.
LIMIT = {"WAVESCHED_RATE_LIMIT": "1/min", "WAVESCHED_RATE_BURST": "3"}
REDIS_SH = os.path.join(h.HARNESS, "redis.sh")


def get(svc, token):
    return svc.request("GET", "/v1/tenants", token=token)


class WithoutRedis(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.db = h.Database()
        cls.svc = h.Service(cls.db.url, extra_env=LIMIT)
        cls.svc.wait_ready()
        cls.admin = cls.svc.token("admin", name="admin")

    @classmethod
    def tearDownClass(cls):
        cls.svc.stop()
        cls.db.drop()

    def test_burst_then_429_with_retry_after(self):
        tok = self.svc.token("viewer", name="burst")
        self.assertEqual([get(self.svc, tok).status for _ in range(3)], [200, 200, 200])
        r = get(self.svc, tok)
        self.assertEqual(r.status, 429, r)
        self.assertEqual(r.json["error"]["code"], "rate_limited")
        retry = int(r.headers["retry-after"])
        self.assertTrue(1 <= retry <= 60, retry)
        self.assertIn(f"retry in {retry} s", r.json["error"]["message"])
        # Refused requests spend nothing, and other tokens have their own budget.
        self.assertEqual(get(self.svc, tok).status, 429)
        other = self.svc.token("viewer", name="other")
        self.assertEqual(get(self.svc, other).status, 200)
        # Requests a role may not make count too (403 costs budget like 200).
        third = self.svc.token("tenant", "nobody", name="third")
        self.assertEqual([self.svc.request("GET", "/v1/fleet", token=third).status for _ in range(4)],
                         [403, 403, 403, 429])

    def test_unauthenticated_requests_are_not_counted_against_tokens(self):
        tok = self.svc.token("viewer", name="anon-check")
        for _ in range(5):
            self.assertEqual(self.svc.request("GET", "/v1/tenants", token="wrong").status, 401)
        self.assertEqual(get(self.svc, tok).status, 200)

    def test_bad_settings_are_refused_at_start(self):
        env = dict(os.environ, WAVESCHED_DATABASE_URL=self.db.url, WAVESCHED_RATE_LIMIT="10/day")
        r = subprocess.run([h.WAVESCHED, "serve"], env=env, capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("WAVESCHED_RATE_LIMIT", r.stderr)


class SharedThroughRedis(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ws-ratelimit-")
        cls.redis_dir = os.path.join(cls.tmp, "redis")
        subprocess.run([REDIS_SH, "start", cls.redis_dir], check=True, capture_output=True)
        url = subprocess.run([REDIS_SH, "url", cls.redis_dir], check=True, capture_output=True,
                             text=True).stdout.strip()
        cls.redis_url = url
        cls.db = h.Database()
        cls.svcs = [h.Service(cls.db.url, redis_url=url, extra_env=LIMIT, migrate=(i == 0)) for i in range(2)]
        for s in cls.svcs:
            s.wait_ready()
            cls.wait_redis(s, "up")
        cls.admin = cls.svcs[0].token("admin", name="admin")

    @classmethod
    def tearDownClass(cls):
        for s in cls.svcs:
            s.stop()
        cls.db.drop()
        subprocess.run([REDIS_SH, "clean", cls.redis_dir], capture_output=True)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @staticmethod
    def wait_redis(svc, state):
        deadline = time.time() + 20
        while time.time() < deadline:
            if svc.request("GET", "/readyz").json["checks"].get("redis") == state:
                return
            time.sleep(0.1)
        raise AssertionError(f"redis never {state}")

    def test_one_budget_across_processes(self):
        a, b = self.svcs
        tok = a.token("viewer", name="shared")
        self.assertEqual([get(a, tok).status, get(b, tok).status, get(a, tok).status], [200, 200, 200])
        r = get(b, tok)
        self.assertEqual(r.status, 429, r)
        self.assertGreaterEqual(int(r.headers["retry-after"]), 1)
        self.assertEqual(get(a, tok).status, 429)
        # The budget is in Redis, under the token's id.
        tid = self.db.sql("SELECT id FROM api_tokens WHERE name = 'shared'")
        sock = self.redis_url.split("://", 1)[1].split("?", 1)[0]
        keys = subprocess.run(["redis-cli", "-s", sock, "--scan", "--pattern", "wavesched:rl:*"],
                              capture_output=True, text=True, check=True)
        self.assertIn(f"wavesched:rl:{tid}", keys.stdout.split())

    def test_redis_down_falls_back_to_each_process(self):
        a, b = self.svcs
        subprocess.run([REDIS_SH, "stop", self.redis_dir], check=True, capture_output=True)
        try:
            for s in self.svcs:
                self.wait_redis(s, "down")
            tok = a.token("viewer", name="fallback")
            # Each process has its own budget of three now: never an error
            # because Redis is gone, and still a limit.
            self.assertEqual([get(a, tok).status for _ in range(4)], [200, 200, 200, 429])
            self.assertEqual([get(b, tok).status for _ in range(4)], [200, 200, 200, 429])
        finally:
            subprocess.run([REDIS_SH, "start", self.redis_dir], check=True, capture_output=True)
            for s in self.svcs:
                self.wait_redis(s, "up")
        # Back on Redis: a fresh token shares one budget again.
        tok = a.token("viewer", name="after")
        self.assertEqual([get(a, tok).status, get(b, tok).status, get(b, tok).status, get(a, tok).status],
                         [200, 200, 200, 429])


if __name__ == "__main__":
    h.main()
