"""Policies in the service, and planning: the service and the offline CLI
give the same plan for the same inputs."""
import json
import os
import tempfile

from wsharness import SOURCE_ROOT, ServiceCase, example_fleet, main, wavectl

POLICIES = os.path.join(SOURCE_ROOT, "examples", "policies")
NAMES = {"standard.yaml": "standard-quarterly", "urgent-security.yaml": "urgent-security",
         "platform-patch.yaml": "platform-patch"}
START = "2026-12-01T00:00:00Z"


def policy_text(fname):
    with open(os.path.join(POLICIES, fname)) as f:
        return f.read()


class Policies(ServiceCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        r = cls.svc.request("PUT", "/v1/fleet", token=cls.admin, body=example_fleet(),
                            headers={"Content-Type": "application/yaml"})
        assert r.status == 200, r

    def url(self):
        return f"http://127.0.0.1:{self.svc.port}"

    def post_policy(self, text, path="/v1/policies", token=None):
        return self.svc.request("POST", path, token=token or self.admin, body=text,
                                headers={"Content-Type": "application/yaml"})

    def test_versions_are_kept_with_their_sha256(self):
        text = policy_text("platform-patch.yaml")
        r = self.post_policy(text)
        self.assertIn(r.status, (200, 201), r)
        first = r.json
        self.assertEqual(first["name"], "platform-patch")
        again = self.post_policy(text)
        self.assertEqual(again.status, 200, again)
        self.assertFalse(again.json["created"])
        self.assertEqual(again.json["version"], first["version"])
        changed = self.post_policy(text.replace("soak: 12h", "soak: 6h"))
        self.assertEqual(changed.status, 201, changed)
        self.assertEqual(changed.json["version"], first["version"] + 1)
        self.assertNotEqual(changed.json["sha256"], first["sha256"])
        one = self.svc.request("GET", "/v1/policies/platform-patch", token=self.admin).json
        self.assertEqual(one["version"], first["version"] + 1)
        self.assertIn("soak: 6h", one["body"])
        self.assertEqual([v["version"] for v in one["versions"]][-2:], [first["version"], first["version"] + 1])
        old = self.svc.request("GET", f"/v1/policies/platform-patch?version={first['version']}", token=self.admin)
        self.assertEqual(old.json["body"], text)
        self.assertEqual(old.json["sha256"], first["sha256"])
        listed = self.svc.request("GET", "/v1/policies", token=self.admin).json["policies"]
        pp = next(p for p in listed if p["name"] == "platform-patch")
        self.assertEqual(pp["version"], first["version"] + 1)
        self.assertEqual(self.svc.request("GET", "/v1/policies/nope", token=self.admin).status, 404)

    def test_invalid_policies_are_refused_with_positions(self):
        bad = policy_text("standard.yaml").replace("soak: 24h\n", "soke: 24h\n", 1)
        line = bad[:bad.index("soke")].count("\n") + 1
        for path in ("/v1/policies", "/v1/policies/validate"):
            r = self.post_policy(bad, path=path)
            self.assertEqual(r.status, 422, r)
            self.assertTrue(any(d.get("line") == line and "soke" in d["message"]
                                for d in r.json["error"]["details"]), r.json)
        r = self.post_policy("kind: [", path="/v1/policies/validate")
        self.assertEqual(r.status, 400, r)
        ok = self.post_policy(policy_text("urgent-security.yaml"), path="/v1/policies/validate")
        self.assertEqual(ok.status, 200, ok)
        self.assertTrue(ok.json["valid"])
        self.assertIn("urgent-security", ok.json["summary"])

    def test_roles(self):
        viewer = self.svc.token("viewer")
        tenant = self.svc.token("tenant", "clinic-north")
        self.assertEqual(self.post_policy(policy_text("standard.yaml"), token=viewer).status, 403)
        self.assertEqual(self.svc.request("GET", "/v1/policies", token=viewer).status, 200)
        self.assertEqual(self.svc.request("GET", "/v1/policies", token=tenant).status, 403)
        r = self.svc.request("POST", "/v1/rollouts?dry_run=1", token=viewer,
                             body={"release": "17.0.4", "policy": "standard-quarterly"})
        self.assertEqual(r.status, 403)

    def test_service_and_offline_plans_are_identical(self):
        with tempfile.TemporaryDirectory() as d:
            fleet = os.path.join(d, "fleet.yaml")
            with open(fleet, "w") as f:
                f.write(example_fleet())
            for fname, name in NAMES.items():
                with self.subTest(policy=name):
                    r = self.post_policy(policy_text(fname))
                    self.assertIn(r.status, (200, 201), r)
                    kind = "urgent" if name == "urgent-security" else "standard"
                    svc = self.svc.request("POST", "/v1/rollouts?dry_run=1", token=self.admin,
                                           body={"release": "17.0.4", "policy": name, "start": START,
                                                 "kind": kind})
                    self.assertEqual(svc.status, 200, svc)
                    off = wavectl("plan", "--fleet", fleet, "--policy", os.path.join(POLICIES, fname),
                                  "--release", "17.0.4", "--kind", kind, "--start", START, "--format", "json")
                    self.assertEqual(off.returncode, 0, off.stderr)
                    self.assertEqual(svc.body.decode(), off.stdout.rstrip("\n"))
                    plan = json.loads(off.stdout)
                    self.assertEqual(plan["policy"], name)
                    self.assertEqual(plan["start"], START)
                    placed = [t["slug"] for w in plan["waves"] for t in w["tenants"]]
                    self.assertNotIn("legacy-archive", placed)   # frozen
                    self.assertEqual(svc.headers["x-policy-sha256"], r.json["sha256"])

    def test_rollout_requests_are_checked(self):
        r = self.svc.request("POST", "/v1/rollouts?dry_run=1", token=self.admin,
                             body={"release": "17.0.4", "policy": "no-such-policy"})
        self.assertEqual(r.status, 422, r)
        r = self.svc.request("POST", "/v1/rollouts?dry_run=1", token=self.admin,
                             body={"release": "17.0.4", "policy": "x", "start": "tomorrow", "colour": 1})
        self.assertEqual(r.status, 422, r)
        self.assertEqual(len(r.json["error"]["details"]), 2)
        self.post_policy(policy_text("standard.yaml"))
        r = self.svc.request("POST", "/v1/rollouts?dry_run=1", token=self.admin,
                             body={"release": "17.0.4", "policy": "standard-quarterly", "kind": "urgent"})
        self.assertEqual(r.status, 422, r)   # the policy allows standard releases only

    def test_cli_push_list_show_and_dry_run(self):
        path = os.path.join(POLICIES, "standard.yaml")
        r = wavectl("policy", "push", path, token=self.admin, url=self.url())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"policy standard-quarterly version \d+ \(sha256 [0-9a-f]{64}\)")
        r = wavectl("policy", "list", token=self.admin, url=self.url())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("standard-quarterly", r.stdout)
        r = wavectl("policy", "show", "standard-quarterly", token=self.admin, url=self.url())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("kind: WavePolicy", r.stdout)
        r = wavectl("rollout", "create", "--release", "17.0.4", "--policy", "standard-quarterly",
                    "--start", START, "--dry-run", token=self.admin, url=self.url())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Plan for release 17.0.4 with policy standard-quarterly", r.stdout)
        self.assertIn("Wave 1  training", r.stdout)
        r = wavectl("rollout", "create", "--release", "17.0.4", "--policy", "standard-quarterly",
                    token=self.admin, url=self.url())
        self.assertEqual(r.returncode, 1)
        self.assertIn("no release 17.0.4", r.stderr)


