"""Health probes per CPU-second (issue 4): our prober (ws_prober on one
ws_outbound, libcurl multi on libuv) against prometheus-blackbox-exporter
probing the same endpoints at the same rate, in the same run.

Both probe N simulated endpoints (simfleet's GET /t/tN/health, any slug) every
INTERVAL_MS for SECONDS, following the same schedule (bench/probe_load.c).  For
ours, probe_load is the prober and its own CPU (getrusage) is counted.  For the
baseline, probe_load drives the exporter through /probe?module=http_2xx&target=URL
(as Prometheus would) and the exporter's CPU (/proc/PID/stat utime + stime) is
counted, not the driver's.  simfleet's CPU is counted for neither.

Every probe must get a 2xx (through the exporter: probe_success 1 with a 2xx
probe_http_status_code); a run with more than 1% failed probes is invalid.
Target: our probes per CPU-second >= 2x the exporter's.

Run with scripts/bench.  Skipped (exit 0) when the exporter is not installed:
apt-get install prometheus-blackbox-exporter.  Knobs: WS_BENCH_PROBE_TARGETS
(default 10000), WS_BENCH_PROBE_INTERVAL_MS (10000, i.e. 1000 probes/s),
WS_BENCH_PROBE_SECONDS (30), PROBE_LOAD_BIN, SIMFLEET_BIN (default under
build-release), BLACKBOX_EXPORTER_BIN.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("WS_SOURCE_ROOT") or os.path.dirname(HERE)
TARGETS = int(os.environ.get("WS_BENCH_PROBE_TARGETS", "10000"))
INTERVAL_MS = int(os.environ.get("WS_BENCH_PROBE_INTERVAL_MS", "10000"))
SECONDS = int(os.environ.get("WS_BENCH_PROBE_SECONDS", "30"))
TIMEOUT_MS = 5000
PROBE_LOAD = os.environ.get("PROBE_LOAD_BIN") or os.path.join(ROOT, "build-release", "bench", "probe_load")
SIMFLEET = os.environ.get("SIMFLEET_BIN") or os.path.join(ROOT, "build-release", "simfleet", "simfleet")
EXPORTER = os.environ.get("BLACKBOX_EXPORTER_BIN") or shutil.which("prometheus-blackbox-exporter") \
    or "/usr/bin/prometheus-blackbox-exporter"
MAX_FAILURE_SHARE = 0.01
# A side that probed at less than this share of the asked rate could not
# keep up (or the machine was too busy): its figure is shown with a note.
RATE_SHORTFALL = 0.95
TARGET_RATIO = 2.0

EXPORTER_CONFIG = f"""\
modules:
  http_2xx:
    prober: http
    timeout: {TIMEOUT_MS // 1000}s
    http:
      preferred_ip_protocol: ip4
"""


def fail(msg):
    raise SystemExit(f"bench_probes: {msg}")


def wait_port_file(proc, path, what, log, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"{what} exited with {proc.returncode} before listening:\n{tail(log)}")
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return int(text)
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    fail(f"{what} did not write its port file {path} within {timeout} s")


def wait_http(proc, url, what, log, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"{what} exited with {proc.returncode} before answering:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.1)
    fail(f"{what} did not answer GET {url} within {timeout} s:\n{tail(log)}")


def tail(path, n=3000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def free_port():
    """A port free now.  The exporter cannot report the port it bound, so
    one is picked for it; another process taking it first is reported by the
    exporter's start failing."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc, what, log):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        print(f"bench_probes: {what} did not stop on SIGTERM within 30 s and was killed; its log:\n{tail(log)}",
              file=sys.stderr)


def probe_load(fleet_url, extra, what):
    argv = [PROBE_LOAD, "-n", str(TARGETS), "-i", str(INTERVAL_MS), "-T", str(SECONDS),
            "-t", str(TIMEOUT_MS)] + extra + [fleet_url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=SECONDS + 120)
    if out.returncode != 0 or not out.stdout.strip():
        fail(f"probe_load ({what}) failed ({out.returncode}):\n{out.stderr.strip()[-3000:]}")
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError as e:
        fail(f"probe_load ({what}) printed no JSON ({e}): {out.stdout[:500]!r}")


