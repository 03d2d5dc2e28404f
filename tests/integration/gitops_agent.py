#!/usr/bin/env python3
"""A tiny GitOps sync agent for the integration tests: it plays Argo CD
against a bare repository and the simulated fleet.

    gitops_agent.py --git-dir BARE.git --sim http://127.0.0.1:PORT
                    [--branch main] [--interval 0.05] [--hold-file PATH]
                    [--port-file PATH] [--log PATH]

Every --interval it reads the branch tip with `git --git-dir=... rev-parse`;
when it moved, it reads every file of the tip (`git ls-tree`, `git show`)
and, for each one that is a JSON object (the JSON form of YAML the gitops
executor writes) with string "tenant" and "version", tells simfleet the
tenant now runs that version (PUT /_sim/versions/{tenant}) when it differs
from what it applied last.  While --hold-file exists nothing is applied:
the tests use it to keep a commit "pushed but not synced" for as long as
they need (a kill -9 of the service in between).

With --port-file it also serves an Argo CD-style Application status on
127.0.0.1 (port 0, written to the file once listening):

    GET /api/v1/applications/{slug}
      -> {"metadata": {"name": slug},
          "status": {"sync": {"status": "Synced" | "OutOfSync",
                              "revision": <the tip it last applied>},
                     "health": {"status": "Healthy"}}}

"Synced" once the tenant's file at the current tip has been applied; the
revision is the branch tip of that sync (as Argo CD reports it), which can
be a later commit than the tenant's own.  404 for a tenant it never saw.

--log appends one JSON line per application: {"commit", "tenant", "version"}.
Standard library only; stops on SIGTERM.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
APPLIED = {}      # tenant -> version applied
SYNCED_AT = {}    # tenant -> the tip whose content was applied for it
WANTED = {}       # tenant -> version the current tip asks for
TIP = [None]


def git(args, git_dir):
    out = subprocess.run(["git", "--git-dir=" + git_dir, *args], capture_output=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {out.stderr.decode(errors='replace')}")
    return out.stdout


def desired(git_dir, tip):
    """{tenant: version} of every tenant file at `tip`."""
    found = {}
    names = git(["ls-tree", "-r", "-z", "--name-only", tip], git_dir).split(b"\0")
    for name in names:
        if not name:
            continue
        try:
            doc = json.loads(git(["show", tip + ":" + name.decode()], git_dir))
        except (ValueError, UnicodeDecodeError):
            continue          # the README and anything else that is not ours
        if isinstance(doc, dict) and isinstance(doc.get("tenant"), str) \
                and isinstance(doc.get("version"), str):
            found[doc["tenant"]] = doc["version"]
    return found


def set_version(sim, tenant, version):
    req = urllib.request.Request(f"{sim}/_sim/versions/{tenant}", method="PUT",
                                 data=json.dumps({"version": version}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        if r.status != 200:
            raise RuntimeError(f"simfleet answered {r.status}")


def sync_once(a):
    try:
        tip = git(["rev-parse", "--verify", "-q", "refs/heads/" + a.branch], a.git_dir).decode().strip()
    except RuntimeError:
        return
    if tip != TIP[0]:
        want = desired(a.git_dir, tip)
        with LOCK:
            TIP[0] = tip
            WANTED.clear()
            WANTED.update(want)
    if a.hold_file and os.path.exists(a.hold_file):
        return
    with LOCK:
        todo = [(t, v) for t, v in WANTED.items() if APPLIED.get(t) != v or SYNCED_AT.get(t) != TIP[0]]
        tip = TIP[0]
    for tenant, version in todo:
        if APPLIED.get(tenant) != version:
            set_version(a.sim, tenant, version)
            if a.log:
                with open(a.log, "a") as f:
                    f.write(json.dumps({"commit": tip, "tenant": tenant, "version": version}) + "\n")
        with LOCK:
            APPLIED[tenant] = version
            SYNCED_AT[tenant] = tip


class Status(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if len(parts) != 4 or parts[:3] != ["api", "v1", "applications"]:
            return self.reply(404, {"error": "not found"})
        slug = parts[3]
        with LOCK:
            if slug not in WANTED and slug not in APPLIED:
                return self.reply(404, {"error": f"application {slug} not found"})
            synced = slug in WANTED and APPLIED.get(slug) == WANTED[slug] \
                and SYNCED_AT.get(slug) == TIP[0]
            doc = {"metadata": {"name": slug},
                   "status": {"sync": {"status": "Synced" if synced else "OutOfSync",
                                       "revision": SYNCED_AT.get(slug) or ""},
                              "health": {"status": "Healthy"}}}
        self.reply(200, doc)

    def reply(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--git-dir", required=True)
    p.add_argument("--sim", required=True)
    p.add_argument("--branch", default="main")
    p.add_argument("--interval", type=float, default=0.05)
    p.add_argument("--hold-file")
    p.add_argument("--port-file")
    p.add_argument("--log")
    a = p.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if a.port_file:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), Status)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(srv.server_address[1]))
        os.rename(tmp, a.port_file)
    while not stop.is_set():
        try:
            sync_once(a)
        except Exception as e:      # a transient failure: said, then tried again
            print(f"gitops_agent: {e}", file=sys.stderr, flush=True)
        stop.wait(a.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