class OfflineCli(ServiceCase):
    """Offline commands need no service; the class only reuses the fixtures."""

    def test_policy_validate(self):
        files = [os.path.join(POLICIES, f) for f in NAMES]
        r = wavectl("policy", "validate", *files, "--fleet", os.path.join(SOURCE_ROOT, "examples", "fleet.yaml"))
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in NAMES.values():
            self.assertIn(f'policy "{name}"', r.stdout)
        with tempfile.TemporaryDirectory() as d:
            bad = os.path.join(d, "bad.yaml")
            with open(bad, "w") as f:
                f.write(policy_text("standard.yaml").replace("[month-end-close, payroll, holiday-freeze]",
                                                             "[month-end-close, payrol]"))
            r = wavectl("policy", "validate", bad, "--fleet", os.path.join(SOURCE_ROOT, "examples", "fleet.yaml"))
            self.assertEqual(r.returncode, 1)
            self.assertIn('unknown calendar "payrol"', r.stderr)
            self.assertRegex(r.stderr, bad.replace(".", r"\.") + r":\d+:\d+: ")

    def test_plan_text_and_diff(self):
        fleet = os.path.join(SOURCE_ROOT, "examples", "fleet.yaml")
        std = os.path.join(POLICIES, "standard.yaml")
        r = wavectl("plan", "--fleet", fleet, "--policy", std, "--release", "17.0.4", "--start", START)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Plan for release 17.0.4 with policy standard-quarterly, starting 2026-12-01T00:00:00Z",
                      r.stdout)
        self.assertIn("hq-finance", r.stdout)
        self.assertRegex(r.stdout, r"Wave \d+  dedicated ")
        with tempfile.TemporaryDirectory() as d:
            other = os.path.join(d, "other.yaml")
            with open(other, "w") as f:
                f.write(policy_text("standard.yaml").replace("name: standard-quarterly", "name: no-holiday")
                        .replace("[month-end-close, payroll, holiday-freeze]", "[month-end-close, payroll]"))
            r = wavectl("plan", "--fleet", fleet, "--policy", std, "--release", "17.0.4", "--start", START,
                        "--diff", other)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("policy standard-quarterly (A) -> policy no-holiday (B)", r.stdout)
            self.assertRegex(r.stdout, r"\d+ tenants? changes?\n$")
        r = wavectl("plan", "--fleet", fleet, "--policy", std)
        self.assertEqual(r.returncode, 2)
        r = wavectl("plan", "--fleet", fleet, "--policy", std, "--release", "1", "--start", "noon")
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    main()
