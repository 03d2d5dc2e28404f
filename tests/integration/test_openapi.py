"""The OpenAPI document (api/openapi.json) against the code that serves it.

- the service serves the file byte for byte at /v1/openapi.json;
- `redocly lint` (pinned in tests/tools) finds no error and no warning;
- the operations are exactly the routes of scheduler/api.c's routes[] table
  (parsed from the source), except operations marked x-wavesched-planned
  that are not routed yet;
- the role matrix: every operation is called with a token of each of the six
  roles (and with none); a role gets 403 exactly when the operation's
  x-wavesched-roles leaves it out, every status is one the operation
  documents, and every JSON answer fits the documented schema;
- tenant isolation: a tenant token gets the same 404 for another tenant's
  objects as for missing ones, and filtered lists.

The matrix changes nothing that matters: commands and decisions name a
rollout that does not exist, DELETE /v1/tokens a token that does not exist,
and every body is empty or {}, so allowed roles get 400/404/422 from the
handler's own checks, which come after the permission check.
"""
import copy
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from wsharness import SOURCE_ROOT, ServiceCase, example_fleet, main

try:
    import jsonschema
except ImportError:  # the schema checks say they were skipped
    jsonschema = None

DOC_PATH = os.path.join(SOURCE_ROOT, "api", "openapi.json")
ROUTES_C = os.path.join(SOURCE_ROOT, "scheduler", "api.c")
TOOLS = os.path.join(SOURCE_ROOT, "tests", "tools")
REDOCLY = os.path.join(TOOLS, "node_modules", ".bin", "redocly")
REDOCLY_CONFIG = os.path.join(SOURCE_ROOT, "redocly.yaml")
DOCS_PAGE = os.path.join(SOURCE_ROOT, "docs", "api.md")
TABLE_BEGIN = "<!-- table: made by roles_table() in tests/integration/test_openapi.py -->"
TABLE_END = "<!-- end of table -->"

ROLES = ["admin", "platform", "security", "approver", "tenant", "viewer"]
METHODS = ("get", "put", "post", "delete", "patch")
DIGEST = "sha256:" + "cd" * 32
MISSING_ROLLOUT = "987654321"
MISSING_TOKEN = "00000000-0000-4000-8000-000000000000"

# The tenant token's own tenant and another one; each is the only tenant
# of one rollout.
OWN, OTHER, OWN_SIBLING = "training-a", "staging-hq", "training-b"

POLICY = """apiVersion: wavesched/v1
kind: WavePolicy
metadata: {{name: {name}}}
spec:
  release_kinds: [standard]
  unmatched: skip
  schedule: {{respect_windows: false, slot: 30m}}
  defaults:
    soak: 10m
    gates: {{approval: {{min: 1, roles: [approver, security]}}}}
  waves:
    - name: only
      select: {{labels: {{env: {env}}}}}
"""

ROUTE_RE = re.compile(r'\{\s*"(GET|PUT|POST|DELETE|PATCH)",\s*"([^"]+)",\s*(true|false),\s*(\w+),\s*(\w+)\s*\}')


def load_doc():
    with open(DOC_PATH, "rb") as f:
        raw = f.read()
    return raw, json.loads(raw)


def parse_routes():
    """{(METHOD, pattern): needs_auth} from the routes[] table of api.c."""
    with open(ROUTES_C) as f:
        src = f.read()
    start = src.index("static const route routes[] = {")
    table = src[start:src.index("};", start)]
    routes = {(m, p): auth == "true" for m, p, auth, _perm, _fn in ROUTE_RE.findall(table)}
    if len(routes) < 10:
        raise AssertionError(f"only {len(routes)} routes parsed from {ROUTES_C}: has the table's shape changed?")
    return routes


