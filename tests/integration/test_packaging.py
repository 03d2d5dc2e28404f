"""Packaging, checked with real validators: the systemd unit with
systemd-analyze (verify, and the offline security assessment), the
container definition with dockerfile-utils, the Kubernetes manifests against
the Kubernetes API schemas (kubernetes-models), the man pages with groff's
warnings, and `meson install` into a staging directory whose migrations the
installed binary applies to a real PostgreSQL."""
import glob
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import wsharness as h

ROOT = h.SOURCE_ROOT
BUILD = os.environ.get("WS_BUILD_ROOT", "")
TOOLS = os.environ.get("WS_NODE_TOOLS") or os.path.join(ROOT, "tests", "tools", "node_modules")
PACK = os.path.join(ROOT, "packaging")


def run(*argv, **kw):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=300, **kw)


class Packaging(unittest.TestCase):

    def test_systemd_unit_verifies_and_is_hardened(self):
        with open(os.path.join(PACK, "systemd", "wavesched.service.in")) as f:
            text = f.read()
        with tempfile.TemporaryDirectory() as d:
            unit = os.path.join(d, "wavesched.service")
            with open(unit, "w") as f:
                f.write(text.replace("@BINDIR@", os.path.dirname(h.WAVESCHED)))
            r = run("systemd-analyze", "verify", "--man=no", unit)
            self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "", ""))
            r = run("systemd-analyze", "security", "--offline=yes", "--no-pager", unit)
            m = re.search(r"Overall exposure level for wavesched\.service: ([0-9.]+) (\w+)", r.stdout)
            self.assertIsNotNone(m, r.stdout + r.stderr)
            self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)
        for directive in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes",
                          "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service", "KillSignal=SIGTERM"):
            self.assertIn(directive, text)

    def test_container_definition_lints(self):
        cli = os.path.join(TOOLS, ".bin", "dockerfile-utils")
        path = os.path.join(PACK, "container", "Containerfile")
        r = run(cli, "lint", path)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "", ""))
        with open(path) as f:
            text = f.read()
        stages = re.findall(r"^FROM (\S+)", text, re.M)
        self.assertEqual(stages, ["debian:12", "debian:12-slim"])     # multi-stage, slim runtime
        self.assertRegex(text, r"(?m)^USER 10001:10001$")                 # non-root
        # The linter itself catches a broken definition.
        with tempfile.NamedTemporaryFile("w", suffix=".Containerfile", delete=False) as f:
            f.write(text.replace("EXPOSE 8480", "EXPOSE http"))
        self.addCleanup(os.unlink, f.name)
        self.assertNotEqual(run(cli, "lint", f.name).returncode, 0)

    def test_kubernetes_manifests_validate(self):
        script = os.path.join(ROOT, "tests", "packaging", "validate_k8s.mjs")
        manifest = os.path.join(PACK, "kubernetes", "wavesched.yaml")
        env = dict(os.environ, WS_NODE_TOOLS=TOOLS)
        r = run("node", script, manifest, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        kinds = re.findall(r": (\S+) wavesched: valid", r.stdout)
        self.assertEqual(sorted(kinds), sorted([
            "v1/Namespace", "v1/ServiceAccount", "v1/ConfigMap", "apps/v1/Deployment", "v1/Service",
            "policy/v1/PodDisruptionBudget", "networking.k8s.io/v1/NetworkPolicy"]))
        with open(manifest) as f:
            text = f.read()
        self.assertIn("replicas: 2", text)
        for probe in ("livenessProbe:\n            httpGet: {path: /healthz", "readinessProbe:\n            httpGet: {path: /readyz"):
            self.assertIn(probe, text)
        self.assertIn("secretKeyRef: {name: wavesched-secrets, key: database-url}", text)
        # A wrong type is caught (the validator is not a rubber stamp).
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(text.replace("replicas: 2", "replicas: two"))
        self.addCleanup(os.unlink, f.name)
        r = run("node", script, f.name, env=env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("replicas must be integer", r.stdout)

    def test_man_pages_render_without_warnings(self):
        for page in ("wavesched.8", "wavectl.1"):
            path = os.path.join(ROOT, "docs", "man", page)
            r = run("groff", "-man", "-ww", "-z", path)
            self.assertEqual((r.returncode, r.stderr), (0, ""), page)
            r = run("groff", "-man", "-Tutf8", "-P-cbou", path)     # plain text, no overstrikes
            self.assertIn("EXIT STATUS", r.stdout)

    def test_meson_install_stages_everything(self):
        self.assertTrue(BUILD, "WS_BUILD_ROOT is not set: run through meson test")
        dest = tempfile.mkdtemp(prefix="ws-install-")
        self.addCleanup(shutil.rmtree, dest, True)
        r = run("meson", "install", "-C", BUILD, "--no-rebuild", "--quiet", "--destdir", dest)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        files = {os.path.relpath(p, dest) for p in glob.glob(os.path.join(dest, "**"), recursive=True)
                 if os.path.isfile(p)}
        prefix = next(p.split("/bin/wavesched")[0] for p in files if p.endswith("/bin/wavesched"))
        for want in ("bin/wavesched", "bin/wavectl", "lib/systemd/system/wavesched.service",
                     "share/man/man8/wavesched.8", "share/man/man1/wavectl.1"):
            self.assertIn(f"{prefix}/{want}", files)
        with open(os.path.join(dest, prefix, "lib/systemd/system/wavesched.service")) as f:
            unit = f.read()
        self.assertIn(f"ExecStart=/{prefix}/bin/wavesched serve", unit)
        # Every migration of the tree is installed (a file missing from the
        # build list would not be).
        source = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "migrations", "[0-9]*.sql")))
        installed_dir = os.path.join(dest, prefix, "share/wavesched/migrations")
        self.assertEqual(sorted(os.listdir(installed_dir)), source)
        # ... and the installed binary applies them.
        db = h.Database()
        self.addCleanup(db.drop)
        env = dict(os.environ, WAVESCHED_DATABASE_URL=db.url, WAVESCHED_MIGRATIONS_DIR=installed_dir)
        binary = os.path.join(dest, prefix, "bin", "wavesched")
        r = run(binary, "migrate", env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(binary, "migrate", "--status", env=env)
        self.assertIn(f"{len(source)} applied, 0 pending", r.stdout)


if __name__ == "__main__":
    h.main()
