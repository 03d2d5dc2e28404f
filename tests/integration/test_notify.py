"""Notifications (issue 6): sinks managed through the API, messages queued in
the transaction of the event that causes them, delivered in order to real
local webhooks (a small http.server in another process, started from this
file with `sink`), retried with back-off after the sink fails, recorded,
and given up after the last attempt.

Two set-ups: a service without simulator, where the window moves are made
the way the engine makes them (one ws_engine_tx under the current epoch,
as test_windows.py does) and rollouts are aborted through the API; and a
rollout played on the simulated fleet (test_engine.py's EngineCase) in which
two tenants turn unhealthy and the rollout halts.
"""
import datetime
import http.server
import json
import os
import subprocess
import sys
import time

import wsharness as h
from wsharness import SOURCE_ROOT, ServiceCase, example_fleet, wavectl

POLICIES = os.path.join(SOURCE_ROOT, "examples", "policies")
DIGEST = "sha256:" + "5e" * 32
UTC = datetime.timezone.utc
START = "2026-12-01T00:00:00Z"
BG = {"justification": "CVE-2026-4242 exploited against Odoo portals", "change_ref": "CHG-7781"}


# ---- the sink: another process ----------------------------------------------

def run_sink(port, log_path, fail_json):
    """Records every POST as one JSON line {path, status, body, at, auth};
    answers 500 to the first N requests of each path listed in fail_json
    ({"/path": N}), 200 afterwards."""
    fails = json.loads(fail_json)
    seen = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n).decode("utf-8", "replace")
            seen[self.path] = seen.get(self.path, 0) + 1
            status = 500 if seen[self.path] <= fails.get(self.path, 0) else 200
            with open(log_path, "a") as f:
                f.write(json.dumps({"path": self.path, "status": status, "body": body, "at": time.time(),
                                    "auth": self.headers.get("Authorization"),
                                    "ctype": self.headers.get("Content-Type")}) + "\n")
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok" if status == 200 else b"no")

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()


