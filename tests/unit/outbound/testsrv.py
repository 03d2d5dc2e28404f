#!/usr/bin/env python3
"""A small HTTP server the C tests of outbound, health and executor start as
a separate process (standard library only).

It listens on 127.0.0.1, port 0, and prints "PORT <n>" on stdout once it
accepts connections.  Routes:

  scripted routes, from argv[1] (JSON): {"/path": [response, ...], ...}; each
      request takes the next response, the last one repeats.  A response is
      {"status": 200, "body": "text" | any JSON value, "delay_ms": 0,
       "headers": {"Name": "value"}}.
  /status/<code>        answers <code> with body "status <code>"
  /delay/<ms>           answers 200 after <ms> milliseconds
  /hang                 never answers (until the process ends)
  /big/<n>              200 with a body of n bytes (Content-Length given)
  /stream/<n>           200 with a body of n bytes, no Content-Length
  /redirect?to=URL      302 to URL
  /chain/<n>            302 to /chain/<n-1>; /chain/0 answers 200 "end"
  /echo                 200 with the request as JSON (method, path, headers, body)
  /_log                 the requests received so far (JSON list, this one excluded)
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ROUTES = json.loads(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] else {}
COUNTERS = {}
LOG = []
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the C test prints what matters
        pass

    def _send(self, status, body, headers=None, length=True):
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode(errors="replace") if n else ""
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        if path == "/_log":
            with LOCK:
                self._send(200, list(LOG), {"Content-Type": "application/json"})
            return
        with LOCK:
            LOG.append({"method": self.command, "path": self.path, "body": body,
                        "headers": {k.lower(): v for k, v in self.headers.items()}})
        if path in ROUTES:
            with LOCK:
                seq = ROUTES[path]
                i = COUNTERS.get(path, 0)
                COUNTERS[path] = i + 1
                r = seq[min(i, len(seq) - 1)]
            time.sleep(r.get("delay_ms", 0) / 1000)
            self._send(r.get("status", 200), r.get("body", ""), r.get("headers"))
        elif path.startswith("/status/"):
            code = int(path.split("/")[2])
            self._send(code, "status %d" % code)
        elif path.startswith("/delay/"):
            time.sleep(int(path.split("/")[2]) / 1000)
            self._send(200, "late")
        elif path == "/hang":
            time.sleep(3600)
        elif path.startswith("/big/"):
            self._send(200, b"x" * int(path.split("/")[2]))
        elif path.startswith("/stream/"):
            self._send(200, b"y" * int(path.split("/")[2]), length=False)
        elif path == "/redirect":
            self._send(302, "", {"Location": query["to"][0]})
        elif path.startswith("/chain/"):
            n = int(path.split("/")[2])
            if n == 0:
                self._send(200, "end")
            else:
                self._send(302, "", {"Location": "/chain/%d" % (n - 1)})
        elif path == "/echo":
            self._send(200, LOG[-1], {"Content-Type": "application/json"})
        else:
            self._send(404, "no route %s" % path)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _handle


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    print("PORT %d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
