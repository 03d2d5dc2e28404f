"""Planner benchmark (issue 3): wall time and peak memory of `wavectl plan`
on synthetic fleets of 10k and 100k tenants (1M with WS_BENCH_PLAN_1M=1),
next to a bare libyaml event scan of the same file measured in the same run.
Target: at 100k tenants the plan takes at most 1.5x the scan and under
300 MiB, and time grows about linearly with tenants.

The plan reads a large fleet on several threads (common/ydoc.c, "in
chunks") and places waves on two, so its CPU time (user + system, also
printed) is above its wall time; the scan is one thread.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_fleet  # noqa: E402

WAVECTL = os.environ["WAVECTL_BIN"]
SCAN = os.environ["YAML_SCAN_BIN"]
POLICY = os.path.join(os.environ.get("WS_SOURCE_ROOT", os.path.dirname(HERE)), "examples", "policies",
                      "standard.yaml")
RUNS = int(os.environ.get("WS_BENCH_RUNS", "3"))


def run_once(argv):
    """Wall seconds, peak RSS (MiB) and CPU seconds of one run."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[0]} failed: {err[-2000:]}")
    return wall, ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime


def measure_pair(a, b):
    """Medians of RUNS runs of `a` and `b`, alternated so that both see the
    same machine (a burst of other load slows both, not one)."""
    ra, rb = [], []
    for _ in range(RUNS):
        ra.append(run_once(a))
        rb.append(run_once(b))
    return ((statistics.median(w for w, _, _ in ra), max(m for _, m, _ in ra),
             statistics.median(c for _, _, c in ra)),
            (statistics.median(w for w, _, _ in rb), max(m for _, m, _ in rb),
             statistics.median(c for _, _, c in rb)))


def main():
    sizes = [10_000, 100_000] + ([1_000_000] if os.environ.get("WS_BENCH_PLAN_1M") else [])
    print(f"planner benchmark: wavectl plan (policy standard-quarterly) vs a bare libyaml scan, "
          f"median of {RUNS} runs each, alternated")
    print(f"  {'tenants':>9} {'MB':>7} {'scan s':>8} {'plan s':>8} {'ratio':>6} {'scan MiB':>9} {'plan MiB':>9}"
          f" {'plan cpu s':>10}")
    prev = None
    for n in sizes:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            gen_fleet.generate(n, 1, f)
            path = f.name
        mb = os.path.getsize(path) / 1e6
        (scan_t, scan_m, _), (plan_t, plan_m, plan_c) = measure_pair(
            [SCAN, path],
            [WAVECTL, "plan", "--fleet", path, "--policy", POLICY, "--release", "17.0.4",
             "--start", "2026-12-01T00:00:00Z", "--format", "json"])
        print(f"  {n:>9} {mb:>7.1f} {scan_t:>8.3f} {plan_t:>8.3f} {plan_t / scan_t:>5.2f}x {scan_m:>9.1f} {plan_m:>9.1f}"
              f" {plan_c:>10.3f}")
        if prev:
            pn, pt = prev
            print(f"  growth {pn}->{n}: tenants x{n / pn:.0f}, plan time x{plan_t / pt:.1f}")
        prev = (n, plan_t)
        os.unlink(path)


if __name__ == "__main__":
    main()