class Sink:
    def __init__(self, tmpdir, fails=None):
        self.port = h.free_port()
        self.log = os.path.join(tmpdir, f"sink-{self.port}.jsonl")
        open(self.log, "w").close()
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "sink", str(self.port), self.log,
                                      json.dumps(fails or {})])
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                import socket
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the sink did not start")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def requests(self, path=None):
        with open(self.log) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return [r for r in rows if path is None or r["path"] == path]

    def delivered(self, path):
        """The bodies answered 200, in the order they arrived."""
        return [json.loads(r["body"]) for r in self.requests(path) if r["status"] == 200]

    def wait(self, path, pred, timeout=60, what="messages"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.delivered(path)
            if pred(got):
                return got
            time.sleep(0.1)
        raise AssertionError(f"sink {path}: {what} not received within {timeout}s; got {self.delivered(path)}")

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def policy(name):
    with open(os.path.join(POLICIES, name)) as f:
        return f.read()


def utc(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def rfc3339_utc(dt):
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- without the simulator ---------------------------------------------------

class Notify(ServiceCase):

    @classmethod
    def setUpClass(cls):
        cls.db = h.Database()
        import tempfile
        cls.tmp = tempfile.mkdtemp(prefix="ws-notify-")
        cls.svc = h.Service(cls.db.url, extra_env={
            "WAVESCHED_REVIEW_WINDOW": "2s", "WAVESCHED_OUTBOUND_ALLOW": "127.0.0.0/8",
            "WAVESCHED_NOTIFY_BACKOFF": "1s", "WAVESCHED_NOTIFY_BACKOFF_MAX": "4s",
            "WAVESCHED_NOTIFY_MAX_ATTEMPTS": "3", "WAVESCHED_LEASE_TTL": "3s",
            # reminders for any window of the coming two months (planned from START)
            "WAVESCHED_NOTIFY_LEAD": "60d",
            "WS_NOTIFY_TEST_SECRET": "s3cret-token"})
        cls.svc.wait_ready()
        cls.admin = cls.svc.token("admin", name="admin")
        svc = cls.svc
        r = svc.request("PUT", "/v1/fleet", token=cls.admin, body=example_fleet(),
                        headers={"Content-Type": "application/yaml"})
        assert r.status == 200, r
        for name in ("urgent-security.yaml", "standard.yaml"):
            r = svc.request("POST", "/v1/policies", token=cls.admin, body=policy(name),
                            headers={"Content-Type": "application/yaml"})
            assert r.status == 201, r
        cls.plat = svc.token("platform", name="plat")
        cls.sec = svc.token("security", name="sec-alice")
        cls.viewer = svc.token("viewer", name="viewer")
        cls.north = svc.token("tenant", "clinic-north", name="north")
        cls.approvers = [svc.token("approver", name=n) for n in ("bob", "carol")]
        for version, kind in (("17.0.5-hotfix", "urgent"), ("17.1.0", "standard"), ("17.1.1", "standard"),
                              ("17.1.2", "standard")):
            r = svc.request("POST", "/v1/releases", token=cls.admin,
                            body={"version": version, "digest": DIGEST, "kind": kind})
            assert r.status == 201, r
        cls.sink = Sink(cls.tmp, fails={"/flaky": 2, "/down": 1000})

    @classmethod
    def tearDownClass(cls):
        try:
            cls.sink.close()
            log = cls.svc.log()
            for bad in ("reminder scan failed", "claiming due notifications failed", "recording the attempt failed"):
                assert bad not in log, f"the notifier's database work failed: {bad}"
        finally:
            super().tearDownClass()

    def req(self, method, path, token, body=None):
        return self.svc.request(method, path, token=token, body=body)

    def add_sink(self, **doc):
        r = self.req("POST", "/v1/notifications/sinks", self.admin, doc)
        self.assertEqual(r.status, 201, r)
        self.addCleanup(self.req, "DELETE", f"/v1/notifications/sinks/{doc['name']}", self.admin)
        return r.json

    def engine_tx(self, ops):
        deadline = time.time() + 30
        while True:
            epoch = int(self.db.sql("SELECT epoch FROM engine_lease WHERE holder IS NOT NULL"
                                    " AND expires_at > clock_timestamp()") or 0)
            if epoch > 0 or time.time() > deadline:
                break
            time.sleep(0.1)
        self.assertGreater(epoch, 0, "the service never took the engine lease")
        text = json.dumps(ops).replace("'", "''")
        return self.db.sql(f"SELECT ws_engine_tx({epoch}, '{text}'::jsonb)")

    def planned(self, version):
        r = self.req("POST", "/v1/rollouts", self.plat, {"release": version, "policy": "standard-quarterly",
                                                         "start": START})
        self.assertEqual(r.status, 201, r)
        return r.json["id"]

    def move(self, rid, slug, days):
        row = self.db.sql(f"SELECT d.id, ws__rfc3339(d.window_start), ws__rfc3339(d.window_end), d.state"
                          f" FROM deployments d WHERE d.rollout_id = {rid} AND d.slug = '{slug}'")
        did, s, e, state = row.split("|")
        ns, ne = (rfc3339_utc(utc(x) + datetime.timedelta(days=days)) for x in (s, e))
        why = f"window too short: it ends {e}, the deployment needs 15m"
        ops = []
        if state == "scheduled":
            ops.append({"op": "deployment", "id": int(did), "from": "scheduled", "to": "waiting_window",
                        "event": "wait", "at": s, "reason": "backup fresh"})
        ops.append({"op": "deployment", "id": int(did), "from": "waiting_window", "to": "waiting_window",
                    "event": "move", "at": e, "reason": why, "set": {"window_start": ns, "window_end": ne},
                    "add_move": {"reason": why, "from_start": s, "from_end": e, "to_start": ns, "to_end": ne},
                    "add_reason": why})
        self.engine_tx(ops)
        return s, ns, why

    def notifications(self, **q):
        qs = "&".join(f"{k}={v}" for k, v in q.items())
        r = self.req("GET", f"/v1/notifications?{qs}", self.admin)
        self.assertEqual(r.status, 200, r)
        return r.json["notifications"]

    # ---- the API -------------------------------------------------------------

    def test_sinks_are_validated_and_admin_only(self):
        good = {"name": "ops", "format": "json", "url": self.sink.url("/x"), "roles": ["platform"]}
        for tok in (self.plat, self.sec, self.viewer):
            r = self.req("POST", "/v1/notifications/sinks", tok, good)
            self.assertEqual(r.status, 403, r)
            self.assertEqual(self.req("GET", "/v1/notifications/sinks", tok).status, 403)
        self.assertEqual(self.req("GET", "/v1/notifications", self.north).status, 403)
        cases = [
            ({"url": "ftp://127.0.0.1/x"}, "url", "http:// or https://"),
            ({"url": "http://"}, "url", "url"),
            ({"url": "http://a b/"}, "url", "spaces"),
            ({"format": "xml"}, "format", "json or slack"),
            ({"roles": ["approver"]}, "roles", "roles[0]"),
            ({"roles": [], "tenants": []}, "roles", "at least one role or one tenant"),
            ({"tenants": ["Not A Slug"]}, "tenants", "tenants[0]"),
            ({"events": ["rollout.exploded"]}, "events", "events[0]: unknown kind"),
            ({"events": []}, "events", "empty list"),
            ({"secret_env": "lower-case"}, "secret_env", "environment variable"),
            ({"name": "-x"}, "name", "name must be"),
            ({"colour": "red"}, "colour", "colour"),
        ]
        for change, field, words in cases:
            doc = {**good, **change}
            r = self.req("POST", "/v1/notifications/sinks", self.admin, doc)
            self.assertEqual(r.status, 422, (change, r))
            msgs = [d for d in r.json["error"]["details"] if d["field"] == field]
            self.assertTrue(msgs and words in msgs[0]["message"], (change, r.json))
        self.assertEqual(self.db.sql("SELECT count(*) FROM notification_sinks WHERE name = 'ops'"), "0")
        r = self.req("POST", "/v1/notifications/sinks", self.admin, "not json")
        self.assertEqual(r.status, 400, r)

        self.add_sink(**good)
        r = self.req("POST", "/v1/notifications/sinks", self.admin, good)
        self.assertEqual(r.status, 409, r)
        r = self.req("GET", "/v1/notifications/sinks", self.admin)
        self.assertEqual([(s["name"], s["format"], s["roles"], s["events"]) for s in r.json["sinks"]],
                         [("ops", "json", ["platform"], None)])
        audit = self.db.sql("SELECT action FROM audit_log WHERE object = 'notify/sink/ops' ORDER BY id")
        self.assertEqual(audit, "notify.sink.create")
        self.assertEqual(self.req("DELETE", "/v1/notifications/sinks/nope", self.admin).status, 404)
        self.assertEqual(self.req("GET", "/v1/notifications?state=bogus", self.admin).status, 400)
        self.assertEqual(self.req("GET", "/v1/notifications?limit=0", self.admin).status, 400)

    def test_wavectl_notify(self):
        self.add_sink(name="cli-sink", format="json", url=self.sink.url("/cli"), roles=["security"],
                      events=["rollout.aborted"])
        r = self.req("POST", "/v1/releases", self.admin, {"version": "17.4.0", "digest": DIGEST})
        self.assertEqual(r.status, 201, r)
        rid = self.planned("17.4.0")
        self.assertEqual(self.req("POST", f"/v1/rollouts/{rid}/abort", self.plat, {"reason": "cli"}).status, 200)
        self.sink.wait("/cli", lambda g: len(g) == 1, what="the abort")
        url = f"http://127.0.0.1:{self.svc.port}"
        out = wavectl("notify", "sinks", token=self.admin, url=url)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, r"cli-sink\s+json\s+security\s+-\s+0\s+1\s+0\s+http://127\.0\.0\.1")
        out = wavectl("notify", "sinks", token=self.plat, url=url)
        self.assertEqual(out.returncode, 1, out)
        self.assertIn("admin only", out.stderr)
        out = wavectl("notify", "list", "--sink", "cli-sink", "--state", "delivered", token=self.viewer, url=url)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, rf"\d+ delivered\s+cli-sink\s+rollout.aborted\s+Rollout {rid} \(release 17.4.0\)"
                                     r" was aborted\. Reason: cli\.\n    attempt 1 \S+: delivered HTTP 200\n")
        out = wavectl("notify", "list", "--state", "bogus", token=self.viewer, url=url)
        self.assertEqual(out.returncode, 2, out)
        out = wavectl("notify", "list", "--sink", "cli-sink", "--format", "json", token=self.viewer, url=url)
        self.assertEqual([n["rollout"] for n in json.loads(out.stdout)["notifications"]], [rid])

    # ---- tenants: window moves ----------------------------------------------

    def test_tenant_sink_told_of_each_move_in_its_zone_and_only_its_own(self):
        self.add_sink(name="north", format="json", url=self.sink.url("/north"), tenants=["clinic-north"])
        self.add_sink(name="south", format="json", url=self.sink.url("/south"), tenants=["clinic-south"])
        rid = self.planned("17.1.0")
        self.addCleanup(self.req, "POST", f"/v1/rollouts/{rid}/abort", self.admin, {"reason": "test clean-up"})
        s1, n1, why1 = self.move(rid, "clinic-north", 7)
        s2, n2, why2 = self.move(rid, "clinic-north", 7)
        got = self.sink.wait("/north", lambda g: len(g) >= 2, what="two moves")
        time.sleep(1.5)  # nothing else comes
        got = self.sink.delivered("/north")
        self.assertEqual([m["kind"] for m in got], ["window.moved", "window.moved"])
        self.assertLess(got[0]["id"], got[1]["id"])
        for m, (old, new, why) in zip(got, ((s1, n1, why1), (s2, n2, why2))):
            self.assertEqual((m["tenant"], m["rollout"]), ("clinic-north", rid))
            self.assertEqual(m["data"]["from_start"], old)
            self.assertEqual(m["data"]["window_start"], new)
            self.assertEqual(m["data"]["timezone"], "America/Chicago")
            # 2026-12-0x is CST (UTC-6): the local time in the text is six hours before UTC
            local = (utc(new) - datetime.timedelta(hours=6)).strftime("%a %Y-%m-%d %H:%M")
            self.assertIn(f"to the window {local} America/Chicago until ", m["text"])
            self.assertIn("North Clinic Group (clinic-north)", m["text"])
            self.assertIn("17.1.0", m["text"])
            self.assertIn(why, m["text"])
        # clinic-south's sink heard nothing of clinic-north
        self.assertEqual([m for m in self.sink.delivered("/south") if m["tenant"] != "clinic-south"], [])
        self.assertEqual(self.sink.delivered("/south"), [])

    def test_reminder_before_the_window_once_and_again_when_it_moves(self):
        self.add_sink(name="remind", format="json", url=self.sink.url("/remind"), tenants=["clinic-north"],
                      events=["window.reminder"])
        r = self.req("POST", "/v1/releases", self.admin, {"version": "17.5.0", "digest": DIGEST})
        self.assertEqual(r.status, 201, r)
        rid = self.planned("17.5.0")
        self.addCleanup(self.req, "POST", f"/v1/rollouts/{rid}/abort", self.admin, {"reason": "test clean-up"})
        time.sleep(2.5)
        self.assertEqual(self.sink.delivered("/remind"), [], "a planned rollout reminds nobody")
        for w in self.req("GET", f"/v1/rollouts/{rid}", self.admin).json["waves"]:
            for tok in self.approvers:
                self.req("POST", f"/v1/rollouts/{rid}/approve", tok, {"wave": w["index"], "comment": "ok"})
        r = self.req("POST", f"/v1/rollouts/{rid}/start", self.plat, {"reason": "test"})
        self.assertEqual(r.status, 200, r)
        _, start, _ = self.db.sql(f"SELECT d.id, ws__rfc3339(d.window_start), 0 FROM deployments d"
                                  f" WHERE d.rollout_id = {rid} AND d.slug = 'clinic-north'").split("|")
        got = self.sink.wait("/remind", lambda g: len(g) >= 1, what="the reminder")
        m = got[0]
        self.assertEqual((m["kind"], m["tenant"], m["rollout"]), ("window.reminder", "clinic-north", rid))
        self.assertEqual(m["data"]["window_start"], start)
        self.assertLess(utc(m["at"]), utc(start))
        # "at" is written to the second; lead_s is the whole seconds left at the scan
        diff = int((utc(start) - utc(m["at"])).total_seconds())
        self.assertIn(m["data"]["lead_s"], (diff - 1, diff))
        self.assertIn("Reminder: North Clinic Group (clinic-north) will be upgraded to version 17.5.0 in ", m["text"])
        local = (utc(start) - datetime.timedelta(hours=6)).strftime("%a %Y-%m-%d %H:%M")
        self.assertIn(f"during its maintenance window {local} America/Chicago until ", m["text"])
        time.sleep(2.5)   # scans go on: still one reminder for this window
        self.assertEqual(len(self.sink.delivered("/remind")), 1)
        old, new, _ = self.move(rid, "clinic-north", 7)
        self.assertEqual(old, start)
        got = self.sink.wait("/remind", lambda g: len(g) >= 2, what="the reminder of the moved window")
        self.assertEqual(got[1]["data"]["window_start"], new)
        time.sleep(2.5)
        self.assertEqual(len(self.sink.delivered("/remind")), 2)

    def test_odd_rows_never_fail_the_engine_and_the_message_still_goes(self):
        self.add_sink(name="odd-role", format="json", url=self.sink.url("/odd-role"), roles=["platform"],
                      events=["rollout.halted"])
        self.add_sink(name="odd-south", format="json", url=self.sink.url("/odd-south"), tenants=["clinic-south"],
                      events=["window.moved"])
        r = self.req("POST", "/v1/releases", self.admin, {"version": "17.6.0", "digest": DIGEST})
        self.assertEqual(r.status, 201, r)
        rid = self.planned("17.6.0")
        self.addCleanup(self.req, "POST", f"/v1/rollouts/{rid}/abort", self.admin, {"reason": "test clean-up"})
        # an event whose payload time is not a time: committed, and told with the event's own time
        self.engine_tx([{"op": "event", "rollout": rid, "kind": "rollout.state",
                         "payload": {"to": "halted", "at": "not a time", "reason": "odd payload"}}])
        at = self.db.sql(f"SELECT ws__rfc3339(at) FROM events WHERE rollout_id = {rid} AND payload ->> 'at' = 'not a time'")
        self.assertTrue(at)
        got = self.sink.wait("/odd-role", lambda g: len(g) >= 1, what="the odd event")
        self.assertEqual((got[0]["kind"], got[0]["at"]), ("rollout.halted", at))
        # a tenant zone PostgreSQL does not know: the move commits, the message says UTC
        zone = self.db.sql("SELECT timezone FROM tenants WHERE slug = 'clinic-south' AND removed_at IS NULL")
        self.db.sql("UPDATE tenants SET timezone = 'Mars/Olympus' WHERE slug = 'clinic-south' AND removed_at IS NULL")
        self.addCleanup(self.db.sql, f"UPDATE tenants SET timezone = '{zone}' WHERE slug = 'clinic-south'"
                                     " AND removed_at IS NULL")
        _, new, _ = self.move(rid, "clinic-south", 7)
        self.assertEqual(self.db.sql(f"SELECT ws__rfc3339(window_start) FROM deployments WHERE rollout_id = {rid}"
                                     " AND slug = 'clinic-south'"), new)
        got = self.sink.wait("/odd-south", lambda g: len(g) >= 1, what="the move")
        self.assertIn(f"to the window {utc(new).strftime('%a %Y-%m-%d %H:%M')} UTC until ", got[0]["text"])

    # ---- roles: order, retries with back-off, giving up ---------------------

    def test_flaky_sink_gets_everything_in_order_after_retries(self):
        self.add_sink(name="flaky", format="json", url=self.sink.url("/flaky"), roles=["platform"],
                      events=["rollout.aborted"], secret_env="WS_NOTIFY_TEST_SECRET")
        rids = []
        for v in ("17.1.1", "17.1.2"):   # one rollout per tenant at a time
            rid = self.planned(v)
            rids.append(rid)
            r = self.req("POST", f"/v1/rollouts/{rid}/abort", self.plat, {"reason": f"not needed ({rid})"})
            self.assertEqual(r.status, 200, r)
        got = self.sink.wait("/flaky", lambda g: len(g) >= 2, timeout=60, what="two aborts")
        self.assertEqual([(m["kind"], m["rollout"]) for m in got], [("rollout.aborted", rids[0]),
                                                                    ("rollout.aborted", rids[1])])
        self.assertIn(f"not needed ({rids[0]})", got[0]["text"])
        reqs = self.sink.requests("/flaky")
        # the first message failed twice, then went; the second only after it
        self.assertEqual([(json.loads(r["body"])["rollout"], r["status"]) for r in reqs],
                         [(rids[0], 500), (rids[0], 500), (rids[0], 200), (rids[1], 200)])
        self.assertTrue(all(r["auth"] == "Bearer s3cret-token" for r in reqs), reqs)
        self.assertTrue(all(r["ctype"] == "application/json" for r in reqs), reqs)
        # waits between attempts follow the back-off (1 s doubling, jittered into [d/2, d])
        self.assertGreaterEqual(reqs[1]["at"] - reqs[0]["at"], 0.45)
        self.assertGreaterEqual(reqs[2]["at"] - reqs[1]["at"], 0.95)
        ns = self.notifications(sink="flaky", state="delivered")
        self.assertEqual([n["rollout"] for n in ns], rids)
        first = ns[0]["deliveries"]
        self.assertEqual([(d["attempt"], d["status"], d["outcome"]) for d in first],
                         [(1, 500, "retry"), (2, 500, "retry"), (3, 200, "delivered")])
        self.assertTrue(500 <= first[0]["retry_in_ms"] <= 1000, first)
        self.assertTrue(1000 <= first[1]["retry_in_ms"] <= 2000, first)
        self.assertIn("HTTP 500", first[0]["error"])
        self.assertIsNone(first[2]["error"])
        self.assertEqual(ns[1]["attempts"], 1)
        # a late duplicate of an attempt already recorded (a former leader's) changes nothing
        mid = ns[0]["id"]
        self.assertEqual(self.db.sql(f"SELECT ws_notify_record({mid}, 3, 200, NULL, 5, 'delivered', NULL)"), "f")
        self.assertEqual(self.db.sql(f"SELECT ws_notify_record({mid}, 2, 500, 'x', 5, 'retry', 100)"), "f")
        self.assertEqual(self.db.sql(f"SELECT count(*) FROM notification_deliveries WHERE queue_id = {mid}"), "3")

    def test_sink_that_stays_down_is_given_up_and_listed(self):
        self.add_sink(name="down", format="slack", url=self.sink.url("/down"), roles=["security"],
                      events=["rollout.aborted"])
        r = self.req("POST", "/v1/releases", self.admin, {"version": "17.2.0", "digest": DIGEST})
        self.assertEqual(r.status, 201, r)
        rid = self.planned("17.2.0")
        self.assertEqual(self.req("POST", f"/v1/rollouts/{rid}/abort", self.plat, {"reason": "x"}).status, 200)
        deadline = time.time() + 60
        failed = []
        while time.time() < deadline and not failed:
            failed = self.notifications(state="failed", sink="down")
            time.sleep(0.2)
        self.assertEqual(len(failed), 1, self.notifications(sink="down"))
        f = failed[0]
        self.assertEqual((f["kind"], f["rollout"], f["attempts"]), ("rollout.aborted", rid, 3))
        self.assertEqual([d["outcome"] for d in f["deliveries"]], ["retry", "retry", "failed"])
        self.assertIsNone(f["deliveries"][2]["retry_in_ms"])
        self.assertIn("HTTP 500", f["last_error"])
        self.assertEqual(len(self.sink.requests("/down")), 3)
        # the body the sink got is a Slack incoming-webhook body
        body = json.loads(self.sink.requests("/down")[0]["body"])
        self.assertIn(f"Rollout {rid}", body["text"])
        self.assertEqual(body["blocks"][0]["type"], "section")
        metrics = self.svc.request("GET", "/metrics").body.decode()
        self.assertRegex(metrics, r'wavesched_notifications\{state="failed"\} [1-9]')

    def test_a_call_cut_by_a_restart_is_sent_by_the_next_process(self):
        import signal
        import socket
        port = h.free_port()
        hole = socket.socket()
        hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hole.bind(("127.0.0.1", port))
        hole.listen(16)   # connections complete and are never answered
        self.add_sink(name="later", format="json", url=f"http://127.0.0.1:{port}/later", roles=["platform"],
                      events=["rollout.aborted"])
        r = self.req("POST", "/v1/releases", self.admin, {"version": "17.3.0", "digest": DIGEST})
        self.assertEqual(r.status, 201, r)
        rid = self.planned("17.3.0")
        self.assertEqual(self.req("POST", f"/v1/rollouts/{rid}/abort", self.plat, {"reason": "later"}).status, 200)
        deadline = time.time() + 20
        while time.time() < deadline and self.db.sql(
                "SELECT count(*) FROM notification_queue q JOIN notification_sinks s ON s.id = q.sink_id"
                " WHERE s.name = 'later' AND q.claimed_until IS NOT NULL") != "1":
            time.sleep(0.05)
        self.assertEqual(self.db.sql("SELECT attempts FROM notification_queue q JOIN notification_sinks s"
                                     " ON s.id = q.sink_id WHERE s.name = 'later'"), "0")
        # the call hangs in the hole: the service stops (drains), handing the message back
        self.svc.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.svc.proc.wait(timeout=30), 0)
        row = self.db.sql("SELECT q.state, q.attempts, q.claimed_until IS NULL FROM notification_queue q"
                          " JOIN notification_sinks s ON s.id = q.sink_id WHERE s.name = 'later'")
        self.assertEqual(row, "pending|0|t")
        hole.close()
        sink = Sink(self.tmp, fails={})
        self.addCleanup(sink.close)
        self.db.sql(f"UPDATE notification_sinks SET url = '{sink.url('/later')}' WHERE name = 'later'"
                    " AND removed_at IS NULL")
        self.svc.start()
        got = sink.wait("/later", lambda g: len(g) >= 1, timeout=20, what="the message after the restart")
        self.assertEqual([(m["kind"], m["rollout"]) for m in got], [("rollout.aborted", rid)])
        ns = self.notifications(sink="later")
        self.assertEqual([(d["attempt"], d["outcome"]) for d in ns[0]["deliveries"]], [(1, "delivered")])

    def test_overdue_review_announced_once(self):
        self.add_sink(name="sec", format="slack", url=self.sink.url("/sec"), roles=["security"],
                      events=["review.overdue"])
        r = self.req("POST", "/v1/rollouts", self.sec, {"release": "17.0.5-hotfix", "policy": "urgent-security",
                                                        "start": START, "break_glass": BG})
        self.assertEqual(r.status, 201, r)
        rid = r.json["id"]
        self.addCleanup(self.req, "POST", f"/v1/rollouts/{rid}/abort", self.admin, {"reason": "test clean-up"})
        got = self.sink.wait("/sec", lambda g: any(f"rollout {rid}" in m["text"] for m in g), timeout=30,
                             what="the overdue review")
        time.sleep(3)  # several scans later: still once
        mine = [m for m in self.sink.delivered("/sec") if f"rollout {rid} " in m["text"] + " "]
        self.assertEqual(len(mine), 1, self.sink.delivered("/sec"))
        self.assertIn("overdue", mine[0]["text"])
        self.assertIn("sec-alice", mine[0]["text"])
        self.assertIn("review.overdue", mine[0]["blocks"][1]["elements"][0]["text"])


