"""Roles against every endpoint, tenant scoping, token life cycle."""
from wsharness import ServiceCase, example_fleet, main

ROLES = ["admin", "platform", "security", "approver", "tenant", "viewer"]

# endpoint -> roles that may use it (api.md); everyone else gets 403, except
# where a tenant token is answered 404 for data outside its scope.
MATRIX = [
    (("GET", "/v1/fleet", None), {"admin", "platform", "security", "approver", "viewer"}),
    (("PUT", "/v1/fleet?dry_run=1", "FLEET"), {"admin", "platform", "security"}),
    (("GET", "/v1/tenants", None), set(ROLES)),
    (("GET", "/v1/tenants/clinic-north", None), set(ROLES)),
    (("GET", "/v1/tokens", None), {"admin"}),
    (("POST", "/v1/tokens", {"role": "viewer", "name": "matrix"}), {"admin"}),
]


class Auth(ServiceCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        r = cls.svc.request("PUT", "/v1/fleet", token=cls.admin, body=example_fleet(),
                            headers={"Content-Type": "application/yaml"})
        assert r.status == 200, r
        cls.tokens = {role: cls.svc.token(role, *(["clinic-north"] if role == "tenant" else []))
                      for role in ROLES}

    def test_every_role_against_every_endpoint(self):
        for (method, path, body), allowed in MATRIX:
            for role in ROLES:
                with self.subTest(role=role, method=method, path=path):
                    b = example_fleet() if body == "FLEET" else body
                    r = self.svc.request(method, path, token=self.tokens[role], body=b)
                    if role in allowed:
                        self.assertIn(r.status, (200, 201), r)
                    else:
                        self.assertEqual(r.status, 403, r)
                        self.assertEqual(r.json["error"]["code"], "forbidden")

    def test_open_endpoints_need_no_token(self):
        for path in ("/healthz", "/readyz", "/metrics"):
            self.assertEqual(self.svc.request("GET", path).status, 200, path)

    def test_missing_bad_and_unknown_tokens_get_401(self):
        r = self.svc.request("GET", "/v1/tenants")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.headers.get("www-authenticate"), "Bearer")
        self.assertEqual(r.json["error"]["code"], "unauthenticated")
        self.assertEqual(self.svc.request("GET", "/v1/tenants", token="nonsense").status, 401)
        forged = "wst_" + "A" * 43
        r = self.svc.request("GET", "/v1/tenants", token=forged)
        self.assertEqual(r.status, 401)
        self.assertIn("unknown token", r.json["error"]["message"])
        r = self.svc.request("GET", "/v1/tenants", headers={"Authorization": "Basic eDp5"})
        self.assertEqual(r.status, 401)

    def test_tenant_token_sees_only_its_tenants(self):
        tok = self.svc.token("tenant", "clinic-north", "clinic-south")
        r = self.svc.request("GET", "/v1/tenants", token=tok)
        self.assertEqual(r.status, 200)
        self.assertEqual([t["slug"] for t in r.json["tenants"]], ["clinic-north", "clinic-south"])
        self.assertEqual(self.svc.request("GET", "/v1/tenants/clinic-south", token=tok).status, 200)
        # another tenant, and one that does not exist: the same 404
        other = self.svc.request("GET", "/v1/tenants/hq-finance", token=tok)
        missing = self.svc.request("GET", "/v1/tenants/no-such-tenant", token=tok)
        self.assertEqual(other.status, 404)
        self.assertEqual(missing.status, 404)
        self.assertEqual(other.json, missing.json)
        self.assertEqual(self.svc.request("GET", "/v1/fleet", token=tok).status, 403)

    def test_token_life_cycle(self):
        r = self.svc.request("POST", "/v1/tokens", token=self.admin,
                             body={"role": "tenant", "tenants": ["clinic-east"], "name": "east-owner",
                                   "expires": "30d"})
        self.assertEqual(r.status, 201, r)
        created = r.json
        secret = created["token"]
        self.assertRegex(secret, r"^wst_[A-Za-z0-9_-]{43}$")
        self.assertEqual(created["tenants"], ["clinic-east"])
        self.assertIsNotNone(created["expires_at"])
        # only the hash is stored
        self.assertEqual(self.db.sql(f"SELECT count(*) FROM api_tokens WHERE secret_hash = '{secret}'"), "0")
        self.assertEqual(self.svc.request("GET", "/v1/tenants/clinic-east", token=secret).status, 200)
        listed = self.svc.request("GET", "/v1/tokens", token=self.admin).json["tokens"]
        self.assertIn(created["id"], [t["id"] for t in listed])
        self.assertTrue(all("token" not in t for t in listed))
        r = self.svc.request("DELETE", f"/v1/tokens/{created['id']}", token=self.admin)
        self.assertEqual(r.status, 200, r)
        self.assertIsNotNone(r.json["revoked_at"])
        r = self.svc.request("GET", "/v1/tenants/clinic-east", token=secret)
        self.assertEqual(r.status, 401)
        self.assertIn("revoked", r.json["error"]["message"])
        self.assertEqual(self.svc.request("DELETE", "/v1/tokens/00000000-0000-0000-0000-000000000000",
                                          token=self.admin).status, 404)
        self.assertEqual(self.svc.request("DELETE", "/v1/tokens/not-a-uuid", token=self.admin).status, 404)

    def test_expired_token_gets_401(self):
        tok = self.svc.token("viewer", name="short-lived", expires="1h")
        self.assertEqual(self.svc.request("GET", "/v1/tenants", token=tok).status, 200)
        self.db.sql("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'short-lived'")
        r = self.svc.request("GET", "/v1/tenants", token=tok)
        self.assertEqual(r.status, 401)
        self.assertIn("expired", r.json["error"]["message"])

    def test_invalid_token_requests_get_422(self):
        for body in ({"role": "wizard"}, {"role": "tenant"}, {"role": "viewer", "tenants": ["x"]},
                     {"role": "viewer", "expires": "soon"}, {"role": "viewer", "colour": "red"}):
            with self.subTest(body=body):
                r = self.svc.request("POST", "/v1/tokens", token=self.admin, body=body)
                self.assertEqual(r.status, 422, r)
        r = self.svc.request("POST", "/v1/tokens", token=self.admin, body="{not json",
                             headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)
        self.assertRegex(r.json["error"]["message"], r"^body:1:\d+: ")


if __name__ == "__main__":
    main()