def main():
    if not os.access(EXPORTER, os.X_OK):
        print(f"bench_probes: skipped: {EXPORTER} is missing "
              "(apt-get install prometheus-blackbox-exporter)")
        return
    for path, what in ((PROBE_LOAD, "probe_load"), (SIMFLEET, "simfleet")):
        if not os.access(path, os.X_OK):
            fail(f"{path} ({what}) is missing: build build-release first")
    tmp = tempfile.mkdtemp(prefix="bench-probes-")
    sim = exporter = None
    sim_log, exp_log = os.path.join(tmp, "simfleet.log"), os.path.join(tmp, "exporter.log")
    try:
        port_file = os.path.join(tmp, "port")
        with open(sim_log, "w") as log:
            sim = subprocess.Popen([SIMFLEET, "--listen", "127.0.0.1:0", "--port-file", port_file,
                                    "--log-level", "warn"], stdout=log, stderr=subprocess.STDOUT)
        fleet_url = f"http://127.0.0.1:{wait_port_file(sim, port_file, 'simfleet', sim_log)}"

        config = os.path.join(tmp, "blackbox.yml")
        with open(config, "w") as f:
            f.write(EXPORTER_CONFIG)
        exp_url = f"http://127.0.0.1:{free_port()}"
        with open(exp_log, "w") as log:
            exporter = subprocess.Popen([EXPORTER, f"--config.file={config}",
                                         f"--web.listen-address={exp_url[len('http://'):]}",
                                         "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
        wait_http(exporter, exp_url + "/metrics", "prometheus-blackbox-exporter", exp_log)
        version = subprocess.run([EXPORTER, "--version"], capture_output=True, text=True)
        version = (version.stdout + version.stderr).strip().splitlines()[0] if version.returncode == 0 else "?"

        ours = probe_load(fleet_url, [], "ours")
        theirs = probe_load(fleet_url, ["-x", exp_url, "-P", str(exporter.pid)], "exporter")
        if exporter.poll() is not None:
            fail(f"the exporter exited with {exporter.returncode} during the run:\n{tail(exp_log)}")
        if sim.poll() is not None:
            fail(f"simfleet exited with {sim.returncode} during the run:\n{tail(sim_log)}")
        report(ours, theirs, version)
    finally:
        stop(exporter, "prometheus-blackbox-exporter", exp_log)
        stop(sim, "simfleet", sim_log)
        if sim is not None and sim.returncode not in (0, None):
            print(f"bench_probes: simfleet exited with {sim.returncode}:\n{tail(sim_log)}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


def report(ours, theirs, version):
    rate = TARGETS * 1000 / INTERVAL_MS
    print(f"health probe benchmark: {TARGETS} simfleet endpoints every {INTERVAL_MS} ms "
          f"({rate:.0f} probes/s asked), {SECONDS} s per side, time-out {TIMEOUT_MS} ms, {os.cpu_count()} CPUs")
    print(f"  {'side':<34} {'probes':>8} {'failed':>7} {'probes/s':>9} {'CPU s':>7} {'probes/CPU-s':>13} "
          f"{'mean ms':>8}")
    invalid = []
    for r, name in ((ours, "wavesched ws_prober"), (theirs, version)):
        notes = []
        if r["probes"] == 0 or r["failures"] > MAX_FAILURE_SHARE * r["probes"]:
            invalid.append(name)
            notes.append(f"INVALID: {r['failures']} of {r['probes']} failed, first: {r['first_error']}")
        elif r["failures"]:
            notes.append(f"first failure: {r['first_error']}")
        if r["probes_per_s"] < RATE_SHORTFALL * rate:
            notes.append(f"kept up with only {r['probes_per_s'] / rate * 100:.0f}% of the asked rate")
        print(f"  {name[:34]:<34} {r['probes']:>8} {r['failures']:>7} {r['probes_per_s']:>9.0f} "
              f"{r['cpu_s']:>7.2f} {r['probes_per_cpu_s']:>13.0f} {r['mean_latency_ms']:>8.2f}"
              + "".join(f"\n      ({n})" for n in notes))
    print(f"  (exporter CPU = its process's utime + stime over the run, serving /probe included, as "
          f"Prometheus would use it; its driver used {theirs['driver_cpu_s']:.2f} CPU s, not counted)")
    if invalid:
        fail(f"invalid run, more than {MAX_FAILURE_SHARE * 100:.0f}% of the probes failed: {', '.join(invalid)}")
    if theirs["probes_per_cpu_s"] <= 0:
        fail("the exporter used no measurable CPU: the run is too short to compare (raise WS_BENCH_PROBE_SECONDS)")
    ratio = ours["probes_per_cpu_s"] / theirs["probes_per_cpu_s"]
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(f"  ratio: {ratio:.2f}x the exporter's probes per CPU-second; "
          f"target >= {TARGET_RATIO:.0f}x: {verdict}")


if __name__ == "__main__":
    main()