# ---- on the simulated fleet --------------------------------------------------

from test_engine import EngineCase, TWO_UNHEALTHY  # noqa: E402


class NotifyOnSimFleet(EngineCase):
    faults = TWO_UNHEALTHY

    def test_halt_reaches_platform_in_order_and_tenants_hear_only_their_own(self):
        sink = Sink(self.tmp, fails={"/platform": 2})
        self.addCleanup(sink.close)
        for doc in ({"name": "platform", "format": "json", "url": sink.url("/platform"), "roles": ["platform"]},
                    {"name": "security", "format": "slack", "url": sink.url("/security"), "roles": ["security"],
                     "events": ["rollout.halted", "gate.failed"]},
                    {"name": "north", "format": "json", "url": sink.url("/north"), "tenants": ["clinic-north"]},
                    {"name": "finance", "format": "json", "url": sink.url("/finance"), "tenants": ["hq-finance"]}):
            r = self.svc.request("POST", "/v1/notifications/sinks", token=self.admin, body=doc)
            self.assertEqual(r.status, 201, r)
        rid = self.create_rollout()
        self.approve_all(rid)
        self.start(rid)
        ro = self.wait_state(rid, ("completed", "halted", "rolled_back", "aborted"))
        self.assertEqual(ro["state"], "halted", ro)

        got = sink.wait("/platform", lambda g: any(m["kind"] == "rollout.halted" for m in g), timeout=90,
                        what="the halt")
        kinds = [m["kind"] for m in got]
        self.assertIn("gate.failed", kinds)
        # every gate failure before the halt it caused; ids strictly growing (order kept through retries)
        self.assertLess(kinds.index("gate.failed"), kinds.index("rollout.halted"))
        ids = [m["id"] for m in got]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(ids), len(set(ids)))
        halted = [m for m in got if m["kind"] == "rollout.halted"][0]
        self.assertIn("2 tenants failed, the budget allows 1", halted["text"])
        failed_gates = {m["tenant"] for m in got if m["kind"] == "gate.failed"}
        self.assertTrue(failed_gates & {"clinic-north", "clinic-south"}, got)
        statuses = [r["status"] for r in sink.requests("/platform")]
        self.assertEqual(statuses[:3], [500, 500, 200])
        first = self.svc.request("GET", "/v1/notifications?sink=platform&limit=1", token=self.admin).json
        self.assertEqual([d["outcome"] for d in first["notifications"][0]["deliveries"]],
                         ["retry", "retry", "delivered"])

        sec = sink.wait("/security", lambda g: any("halted" in m["text"] for m in g), what="the halt (slack)")
        for m in sec:
            self.assertIsInstance(m["text"], str)
            self.assertEqual(m["blocks"][0]["text"]["type"], "mrkdwn")

        # clinic-north: reminded before its window, then told its upgrade failed; nothing about others
        north = sink.wait("/north", lambda g: any(m["kind"] == "deployment.failed" for m in g), what="the failure")
        self.assertEqual({m["tenant"] for m in north}, {"clinic-north"})
        reminders = [m for m in north if m["kind"] == "window.reminder"]
        self.assertTrue(reminders, north)
        for m in reminders:
            self.assertLess(utc(m["at"]), utc(m["data"]["window_start"]))
            self.assertIn("America/Chicago", m["text"])
        self.assertLess(north.index(reminders[0]), [m["kind"] for m in north].index("deployment.failed"))
        fin = sink.delivered("/finance")
        self.assertEqual({m["tenant"] for m in fin} - {"hq-finance"}, set())
        # hq-finance was in a later wave: its window is cancelled by the halt, and it was told
        if self.tenants(ro).get("hq-finance", {}).get("state") == "skipped":
            sink.wait("/finance", lambda g: any(m["kind"] == "window.cancelled" for m in g),
                            what="the cancellation")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "sink":
        run_sink(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        h.main()