def operations(doc):
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def roles_table(doc):
    """The operations-and-roles table of docs/api.md, made from the document."""
    lines = ["| operation | summary | " + " | ".join(ROLES) + " |",
             "|---|---|" + "---|" * len(ROLES)]
    for method, path, op in operations(doc):
        if op.get("security") == []:
            cells = ["any"] * len(ROLES)
        else:
            scoped = op.get("x-wavesched-tenant-scoped")
            cells = [("own" if role == "tenant" and scoped else "yes") if role in op["x-wavesched-roles"] else "-"
                     for role in ROLES]
        note = " (planned)" if op.get("x-wavesched-planned") else ""
        lines.append(f"| `{method} {path}`{note} | {op['summary']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def redocly_env():
    env = dict(os.environ)
    # No telemetry and no update check: the lint must not reach the network.
    env["REDOCLY_TELEMETRY"] = "off"
    env["REDOCLY_SUPPRESS_UPDATE_NOTICE"] = "true"
    return env


def redocly_lint(path):
    if not os.access(REDOCLY, os.X_OK):
        raise AssertionError(f"{REDOCLY} is missing: run `npm ci --prefix tests/tools --no-audit --no-fund` "
                             "(scripts/test does it)")
    out = subprocess.run([REDOCLY, "lint", "--config", REDOCLY_CONFIG, "--format=json", path],
                         capture_output=True, text=True, timeout=120, cwd=TOOLS, env=redocly_env())
    try:
        report = json.loads(out.stdout)
    except ValueError:
        raise AssertionError(f"redocly lint did not answer JSON (exit {out.returncode}):\n"
                             f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.returncode, report


class OpenApi(ServiceCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if jsonschema is None:
            print("test_openapi: python jsonschema is not installed: answers are NOT checked against the "
                  "schemas", file=sys.stderr)
        cls.raw, cls.doc = load_doc()
        cls.routes = parse_routes()
        svc = cls.svc
        cls.created = []   # (method, path, response) of the set-up's writes, checked against the schemas

        def write(method, path, opath, body, ctype="application/json", expect=(200, 201)):
            r = svc.request(method, path, token=cls.admin, body=body, headers={"Content-Type": ctype})
            assert r.status in expect, (method, path, r)
            cls.created.append((method, opath, r))
            return r

        write("PUT", "/v1/fleet", "/v1/fleet", example_fleet(), "application/yaml")
        write("POST", "/v1/policies", "/v1/policies", POLICY.format(name="training-only", env="training"),
              "application/yaml")
        write("POST", "/v1/policies", "/v1/policies", POLICY.format(name="staging-only", env="staging"),
              "application/yaml")
        write("POST", "/v1/releases", "/v1/releases", {"version": "1.0.0", "digest": DIGEST})
        start = "2026-12-01T00:00:00Z"
        cls.own_rollout = write("POST", "/v1/rollouts", "/v1/rollouts",
                                {"release": "1.0.0", "policy": "training-only", "start": start}).json["id"]
        cls.other_rollout = write("POST", "/v1/rollouts", "/v1/rollouts",
                                  {"release": "1.0.0", "policy": "staging-only", "start": start}).json["id"]
        for slug in (OWN, OTHER):
            write("POST", "/v1/backups", "/v1/backups",
                  {"tenant": slug, "completed_at": "2026-11-20T01:00:00Z", "location": f"s3://b/{slug}",
                   "size_bytes": 1024, "checksum": "sha256:" + "ef" * 32})
        cls.tokens = {"admin": cls.admin}
        for role in ROLES[1:]:
            cls.tokens[role] = svc.token(role, *([OWN] if role == "tenant" else []), name=f"matrix-{role}")

    # ---- helpers ----------------------------------------------------------

    def operation(self, method, path):
        return self.doc["paths"][path][method.lower()]

    def routed(self, method, path):
        return (method, path) in self.routes

    def fill(self, method, path):
        """The concrete path the matrix asks for."""
        reads = method == "GET"
        values = {
            "{slug}": OWN,
            "{id}": (MISSING_TOKEN if path.startswith("/v1/tokens/")
                     else str(self.own_rollout) if reads else MISSING_ROLLOUT),
            "{name}": "training-only",
            "{version}": "1.0.0",
            "{file}": "app.js",
        }
        for k, v in values.items():
            path = path.replace(k, v)
        self.assertNotIn("{", path, f"no value for a parameter of {path}")
        return path

    def call(self, method, path, token, op):
        """One request; a text/event-stream answer is read up to its headers
        only (the stream does not end)."""
        headers = {}
        body = None
        rb = op.get("requestBody")
        if rb:
            ctype = next(iter(rb["content"]))
            headers["Content-Type"] = ctype
            body = "{}" if ctype == "application/json" else ""
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.svc.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            ctype = r.getheader("Content-Type", "")
            data = b"" if ctype.startswith("text/event-stream") else r.read()
            return r.status, ctype, data
        finally:
            conn.close()

    def schema_errors(self, schema, value):
        if jsonschema is None:
            return []
        full = dict(schema)
        full["components"] = self.doc["components"]
        v = jsonschema.Draft202012Validator(full)
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in v.iter_errors(value)]

    def check_answer(self, where, op, status, ctype, data):
        """The status is documented; a JSON answer fits its schema."""
        responses = op["responses"]
        self.assertIn(str(status), responses, f"{where}: status {status} is not documented: {data[:300]!r}")
        resp = responses[str(status)]
        if "$ref" in resp:
            resp = self.doc["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
        content = resp.get("content")
        if not content:
            return
        media = ctype.split(";")[0].strip()
        self.assertIn(media, content, f"{where}: {status} answered {media}, documented {list(content)}")
        if media == "application/json":
            schema = content[media].get("schema")
            errors = self.schema_errors(schema, json.loads(data)) if schema else []
            self.assertEqual(errors, [], f"{where}: the {status} answer does not fit its schema: {data[:600]!r}")

    # ---- the document itself ----------------------------------------------

    def test_served_document_is_the_file(self):
        r = self.svc.request("GET", "/v1/openapi.json")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["content-type"], "application/json")
        self.assertEqual(r.body, self.raw)
        self.assertEqual(self.doc["openapi"], "3.1.0")

    def test_lint_passes_without_warnings(self):
        rc, report = redocly_lint(DOC_PATH)
        problems = [f"{p['severity']} {p['ruleId']}: {p['message']} at "
                    f"{p['location'][0].get('pointer') if p.get('location') else '?'}" for p in report["problems"]]
        self.assertEqual(problems, [])
        self.assertEqual(report["totals"]["errors"], 0)
        self.assertEqual(report["totals"]["warnings"], 0)
        self.assertEqual(rc, 0)

    def test_lint_catches_a_broken_document(self):
        """The lint step really lints: a copy without a summary and with an
        undefined $ref fails it."""
        bad = copy.deepcopy(self.doc)
        get = bad["paths"]["/healthz"]["get"]
        del get["summary"]
        get["responses"]["200"]["content"]["application/json"]["schema"] = {"$ref": "#/components/schemas/Nope"}
        tmp = tempfile.mkdtemp(prefix="openapi-")
        try:
            path = os.path.join(tmp, "bad.json")
            with open(path, "w") as f:
                json.dump(bad, f)
            rc, report = redocly_lint(path)
        finally:
            shutil.rmtree(tmp)
        rules = {p["ruleId"] for p in report["problems"] if p["severity"] == "error"}
        self.assertIn("operation-summary", rules)
        self.assertIn("no-unresolved-refs", rules)
        self.assertNotEqual(rc, 0)

    def test_operations_are_the_routes(self):
        documented = {(m, p) for m, p, _ in operations(self.doc)}
        planned = {(m, p) for m, p, op in operations(self.doc) if op.get("x-wavesched-planned")}
        self.assertEqual(sorted(set(self.routes) - documented), [], "routes missing from api/openapi.json")
        self.assertEqual(sorted(documented - set(self.routes) - planned), [],
                         "operations that scheduler/api.c does not route (mark them x-wavesched-planned)")
        self.assertEqual(sorted(planned & set(self.routes)), [],
                         "routed now: drop their x-wavesched-planned mark in api/openapi.json (and the "
                         "\"(planned)\" of docs/api.md's table)")

    def test_security_follows_the_route_table(self):
        """Routes without auth are documented without security, and the
        others inherit the global bearerAuth."""
        self.assertEqual(self.doc["security"], [{"bearerAuth": []}])
        for (method, path), auth in self.routes.items():
            op = self.operation(method, path)
            if auth:
                self.assertNotIn("security", op, f"{method} {path}")
            else:
                self.assertEqual(op.get("security"), [], f"{method} {path} needs no token")

    def test_every_operation_names_its_roles(self):
        for method, path, op in operations(self.doc):
            roles = op.get("x-wavesched-roles")
            self.assertIsInstance(roles, list, f"{method} {path}")
            self.assertTrue(set(roles) <= set(ROLES) and roles, f"{method} {path}: {roles}")
            self.assertIn("admin", roles, f"{method} {path}: admin may do everything")
            if op.get("x-wavesched-tenant-scoped"):
                self.assertIn("tenant", roles, f"{method} {path}")

    def test_docs_table_is_the_document(self):
        with open(DOCS_PAGE) as f:
            page = f.read()
        begin, end = page.index(TABLE_BEGIN) + len(TABLE_BEGIN) + 1, page.index(TABLE_END)
        self.assertEqual(page[begin:end], roles_table(self.doc),
                         "docs/api.md's table is stale: paste roles_table() of test_openapi.py")

    # ---- the role matrix --------------------------------------------------

    def test_role_matrix(self):
        tried = 0
        for method, opath, op in operations(self.doc):
            if not self.routed(method, opath):
                continue   # planned, not routed yet: nothing to ask
            path = self.fill(method, opath)
            allowed = set(op["x-wavesched-roles"])
            public = op.get("security") == []
            for role in ROLES + [None]:
                where = f"{method} {path} as {role or 'anonymous'}"
                with self.subTest(op=f"{method} {opath}", role=role or "anonymous"):
                    status, ctype, data = self.call(method, path, self.tokens.get(role), op)
                    tried += 1
                    if role is None and not public:
                        self.assertEqual(status, 401, f"{where}: {data[:300]!r}")
                    elif role is not None and role not in allowed:
                        self.assertEqual(status, 403, f"{where}: the role is not in x-wavesched-roles but got "
                                                      f"{status}: {data[:300]!r}")
                        self.assertEqual(json.loads(data)["error"]["code"], "forbidden")
                    else:
                        self.assertNotIn(status, (401, 403), f"{where}: the role is in x-wavesched-roles but "
                                                             f"got {status}: {data[:300]!r}")
                        self.assertLess(status, 500, f"{where}: {data[:300]!r}")
                    self.check_answer(where, op, status, ctype, data)
        self.assertGreater(tried, 7 * 30)
        # The matrix changed nothing: the rollouts are still planned.
        for rid in (self.own_rollout, self.other_rollout):
            r = self.svc.request("GET", f"/v1/rollouts/{rid}", token=self.admin)
            self.assertEqual(r.json["state"], "planned")

    def test_set_up_writes_fit_their_schemas(self):
        for method, opath, r in self.created:
            with self.subTest(op=f"{method} {opath}"):
                self.check_answer(f"{method} {opath}", self.operation(method, opath), r.status,
                                  r.headers.get("content-type", ""), r.body)

    def test_answers_fit_the_schemas(self):
        """Answers the matrix does not reach with minimal bodies: a dry-run
        plan, a token, a command on a real rollout, a decision, errors."""
        if jsonschema is None:
            self.skipTest("jsonschema is not installed: schemas not checked")
        svc, admin = self.svc, self.admin
        cases = [
            ("POST", "/v1/rollouts?dry_run=1", "/v1/rollouts",
             {"release": "9.9.9", "policy": "training-only", "start": "2026-12-01T00:00:00Z"}, 200),
            ("POST", "/v1/tokens", "/v1/tokens", {"role": "viewer", "name": "schema", "expires": "1d"}, 201),
            ("POST", "/v1/releases", "/v1/releases", {"version": "1.0.0", "digest": DIGEST}, 409),
            ("POST", "/v1/releases", "/v1/releases", {"version": "", "digest": "x", "extra": 1}, 422),
            ("POST", "/v1/policies/validate", "/v1/policies/validate", "spec: [", 400),
            ("GET", "/v1/policies/training-only?version=1", "/v1/policies/{name}", None, 200),
            ("GET", "/v1/fleet?format=xml", "/v1/fleet", None, 400),
            ("GET", f"/v1/rollouts/{self.own_rollout}/plan?version=1", "/v1/rollouts/{id}/plan", None, 200),
        ]
        for method, path, opath, body, expect in cases:
            with self.subTest(req=f"{method} {path}"):
                headers = {"Content-Type": "application/yaml"} if isinstance(body, str) else None
                r = svc.request(method, path, token=admin, body=body, headers=headers)
                self.assertEqual(r.status, expect, r)
                self.check_answer(f"{method} {path}", self.operation(method, opath), r.status,
                                  r.headers.get("content-type", ""), r.body)
        # A command and a decision on a rollout of their own, then aborted.
        r = svc.request("POST", "/v1/policies", token=admin, body=POLICY.format(name="hq", env="production"),
                        headers={"Content-Type": "application/yaml"})
        self.assertIn(r.status, (200, 201), r)
        r = svc.request("POST", "/v1/rollouts", token=self.tokens["platform"],
                        body={"release": "1.0.0", "policy": "hq", "start": "2026-12-01T00:00:00Z"})
        self.assertEqual(r.status, 201, r)
        rid = r.json["id"]
        try:
            r = svc.request("POST", f"/v1/rollouts/{rid}/approve", token=self.tokens["approver"],
                            body={"wave": 1, "comment": "ok"})
            self.assertEqual(r.status, 200, r)
            self.check_answer("approve", self.operation("POST", "/v1/rollouts/{id}/approve"), r.status,
                              r.headers.get("content-type", ""), r.body)
            r = svc.request("GET", f"/v1/rollouts/{rid}", token=admin)
            self.check_answer("rollout", self.operation("GET", "/v1/rollouts/{id}"), r.status,
                              r.headers.get("content-type", ""), r.body)
            self.assertEqual(r.json["waves"][0]["approvals"][0]["decision"], "approve")
        finally:
            r = svc.request("POST", f"/v1/rollouts/{rid}/abort", token=admin, body={"reason": "schema test"})
            self.assertEqual(r.status, 200, r)
            self.check_answer("abort", self.operation("POST", "/v1/rollouts/{id}/abort"), r.status,
                              r.headers.get("content-type", ""), r.body)
        r = svc.request("POST", f"/v1/rollouts/{rid}/start", token=admin, body={})
        self.assertEqual(r.status, 409, r)
        self.check_answer("start after abort", self.operation("POST", "/v1/rollouts/{id}/start"), r.status,
                          r.headers.get("content-type", ""), r.body)

    # ---- tenant isolation -------------------------------------------------

    def test_tenant_reads_of_other_tenants_are_404(self):
        """Every tenant-scoped read with a path parameter, driven by the
        document: another tenant's object answers exactly as a missing one."""
        tenant = self.tokens["tenant"]
        other = {"{slug}": OTHER, "{id}": str(self.other_rollout)}
        missing = {"{slug}": "no-such-tenant", "{id}": MISSING_ROLLOUT}
        checked = set()
        for method, opath, op in operations(self.doc):
            if not op.get("x-wavesched-tenant-scoped") or "{" not in opath or not self.routed(method, opath):
                continue
            with self.subTest(op=f"{method} {opath}"):
                theirs, absent = opath, opath
                for k in other:
                    theirs, absent = theirs.replace(k, other[k]), absent.replace(k, missing[k])
                self.assertNotIn("{", theirs, f"no other tenant's value for {opath}")
                # The viewer sees it: the tenant's 404 is its scope, not absence.
                self.assertEqual(self.svc.request(method, theirs, token=self.tokens["viewer"]).status, 200)
                r = self.svc.request(method, theirs, token=tenant)
                self.assertEqual(r.status, 404, r)
                m = self.svc.request(method, absent, token=tenant)
                self.assertEqual(m.status, 404, m)
                self.assertEqual(r.body, m.body, "another tenant's object must look exactly like a missing one")
                checked.add(opath)
        self.assertTrue({"/v1/tenants/{slug}", "/v1/tenants/{slug}/backups", "/v1/tenants/{slug}/windows",
                         "/v1/tenants/{slug}/windows.ics", "/v1/rollouts/{id}"} <= checked, checked)

    def test_tenant_readable_operations_are_scoped(self):
        """Whatever a tenant token may read is filtered to its tenants (or
        it would read other tenants' data)."""
        for method, path, op in operations(self.doc):
            if method == "GET" and op.get("security") != [] and "tenant" in op["x-wavesched-roles"]:
                self.assertTrue(op.get("x-wavesched-tenant-scoped"), f"{method} {path}")

    def test_tenant_lists_are_filtered(self):
        tenant, viewer = self.tokens["tenant"], self.tokens["viewer"]
        r = self.svc.request("GET", "/v1/tenants", token=tenant)
        self.assertEqual([t["slug"] for t in r.json["tenants"]], [OWN])
        self.assertGreater(len(self.svc.request("GET", "/v1/tenants", token=viewer).json["tenants"]), 1)

        r = self.svc.request("GET", "/v1/rollouts", token=tenant)
        self.assertEqual([x["id"] for x in r.json["rollouts"]], [self.own_rollout])
        self.assertEqual(r.json["rollouts"][0]["tenant_count"], 1)
        ids = [x["id"] for x in self.svc.request("GET", "/v1/rollouts", token=viewer).json["rollouts"]]
        self.assertIn(self.other_rollout, ids)

        # Its own rollout shows its own tenant only, not the sibling in the
        # same wave, and no wave-level gate evidence.
        r = self.svc.request("GET", f"/v1/rollouts/{self.own_rollout}", token=tenant)
        self.assertEqual(r.status, 200, r)
        slugs = {t["slug"] for w in r.json["waves"] for t in w["tenants"]}
        self.assertEqual(slugs, {OWN})
        full = self.svc.request("GET", f"/v1/rollouts/{self.own_rollout}", token=viewer).json
        self.assertIn(OWN_SIBLING, {t["slug"] for w in full["waves"] for t in w["tenants"]})
        self.assertTrue(all(w["gates"] == [] for w in r.json["waves"]))

        r = self.svc.request("GET", f"/v1/tenants/{OWN}/windows", token=tenant)
        self.assertEqual(r.status, 200, r)
        self.assertEqual({w["rollout"] for w in r.json["windows"]}, {self.own_rollout})
        r = self.svc.request("GET", f"/v1/tenants/{OWN}/backups", token=tenant)
        self.assertEqual([b["tenant"] for b in r.json["backups"]], [OWN])


if __name__ == "__main__":
    main()
