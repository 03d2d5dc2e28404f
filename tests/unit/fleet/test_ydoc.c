/*
 * test_ydoc.c - the YAML/JSON tree: positions, caps, refusals, helpers.
 */
#include <unistd.h>
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
	char *got = wt_diags_text(&d);
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
	char *path = wt_source_path("examples/fleet.yaml");
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

static void test_duplicate_keys_order(void **state)
{
	(void)state;
	/* Reported by key text, then position, whatever the order in the
	 * mapping; each repeat names the first definition. */
	expect_fail("b: 1\na: 2\nb: 3\na: 4\nb: 5\n", NULL,
		    "y.yaml:4:1: duplicate key \"a\" (first defined at 2:1)\n"
		    "y.yaml:3:1: duplicate key \"b\" (first defined at 1:1)\n"
		    "y.yaml:5:1: duplicate key \"b\" (first defined at 1:1)");
	/* Large mappings take the sorting path. */
	char text[4096];
	size_t off = 0;
	for (int i = 0; i < 40; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off, "k%02d: %d\n", i, i);
	snprintf(text + off, sizeof(text) - off, "k07: x\nk03: y\n");
	expect_fail(text, NULL,
		    "y.yaml:42:1: duplicate key \"k03\" (first defined at 4:1)\n"
		    "y.yaml:41:1: duplicate key \"k07\" (first defined at 8:1)");
	/* Long keys are not interned and still compared. */
	char longkey[100];
	memset(longkey, 'k', 80);
	longkey[80] = '\0';
	char doc[400];
	snprintf(doc, sizeof(doc), "%s: 1\n%s: 2\n", longkey, longkey);
	char want[400];
	snprintf(want, sizeof(want), "y.yaml:2:1: duplicate key \"%s\" (first defined at 1:1)", longkey);
	expect_fail(doc, NULL, want);
}

static void test_interned_text(void **state)
{
	(void)state;
	ws_diags d;
	ws_diags_init(&d);
	ydoc *doc = parse("- {zone: America/Chicago, q: 'America/Chicago'}\n"
			  "- {zone: America/Chicago, n: \"a\\0b\"}\n", NULL, &d);
	assert_null(doc);   /* the NUL is refused */
	ws_diags_free(&d);
	ws_diags_init(&d);
	doc = parse("- {zone: America/Chicago, q: 'America/Chicago'}\n"
		    "- {zone: America/Chicago, e: '', f: ''}\n"
		    "- {zone: Europe/Paris, once: x}\n", NULL, &d);
	assert_non_null(doc);
	const ynode *r = ydoc_root(doc);
	const ynode *z0 = ynode_get(r->items[0], "zone"), *z1 = ynode_get(r->items[1], "zone");
	const ynode *q = ynode_get(r->items[0], "q");
	/* Text is interned from its second sighting on: later equal scalars
	 * share that copy; quoting is kept per node. */
	assert_ptr_not_equal(z0->value, q->value);
	assert_ptr_equal(q->value, z1->value);
	assert_string_equal(z0->value, q->value);
	assert_true(q->quoted);
	assert_false(z1->quoted);
	assert_int_equal(q->value_len, 15);
	assert_string_equal(ynode_get(r->items[1], "e")->value, "");
	/* Keys too. */
	assert_ptr_equal(r->items[1]->keys[0]->value, r->items[2]->keys[0]->value);
	assert_int_equal(r->items[1]->len, 3);
	assert_ptr_equal(r->items[1]->items, r->items[1]->keys + 3);
	ydoc_free(doc);
	ws_diags_free(&d);
	/* A key's first copy (not interned) and its interned second copy are
	 * still one key twice. */
	expect_fail("{solo: 1, solo: 2}\n",
		    NULL, "y.yaml:1:11: duplicate key \"solo\" (first defined at 1:2)");
	expect_fail("[{k: 1}, {k: 1, k: 2}]\n",
		    NULL, "y.yaml:1:17: duplicate key \"k\" (first defined at 1:11)");
}

/* What a streaming reader saw. */
typedef struct seen {
	int values, items, taken;
	size_t last_index;
	char keys[256];
	const char *kept_text;   /* text of a taken item, read after the parse */
	ws_arena *strings;
} seen;

