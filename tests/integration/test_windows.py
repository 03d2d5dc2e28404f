"""A tenant's maintenance windows: GET /v1/tenants/{slug}/windows (JSON) and
windows.ics (RFC 5545), and `wavectl tenant windows`, against the real
service and PostgreSQL.  The feed is read with an independent parser
(Debian's python3-icalendar), never with libical, which wrote it.

Rollouts are created through the API (planned), started and aborted through
the API.  A move and a skip are made the way the engine makes them: one call
of ws_engine_tx under the current lease epoch with the ops the engine's
decision code emits (scheduler/engine_decide.c, move_or_skip), on the
deployment of a planned rollout, which the running engine leaves alone.
"""
import datetime
import json
import os
import sys
import time

from wsharness import SOURCE_ROOT, ServiceCase, example_fleet, main, wavectl

try:
    import icalendar
except ImportError:
    # Debian's python3-icalendar is installed for the system interpreter;
    # a python3 from elsewhere (pyenv) may be the one meson found.
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import icalendar
    except ImportError:
        print("python3-icalendar is needed (apt-get install python3-icalendar)", file=sys.stderr)
        raise

POLICIES = os.path.join(SOURCE_ROOT, "examples", "policies")
START = "2026-12-01T00:00:00Z"
DIGEST = "sha256:" + "cd" * 32
UTC = datetime.timezone.utc
TENANT = "clinic-north"


