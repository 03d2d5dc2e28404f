"""`wavesched migrate` on a fresh database, re-runs, --status, readiness."""
import os
import shutil
import subprocess
import tempfile
import unittest

from wsharness import SOURCE_ROOT, WAVESCHED, Database, Service, main

MIGRATIONS = sorted(f for f in os.listdir(os.path.join(SOURCE_ROOT, "migrations")) if f.endswith(".sql"))


def migrate(db, *args, migrations_dir=None):
    env = dict(os.environ, WAVESCHED_DATABASE_URL=db.url)
    if migrations_dir:
        env["WAVESCHED_MIGRATIONS_DIR"] = migrations_dir
    return subprocess.run([WAVESCHED, "migrate", *args], env=env, capture_output=True, text=True, timeout=120)


class Migrate(unittest.TestCase):

    def setUp(self):
        self.db = Database()

    def tearDown(self):
        self.db.drop()

    def test_fresh_then_rerun(self):
        st = migrate(self.db, "--status")
        self.assertEqual(st.returncode, 0, st.stderr)
        self.assertIn(f"0 applied, {len(MIGRATIONS)} pending", st.stdout)
        for name in MIGRATIONS:
            self.assertIn(f"pending   {name}", st.stdout)
        # --status changes nothing, not even the bookkeeping table
        self.assertEqual(self.db.sql("SELECT to_regclass('schema_migrations') IS NULL"), "t")
        r = migrate(self.db)
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in MIGRATIONS:
            self.assertIn(f"applied {name}", r.stdout)
        self.assertEqual(self.db.sql("SELECT count(*) FROM schema_migrations"), str(len(MIGRATIONS)))
        again = migrate(self.db)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertNotIn("applied 0", again.stdout)
        self.assertIn("up to date", again.stdout)
        self.assertEqual(self.db.sql("SELECT count(*) FROM schema_migrations"), str(len(MIGRATIONS)))
        st = migrate(self.db, "--status")
        self.assertIn(f"{len(MIGRATIONS)} applied, 0 pending", st.stdout)

    def test_changed_applied_migration_is_refused(self):
        self.assertEqual(migrate(self.db).returncode, 0)
        with tempfile.TemporaryDirectory() as d:
            for name in MIGRATIONS:
                shutil.copy(os.path.join(SOURCE_ROOT, "migrations", name), d)
            with open(os.path.join(d, MIGRATIONS[0]), "a") as f:
                f.write("\n-- edited after the fact\n")
            r = migrate(self.db, migrations_dir=d)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"migration {MIGRATIONS[0]} was changed after it was applied", r.stderr)

    def test_failing_migration_is_rolled_back(self):
        with tempfile.TemporaryDirectory() as d:
            for name in MIGRATIONS:
                shutil.copy(os.path.join(SOURCE_ROOT, "migrations", name), d)
            with open(os.path.join(d, "9999_broken.sql"), "w") as f:
                f.write("CREATE TABLE half_done (x int);\nSELECT no_such_function();\n")
            r = migrate(self.db, migrations_dir=d)
        self.assertEqual(r.returncode, 1)
        self.assertIn("migration 9999_broken.sql failed", r.stderr)
        self.assertIn("no_such_function", r.stderr)
        self.assertEqual(self.db.sql("SELECT to_regclass('half_done') IS NULL"), "t")
        self.assertEqual(self.db.sql("SELECT count(*) FROM schema_migrations WHERE version = 9999"), "0")
        # the good ones before it were applied, each in its own transaction
        self.assertEqual(self.db.sql("SELECT count(*) FROM schema_migrations"), str(len(MIGRATIONS)))

    def test_unreachable_database_exits_3(self):
        env = dict(os.environ, WAVESCHED_DATABASE_URL="postgresql:///x?host=/nonexistent&connect_timeout=2")
        r = subprocess.run([WAVESCHED, "migrate"], env=env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 3)
        self.assertIn("cannot connect to the database", r.stderr)

    def test_service_is_not_ready_until_migrated(self):
        svc = Service(self.db.url, migrate=False)
        try:
            r = svc.request("GET", "/readyz")
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json["checks"]["migrations"]["pending"], len(MIGRATIONS))
            self.assertIn("wavesched migrate", r.json["error"]["message"])
            self.assertEqual(svc.request("GET", "/healthz").status, 200)
            self.assertEqual(migrate(self.db).returncode, 0)
            r = svc.wait_ready()
            self.assertEqual(r.json["checks"]["migrations"], {"applied": len(MIGRATIONS), "pending": 0})
        finally:
            svc.stop()


if __name__ == "__main__":
    main()