static void seen_value_cb(void *arg, const ydoc *doc, const ynode *key, const ynode *value)
{
	seen *s = arg;
	assert_string_equal(ydoc_name(doc), "y.yaml");
	s->values++;
	strncat(s->keys, key->value, sizeof(s->keys) - strlen(s->keys) - 2);
	strcat(s->keys, value->kind == YNODE_SEQ ? "[" : "=");
}

/* Takes the items of "take" (keeping the text of the last one), leaves
 * the others in the tree. */
static bool seen_item_cb(void *arg, const ydoc *doc, const ynode *key, size_t index,
			 const ynode *item)
{
	seen *s = arg;
	(void)doc;
	s->items++;
	s->last_index = index;
	if (strcmp(key->value, "take") != 0)
		return false;
	s->taken++;
	const ynode *name = ynode_get(item, "name");
	if (name)
		s->kept_text = name->value;
	return true;
}

static void test_stream(void **state)
{
	(void)state;
	ws_diags d;
	ws_diags_init(&d);
	seen s = { .strings = ws_arena_new() };
	ydoc_stream st = { .arg = &s, .value = seen_value_cb, .item = seen_item_cb,
			   .strings = s.strings };
	char text[8192];
	size_t off = (size_t)snprintf(text, sizeof(text), "head: 1\nkeep: [a, b]\ntake:\n");
	for (int i = 0; i < 100; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off,
					"  - {name: n%03d, list: [x, y, {z: %d}]}\n", i, i);
	snprintf(text + off, sizeof(text) - off, "tail: {t: 1}\n");
	ydoc *doc = ydoc_parse_stream("y.yaml", text, strlen(text), NULL, &st, &d);
	assert_non_null(doc);
	assert_int_equal(d.len, 0);
	assert_int_equal(s.values, 4);
	assert_string_equal(s.keys, "head=keep[take[tail=");
	assert_int_equal(s.items, 102);
	assert_int_equal(s.taken, 100);
	assert_int_equal(s.last_index, 99);
	const ynode *r = ydoc_root(doc);
	assert_int_equal(ynode_get(r, "keep")->len, 2);
	assert_string_equal(ynode_get(r, "keep")->items[1]->value, "b");
	const ynode *take = ynode_get(r, "take");
	assert_int_equal(take->kind, YNODE_SEQ);
	assert_int_equal(take->len, 0);   /* every item was taken */
	assert_int_equal(ynode_get(ynode_get(r, "tail"), "t")->line, 104);
	ydoc_free(doc);
	/* Text lives in the caller's arena, past the tree. */
	assert_string_equal(s.kept_text, "n099");
	ws_arena_free(s.strings);
	ws_diags_free(&d);
}

static void test_stream_stops_at_a_problem(void **state)
{
	(void)state;
	ws_diags d;
	ws_diags_init(&d);
	seen s = { 0 };
	ydoc_stream st = { .arg = &s, .value = seen_value_cb, .item = seen_item_cb };
	/* A problem in item 1: items from there on are not offered, and the
	 * parse still fails as a whole. */
	const char *text = "take:\n  - {name: a}\n  - {name: b, name: c}\n  - {name: d}\nz: 1\n";
	ydoc *doc = ydoc_parse_stream("y.yaml", text, strlen(text), NULL, &st, &d);
	assert_null(doc);
	assert_int_equal(s.taken, 1);
	assert_int_equal(s.values, 0);
	char *got = wt_diags_text(&d);
	assert_string_equal(got, "y.yaml:3:15: duplicate key \"name\" (first defined at 3:6)");
	free(got);
	ws_diags_free(&d);
	/* Only values of the root mapping, only items of its sequences. */
	memset(&s, 0, sizeof(s));
	ws_diags_init(&d);
	text = "- take: [1, 2]\n- 3\n";
	doc = ydoc_parse_stream("y.yaml", text, strlen(text), NULL, &st, &d);
	assert_non_null(doc);
	assert_int_equal(s.values + s.items, 0);
	ydoc_free(doc);
	/* Without a strings arena the text stays in the document's. */
	memset(&s, 0, sizeof(s));
	text = "take: [{name: a}, {name: b}]\n";
	doc = ydoc_parse_stream("y.yaml", text, strlen(text), NULL, &st, &d);
	assert_non_null(doc);
	assert_int_equal(s.taken, 2);
	assert_string_equal(s.kept_text, "b");
	ydoc_free(doc);
	ws_diags_free(&d);
}

