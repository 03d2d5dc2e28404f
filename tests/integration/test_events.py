"""Live events (GET /v1/events): the real service, a real PostgreSQL and
Redis, read as a browser would, over a plain HTTP connection.

What is checked: events of a rollout's creation, approval and start arrive
in order; Last-Event-ID resumes with exactly the missed ones; a tenant
token sees only its tenants' events; an event committed through one
process reaches a client of another; with Redis stopped events still come
(from PostgreSQL) and none is lost when it is back; `wavectl rollout status
--watch` follows a rollout to its end.
"""
import http.client
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import wsharness as h

START = "2026-12-01T00:00:00Z"
DIGEST = "sha256:" + "ab" * 32
# Only the training tenants (training-a, training-b); everybody else is
# left unassigned.  One approval, so that approving is an event too.
TRAINING_ONLY = """apiVersion: wavesched/v1
kind: WavePolicy
metadata: {name: training-only}
spec:
  release_kinds: [standard]
  unmatched: skip
  schedule: {respect_windows: false, slot: 30m}
  defaults:
    soak: 10m
    gates: {approval: {min: 1, roles: [approver]}}
  waves:
    - name: training
      select: {labels: {env: training}}
"""


class Stream:
    """One SSE connection: events as (id, doc) pairs, comments skipped."""

    def __init__(self, svc, token, query="", last_event_id=None, timeout=10, rcvbuf=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=timeout)
        if rcvbuf:
            # a client that reads slowly: the service's output piles up
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout)
            sock.connect(("127.0.0.1", svc.port))
            self.conn.sock = sock
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.conn.request("GET", "/v1/events" + query, headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        if self.status == 200:
            first = self.next_raw()   # the "connected" comment: we are registered
            assert first == ("comment", "connected"), first

    def next_raw(self):
        """The next field group: ("event", id, data) or ("comment", text)."""
        ident, data = None, []
        while True:
            line = self.resp.readline()
            if not line:
                raise EOFError("stream ended")
            line = line.decode().rstrip("\n")
            if line == "":
                if ident is not None or data:
                    return ("event", int(ident), "\n".join(data))
                continue
            if line.startswith(":"):
                if ident is None and not data:
                    return ("comment", line[1:].strip())
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                ident = value
            elif field == "data":
                data.append(value)

    def next(self):
        while True:
            raw = self.next_raw()
            if raw[0] == "event":
                doc = json.loads(raw[2])
                assert doc["id"] == raw[1], raw
                return doc

    def until(self, pred, limit=500):
        """Events up to and including the first that `pred` accepts."""
        got = []
        for _ in range(limit):
            got.append(self.next())
            if pred(got[-1]):
                return got
        raise AssertionError(f"not seen in {limit} events: {got[-5:]}")

    def drain(self, quiet=1.5):
        """Every event until nothing comes for `quiet` seconds."""
        self.conn.sock.settimeout(quiet)
        got = []
        try:
            while True:
                got.append(self.next())
        except (socket.timeout, TimeoutError):
            pass
        return got

    def close(self):
        self.conn.close()


def is_state(kind, to):
    return lambda e: e["kind"] == kind and e["payload"].get("to") == to


class EventsBase(unittest.TestCase):
    redis_url = None
    processes = 1

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ws-events-")
        cls.redis_dir = None
        if cls.redis_url == "private":
            cls.redis_dir = os.path.join(cls.tmp, "redis")
            cls.redis_cmd("start")
            cls.redis_url = subprocess.run([os.path.join(h.HARNESS, "redis.sh"), "url", cls.redis_dir],
                                           check=True, capture_output=True, text=True).stdout.strip()
        cls.db = h.Database()
        cls.svcs = [h.Service(cls.db.url, redis_url=cls.redis_url, migrate=i == 0) for i in range(cls.processes)]
        cls.svc = cls.svcs[0]
        for s in cls.svcs:
            s.wait_ready()
        cls.admin = cls.svc.token("admin", name="admin")
        cls.plat = cls.svc.token("platform", name="plat")
        cls.appr = cls.svc.token("approver", name="appr")
        cls.trainer = cls.svc.token("tenant", "training-a", name="trainer")
        r = cls.svc.request("PUT", "/v1/fleet", token=cls.admin, body=h.example_fleet(),
                            headers={"Content-Type": "application/yaml"})
        assert r.status == 200, r
        r = cls.svc.request("POST", "/v1/policies", token=cls.admin, body=TRAINING_ONLY,
                            headers={"Content-Type": "application/yaml"})
        assert r.status in (200, 201), r
        r = cls.svc.request("POST", "/v1/releases", token=cls.admin,
                            body={"version": "17.0.4", "digest": DIGEST, "kind": "standard"})
        assert r.status == 201, r

    @classmethod
    def redis_cmd(cls, what):
        subprocess.run([os.path.join(h.HARNESS, "redis.sh"), what, cls.redis_dir], check=True,
                       capture_output=True)

    @classmethod
    def tearDownClass(cls):
        try:
            for s in cls.svcs:
                s.stop()
        finally:
            cls.db.drop()
            if cls.redis_dir:
                subprocess.run([os.path.join(h.HARNESS, "redis.sh"), "clean", cls.redis_dir],
                               capture_output=True)
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def create(self, svc=None):
        r = (svc or self.svc).request("POST", "/v1/rollouts", token=self.plat,
                                      body={"release": "17.0.4", "policy": "training-only", "start": START})
        self.assertEqual(r.status, 201, r)
        rid = r.json["id"]
        self.addCleanup(self.abort, rid)
        return rid

    def abort(self, rid):
        self.svc.request("POST", f"/v1/rollouts/{rid}/abort", token=self.admin, body={"reason": "clean-up"})

    def approve_and_start(self, rid, svc=None):
        svc = svc or self.svc
        r = svc.request("POST", f"/v1/rollouts/{rid}/approve", token=self.appr, body={"wave": 1, "comment": "ok"})
        self.assertEqual(r.status, 200, r)
        r = svc.request("POST", f"/v1/rollouts/{rid}/start", token=self.plat, body={"reason": "go"})
        self.assertEqual(r.status, 200, r)

    def db_events(self, rid=None):
        where = f"WHERE seq IS NOT NULL AND rollout_id = {rid}" if rid else "WHERE seq IS NOT NULL"
        rows = self.db.sql(f"SELECT seq, kind, COALESCE(tenant, '') FROM events {where} ORDER BY seq")
        return [(int(s), k, t) for s, k, t in (l.split("|") for l in rows.splitlines())]


class Events(EventsBase):
    redis_url = h.REDIS_URL or None
    processes = 2

    def test_order_resume_and_fan_out(self):
        # A live client of each process; the rollout goes through the first.
        # One of them is not the leader (which stamps): its events come
        # through Redis.
        live = Stream(self.svcs[1], self.admin)
        other = Stream(self.svcs[0], self.admin)
        self.assertEqual(live.headers["content-type"], "text/event-stream")
        self.assertEqual(live.headers["cache-control"], "no-store")
        rid = self.create()
        self.approve_and_start(rid)
        got = live.until(lambda e: e["rollout"] == rid and is_state("rollout.state", "approved")(e))
        self.assertEqual(other.until(lambda e: e["id"] == got[-1]["id"]), got)
        other.close()
        mine = [e for e in got if e["rollout"] == rid]
        kinds = [e["kind"] for e in mine]
        self.assertEqual(kinds[0], "rollout.created", kinds)
        self.assertEqual(set(kinds[1:-2]), {"deployment.scheduled"}, kinds)
        self.assertEqual(sorted(e["tenant"] for e in mine[1:-2]), ["training-a", "training-b"])
        self.assertEqual(kinds[-2:], ["wave.decision", "rollout.state"], kinds)
        self.assertEqual(mine[-2]["payload"]["decision"], "approve")
        ids = [e["id"] for e in got]
        self.assertEqual(ids, list(range(ids[0], ids[0] + len(ids))), "ids are consecutive and in order")
        for e in mine:
            self.assertEqual(set(e) - {"origin"}, {"id", "at", "kind", "rollout", "tenant", "payload"})
            self.assertRegex(e["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        # what the database holds for this rollout, in the same order
        self.assertEqual([(e["id"], e["kind"]) for e in mine],
                         [(s, k) for s, k, _ in self.db_events(rid)][:len(mine)])

        # A client that saw up to the second event resumes with exactly the rest.
        resumed = Stream(self.svc, self.admin, f"?rollout={rid}", last_event_id=mine[1]["id"])
        again = resumed.until(lambda e: e["id"] == mine[-1]["id"])
        self.assertEqual([e["id"] for e in again], [e["id"] for e in mine[2:]])
        self.assertEqual(again, mine[2:])
        # ?since= does the same for a first connection
        since = Stream(self.svcs[1], self.admin, f"?rollout={rid}&since={mine[0]['id']}")
        self.assertEqual(since.until(lambda e: e["id"] == mine[-1]["id"]), mine[1:])
        # and the live client goes on: abort is the next event of this rollout
        self.abort(rid)
        ab = live.until(lambda e: e["rollout"] == rid and is_state("rollout.state", "aborted")(e))
        resumed_ab = resumed.until(lambda e: e["id"] == ab[-1]["id"])
        self.assertEqual(resumed_ab[-1], ab[-1])
        for s in (live, resumed, since):
            s.close()

    def test_tenant_token_sees_only_its_tenant(self):
        rid = self.create()
        self.approve_and_start(rid)
        stream = Stream(self.svcs[1], self.trainer, "?since=0")
        got = stream.drain()
        stream.close()
        self.assertTrue(got, "the tenant's own events")
        self.assertEqual({e["tenant"] for e in got}, {"training-a"})
        mine = [s for s, _, t in self.db_events() if t == "training-a"]
        self.assertEqual([e["id"] for e in got], mine[:len(got)])
        self.assertIn(rid, {e["rollout"] for e in got})
        # another tenant's rollout filter gives nothing more than its own
        stream = Stream(self.svc, self.trainer, f"?since=0&rollout={rid}")
        self.assertEqual({e["tenant"] for e in stream.drain(1.0)}, {"training-a"})
        stream.close()

    def test_bad_requests(self):
        for q, hdr in (("?since=-1", None), ("?since=abc", None), ("?rollout=0", None), ("", "x1")):
            r = self.svc.request("GET", "/v1/events" + q, token=self.admin,
                                 headers={"Last-Event-ID": hdr} if hdr else None)
            self.assertEqual(r.status, 400, (q, r))
            self.assertEqual(r.json["error"]["code"], "validation_failed")
        r = self.svc.request("GET", "/v1/events")
        self.assertEqual(r.status, 401, r)
        r = self.svc.request("HEAD", "/v1/events", token=self.admin)
        self.assertEqual((r.status, r.headers["content-type"], r.body), (200, "text/event-stream", b""))


class EventsWithoutRedis(EventsBase):
    """A Redis of its own, stopped and started under a live client."""
    redis_url = "private"

    def test_redis_down_and_back(self):
        live = Stream(self.svc, self.admin)
        rid = self.create()
        got = live.until(lambda e: e["rollout"] == rid and e["kind"] == "rollout.created")
        scheduled = []
        got += live.until(lambda e: e["kind"] == "deployment.scheduled" and scheduled.append(e) is None
                          and len(scheduled) == 2)
        before_stop = got[-1]["id"]

        self.redis_cmd("stop")
        self.approve_and_start(rid)   # committed while Redis is down
        got += live.until(lambda e: e["rollout"] == rid and is_state("rollout.state", "approved")(e))

        self.redis_cmd("start")
        # A consumer of the channel itself, there before the service is back.
        sock = self.redis_url[len("unix://"):].split("?")[0]
        sub = subprocess.Popen(["redis-cli", "-s", sock, "SUBSCRIBE", "wavesched:events"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.addCleanup(sub.stdout.close)
        self.addCleanup(sub.wait)
        self.addCleanup(sub.kill)
        sub_lines = queue.Queue()
        threading.Thread(target=lambda: [sub_lines.put(l.strip()) for l in sub.stdout], daemon=True).start()
        self.assertEqual([sub_lines.get(timeout=10) for _ in range(3)], ["subscribe", "wavesched:events", "1"])
        deadline = time.time() + 20
        while time.time() < deadline and self.svc.request("GET", "/readyz").json["checks"].get("redis") != "up":
            time.sleep(0.2)
        self.abort(rid)
        got += live.until(lambda e: e["rollout"] == rid and is_state("rollout.state", "aborted")(e))
        got += live.drain(1.0)
        live.close()

        # Nothing lost, nothing twice, in order: the same as the database.
        self.assertEqual([e["id"] for e in got], [s for s, _, _ in self.db_events()][:len(got)])
        self.assertEqual([e["id"] for e in got], list(range(got[0]["id"], got[0]["id"] + len(got))))
        self.assertIn("lost the subscription", self.svc.log())

        # What was stamped while Redis was down is published when it is
        # back, in order, before what came after.
        down = [e["id"] for e in got if e["id"] > before_stop]
        published = []
        while not published or published[-1] < got[-1]["id"]:
            try:
                msg = [sub_lines.get(timeout=20) for _ in range(3)]
            except queue.Empty:
                self.fail(f"not all published within 20 s: {published}, events {down}")
            self.assertEqual(msg[:2], ["message", "wavesched:events"])
            published.append(json.loads(msg[2])["id"])
        self.assertEqual(published, sorted(published))
        self.assertTrue(set(e["id"] for e in got if e["id"] >= down[0]) <= set(published),
                        (down, published))

    def test_zz_sigterm_ends_streams(self):
        # Last of the class: the service drains with a client connected.
        stream = Stream(self.svc, self.admin)
        self.svc.proc.send_signal(signal.SIGTERM)
        with self.assertRaises(EOFError):
            for _ in range(100):   # ended, not left hanging until the grace period
                stream.next_raw()
        stream.close()
        self.svc.proc.wait(timeout=30)
        self.assertEqual(self.svc.proc.returncode, 0)
        self.assertIn("ended 1 event streams for shutdown", self.svc.log())


class EventsNoRedis(EventsBase):
    """No Redis configured: PostgreSQL carries everything."""

    def test_live_and_backlog_without_redis(self):
        live = Stream(self.svc, self.admin)
        rid = self.create()
        self.approve_and_start(rid)
        got = live.until(lambda e: e["rollout"] == rid and is_state("rollout.state", "approved")(e))
        self.assertEqual([e["id"] for e in got],
                         [s for s, _, _ in self.db_events() if s >= got[0]["id"]][:len(got)])
        self.assertEqual(got[0]["kind"], "rollout.created")
        live.close()

    def test_late_commit_is_not_missed(self):
        # Event ids are drawn at INSERT: a transaction that commits late has
        # a smaller id than events already delivered.  Its seq is still
        # after theirs, so a client resuming from them gets it.
        late = subprocess.Popen([h.tool("psql"), self.db.url, "-XAtq", "-v", "ON_ERROR_STOP=1"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(late.stdout.close)
        self.addCleanup(late.wait)
        late.stdin.write("BEGIN;\nINSERT INTO events (kind) VALUES ('test.late') RETURNING id;\n")
        late.stdin.flush()
        late_id = int(late.stdout.readline().split()[0])
        early_seq = None
        early_id = int(self.db.sql("INSERT INTO events (kind) VALUES ('test.early') RETURNING id").split()[0])
        deadline = time.time() + 20
        while not early_seq:
            self.assertLess(time.time(), deadline, "not stamped")
            early_seq = self.db.sql(f"SELECT seq FROM events WHERE id = {early_id}")
            time.sleep(0.1)
        self.assertLess(late_id, early_id)
        stream = Stream(self.svc, self.admin, last_event_id=early_seq)
        late.stdin.write("COMMIT;\n")
        late.stdin.close()
        e = stream.until(lambda e: e["kind"] == "test.late")[-1]
        stream.close()
        self.assertEqual(e["id"], int(early_seq) + 1)

    def test_slow_client_is_cut_and_resumes(self):
        # About 9 MB of events: more than the 1 MiB a stream may have unsent
        # plus what the kernel buffers.
        self.db.sql("INSERT INTO events (kind, payload) SELECT 'test.bulk', "
                    "jsonb_build_object('n', g, 'pad', repeat('x', 1500)) FROM generate_series(1, 6000) g")
        deadline = time.time() + 60
        while self.db.sql("SELECT count(*) FROM events WHERE seq IS NULL") != "0":
            self.assertLess(time.time(), deadline, "events not stamped")
            time.sleep(0.2)
        top = int(self.db.sql("SELECT max(seq) FROM events"))
        slow = Stream(self.svc, self.admin, "?since=0", rcvbuf=4096)
        # Not reading, until the service has cut it (it writes as fast as
        # it can, which under a sanitizer on a busy machine is not fast).
        deadline = time.time() + 60
        while "client reads too slowly" not in self.svc.log():
            self.assertLess(time.time(), deadline, "the slow client was never cut")
            time.sleep(0.2)
        got = []
        with self.assertRaises(EOFError):
            while True:
                got.append(slow.next()["id"])
        slow.close()
        self.assertLess(len(got), top, "the stream was cut before the end")
        self.assertEqual(got, list(range(1, len(got) + 1)))
        self.assertIn("client reads too slowly", self.svc.log())
        # It resumes where it was cut, and gets the rest.
        resumed = Stream(self.svc, self.admin, last_event_id=got[-1])
        rest = [e["id"] for e in resumed.until(lambda e: e["id"] == top, limit=top)]
        resumed.close()
        self.assertEqual(got + rest, list(range(1, top + 1)))


# `wavectl rollout status --watch` on a rollout the engine plays on the
# simulated fleet (test_engine.py's set-up), its output not a terminal.
from test_engine import RELEASE, EngineCase   # noqa: E402

WATCHED = """apiVersion: wavesched/v1
kind: WavePolicy
metadata: {name: watched}
spec:
  release_kinds: [standard]
  unmatched: skip
  schedule: {respect_windows: false, slot: 30m}
  defaults:
    soak: 10m
    gates:
      backup: {max_age: 24h}
      health: {interval: 30s, timeout: 5s, consecutive_successes: 3, max_consecutive_failures: 3,
               max_latency_ms: 2000, latency_regression: 1.5}
      approval: {min: 0}
    failure: {max_failed: 0, action: halt}
  waves:
    - name: training
      select: {labels: {env: training}}
    - name: staging
      select: {labels: {env: staging}}
"""


class WatchCase(EngineCase):
    def setUp(self):
        super().setUp()
        r = self.svc.request("POST", "/v1/policies", token=self.platform, body=WATCHED,
                             headers={"Content-Type": "application/yaml"})
        self.assertIn(r.status, (200, 201), r)
        self.policy_name = "watched"

    def watch(self, restart=False):
        """Creates and starts a rollout under `rollout status --watch`; with
        `restart`, the service restarts once the rollout runs and the watch
        must resume where it was."""
        rid = self.create_rollout(start_in=2 * 86400 if restart else 0)   # 2 days: ~9 s
        env = dict(os.environ, WAVESCHED_URL=f"http://127.0.0.1:{self.svc.port}", WAVESCHED_TOKEN=self.admin)
        proc = subprocess.Popen([h.WAVECTL, "rollout", "status", str(rid), "--watch"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(proc.stderr.close)
        self.addCleanup(proc.stdout.close)
        lines = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True)
        reader.start()
        self.start(rid)
        out = []
        if restart:
            while not out or not out[-1].rstrip().endswith(f"rollout {rid}: running"):
                out.append(lines.get(timeout=60))
            self.svc.proc.send_signal(signal.SIGTERM)
            self.assertEqual(self.svc.proc.wait(timeout=30), 0)
            self.svc.start()
        try:
            proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self.fail(f"--watch did not end:\n{''.join(out)}\n{self.rollout(rid)}")
        reader.join(10)
        while not lines.empty():
            out.append(lines.get())
        return rid, proc.returncode, "".join(out), proc.stderr.read()


class WatchCompletes(WatchCase):
    def test_watch_until_completed(self):
        rid, rc, out, err = self.watch(restart=True)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("resuming", err)   # the stream dropped with the service
        lines = out.splitlines()
        # resumed after the last event seen: no change is told twice
        self.assertEqual(len([l for l in lines if l.endswith(f"rollout {rid}: running")]), 1, out)
        self.assertRegex(lines[-1], rf"^\S+ rollout {rid}: completed$")
        for slug in ("training-a", "training-b"):
            self.assertIn(f"tenant {slug} (wave 1): healthy", out)
        self.assertRegex(out, r"wave 1 +training +\[#{20}\] +2/2 +healthy +passed")
        self.assertNotIn("\033", out, "no terminal codes when stdout is not a terminal")
        # the status without --watch agrees
        r = h.wavectl("rollout", "status", str(rid), token=self.admin, url=f"http://127.0.0.1:{self.svc.port}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"rollout {rid}: completed", r.stdout)
        self.assertRegex(r.stdout, r"wave 1 +training +passed +2/2 +healthy")


class WatchHalts(WatchCase):
    faults = {"tenants": {"training-a": {"unhealthy_after_version": RELEASE}}}

    def test_watch_exits_1_when_halted(self):
        rid, rc, out, err = self.watch()
        self.assertEqual(rc, 1, out + err)
        self.assertIn("tenant training-a (wave 1): failed", out)
        self.assertRegex(out.splitlines()[-1], rf"rollout {rid}: halted")


if __name__ == "__main__":
    h.main()
