"""Fleet import at scale: a generated fleet of N tenants (default 10,000).

Figures, each the median of several runs, against a baseline measured in the
same run on the same PostgreSQL: the baseline is the cost of the database
work alone, inserting the same tenants as rows with one INSERT ... SELECT
from a JSON document (no validation, no diff, no identity handling).  The
import figures say how much wavesched's validation, diff and upsert add.

Run with scripts/bench (it starts the private PostgreSQL).
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from wsharness import WAVECTL, Database, Service, psql  # noqa: E402

N = int(os.environ.get("WS_BENCH_TENANTS", "10000"))
RUNS = int(os.environ.get("WS_BENCH_RUNS", "5"))
CRIT = ["low", "standard", "high", "critical"]
ZONES = ["America/Chicago", "America/New_York", "Europe/Berlin", "UTC"]


def fleet(n, version="17.0.3", changed=0):
    out = ["apiVersion: wavesched/v1", "kind: Fleet", "clusters:"]
    nclusters = max(1, n // 100)
    for c in range(nclusters):
        out += [f"  - name: c{c:04d}", "    hosting: shared", "    region: eu", "    max_parallel: 4",
                "    deploy: {executor: webhook, url: 'http://127.0.0.1:9100/deploy'}"]
    out.append("tenants:")
    for i in range(n):
        v = "17.0.4" if i < changed else version
        dep = f"    depends_on: [t{i - 1:05d}]\n" if i % 10 else ""
        out.append(f"  - slug: t{i:05d}\n    cluster: c{i % nclusters:04d}\n    criticality: {CRIT[i % 4]}\n"
                   f"    timezone: {ZONES[i % 4]}\n    labels: {{env: production, n: '{i % 7}'}}\n{dep}"
                   f"    version: \"{v}\"\n    health_url: http://127.0.0.1:9100/t/t{i:05d}/health\n"
                   f"    windows:\n      - {{rrule: 'FREQ=WEEKLY;BYDAY=SA', start: '02:00', duration: 4h}}")
    out += ["calendars:", "  - name: month-end", "    hard: true", "    occurrences:",
            "      - {rrule: 'FREQ=MONTHLY;BYMONTHDAY=-1', start: '00:00', duration: 24h}"]
    return "\n".join(out) + "\n"


def median_time(fn, runs=RUNS):
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main():
    db = Database()
    svc = Service(db.url, extra_env={"WAVESCHED_LOG_LEVEL": "warn", "WAVESCHED_MAX_BODY_BYTES": "64MiB"})
    try:
        svc.wait_ready()
        admin = svc.token("admin")
        text = fleet(N)
        changed = fleet(N, changed=N // 100)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(text)
            path = f.name

        def put(body):
            r = svc.request("PUT", "/v1/fleet", token=admin, body=body,
                            headers={"Content-Type": "application/yaml"}, timeout=600)
            assert r.status == 200, r

        # baseline: the rows alone, straight into a plain table
        psql(db.url, "CREATE TABLE bench_rows (slug text, doc jsonb)")
        put(text)
        doc = svc.request("GET", "/v1/fleet", token=admin).body.decode()
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
            f.write("TRUNCATE bench_rows;\nINSERT INTO bench_rows SELECT e->>'slug', e FROM "
                    "jsonb_array_elements($json$" + doc + "$json$::jsonb->'tenants') e;\n")
            sql_path = f.name
        baseline = median_time(lambda: subprocess.run(["psql", db.url, "-XAtq", "-f", sql_path],
                                                      check=True, capture_output=True))
        validate = median_time(lambda: subprocess.run([WAVECTL, "fleet", "validate", path],
                                                      check=True, capture_output=True))

        def fresh():
            psql(db.url, "TRUNCATE tenant_dependencies, tenants, clusters, calendars, fleet_imports "
                         "RESTART IDENTITY CASCADE")
            t0 = time.perf_counter()
            put(text)
            return time.perf_counter() - t0
        first = statistics.median(fresh() for _ in range(RUNS))
        same = median_time(lambda: put(text))
        one_pct = median_time(lambda: (put(changed), put(text)), runs=RUNS) / 2
        t0 = time.perf_counter()
        r = svc.request("GET", "/v1/tenants", token=admin, timeout=600)
        list_cold = time.perf_counter() - t0
        list_warm = median_time(lambda: svc.request("GET", "/v1/tenants", token=admin, timeout=600))
        assert r.status == 200 and len(r.json["tenants"]) == N

        size = len(text) / 1e6
        print(f"fleet import benchmark: {N} tenants, {N // 100} clusters, {size:.1f} MB of YAML, "
              f"median of {RUNS} runs")
        print(f"  baseline  INSERT of the rows as JSON (psql)    {baseline * 1000:9.1f} ms   1.00x")
        rows = [
            ("offline validate (wavectl fleet validate)", validate),
            ("first import (PUT /v1/fleet, empty db)", first),
            ("re-import, nothing changed", same),
            ("re-import, 1% of tenants changed", one_pct),
            ("GET /v1/tenants after import (cold cache)", list_cold),
            ("GET /v1/tenants (warm cache)", list_warm),
        ]
        for label, t in rows:
            print(f"  {label:<44} {t * 1000:9.1f} ms  {t / baseline:5.2f}x")
        os.unlink(path)
        os.unlink(sql_path)
    finally:
        svc.stop(check=False)
        db.drop()


if __name__ == "__main__":
    main()