/* A document (`head: HEAD`, then `n` list items (over 1 MiB for n = 40000, so parsed on two
 * threads), then `tail`.  Item i is on line i + 2. */
static char *big_doc(int n, const char *head, const char *tail)
{
	size_t cap = (size_t)n * 64 + strlen(head) + strlen(tail) + 64, off = 0;
	char *text = malloc(cap);
	assert_non_null(text);
	off += (size_t)snprintf(text, cap, "head: %s\ntake:\n", head);
	for (int i = 0; i < n; i++)
		off += (size_t)snprintf(text + off, cap - off,
					"  - {name: n%06d, list: [x, 'y', {z: %d}]}\n", i, i);
	snprintf(text + off, cap - off, "%s", tail);
	return text;
}

/* Large documents go through libyaml on a second thread: the same tree,
 * the same stream callbacks in the same order, the same diagnostics, and
 * an early stop (a refusal mid-document) neither hangs nor leaks. */
static void test_large_documents_on_two_threads(void **state)
{
	(void)state;
	const int n = 40000;
	ws_diags d;
	ws_diags_init(&d);
	char *text = big_doc(n, "1", "tail: {t: 1}\n");
	assert_true(strlen(text) > ((size_t)1 << 20));
	ydoc *doc = parse(text, NULL, &d);
	assert_non_null(doc);
	assert_int_equal(d.len, 0);
	const ynode *take = ynode_get(ydoc_root(doc), "take");
	assert_int_equal(take->len, n);
	const ynode *last = take->items[n - 1];
	assert_string_equal(ynode_get(last, "name")->value, "n039999");
	assert_int_equal(ynode_get(last, "name")->line, n + 2);
	assert_true(ynode_get(last, "list")->items[1]->quoted);
	assert_int_equal(ynode_get(ynode_get(ydoc_root(doc), "tail"), "t")->line, n + 3);
	ydoc_free(doc);

	/* Streamed: every item offered once, in order. */
	seen s = { .strings = ws_arena_new() };
	ydoc_stream st = { .arg = &s, .value = seen_value_cb, .item = seen_item_cb,
			   .strings = s.strings };
	doc = ydoc_parse_stream("y.yaml", text, strlen(text), NULL, &st, &d);
	assert_non_null(doc);
	assert_int_equal(s.items, n);
	assert_int_equal(s.taken, n);
	assert_int_equal(s.last_index, n - 1);
	assert_string_equal(s.kept_text, "n039999");
	assert_string_equal(s.keys, "head=take[tail=");
	ydoc_free(doc);
	ws_arena_free(s.strings);

	/* From a file too. */
	char path[] = "/tmp/ws-ydoc-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	doc = ydoc_parse_file(path, NULL, &d);
	assert_non_null(doc);
	assert_int_equal(ynode_get(ydoc_root(doc), "take")->len, n);
	ydoc_free(doc);
	unlink(path);
	free(text);
	ws_diags_free(&d);

	/* Problems at the end are placed exactly. */
	char want[128];
	text = big_doc(n, "1", "tail: [1, 2\n");
	snprintf(want, sizeof(want),
		 "y.yaml:%d:1: did not find expected ',' or ']' while parsing a flow sequence", n + 4);
	expect_fail(text, NULL, want);
	free(text);
	text = big_doc(n, "1", "tail: *x\n");
	snprintf(want, sizeof(want), "y.yaml:%d:7: aliases are not allowed (*x)", n + 3);
	expect_fail(text, NULL, want);
	free(text);
	text = big_doc(n, "1", "---\nother: 1\n");
	snprintf(want, sizeof(want), "y.yaml:%d:1: expected a single document, found another one",
		 n + 3);
	expect_fail(text, NULL, want);
	free(text);
	/* A refusal early in a large document stops the parse. */
	text = big_doc(n, "&a 1", "");
	expect_fail(text, NULL, "y.yaml:1:7: anchors are not allowed (&a)");
	free(text);
}

