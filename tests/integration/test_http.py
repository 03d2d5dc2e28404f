"""HTTP edge cases against the real service: limits, malformed input,
routing, pipelining and keep-alive, metrics."""
import json
import socket

from wsharness import ServiceCase, main


def read_responses(sock, count, timeout=10):
    """Reads `count` HTTP responses off a socket; returns (status, body) pairs."""
    sock.settimeout(timeout)
    data = b""
    out = []
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
        n = int(headers.get("content-length", "0"))
        while len(data) < n:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        body, data = data[:n], data[n:]
        out.append((status, headers, body))
    return out


class Http(ServiceCase):

    def test_unknown_route_and_method(self):
        r = self.svc.request("GET", "/v1/nope", token=self.admin)
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json["error"]["code"], "not_found")
        r = self.svc.request("DELETE", "/v1/fleet", token=self.admin)
        self.assertEqual(r.status, 405)
        self.assertIn("GET", r.headers["allow"])
        self.assertIn("PUT", r.headers["allow"])

    def test_oversized_body_gets_413(self):
        big = "x" * (9 << 20)
        r = self.svc.request("PUT", "/v1/fleet", token=self.admin, body=big,
                             headers={"Content-Type": "application/yaml"})
        self.assertEqual(r.status, 413)
        self.assertEqual(r.json["error"]["code"], "payload_too_large")
        # and the service is still fine
        self.assertEqual(self.svc.request("GET", "/healthz").status, 200)

    def test_malformed_request_gets_400(self):
        s = socket.create_connection(("127.0.0.1", self.svc.port))
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        (status, _, body), = read_responses(s, 1)
        s.close()
        self.assertEqual(status, 400)
        self.assertIn("error", json.loads(body))

    def test_malformed_json_body_gets_400_with_position(self):
        r = self.svc.request("POST", "/v1/tokens", token=self.admin, body='{"role": "viewer",,}',
                             headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)
        self.assertRegex(r.json["error"]["message"], r"^body:1:\d+: ")

    def test_pipelined_keep_alive_requests_are_answered_in_order(self):
        s = socket.create_connection(("127.0.0.1", self.svc.port))
        auth = f"Authorization: Bearer {self.admin}\r\n".encode()
        reqs = (b"GET /v1/tenants HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /v1/nope HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
                b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.sendall(reqs)
        got = read_responses(s, 4)
        self.assertEqual([g[0] for g in got], [200, 200, 404, 200])
        self.assertIn("tenants", json.loads(got[0][2]))
        self.assertEqual(json.loads(got[1][2])["status"], "ok")
        self.assertEqual(json.loads(got[3][2])["status"], "ready")
        # the connection stays open for more
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(read_responses(s, 1)[0][0], 200)
        s.close()

    def test_header_too_large(self):
        s = socket.create_connection(("127.0.0.1", self.svc.port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (32 << 10) + b"\r\n\r\n")
        got = read_responses(s, 1)
        s.close()
        self.assertEqual(got[0][0], 431)

    def test_metrics_count_requests(self):
        self.svc.request("GET", "/v1/tenants", token=self.admin)
        text = self.svc.request("GET", "/metrics").body.decode()
        self.assertIn('wavesched_http_requests_total{method="GET",route="/v1/tenants",status="200"}', text)
        self.assertIn('wavesched_http_request_duration_seconds_bucket{route="/v1/tenants",le="+Inf"}', text)
        self.assertIn("# TYPE wavesched_http_request_duration_seconds histogram", text)
        self.assertIn('wavesched_db_pool_connections{state="configured"} 4', text)
        self.assertRegex(text, r'wavesched_build_info\{version="[0-9.]+"\} 1')
        self.assertIn("wavesched_api_requests_in_flight 1\n", text)   # the /metrics request itself


if __name__ == "__main__":
    main()
