/*
 * test_ydoc.c - the YAML/JSON tree: positions, caps, refusals, helpers.
 */
#include "fleet_test.h"

static ydoc *parse(const char *text, const ydoc_limits *lim, ws_diags *d)
{
	return ydoc_parse("y.yaml", text, strlen(text), lim, d);
}

/* Parses `text`, which must fail with exactly `expected`. */
static void expect_fail(const char *text, const ydoc_limits *lim, const char *expected)
{
	ws_diags d;
	ws_diags_init(&d);
	ydoc *doc = parse(text, lim, &d);
	char *got = ft_diags_text(&d);
	ydoc_free(doc);
	assert_null(doc);
	assert_string_equal(got, expected);
	free(got);
	ws_diags_free(&d);
}

static void test_block_positions(void **state)
{
	(void)state;
	ws_diags d;
	ws_diags_init(&d);
	const char *text =
		"tenants:\n"
		"  - slug: a\n"
		"    name: 'Quoted'\n"
		"  - {slug: b, n: 3}\n";
	ydoc *doc = parse(text, NULL, &d);
	assert_non_null(doc);
	assert_int_equal(d.len, 0);
	assert_string_equal(ydoc_name(doc), "y.yaml");
	const ynode *root = ydoc_root(doc);
	assert_int_equal(root->kind, YNODE_MAP);
	assert_int_equal(root->line, 1);
	assert_int_equal(root->column, 1);
	assert_int_equal(root->len, 1);
	assert_int_equal(root->keys[0]->line, 1);
	assert_int_equal(root->keys[0]->column, 1);
	const ynode *seq = ynode_get(root, "tenants");
	assert_int_equal(seq->kind, YNODE_SEQ);
	assert_int_equal(seq->len, 2);
	assert_int_equal(seq->line, 2);
	assert_int_equal(seq->column, 3);
	const ynode *t0 = seq->items[0];
	assert_int_equal(t0->kind, YNODE_MAP);
	assert_int_equal(t0->line, 2);
	assert_int_equal(t0->column, 5);
	const ynode *slug = ynode_get(t0, "slug");
	assert_string_equal(slug->value, "a");
	assert_int_equal(slug->value_len, 1);
	assert_int_equal(slug->line, 2);
	assert_int_equal(slug->column, 11);
	assert_false(slug->quoted);
	const ynode *name = ynode_get(t0, "name");
	assert_string_equal(name->value, "Quoted");
	assert_true(name->quoted);
	assert_int_equal(name->line, 3);
	assert_int_equal(name->column, 11);
	const ynode *t1 = seq->items[1];
	assert_int_equal(t1->line, 4);
	assert_int_equal(t1->column, 5);
	assert_int_equal(ynode_get(t1, "n")->column, 18);
	assert_null(ynode_get(t1, "missing"));
	assert_null(ynode_get(seq, "slug"));
	ydoc_free(doc);
	ws_diags_free(&d);
}

static void test_json_positions(void **state)
{
	(void)state;
	ws_diags d;
	ws_diags_init(&d);
	const char *text = "{\"a\":1,\n \"b\": [true, \"x\", null]}";
	ydoc *doc = ydoc_parse("body.json", text, strlen(text), NULL, &d);
	assert_non_null(doc);
	const ynode *root = ydoc_root(doc);
	const ynode *a = ynode_get(root, "a");
	assert_string_equal(a->value, "1");
	assert_false(a->quoted);
	assert_int_equal(a->line, 1);
	assert_int_equal(a->column, 6);
	const ynode *b = ynode_get(root, "b");
	assert_int_equal(b->kind, YNODE_SEQ);
	assert_int_equal(b->line, 2);
	assert_int_equal(b->column, 7);
	assert_string_equal(ynode_kind_name(b->items[0]), "boolean");
	assert_true(b->items[1]->quoted);
	assert_string_equal(ynode_kind_name(b->items[1]), "string");
	assert_true(ynode_is_null(b->items[2]));
	assert_int_equal(b->items[2]->column, 19);
	ydoc_free(doc);
	ws_diags_free(&d);
}

static void test_empty_document(void **state)
{
	(void)state;
	ws_diags d;
	ws_diags_init(&d);
	ydoc *doc = parse("# only a comment\n", NULL, &d);
	assert_non_null(doc);
	assert_null(ydoc_root(doc));
	assert_int_equal(d.len, 0);
	ydoc_free(doc);
	ws_diags_free(&d);
}

