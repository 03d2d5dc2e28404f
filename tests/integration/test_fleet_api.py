"""Fleet import/export through the API against a real PostgreSQL."""
import json

from wsharness import ServiceCase, example_fleet, main

EXPECTED_TENANTS = sorted([
    "hq-finance", "hq-procurement", "integration-hub", "pharmacy-supply", "clinic-north",
    "clinic-south", "clinic-east", "clinic-west", "rehab-partners", "labs-shared-services",
    "payroll-hr", "training-a", "training-b", "staging-hq", "legacy-archive",
])
EMPTY = {"clusters": [], "tenants": [], "calendars": []}


class FleetApi(ServiceCase):

    def setUp(self):
        # Each test starts from the example fleet as imported.
        r = self.import_fleet(example_fleet())
        self.assertEqual(r.status, 200, r)

    def test_first_import_reports_everything_added(self):
        self.db.sql("TRUNCATE tenant_dependencies, tenants, clusters, calendars, fleet_imports RESTART IDENTITY CASCADE")
        r = self.import_fleet(example_fleet())
        self.assertEqual(r.status, 200, r)
        rep = r.json
        self.assertEqual(rep["added"]["tenants"], EXPECTED_TENANTS)
        self.assertEqual(rep["added"]["clusters"], ["dedicated-hq", "dedicated-procurement", "shared-training",
                                                    "shared-us-1", "shared-us-2"])
        self.assertEqual(rep["added"]["calendars"], ["holiday-freeze", "month-end-close", "payroll"])
        self.assertEqual(rep["changed"], EMPTY)
        self.assertEqual(rep["removed"], EMPTY)
        self.assertFalse(rep["dry_run"])
        self.assertEqual(self.db.sql("SELECT count(*) FROM tenants WHERE removed_at IS NULL"), "15")
        self.assertEqual(self.db.sql(
            "SELECT string_agg(d.slug, ',' ORDER BY d.slug) FROM tenant_dependencies td "
            "JOIN tenants t ON t.id = td.tenant_id JOIN tenants d ON d.id = td.depends_on_id "
            "WHERE t.slug = 'labs-shared-services'"), "hq-finance")

    def test_export_import_is_a_fixed_point(self):
        y1 = self.svc.request("GET", "/v1/fleet?format=yaml", token=self.admin)
        self.assertEqual(y1.status, 200, y1)
        self.assertTrue(y1.headers["content-type"].startswith("application/yaml"))
        r = self.import_fleet(y1.body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["added"], EMPTY)
        self.assertEqual(r.json["changed"], EMPTY)
        self.assertEqual(r.json["removed"], EMPTY)
        y2 = self.svc.request("GET", "/v1/fleet?format=yaml", token=self.admin)
        self.assertEqual(y1.body, y2.body)
        # The JSON export imports too (JSON is read through the same parser).
        j = self.svc.request("GET", "/v1/fleet", token=self.admin)
        self.assertEqual(j.status, 200)
        doc = j.json
        self.assertEqual(doc["kind"], "Fleet")
        self.assertEqual([t["slug"] for t in doc["tenants"]], EXPECTED_TENANTS)
        r = self.import_fleet(j.body, ctype="application/json")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["changed"], EMPTY)
        hq = next(t for t in doc["tenants"] if t["slug"] == "hq-finance")
        self.assertEqual(hq["depends_on"], ["integration-hub"])
        self.assertEqual(hq["criticality"], "critical")
        self.assertEqual(hq["timezone"], "America/Chicago")

    def test_reimport_updates_in_place_and_reports_the_diff(self):
        ids_before = dict(row.split("|") for row in self.db.sql("SELECT slug, id FROM tenants").splitlines())
        text = example_fleet()
        # change clinic-north's version, remove rehab-partners, add clinic-new
        text = text.replace('''    health_url: http://127.0.0.1:9100/t/clinic-north/health
    version: "17.0.3"''', '''    health_url: http://127.0.0.1:9100/t/clinic-north/health
    version: "17.0.4"''')
        start = text.index("  - slug: rehab-partners")
        end = text.index("  - slug: labs-shared-services")
        text = text[:start] + '''  - slug: clinic-new
    cluster: shared-us-2
    timezone: America/New_York
''' + text[end:]
        dry = self.import_fleet(text, dry_run=True)
        self.assertEqual(dry.status, 200, dry)
        self.assertTrue(dry.json["dry_run"])
        self.assertEqual(self.db.sql("SELECT version FROM tenants WHERE slug = 'clinic-north'"), "17.0.3")
        r = self.import_fleet(text)
        self.assertEqual(r.status, 200, r)
        for rep in (dry.json, r.json):
            self.assertEqual(rep["added"], {"clusters": [], "tenants": ["clinic-new"], "calendars": []})
            self.assertEqual(rep["changed"], {"clusters": [], "tenants": ["clinic-north"], "calendars": []})
            self.assertEqual(rep["removed"], {"clusters": [], "tenants": ["rehab-partners"], "calendars": []})
        self.assertEqual(self.db.sql("SELECT version FROM tenants WHERE slug = 'clinic-north'"), "17.0.4")
        # identity kept for the changed tenant; the removed one is kept as history
        self.assertEqual(self.db.sql("SELECT id FROM tenants WHERE slug = 'clinic-north'"), ids_before["clinic-north"])
        self.assertEqual(self.db.sql("SELECT removed_at IS NOT NULL FROM tenants WHERE slug = 'rehab-partners'"), "t")
        self.assertEqual(self.svc.request("GET", "/v1/tenants/rehab-partners", token=self.admin).status, 404)
        # coming back revives the same row
        r = self.import_fleet(example_fleet())
        self.assertEqual(r.json["added"]["tenants"], ["rehab-partners"])
        self.assertEqual(r.json["removed"]["tenants"], ["clinic-new"])
        self.assertEqual(self.db.sql("SELECT id FROM tenants WHERE slug = 'rehab-partners'"), ids_before["rehab-partners"])

    def test_invalid_import_changes_nothing(self):
        before = self.db.dump_data()
        bad = example_fleet().replace("criticality: critical\n", "critcality: critical\n", 1)
        r = self.import_fleet(bad)
        self.assertEqual(r.status, 422, r)
        err = r.json["error"]
        self.assertEqual(err["code"], "validation_failed")
        line = bad[:bad.index("critcality")].count("\n") + 1
        self.assertTrue(any(d["line"] == line and d["column"] == 5 and "critcality" in d["message"]
                            for d in err["details"]), err)
        self.assertTrue(err["details"][0]["message"].startswith(f"body:{line}:5: "), err)
        # a dependency cycle and an unknown zone, reported together
        bad2 = example_fleet().replace("timezone: America/Denver", "timezone: Mars/Olympus") \
            .replace("    labels: {entity: parent, env: production, process: integration}\n",
                     "    labels: {entity: parent, env: production, process: integration}\n    depends_on: [hq-finance]\n")
        r2 = self.import_fleet(bad2)
        self.assertEqual(r2.status, 422, r2)
        msgs = [d["message"] for d in r2.json["error"]["details"]]
        self.assertTrue(any("Mars/Olympus" in m for m in msgs), msgs)
        self.assertTrue(any("hq-finance -> integration-hub -> hq-finance" in m for m in msgs), msgs)
        self.assertEqual(self.db.dump_data(), before)
        # a deploy template with an unknown placeholder: refused at import,
        # named by its cluster, not at the tenant's deploy
        bad3 = example_fleet().replace(
            'deploy: {executor: webhook, url: "http://127.0.0.1:9100/deploy"}',
            'deploy: {executor: webhook, url: "http://127.0.0.1:9100/deploy", status_url: "http://127.0.0.1:9100/s/{tenant}"}', 1)
        r3 = self.import_fleet(bad3)
        self.assertEqual(r3.status, 422, r3)
        msgs = [d["message"] for d in r3.json["error"]["details"]]
        self.assertTrue(any("dedicated-hq" in m and "{tenant}" in m for m in msgs), msgs)
        self.assertEqual(self.db.dump_data(), before)

    def test_malformed_documents_get_400_with_position(self):
        r = self.import_fleet("apiVersion: wavesched/v1\nkind: Fleet\ntenants: [\n  {slug: a\n")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json["error"]["code"], "malformed")
        self.assertRegex(r.json["error"]["message"], r"^body:\d+:\d+: ")
        r = self.import_fleet('{"apiVersion": "wavesched/v1", "kind": ', ctype="application/json")
        self.assertEqual(r.status, 400, r)
        r = self.import_fleet("")
        self.assertEqual(r.status, 400, r)

    def test_tenants_list_and_show(self):
        r = self.svc.request("GET", "/v1/tenants", token=self.admin)
        self.assertEqual(r.status, 200)
        tenants = r.json["tenants"]
        self.assertEqual([t["slug"] for t in tenants], EXPECTED_TENANTS)
        hq = self.svc.request("GET", "/v1/tenants/hq-finance", token=self.admin).json
        self.assertEqual(hq["version"], "17.0.3")
        self.assertEqual(hq["cluster"], "dedicated-hq")
        # Sundays 01:00 America/Chicago: the next window starts on a Sunday at 01:00 local
        self.assertRegex(hq["next_window"]["start"], r"T01:00:00-0[56]:00$")
        training = self.svc.request("GET", "/v1/tenants/training-a", token=self.admin).json
        self.assertIsNone(training["next_window"])
        self.assertEqual(self.svc.request("GET", "/v1/tenants/nope", token=self.admin).status, 404)


if __name__ == "__main__":
    main()
