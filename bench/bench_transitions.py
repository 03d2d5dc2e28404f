"""Engine commit throughput (issue 4): committed transitions per second
through ws_engine_tx against `pgbench -N` on the same server, in the same run.

tx_load (bench/tx_load.c) drives deployments scheduled -> waiting_window ->
deploying (+ outbox intent) -> verifying (+ outbox result) -> healthy, B
transitions per call over C connections with one call in flight each, then
checks that the database holds exactly what it committed (audit rows, events,
states, outbox rows, an intact audit chain).  The baseline is pgbench -N
(scale 10) at the same client count, measured just before and just after
the tx_load runs of that client count; their mean is the baseline and a
drift between the two is reported, since the machine may be shared.  Target: transitions/s >= pgbench -N tps.

Every tx_load configuration gets a fresh database migrated with
`wavesched migrate`; pgbench gets its own.  All are dropped at the end.

Run with scripts/bench (it starts the private PostgreSQL).  Knobs:
WS_BENCH_TX_SECONDS (default 10), WS_BENCH_TX_BATCHES ("1,10,100"),
WS_BENCH_TX_CLIENTS ("1,4"), TX_LOAD_BIN (default build-release/bench/tx_load).
"""
import json
import math
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from wsharness import SOURCE_ROOT, WAVESCHED, Database, psql, tool  # noqa: E402

SECONDS = int(os.environ.get("WS_BENCH_TX_SECONDS", "10"))
BATCHES = [int(x) for x in os.environ.get("WS_BENCH_TX_BATCHES", "1,10,100").split(",")]
CLIENTS = [int(x) for x in os.environ.get("WS_BENCH_TX_CLIENTS", "1,4").split(",")]
TX_LOAD = os.environ.get("TX_LOAD_BIN") or os.path.join(SOURCE_ROOT, "build-release", "bench", "tx_load")
PGBENCH = tool("pgbench")
DRIFT_WARN = 0.15


def run(argv, what, env=None, timeout=None):
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"bench_transitions: {what} failed ({out.returncode}):\n{out.stderr.strip()[-3000:]}")
    return out


def pgbench(url, clients):
    """tps and average latency (ms) of pgbench -N at this client count."""
    out = run([PGBENCH, "-N", "-c", str(clients), "-j", "2", "-T", str(SECONDS), "-n", url],
              f"pgbench -N -c {clients}", timeout=SECONDS + 120).stdout
    tps = re.search(r"^tps = ([0-9.]+)", out, re.M)
    lat = re.search(r"^latency average = ([0-9.]+) ms", out, re.M)
    if not tps or not lat:
        raise SystemExit(f"bench_transitions: no tps or latency in the pgbench output:\n{out}")
    return float(tps.group(1)), float(lat.group(1))


def migrate(db):
    env = dict(os.environ, WAVESCHED_DATABASE_URL=db.url, WAVESCHED_LOG_LEVEL="warn")
    run([WAVESCHED, "migrate"], "wavesched migrate", env=env, timeout=120)


def tx_load(admin_url, batch, clients, expect_tps, dbs):
    """One tx_load run on a fresh database.  Each client needs a deployment
    per 4 transitions it commits; the first guess allows 3x the pgbench rate
    and a run that used them all up is repeated with twice as many."""
    deployments = max(2000, math.ceil(3 * expect_tps * SECONDS / 4 / clients))
    for _ in range(3):
        db = Database(admin_url)
        dbs.append(db)
        migrate(db)
        out = subprocess.run([TX_LOAD, "-c", str(clients), "-b", str(batch), "-T", str(SECONDS),
                              "-d", str(deployments), db.url],
                             capture_output=True, text=True, timeout=SECONDS + 600)
        db.drop()
        dbs.remove(db)
        if out.returncode != 0 and "raise -d" in out.stderr:
            deployments *= 2
            continue
        if out.returncode != 0 or not out.stdout.strip():
            raise SystemExit(f"bench_transitions: tx_load -b {batch} -c {clients} failed "
                             f"({out.returncode}):\n{out.stderr.strip()[-3000:]}\n{out.stdout.strip()}")
        return json.loads(out.stdout)
    raise SystemExit(f"bench_transitions: tx_load -b {batch} -c {clients} ran out of deployments "
                     f"even with {deployments // 2} per client")


def main():
    if not os.environ.get("WS_TEST_PG_URL") or not WAVESCHED:
        raise SystemExit("bench_transitions: WS_TEST_PG_URL or WAVESCHED_BIN not set: run through scripts/bench")
    if not os.access(TX_LOAD, os.X_OK):
        raise SystemExit(f"bench_transitions: {TX_LOAD} is missing: build build-release first")
    admin = os.environ["WS_TEST_PG_URL"]
    dbs = []
    try:
        bench_db = Database(admin)
        dbs.append(bench_db)
        run([PGBENCH, "-i", "-s", "10", "-q", bench_db.url], "pgbench -i -s 10", timeout=600)
        settings = psql(bench_db.url, "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings "
                                      "WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', "
                                      "'server_version')")
        # pgbench brackets each client count's tx_load runs, so a change of
        # load on a shared machine shows as drift next to the figures it hits
        before, after, results = {}, {}, []
        for c in CLIENTS:
            before[c] = pgbench(bench_db.url, c)
            for b in BATCHES:
                results.append(tx_load(admin, b, c, before[c][0], dbs))
            after[c] = pgbench(bench_db.url, c)

        print(f"engine transition benchmark: ws_engine_tx vs pgbench -N (scale 10), {SECONDS} s per run, "
              f"same server ({settings}), {os.cpu_count()} CPUs")
        baseline = {}
        for c in CLIENTS:
            (t0, l0), (t1, l1) = before[c], after[c]
            baseline[c] = (t0 + t1) / 2
            drift = abs(t1 - t0) / max(t0, t1)
            note = f"   (drifted {drift * 100:.0f}%: the machine was busy)" if drift > DRIFT_WARN else ""
            print(f"  pgbench -N -c {c}: {baseline[c]:8.0f} tps (before {t0:.0f}, after {t1:.0f}), "
                  f"average latency {(l0 + l1) / 2:.3f} ms{note}")
        print(f"  {'config':<14} {'transitions/s':>13} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'pgbench -N tps':>15} {'ratio':>6}")
        for r in results:
            base = baseline[r["clients"]]
            print(f"  {'B=%d C=%d' % (r['batch'], r['clients']):<14} {r['transitions_per_s']:>13.0f} "
                  f"{r['calls_per_s']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {base:>15.0f} "
                  f"{r['transitions_per_s'] / base:>5.2f}x")
        print("  (a transition = one deployment state change committed; the deploying and verifying calls also "
              "carry one outbox op per transition, each with its audit row)")
        bad = [r for r in results if not r["verified"]]
        if bad:
            raise SystemExit("bench_transitions: the database did not hold what tx_load committed "
                             f"for {', '.join('B=%d C=%d' % (r['batch'], r['clients']) for r in bad)}")
    finally:
        for db in dbs:
            db.drop()


if __name__ == "__main__":
    main()