def utc(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def rfc3339_utc(dt):
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Windows(ServiceCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        svc = cls.svc
        r = svc.request("PUT", "/v1/fleet", token=cls.admin, body=example_fleet(),
                        headers={"Content-Type": "application/yaml"})
        assert r.status == 200, r
        with open(os.path.join(POLICIES, "standard.yaml")) as f:
            r = svc.request("POST", "/v1/policies", token=cls.admin, body=f.read(),
                            headers={"Content-Type": "application/yaml"})
        assert r.status in (200, 201), r
        cls.plat = svc.token("platform", name="plat")
        cls.viewer = svc.token("viewer", name="view")
        cls.north = svc.token("tenant", TENANT, name="north")
        cls.south = svc.token("tenant", "clinic-south", name="south")
        cls.releases = 0

    # ---- helpers ---------------------------------------------------------

    def req(self, method, path, token, body=None):
        return self.svc.request(method, path, token=token, body=body)

    def new_rollout(self):
        """A planned rollout of a new release; aborted at the end of the test."""
        Windows.releases += 1
        version = f"17.1.{Windows.releases}"
        r = self.req("POST", "/v1/releases", self.admin, {"version": version, "digest": DIGEST})
        self.assertEqual(r.status, 201, r)
        r = self.req("POST", "/v1/rollouts", self.plat,
                     {"release": version, "policy": "standard-quarterly", "start": START})
        self.assertEqual(r.status, 201, r)
        rid = r.json["id"]
        self.addCleanup(self.req, "POST", f"/v1/rollouts/{rid}/abort", self.admin, {"reason": "test clean-up"})
        return rid, version

    def windows(self, token=None, slug=TENANT):
        r = self.req("GET", f"/v1/tenants/{slug}/windows", token or self.admin)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers["content-type"], "application/json")
        return r.json

    def window_of(self, doc, rid):
        found = [w for w in doc["windows"] if w["rollout"] == rid]
        self.assertEqual(len(found), 1, doc)
        return found[0]

    def feed(self, token=None, slug=TENANT):
        r = self.req("GET", f"/v1/tenants/{slug}/windows.ics", token or self.admin)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers["content-type"], "text/calendar; charset=utf-8")
        cal = icalendar.Calendar.from_ical(r.body)
        return cal, r.body

    def events(self, cal):
        return {str(e["UID"]): e for e in cal.walk("VEVENT")}

    def deployment(self, rid, slug=TENANT):
        row = self.db.sql(f"SELECT d.id, ws__rfc3339(d.window_start), ws__rfc3339(d.window_end) FROM deployments d"
                          f" WHERE d.rollout_id = {rid} AND d.slug = '{slug}'")
        did, s, e = row.split("|")
        return int(did), s, e

    def engine_tx(self, ops):
        """One transaction as the leader commits it, under the current epoch."""
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

    def move(self, rid, days):
        """The engine's move of the tenant's window by `days` (move_or_skip)."""
        did, s, e = self.deployment(rid)
        ns, ne = (rfc3339_utc(utc(x) + datetime.timedelta(days=days)) for x in (s, e))
        why = f"window too short: it ends {e}, the deployment needs 15m"
        state = self.db.sql(f"SELECT state FROM deployments WHERE id = {did}")
        ops = []
        if state == "scheduled":
            ops.append({"op": "deployment", "id": did, "from": "scheduled", "to": "waiting_window",
                        "event": "wait", "at": s, "reason": "backup fresh"})
        ops.append({"op": "deployment", "id": did, "from": "waiting_window", "to": "waiting_window",
                    "event": "move", "at": e, "reason": why,
                    "set": {"window_start": ns, "window_end": ne},
                    "add_move": {"reason": why, "from_start": s, "from_end": e, "to_start": ns, "to_end": ne},
                    "add_reason": why})
        self.engine_tx(ops)
        return ns, ne, why

    def check_event(self, ev, w, version):
        """Every property of one VEVENT against the JSON window it renders."""
        self.assertEqual(str(ev["UID"]), f"rollout-{w['rollout']}-tenant-{TENANT}@wavesched")
        self.assertEqual(ev.decoded("DTSTART"), utc(w["window_start_utc"]))
        self.assertEqual(ev.decoded("DTEND"), utc(w["window_end_utc"]))
        self.assertEqual(ev.decoded("DTSTART"), utc(w["window_start"]))   # the same instant, local form
        for prop in ("DTSTART", "DTEND", "DTSTAMP", "LAST-MODIFIED"):   # UTC date-times ("...Z")
            self.assertRegex(ev[prop].to_ical().decode(), r"^\d{8}T\d{6}Z$")
        self.assertEqual(int(ev["SEQUENCE"]), w["sequence"])
        self.assertEqual(str(ev["STATUS"]), w["status"])
        self.assertEqual(str(ev["SUMMARY"]),
                         ("Cancelled: " if w["cancelled"] else "") +
                         f"Odoo update {version} \u2014 maintenance window "
                         f"(wave {w['wave']['index']}: {w['wave']['name']})")
        desc = str(ev["DESCRIPTION"])
        self.assertIn(f"North Clinic Group ({TENANT}) is to be updated to {version} from 17.0.3", desc)
        self.assertIn("(America/Chicago, UTC-06:00)", desc)
        for reason in w["reasons"]:
            self.assertIn(reason, desc)
        self.assertIsInstance(ev.decoded("DTSTAMP"), datetime.datetime)
        self.assertIsInstance(ev.decoded("LAST-MODIFIED"), datetime.datetime)

    # ---- the JSON view ---------------------------------------------------

    def test_json_lists_the_planned_window(self):
        rid, version = self.new_rollout()
        doc = self.windows()
        self.assertEqual((doc["tenant"], doc["zone"], doc["name"]), (TENANT, "America/Chicago", "North Clinic Group"))
        w = self.window_of(doc, rid)
        ro = self.req("GET", f"/v1/rollouts/{rid}", self.admin).json
        wave = next(x for x in ro["waves"] if any(t["slug"] == TENANT for t in x["tenants"]))
        dep = next(t for t in wave["tenants"] if t["slug"] == TENANT)
        self.assertEqual(w["wave"], {"index": wave["index"], "name": wave["name"], "state": "pending"})
        self.assertEqual((w["release"], w["kind"], w["policy"], w["rollout_state"]),
                         (version, "standard", "standard-quarterly", "planned"))
        self.assertEqual((w["state"], w["status"], w["sequence"], w["cancelled"], w["cancel_reason"], w["moves"]),
                         ("scheduled", "TENTATIVE", 0, False, None, []))
        self.assertEqual(w["reasons"], dep["reasons"])
        self.assertEqual((w["window_start_utc"], w["window_end_utc"]), (dep["window_start"], dep["window_end"]))
        # in the tenant's zone (December in Chicago: UTC-6), as the planner writes them
        self.assertRegex(w["window_start"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d-06:00$")
        self.assertEqual(utc(w["window_start"]), utc(dep["window_start"]))
        self.assertEqual(utc(w["window_end"]), utc(dep["window_end"]))
        # the tenant's own window: Saturday 23:00 local
        local = datetime.datetime.fromisoformat(w["window_start"])
        self.assertEqual((local.weekday(), local.hour, local.minute), (5, 23, 0))
        # the tenant token sees the same document
        mine = self.windows(self.north)
        self.assertEqual(self.window_of(mine, rid), w)
        # oldest window first
        starts = [x["window_start_utc"] for x in doc["windows"]]
        self.assertEqual(starts, sorted(starts))

    # ---- the feed --------------------------------------------------------

    def test_feed_events_match_the_json_and_uids_are_stable(self):
        rid, version = self.new_rollout()
        doc = self.windows()
        cal, raw = self.feed()
        self.assertEqual(str(cal["VERSION"]), "2.0")
        self.assertEqual(str(cal["PRODID"]), "-//wavesched//tenant maintenance windows//EN")
        self.assertEqual(str(cal["CALSCALE"]), "GREGORIAN")
        self.assertEqual(str(cal["METHOD"]), "PUBLISH")
        self.assertEqual(str(cal["X-WR-CALNAME"]), "Maintenance windows: North Clinic Group (clinic-north)")
        self.assertTrue(raw.startswith(b"BEGIN:VCALENDAR\r\n") and raw.endswith(b"END:VCALENDAR\r\n"))
        self.assertTrue(all(len(line) <= 75 for line in raw.split(b"\r\n")))
        evs = self.events(cal)
        self.assertEqual(len(evs), len(doc["windows"]))
        versions = {w["rollout"]: w["release"] for w in doc["windows"]}
        for w in doc["windows"]:
            self.check_event(evs[f"rollout-{w['rollout']}-tenant-{TENANT}@wavesched"], w, versions[w["rollout"]])
        ev = evs[f"rollout-{rid}-tenant-{TENANT}@wavesched"]
        self.assertEqual((str(ev["STATUS"]), int(ev["SEQUENCE"])), ("TENTATIVE", 0))
        # a second fetch: same events, same UIDs, same times
        again = self.events(self.feed()[0])
        self.assertEqual(sorted(again), sorted(evs))
        for uid, e in evs.items():
            self.assertEqual((again[uid].decoded("DTSTART"), int(again[uid]["SEQUENCE"])),
                             (e.decoded("DTSTART"), int(e["SEQUENCE"])))
        # the tenant token gets the same feed
        self.assertEqual(sorted(self.events(self.feed(self.north)[0])), sorted(evs))

    def test_a_move_bumps_the_sequence_and_keeps_the_uid(self):
        rid, version = self.new_rollout()
        uid = f"rollout-{rid}-tenant-{TENANT}@wavesched"
        before = self.events(self.feed()[0])[uid]
        self.assertEqual(int(before["SEQUENCE"]), 0)
        ns, ne, why = self.move(rid, 7)
        w = self.window_of(self.windows(), rid)
        self.assertEqual((w["window_start_utc"], w["window_end_utc"]), (ns, ne))
        self.assertEqual(w["sequence"], 1)
        self.assertEqual(len(w["moves"]), 1)
        m = w["moves"][0]
        self.assertEqual(m["reason"], why)
        self.assertEqual(utc(m["from_start"]), before.decoded("DTSTART"))
        self.assertEqual(utc(m["to_start"]), utc(ns))
        self.assertTrue(m["to_start"].endswith("-06:00"), m)   # the tenant's zone
        self.assertEqual(w["reasons"][-1], why)
        after = self.events(self.feed()[0])[uid]
        self.check_event(after, w, version)
        self.assertEqual(int(after["SEQUENCE"]), 1)
        self.assertEqual(after.decoded("DTSTART"), before.decoded("DTSTART") + datetime.timedelta(days=7))
        desc = str(after["DESCRIPTION"])
        self.assertIn("Moved (1 of 1) from ", desc)
        self.assertIn("because: " + why, desc)
        # a second move: the sequence grows again
        self.move(rid, 7)
        w = self.window_of(self.windows(), rid)
        self.assertEqual((w["sequence"], len(w["moves"])), (2, 2))
        self.assertEqual(int(self.events(self.feed()[0])[uid]["SEQUENCE"]), 2)

    def test_start_confirms_and_abort_cancels(self):
        rid, version = self.new_rollout()
        uid = f"rollout-{rid}-tenant-{TENANT}@wavesched"
        r = self.req("POST", f"/v1/rollouts/{rid}/start", self.plat, {})
        self.assertEqual(r.status, 200, r)
        ev = self.events(self.feed()[0])[uid]
        self.assertEqual((str(ev["STATUS"]), int(ev["SEQUENCE"])), ("CONFIRMED", 1))
        r = self.req("POST", f"/v1/rollouts/{rid}/abort", self.plat, {"reason": "bad build, see INC-12"})
        self.assertEqual(r.status, 200, r)
        w = self.window_of(self.windows(), rid)
        self.assertTrue(w["cancelled"])
        self.assertEqual((w["status"], w["sequence"], w["rollout_state"]), ("CANCELLED", 2, "aborted"))
        self.assertEqual(w["cancel_reason"],
                         "the rollout was aborted before this tenant was updated: bad build, see INC-12")
        ev = self.events(self.feed()[0])[uid]
        self.check_event(ev, w, version)
        self.assertEqual((str(ev["STATUS"]), int(ev["SEQUENCE"])), ("CANCELLED", 2))
        self.assertTrue(str(ev["SUMMARY"]).startswith("Cancelled: Odoo update " + version))
        self.assertIn("CANCELLED: the rollout was aborted", str(ev["DESCRIPTION"]))
        # ended more than 30 days ago: no longer listed
        self.db.sql(f"UPDATE rollouts SET updated_at = now() - interval '31 days' WHERE id = {rid}")
        self.assertEqual([w for w in self.windows()["windows"] if w["rollout"] == rid], [])
        self.assertNotIn(uid, self.events(self.feed()[0]))

    def test_a_skipped_tenant_is_cancelled(self):
        rid, version = self.new_rollout()
        did, s, _ = self.deployment(rid)
        self.engine_tx([{"op": "deployment", "id": did, "from": "scheduled", "to": "skipped", "event": "skip",
                         "at": s, "reason": "backup stale"}])
        w = self.window_of(self.windows(), rid)
        self.assertEqual((w["state"], w["rollout_state"], w["status"], w["cancelled"]),
                         ("skipped", "planned", "CANCELLED", True))
        self.assertEqual(w["cancel_reason"], "the deployment was skipped: backup stale")
        ev = self.events(self.feed()[0])[f"rollout-{rid}-tenant-{TENANT}@wavesched"]
        self.check_event(ev, w, version)
        self.assertEqual(str(ev["STATUS"]), "CANCELLED")

    def test_stored_oddities_are_shown_not_fatal(self):
        """Moves that are not what the engine writes, and a zone the
        database does not know, still give a JSON answer and a feed."""
        rid, version = self.new_rollout()
        did, _, _ = self.deployment(rid)
        self.db.sql(f"""UPDATE deployments SET moves = '[7, {{"reason": "odd", "from_start": "2026-13-45T00:00:00Z",
                        "to_start": "2026-12-12T05:00:00Z", "to_end": "2026-12-12T08:00:00Z"}}]' WHERE id = {did}""")
        self.addCleanup(self.db.sql, f"UPDATE deployments SET moves = '[]' WHERE id = {did}")
        w = self.window_of(self.windows(), rid)
        self.assertEqual(w["moves"], [7, {"reason": "odd", "from_start": "2026-13-45T00:00:00Z",
                                          "to_start": "2026-12-11T23:00:00-06:00", "to_end": "2026-12-12T02:00:00-06:00"}])
        self.assertEqual(w["sequence"], 2)
        ev = self.events(self.feed()[0])[f"rollout-{rid}-tenant-{TENANT}@wavesched"]
        self.assertEqual(int(ev["SEQUENCE"]), 2)
        self.assertIn("Moved (1 of 2) from no window to an unknown window, because: no reason recorded.",
                      str(ev["DESCRIPTION"]))

        self.db.sql(f"UPDATE tenants SET timezone = 'Mars/Olympus_Mons' WHERE slug = '{TENANT}'")
        self.addCleanup(self.db.sql, f"UPDATE tenants SET timezone = 'America/Chicago' WHERE slug = '{TENANT}'")
        doc = self.windows()
        self.assertEqual((doc["zone"], doc["zone_note"]),
                         ("UTC", "zone Mars/Olympus_Mons is unknown to the database: times are in UTC"))
        w = self.window_of(doc, rid)
        self.assertTrue(w["window_start"].endswith("+00:00"), w)
        self.assertEqual(utc(w["window_start"]), utc(w["window_start_utc"]))
        ev = self.events(self.feed()[0])[f"rollout-{rid}-tenant-{TENANT}@wavesched"]
        self.assertEqual(ev.decoded("DTSTART"), utc(w["window_start_utc"]))
        self.assertIn("(UTC, UTC+00:00)", str(ev["DESCRIPTION"]))

    # ---- who sees what ---------------------------------------------------

    def test_tenant_tokens_see_only_their_tenants(self):
        rid, _ = self.new_rollout()
        for path in ("/v1/tenants/clinic-north/windows", "/v1/tenants/clinic-north/windows.ics"):
            r = self.req("GET", path, self.south)
            self.assertEqual(r.status, 404, r)
            self.assertEqual(r.json["error"]["code"], "not_found")
            missing = self.req("GET", path.replace("clinic-north", "no-such-tenant"), self.south)
            self.assertEqual((missing.status, missing.json), (r.status, r.json))   # indistinguishable
            self.assertEqual(self.req("GET", path.replace("clinic-north", "no-such-tenant"), self.admin).status, 404)
            self.assertEqual(self.req("GET", path, self.north).status, 200)
            self.assertEqual(self.req("GET", path, self.viewer).status, 200)
            self.assertEqual(self.req("GET", path, None).status, 401)
            self.assertEqual(self.req("POST", path, self.admin).status, 405)
        # clinic-south sees its own window of the same rollout, not north's
        doc = self.windows(self.south, "clinic-south")
        self.assertEqual(doc["tenant"], "clinic-south")
        self.assertIn(rid, [w["rollout"] for w in doc["windows"]])
        cal, raw = self.feed(self.south, "clinic-south")
        self.assertNotIn(b"clinic-north", raw)

    # ---- wavectl -----------------------------------------------------------

    def test_wavectl_tenant_windows(self):
        rid, version = self.new_rollout()
        url = f"http://127.0.0.1:{self.svc.port}"
        w = self.window_of(self.windows(), rid)
        out = wavectl("tenant", "windows", TENANT, token=self.north, url=url)
        self.assertEqual(out.returncode, 0, out.stderr)
        local = datetime.datetime.fromisoformat(w["window_start"])
        line = next(l for l in out.stdout.splitlines() if l.split()[:1] == [str(rid)])
        self.assertIn(version, line)
        self.assertIn(local.strftime("%a %Y-%m-%d %H:%M"), line)
        self.assertIn(f"{w['wave']['index']}:{w['wave']['name']}", line)
        self.assertIn("tentative", line)
        self.assertIn("America/Chicago", out.stdout)

        out = wavectl("tenant", "windows", TENANT, "--format", "json", token=self.north, url=url)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(self.window_of(json.loads(out.stdout), rid), w)

        out = wavectl("tenant", "windows", TENANT, "--ics", token=self.north, url=url)
        self.assertEqual(out.returncode, 0, out.stderr)
        evs = self.events(icalendar.Calendar.from_ical(out.stdout))
        self.check_event(evs[f"rollout-{rid}-tenant-{TENANT}@wavesched"], w, version)

        out = wavectl("tenant", "windows", "clinic-south", token=self.north, url=url)
        self.assertEqual(out.returncode, 1)
        self.assertIn("wavectl: no such tenant (HTTP 404)", out.stderr)
        for bad in (["tenant", "windows"], ["tenant", "windows", TENANT, "--format", "yaml"],
                    ["tenant", "windows", TENANT, "extra"], ["tenant", "windows", TENANT, "--ics", "--format", "json"]):
            out = wavectl(*bad, token=self.north, url=url)
            self.assertEqual(out.returncode, 2, (bad, out.stderr))
            self.assertTrue(out.stderr.startswith("wavectl: "), out.stderr)
        out = wavectl("tenant", "windows", "--help")
        self.assertEqual(out.returncode, 0)
        self.assertIn("--ics", out.stdout)


if __name__ == "__main__":
    main()
