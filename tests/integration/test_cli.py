"""wavectl and wavesched as a user runs them: output, errors, exit codes."""
import os
import subprocess
import tempfile

from wsharness import WAVECTL, WAVESCHED, ServiceCase, example_fleet, main, wavectl


class Cli(ServiceCase):

    def url(self):
        return f"http://127.0.0.1:{self.svc.port}"

    def test_help_everywhere(self):
        for args in (["--help"], ["fleet", "--help"], ["fleet", "import", "--help"],
                     ["fleet", "export", "--help"], ["tenant", "--help"]):
            r = wavectl(*args)
            self.assertEqual(r.returncode, 0, args)
            self.assertIn("usage: wavectl", r.stdout)
        for args in (["--help"], ["serve", "--help"], ["migrate", "--help"], ["token", "--help"],
                     ["token", "create", "--help"]):
            r = subprocess.run([WAVESCHED, *args], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, args)
            self.assertIn("usage: wavesched", r.stdout)

    def test_usage_errors_exit_2(self):
        self.assertEqual(wavectl().returncode, 2)
        r = wavectl("frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertIn('wavectl: unknown command "frobnicate"', r.stderr)
        self.assertEqual(wavectl("fleet", "import").returncode, 2)
        self.assertEqual(wavectl("fleet", "export", "--format", "xml").returncode, 2)
        self.assertEqual(subprocess.run([WAVESCHED, "token", "create", "--role", "tenant"],
                                        capture_output=True).returncode, 2)
        self.assertEqual(subprocess.run([WAVESCHED, "serve", "--time-scale", "fast"],
                                        capture_output=True).returncode, 2)

    def test_unreachable_service_exits_3(self):
        r = wavectl("tenant", "list", token=self.admin, url="http://127.0.0.1:9")
        self.assertEqual(r.returncode, 3)
        self.assertIn("wavectl: cannot reach the service", r.stderr)

    def test_import_export_round_trip(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "fleet.yaml")
            with open(src, "w") as f:
                f.write(example_fleet())
            r = wavectl("fleet", "import", src, token=self.admin, url=self.url())
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertRegex(r.stdout, r"imported .*fleet.yaml \(fleet generation \d+\): 15 tenants")
            exp = wavectl("fleet", "export", token=self.admin, url=self.url())
            self.assertEqual(exp.returncode, 0, exp.stderr)
            self.assertTrue(exp.stdout.startswith("apiVersion: wavesched/v1\nkind: Fleet\n"), exp.stdout[:80])
            out = os.path.join(d, "export.yaml")
            with open(out, "w") as f:
                f.write(exp.stdout)
            r = wavectl("fleet", "import", "--dry-run", out, token=self.admin, url=self.url())
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("nothing was changed", r.stdout)
            self.assertIn("added:   none", r.stdout)
            self.assertIn("changed: none", r.stdout)
            self.assertIn("removed: none", r.stdout)
            lst = wavectl("tenant", "list", token=self.admin, url=self.url())
            self.assertEqual(lst.returncode, 0)
            self.assertIn("hq-finance", lst.stdout)
            self.assertIn("any time", lst.stdout)   # training tenants have no windows

    def test_invalid_file_is_refused_locally_with_positions(self):
        with tempfile.TemporaryDirectory() as d:
            bad = os.path.join(d, "typo.yaml")
            text = example_fleet().replace("criticality: critical\n", "critcality: critical\n", 1)
            with open(bad, "w") as f:
                f.write(text)
            line = text[:text.index("critcality")].count("\n") + 1
            r = wavectl("fleet", "import", bad, token=self.admin, url=self.url())
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"{bad}:{line}:5: unknown key \"critcality\"", r.stderr)
            r = wavectl("fleet", "validate", bad)
            self.assertEqual(r.returncode, 1)
            good = os.path.join(d, "good.yaml")
            with open(good, "w") as f:
                f.write(example_fleet())
            r = wavectl("fleet", "validate", good)
            self.assertEqual(r.returncode, 0)
            self.assertIn("valid: 5 clusters, 15 tenants, 3 calendars", r.stdout)

    def test_refused_request_exits_1(self):
        viewer = self.svc.token("viewer")
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "fleet.yaml")
            with open(src, "w") as f:
                f.write(example_fleet())
            r = wavectl("fleet", "import", src, token=viewer, url=self.url())
        self.assertEqual(r.returncode, 1)
        self.assertIn("role viewer may not PUT /v1/fleet (HTTP 403)", r.stderr)
        r = wavectl("tenant", "show", "nope", token=self.admin, url=self.url())
        self.assertEqual(r.returncode, 1)


if __name__ == "__main__":
    main()