/* Parsing in chunks ------------------------------------------------------ */

/* The whole tree as text: kinds, positions, quoting and values. */
static void dump_node(FILE *fp, const ynode *n, int depth)
{
	fprintf(fp, "%*s%s %d:%d", depth * 2, "", ynode_kind_name(n), n->line, n->column);
	if (n->kind == YNODE_SCALAR) {
		fprintf(fp, " %s%u[", n->quoted ? "q" : "p", n->value_len);
		fwrite(n->value, 1, n->value_len, fp);
		fputs("]\n", fp);
		return;
	}
	fprintf(fp, " %u\n", n->len);
	for (uint32_t i = 0; i < n->len; i++) {
		if (n->kind == YNODE_MAP)
			dump_node(fp, n->keys[i], depth + 1);
		dump_node(fp, n->items[i], depth + 1);
	}
}

/* What a parse gave: the tree (or "no document") and the diagnostics as
 * text; the position of a refusal by libyaml's reader (bad UTF-8, a
 * control character) and of the last diagnostic, as line * 2^20 + column. */
typedef struct parsed {
	char *dump;
	bool failed;
	long reader, last;
} parsed;

/* libyaml's reader problems (a diagnostic's whole message). */
static const char *const reader_problems[] = {
	"invalid leading UTF-8 octet", "invalid trailing UTF-8 octet",
	"incomplete UTF-8 octet sequence", "invalid length of a UTF-8 sequence",
	"invalid Unicode character", "control characters are not allowed",
	"incomplete UTF-16 character", "unexpected low surrogate area",
	"incomplete UTF-16 surrogate pair", "input is too long",
};

static bool is_reader_problem(const char *message)
{
	for (size_t i = 0; i < sizeof(reader_problems) / sizeof(reader_problems[0]); i++)
		if (strcmp(message, reader_problems[i]) == 0)
			return true;
	return false;
}

static parsed parse_dump(const char *text, size_t len, const ydoc_limits *lim)
{
	ws_diags d;
	ws_diags_init(&d);
	ydoc *doc = ydoc_parse("c.yaml", text, len, lim, &d);
	parsed r = { .failed = !doc, .reader = -1, .last = -1 };
	size_t out_len = 0;
	FILE *fp = open_memstream(&r.dump, &out_len);
	assert_non_null(fp);
	if (!doc)
		fputs("no document\n", fp);
	else if (ydoc_root(doc))
		dump_node(fp, ydoc_root(doc), 0);
	char *diags = wt_diags_text(&d);
	fprintf(fp, "--\n%s\n", diags);
	free(diags);
	fclose(fp);
	for (size_t i = 0; i < d.len; i++) {
		long at = (long)d.items[i].line << 20 | d.items[i].column;
		if (at > r.last)
			r.last = at;
		if (r.reader < 0 && is_reader_problem(d.items[i].message))
			r.reader = at;
	}
	ydoc_free(doc);
	ws_diags_free(&d);
	return r;
}

static uint64_t rng_next(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 33;
}

/* Puts `head` at the start of every line of text[0..*len) and `tail`
 * before every line break. */
static void rewrite_lines(char **text, size_t *len, const char *head, const char *tail)
{
	size_t lines = 1, hl = strlen(head), tl = strlen(tail);
	for (size_t i = 0; i < *len; i++)
		lines += (*text)[i] == '\n';
	char *out = malloc(*len + lines * (hl + tl) + 1);
	assert_non_null(out);
	size_t o = 0;
	for (size_t i = 0; i < *len; i++) {
		if (i == 0 || (*text)[i - 1] == '\n') {
			memcpy(out + o, head, hl);
			o += hl;
		}
		if ((*text)[i] == '\n') {
			memcpy(out + o, tail, tl);
			o += tl;
		}
		out[o++] = (*text)[i];
	}
	out[o] = '\0';
	free(*text);
	*text = out;
	*len = o;
}