static void test_anchors_and_aliases_refused(void **state)
{
	(void)state;
	expect_fail("a: &x {b: 1}\nc: *x\n", NULL, "y.yaml:1:4: anchors are not allowed (&x)");
	expect_fail("a: &s 1\n", NULL, "y.yaml:1:4: anchors are not allowed (&s)");
	expect_fail("list:\n  - &i [1]\n", NULL, "y.yaml:2:5: anchors are not allowed (&i)");
	/* An alias to an anchor libyaml never saw is still refused by us. */
	expect_fail("a: 1\nb: *nothing\n", NULL, "y.yaml:2:4: aliases are not allowed (*nothing)");
}

static void test_depth_cap(void **state)
{
	(void)state;
	ydoc_limits lim = { .max_depth = 3 };
	ws_diags d;
	ws_diags_init(&d);
	ydoc *doc = parse("a: {b: {c: 1}}\n", &lim, &d);   /* exactly three levels */
	assert_non_null(doc);
	ydoc_free(doc);
	ws_diags_free(&d);
	expect_fail("a: {b: {c: [1]}}\n", &lim, "y.yaml:1:12: nesting deeper than 3 levels");
	/* The default cap (64) holds against a deeply nested flow sequence. */
	char deep[300];
	memset(deep, '[', 100);
	memset(deep + 100, ']', 100);
	deep[200] = '\0';
	expect_fail(deep, NULL, "y.yaml:1:65: nesting deeper than 64 levels");
}

static void test_node_and_size_caps(void **state)
{
	(void)state;
	ydoc_limits nodes = { .max_nodes = 4 };
	expect_fail("[1, 2, 3, 4]\n", &nodes, "y.yaml:1:11: document has more than 4 nodes");
	ydoc_limits bytes = { .max_bytes = 8 };
	expect_fail("a: 123456\n", &bytes, "y.yaml: document is too large (10 bytes, the limit is 8)");
}

static void test_duplicate_keys(void **state)
{
	(void)state;
	expect_fail("a: 1\nb: 2\na: 3\nb: 4\n", NULL,
		    "y.yaml:3:1: duplicate key \"a\" (first defined at 1:1)\n"
		    "y.yaml:4:1: duplicate key \"b\" (first defined at 2:1)");
	expect_fail("{\"x\": 1, \"x\": 2}", NULL, "y.yaml:1:10: duplicate key \"x\" (first defined at 1:2)");
}

static void test_syntax_errors(void **state)
{
	(void)state;
	expect_fail("a: b\n c: d\n", NULL,
		    "y.yaml:2:3: mapping values are not allowed in this context");
	expect_fail("a: [1\n", NULL,
		    "y.yaml:2:1: did not find expected ',' or ']' while parsing a flow sequence");
	expect_fail("a: 1\n---\nb: 2\n", NULL,
		    "y.yaml:2:1: expected a single document, found another one");
	expect_fail("{a: 1}: 2\n", NULL, "y.yaml:1:1: mapping keys must be scalars");
	expect_fail("a: !custom 1\n", NULL, "y.yaml:1:4: unsupported tag \"!custom\"");
	expect_fail("a: \"x\\0y\"\n", NULL, "y.yaml:1:4: strings must not contain NUL characters");
	expect_fail("a: \xff\n", NULL, "y.yaml:1:4: invalid leading UTF-8 octet");
}

static void test_str_tag_quotes(void **state)
{
	(void)state;
	ws_diags d;
	ws_diags_init(&d);
	ydoc *doc = parse("a: !!str 5\nb: |\n  text\n", NULL, &d);
	assert_non_null(doc);
	const ynode *a = ynode_get(ydoc_root(doc), "a");
	assert_true(a->quoted);
	assert_string_equal(ynode_kind_name(a), "string");
	const ynode *b = ynode_get(ydoc_root(doc), "b");
	assert_true(b->quoted);
	assert_string_equal(b->value, "text\n");
	ydoc_free(doc);
	ws_diags_free(&d);
}

static void test_scalar_helpers(void **state)
{
	(void)state;
	ws_diags d;
	ws_diags_init(&d);
	const char *text =
		"t1: true\nt2: Yes\nf1: FALSE\nf2: no\nq: \"true\"\n"
		"i1: 42\ni2: -7\ni3: +3\nbig: 99999999999999999999\nr: 1.5\ne: 1e3\n"
		"n1: ~\nn2: null\nn3:\nn4: NULL\nqs: \"\"\ns: hello\nm: {}\nl: []\n";
	ydoc *doc = parse(text, NULL, &d);
	assert_non_null(doc);
	const ynode *r = ydoc_root(doc);
	bool b = false;
	assert_int_equal(ynode_bool(ynode_get(r, "t1"), &b), 0);
	assert_true(b);
	assert_int_equal(ynode_bool(ynode_get(r, "t2"), &b), 0);
	assert_true(b);
	assert_int_equal(ynode_bool(ynode_get(r, "f1"), &b), 0);
	assert_false(b);
	b = true;
	assert_int_equal(ynode_bool(ynode_get(r, "f2"), &b), 0);
	assert_false(b);
	assert_int_equal(ynode_bool(ynode_get(r, "q"), &b), WS_EINVAL);
	assert_int_equal(ynode_bool(ynode_get(r, "i1"), &b), WS_EINVAL);
	long long i = 0;
	assert_int_equal(ynode_int(ynode_get(r, "i1"), &i), 0);
	assert_int_equal(i, 42);
	assert_int_equal(ynode_int(ynode_get(r, "i2"), &i), 0);
	assert_int_equal(i, -7);
	assert_int_equal(ynode_int(ynode_get(r, "i3"), &i), 0);
	assert_int_equal(i, 3);
	assert_int_equal(ynode_int(ynode_get(r, "big"), &i), WS_EINVAL);
	assert_int_equal(ynode_int(ynode_get(r, "r"), &i), WS_EINVAL);
	assert_int_equal(ynode_int(ynode_get(r, "s"), &i), WS_EINVAL);
	assert_true(ynode_is_null(ynode_get(r, "n1")));
	assert_true(ynode_is_null(ynode_get(r, "n2")));
	assert_true(ynode_is_null(ynode_get(r, "n3")));
	assert_true(ynode_is_null(ynode_get(r, "n4")));
	assert_false(ynode_is_null(ynode_get(r, "qs")));
	assert_false(ynode_is_null(ynode_get(r, "m")));
	assert_string_equal(ynode_kind_name(ynode_get(r, "t1")), "boolean");
	assert_string_equal(ynode_kind_name(ynode_get(r, "i1")), "integer");
	assert_string_equal(ynode_kind_name(ynode_get(r, "r")), "number");
	assert_string_equal(ynode_kind_name(ynode_get(r, "e")), "number");
	assert_string_equal(ynode_kind_name(ynode_get(r, "n1")), "null");
	assert_string_equal(ynode_kind_name(ynode_get(r, "qs")), "string");
	assert_string_equal(ynode_kind_name(ynode_get(r, "s")), "string");
	assert_string_equal(ynode_kind_name(ynode_get(r, "m")), "mapping");
	assert_string_equal(ynode_kind_name(ynode_get(r, "l")), "sequence");
	ydoc_free(doc);
	ws_diags_free(&d);
}

static void test_parse_file(void **state)
{
	(void)state;
	ws_diags d;
	ws_diags_init(&d);
	char *path = ft_fixture_path("fleet/example.yaml");
	ydoc *doc = ydoc_parse_file(path, NULL, &d);
	assert_non_null(doc);
	assert_string_equal(ydoc_name(doc), path);
	assert_non_null(ynode_get(ydoc_root(doc), "tenants"));
	ydoc_free(doc);
	ydoc_limits small = { .max_bytes = 100 };
	doc = ydoc_parse_file(path, &small, &d);
	assert_null(doc);
	assert_int_equal(d.len, 1);
	char *msg = ws_diag_format(&d.items[0]);
	char *want = NULL;
	assert_true(asprintf(&want, "%s: document is too large (the limit is 100 bytes)", path) > 0);
	assert_string_equal(msg, want);
	free(msg);
	free(want);
	ws_diags_free(&d);
	ws_diags_init(&d);
	doc = ydoc_parse_file("/nonexistent/fleet.yaml", NULL, &d);
	assert_null(doc);
	assert_int_equal(d.len, 1);
	msg = ws_diag_format(&d.items[0]);
	assert_string_equal(msg, "/nonexistent/fleet.yaml: cannot open: No such file or directory");
	free(msg);
	free(path);
	ws_diags_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_block_positions),
		cmocka_unit_test(test_json_positions),
		cmocka_unit_test(test_empty_document),
		cmocka_unit_test(test_anchors_and_aliases_refused),
		cmocka_unit_test(test_depth_cap),
		cmocka_unit_test(test_node_and_size_caps),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_str_tag_quotes),
		cmocka_unit_test(test_scalar_helpers),
		cmocka_unit_test(test_parse_file),
	};
	return cmocka_run_group_tests_name("fleet/ydoc", tests, NULL, NULL);
}