/* A random document made of what can fool a cut at "<C spaces>- ": lines
 * like entries inside quoted scalars, block scalars and flow collections,
 * nested and indentless sequences, comments, blank lines, more root keys
 * and documents, CRLF; and sometimes a mistake (unterminated quote, tab,
 * bad UTF-8, NUL, alias, duplicate key, bad indentation). */
static char *random_doc(uint64_t seed, size_t *len_out, bool mistakes)
{
	uint64_t s = seed;
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);
	assert_non_null(fp);
	/* entries at column 2 or 4, or (indentless) 0 */
	int c = (int)(rng_next(&s) % 6);
	c = c == 0 ? 0 : c == 1 ? 4 : 2;
	char in[16], in2[16], in4[16];
	snprintf(in, sizeof(in), "%*s", c, "");
	snprintf(in2, sizeof(in2), "%*s", c + 2, "");
	snprintf(in4, sizeof(in4), "%*s", c + 4, "");
	if (rng_next(&s) % 4 == 0)
		fputs("# a fleet\n", fp);
	bool tags = rng_next(&s) % 6 == 0;
	if (tags)
		fputs("%TAG !e! tag:yaml.org,2002:\n---\n", fp);
	else if (rng_next(&s) % 5 == 0)
		fputs("---\n", fp);
	fputs("head: 1\n", fp);
	int lists = 1 + (int)(rng_next(&s) % 2);
	for (int l = 0; l < lists; l++) {
		fprintf(fp, "list%d:\n", l);
		int n = 20 + (int)(rng_next(&s) % 60);
		for (int i = 0; i < n; i++) {
			switch (rng_next(&s) % 14) {
			case 0:
				fprintf(fp, "%s- \"quoted %d\n%s- fake entry\n%s end\"\n", in, i, in, in);
				break;
			case 1:
				fprintf(fp, "%s- 'single %d\n%s- fake\n\n%s- fake'\n", in, i, in, in);
				break;
			case 2:
				fprintf(fp, "%s- text: |\n%s- not an entry %d\n%s  more\n", in, in4, i, in4);
				break;
			case 3:
				fprintf(fp, "%s- keep: |+\n%sline %d\n\n\n", in, in4, i);
				break;
			case 4:
				fprintf(fp, "%s- [a%d,\n%s b]\n", in, i, in);
				break;
			case 5:
				fprintf(fp, "%s- k%d:\n%s- nested\n%s- again\n", in, i, in2, in2);
				break;
			case 6:
				fprintf(fp, "%s- m%d:\n%sl:\n%s- indentless\n", in, i, in2, in2);
				break;
			case 7:
				fprintf(fp, "%s# - a comment\n%s- plain %d\n%s continued\n\n", in, in, i, in2);
				break;
			case 8:
				fprintf(fp, "%s- {a: %d, b: [1,\n%s  2]}\n", in, i, in);
				break;
			case 9:
				fprintf(fp, "%s- >-\n%sfolded %d\n%s- folded too\n", in, in2, i, in2);
				break;
			case 10:
				fprintf(fp, tags ? "%s- !e!str %d\n" : "%s- !!str %d\n", in, i);
				break;
			default:
				fprintf(fp, "%s- name: n%d\n%sv: 'x'\n", in, i, in2);
				break;
			}
			if (mistakes && rng_next(&s) % 150 == 0) {
				switch (rng_next(&s) % 9) {
				case 0: fprintf(fp, "%s- \"never closed\n", in); break;
				case 1: fprintf(fp, "%s-\tx: 1\n", in); break;
				case 2: fprintf(fp, "%s- bad: \xff\n", in); break;
				case 3: fprintf(fp, "%s- \"nul \\0 here\"\n", in); break;
				case 4: fprintf(fp, "%s- *alias\n", in); break;
				case 5: fprintf(fp, "%s- {k: 1, k: 2}\n", in); break;
				case 6: fprintf(fp, "%s- a: 1\n%s b: 2\n", in, in); break;
				case 7: fprintf(fp, "%s- [x,\n%s- y]\n", in, in); break;
				default: fprintf(fp, "---\nsecond: 1\n"); break;
				}
			}
		}
		if (rng_next(&s) % 3 == 0)
			fprintf(fp, "between%d:\n%sx:\n%s- indentless %d\n", l, in, in, l);
	}
	if (rng_next(&s) % 2)
		fputs("tail: {t: 1}\n", fp);
	fclose(fp);
	if (rng_next(&s) % 6 == 0)
		rewrite_lines(&text, &len, "  ", "");   /* a root mapping at column 2 */
	if (rng_next(&s) % 4 == 0)
		rewrite_lines(&text, &len, "", "\r");   /* CRLF line breaks */
	*len_out = len;
	return text;
}

/* Cut anywhere, a document parses exactly as in one piece: the same tree,
 * positions and diagnostics, mistakes included.  One exception: libyaml's
 * reader decodes ahead of the parser and reports bad UTF-8 (or a control
 * character) up to 16 KiB before the parser gets there, so a parse in one
 * piece can stop at it before problems earlier in the text that a chunk,
 * which ends sooner, gets to report.  Then the document must be refused
 * too, with no problem placed past the reader's. */
static void test_chunks_match_one_parse(void **state)
{
	(void)state;
	static const size_t chunks[] = { 7, 16, 40, 101, 333, 1000 };
	const ydoc_limits one = { .max_threads = 1 };
	for (uint64_t seed = 1; seed <= 400; seed++) {
		size_t len;
		char *text = random_doc(seed, &len, seed % 2 == 0);
		parsed want = parse_dump(text, len, &one);
		for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
			const ydoc_limits lim = { .chunk_bytes = chunks[k] };
			parsed got = parse_dump(text, len, &lim);
			bool same = want.reader >= 0
					    ? got.failed && got.last >= 0 && got.last <= want.reader
					    : strcmp(got.dump, want.dump) == 0;
			if (!same)
				fail_msg("seed %llu, chunks of %zu bytes: the parse differs from one in one piece",
					 (unsigned long long)seed, chunks[k]);
			free(got.dump);
		}
		free(want.dump);
		free(text);
	}
}

/* A file in chunks: read whole, and a reader error (bad UTF-8 far into it)
 * placed as in one piece. */
static void test_chunks_of_a_file(void **state)
{
	(void)state;
	char *text = big_doc(3000, "1", "tail: \xff\n");
	char path[] = "/tmp/ws-ydoc-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	const ydoc_limits one = { .max_threads = 1 }, cut = { .chunk_bytes = 4096 };
	ws_diags d1, d2;
	ws_diags_init(&d1);
	ws_diags_init(&d2);
	assert_null(ydoc_parse_file(path, &one, &d1));
	assert_null(ydoc_parse_file(path, &cut, &d2));
	char *want = wt_diags_text(&d1), *got = wt_diags_text(&d2);
	assert_non_null(strstr(want, ":3003:7: "));
	assert_string_equal(got, want);
	free(want);
	free(got);
	ws_diags_free(&d1);
	ws_diags_free(&d2);
	unlink(path);
	free(text);
}

/* A reader error (bad UTF-8) in a file is placed like one in a buffer. */
static void test_parse_file_reader_error(void **state)
{
	(void)state;
	char path[] = "/tmp/ws-ydoc-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *fp = fdopen(fd, "w");
	assert_non_null(fp);
	fputs("a: 1\nb: [x, \xc3\xa9t\xc3\xa9]\nc: \xff\n", fp);
	fclose(fp);
	ws_diags d;
	ws_diags_init(&d);
	assert_null(ydoc_parse_file(path, NULL, &d));
	assert_int_equal(d.len, 1);
	assert_int_equal(d.items[0].line, 3);
	assert_int_equal(d.items[0].column, 4);
	assert_string_equal(d.items[0].message, "invalid leading UTF-8 octet");
	ws_diags_free(&d);
	unlink(path);
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
		cmocka_unit_test(test_duplicate_keys_order),
		cmocka_unit_test(test_interned_text),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_stream_stops_at_a_problem),
		cmocka_unit_test(test_parse_file_reader_error),
		cmocka_unit_test(test_large_documents_on_two_threads),
		cmocka_unit_test(test_chunks_match_one_parse),
		cmocka_unit_test(test_chunks_of_a_file),
	};
	return cmocka_run_group_tests_name("fleet/ydoc", tests, NULL, NULL);
}
