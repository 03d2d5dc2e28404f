/*
 * tx_load.c - the engine's commit path under load, for bench_transitions.py.
 *
 *   tx_load [-c CLIENTS] [-b BATCH] [-T SECONDS] [-d DEPLOYMENTS] URL
 *
 * Against a database migrated with `wavesched migrate`, makes a fleet, a
 * release, a policy and one running rollout per client (its own deployments,
 * so clients never conflict), takes the engine lease and then, for SECONDS,
 * drives deployments through ws_engine_tx over CLIENTS connections, BATCH
 * transitions per call.  Each deployment goes the way the engine takes it:
 *
 *   scheduled -> waiting_window -> deploying (+ outbox intent)
 *             -> verifying (+ outbox result) -> healthy
 *
 * one op per transition, a group of BATCH deployments taking one step per
 * call.  A transition is one deployment op committed; the outbox ops ride
 * along in the same calls and are counted apart.
 *
 * Each connection has one call in flight, as each connection of the engine's
 * pool does (and as each pgbench client does), so CLIENTS is comparable with
 * pgbench -c.  Latency is the time from sending a call to its result, which
 * includes the commit (every call is its own transaction).
 *
 * Afterwards the database must show exactly what the clients counted: one
 * audit row per op, one event per transition, each deployment in the state
 * its client left it in, the outbox rows, and an intact audit chain
 * (ws_audit_verify).  Any difference is an error (exit 1).  The figures go to
 * stdout as one JSON object.
 *
 * Blocking libpq is used for the set-up and the checks, and non-blocking
 * libpq with poll() for the load: this program has no libuv loop to keep
 * responsive, only its clients.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MAX_CLIENTS = 64, STEPS = 4 };

/* One step of the cycle: the transition and the event that names it. */
static const struct step {
	const char *from, *to, *event;
} steps[STEPS] = {
	{ "scheduled", "waiting_window", "wait" },
	{ "waiting_window", "deploying", "deploy" },
	{ "deploying", "verifying", "verify" },
	{ "verifying", "healthy", "healthy" },
};

typedef struct client {
	int no;
	PGconn *pg;
	long long rollout;
	long long *deps;       /* its deployments, in id order */
	long long *outbox;     /* the outbox id of each deployment of the group */
	int ndeps;
	int group;             /* first deployment of the group being moved */
	int step;              /* the step the group takes next (0..3) */
	bool busy;             /* a call is in flight (until its NULL result) */
	bool got_result;
	bool exhausted;
	double sent_at;
	/* what this client committed */
	long long calls, transitions, outbox_ops, outbox_done_ops;
	long long at_step[STEPS];   /* deployments that have taken step i (and no later one) */
} client;

typedef struct lat {
	double *v;
	size_t n, cap;
} lat;

static const char *prog = "tx_load";
static long long lease_epoch;   /* the term this run holds the engine lease for */
static const char *lease_url;   /* set while the lease is held */
static char lease_holder[64];

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void lat_add(lat *l, double v)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 4096;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		if (!l->v)
			die("out of memory for %zu latencies", l->cap);
	}
	l->v[l->n++] = v;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The q-quantile of sorted values (nearest rank). */
static double quantile(const lat *l, double q)
{
	if (l->n == 0)
		return 0;
	size_t i = (size_t)(q * (double)l->n);
	return l->v[i < l->n ? i : l->n - 1];
}

/* Frees the lease on every way out (die() included) so that the next run,
 * or a real engine, takes it at once instead of waiting for the term. */
static void lease_release_atexit(void)
{
	if (!lease_url)
		return;
	const char *url = lease_url;
	lease_url = NULL;
	PGconn *pg = PQconnectdb(url);
	char ep[32];
	snprintf(ep, sizeof(ep), "%lld", lease_epoch);
	const char *p[] = { lease_holder, ep };
	PGresult *r = PQstatus(pg) == CONNECTION_OK
		? PQexecParams(pg, "SELECT ws_lease_release($1, $2::bigint)", 2, NULL, p, NULL, NULL, 0) : NULL;
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fprintf(stderr, "%s: could not release the engine lease of %s: %s", prog, lease_holder,
			r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
	PQclear(r);
	PQfinish(pg);
}

/* ---- blocking helpers for set-up and checks ------------------------------------ */

/* Runs sql, dying with the server's message and where it came from. */
static PGresult *q(PGconn *pg, const char *what, const char *sql, int n, const char *const *params)
{
	PGresult *r = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		die("%s failed (SQLSTATE %s): %s", what, state ? state : "?", PQresultErrorMessage(r));
	}
	return r;
}

static long long q_int(PGconn *pg, const char *what, const char *sql, int n, const char *const *params)
{
	PGresult *r = q(pg, what, sql, n, params);
	if (PQntuples(r) < 1 || PQgetisnull(r, 0, 0))
		die("%s: no value", what);
	long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

static PGconn *connect_db(const char *url)
{
	PGconn *pg = PQconnectdb(url);
	if (PQstatus(pg) != CONNECTION_OK)
		die("cannot connect to %s: %s", url, PQerrorMessage(pg));
	return pg;
}

/* ---- fixture ------------------------------------------------------------------------ */

/* A fleet of ndeps tenants per client (shared by every run on this
 * database), a release and a policy of this run, and per client a rollout
 * with one wave and a deployment for each of its own tenants (a tenant is
 * deployed by one rollout at a time: migration 0016 refuses two), all
 * created scheduled.  The rollouts and waves are
 * then started through ws_engine_tx itself, as the engine would. */
static void fixture(PGconn *pg, client *cl, int nclients, int ndeps, const char *tag, long long epoch)
{
	char n[32], ep[32], all[32];
	snprintf(n, sizeof(n), "%d", ndeps);
	snprintf(all, sizeof(all), "%d", ndeps * nclients);
	snprintf(ep, sizeof(ep), "%lld", epoch);
	PQclear(q(pg, "BEGIN", "BEGIN", 0, NULL));
	PQclear(q(pg, "creating the cluster",
		  "INSERT INTO clusters (name, hosting) VALUES ('txload', 'shared') ON CONFLICT (name) DO NOTHING",
		  0, NULL));
	const char *pn[] = { all };
	PQclear(q(pg, "creating the tenants",
		  "INSERT INTO tenants (slug, name, cluster_id, criticality, timezone, version)"
		  " SELECT format('txl-%s', g), format('tx_load tenant %s', g), c.id, 'standard', 'UTC', '1.0.0'"
		  "   FROM generate_series(1, $1::integer) g, clusters c WHERE c.name = 'txload'"
		  " ON CONFLICT (slug) DO NOTHING",
		  1, pn));
	const char *pt[] = { tag };
	PQclear(q(pg, "creating the release",
		  "INSERT INTO releases (version, digest, created_by)"
		  " VALUES ($1, 'sha256:' || encode(sha256(convert_to($1, 'UTF8')), 'hex'), 'tx_load')",
		  1, pt));
	PQclear(q(pg, "storing the policy",
		  "SELECT ws_policy_store('txload', b, encode(sha256(convert_to(b, 'UTF8')), 'hex'),"
		  "                       'tx_load fixture', 'tx_load')"
		  "  FROM (VALUES ('name: txload' || chr(10))) v(b)",
		  0, NULL));
	for (int i = 0; i < nclients; i++) {
		char first[32];
		snprintf(first, sizeof(first), "%d", i * ndeps + 1);
		const char *p[] = { tag, n, first };
		PGresult *r = q(pg, "creating a rollout",
			"WITH ro AS (INSERT INTO rollouts (release_id, policy_id, policy_sha256, created_by)"
			"            SELECT rel.id, p.id, p.sha256, 'tx_load' FROM releases rel,"
			"              (SELECT id, sha256 FROM policies WHERE name = 'txload' ORDER BY version DESC LIMIT 1) p"
			"             WHERE rel.version = $1 RETURNING id),"
			" pl AS (INSERT INTO rollout_plans (rollout_id, version, plan, sha256, reason, created_by)"
			"        SELECT ro.id, 1, '{\"waves\":[]}', encode(sha256('{\"waves\":[]}'::bytea), 'hex'),"
			"               'created', 'tx_load' FROM ro),"
			" w AS (INSERT INTO waves (rollout_id, idx, name) SELECT ro.id, 0, 'all' FROM ro"
			"       RETURNING id, rollout_id),"
			" d AS (INSERT INTO deployments (rollout_id, wave_id, tenant_id, slug, target_version,"
			"                                previous_version)"
			"       SELECT w.rollout_id, w.id, t.id, t.slug, $1, t.version FROM w, tenants t"
			"        WHERE t.slug LIKE 'txl-%' AND substr(t.slug, 5)::integer >= $3::integer"
			"          AND substr(t.slug, 5)::integer < $3::integer + $2::integer)"
			" SELECT ro.id, w.id FROM ro, w",
			3, p);
		if (PQntuples(r) != 1)
			die("creating the rollout of client %d: the release or the policy is missing", i);
		cl[i].rollout = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		long long wave = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
		PQclear(r);
		char ops[512], rid[32];
		snprintf(ops, sizeof(ops),
			 "[{\"op\":\"rollout\",\"id\":%lld,\"from\":\"planned\",\"to\":\"approved\",\"event\":\"approve\"},"
			 "{\"op\":\"rollout\",\"id\":%lld,\"from\":\"approved\",\"to\":\"running\",\"event\":\"start\"},"
			 "{\"op\":\"wave\",\"id\":%lld,\"from\":\"pending\",\"to\":\"backup_check\",\"event\":\"check_backups\"},"
			 "{\"op\":\"wave\",\"id\":%lld,\"from\":\"backup_check\",\"to\":\"deploying\",\"event\":\"deploy\"}]",
			 cl[i].rollout, cl[i].rollout, wave, wave);
		const char *pe[] = { ep, ops };
		PQclear(q(pg, "starting a rollout", "SELECT ws_engine_tx($1::bigint, $2::jsonb)", 2, pe));
		snprintf(rid, sizeof(rid), "%lld", cl[i].rollout);
		const char *pr[] = { rid };
		r = q(pg, "listing deployments", "SELECT id FROM deployments WHERE rollout_id = $1 ORDER BY id", 1, pr);
		cl[i].ndeps = PQntuples(r);
		if (cl[i].ndeps != ndeps)
			die("rollout %lld has %d deployments, expected %d", cl[i].rollout, cl[i].ndeps, ndeps);
		cl[i].deps = calloc((size_t)ndeps, sizeof(*cl[i].deps));
		if (!cl[i].deps)
			die("out of memory");
		for (int k = 0; k < ndeps; k++)
			cl[i].deps[k] = strtoll(PQgetvalue(r, k, 0), NULL, 10);
		PQclear(r);
	}
	PQclear(q(pg, "COMMIT", "COMMIT", 0, NULL));
}

/* ---- the load ------------------------------------------------------------------------ */

static void rfc3339_now(char *buf, size_t size)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The ops of the client's next call: its group of at most `batch`
 * deployments takes one step.  Returns NULL when the client has no
 * deployment left. */
static char *next_ops(client *c, int batch, int *ntrans)
{
	if (c->group >= c->ndeps)
		return NULL;
	int n = c->ndeps - c->group < batch ? c->ndeps - c->group : batch;
	const struct step *s = &steps[c->step];
	char at[40];
	rfc3339_now(at, sizeof(at));
	json_t *ops = json_array();
	for (int k = 0; k < n; k++) {
		json_int_t id = c->deps[c->group + k];
		json_t *op = json_pack("{s:s, s:I, s:s, s:s, s:s, s:s}", "op", "deployment", "id", id,
				       "from", s->from, "to", s->to, "event", s->event, "at", at);
		if (c->step == 1)
			json_object_set_new(op, "set", json_pack("{s:i, s:s}", "attempt", 1, "started_at", at));
		else if (c->step == 3)
			json_object_set_new(op, "set", json_pack("{s:s}", "ended_at", at));
		json_array_append_new(ops, op);
		if (c->step == 1)
			json_array_append_new(ops, json_pack("{s:s, s:I, s:s, s:i, s:{s:s, s:s}}", "op", "outbox",
							     "deployment", id, "kind", "deploy", "attempt", 1,
							     "request", "version", "tx-load", "url",
							     "http://127.0.0.1:9/deploy"));
		else if (c->step == 2)
			json_array_append_new(ops, json_pack("{s:s, s:I, s:s, s:{s:i}}", "op", "outbox_done",
							     "id", (json_int_t)c->outbox[k], "state", "done",
							     "result", "status", 200));
	}
	char *text = json_dumps(ops, JSON_COMPACT);
	json_decref(ops);
	if (!text)
		die("cannot encode the ops of client %d", c->no);
	*ntrans = n;
	return text;
}

static void send_next(client *c, int batch)
{
	int n;
	char *ops = next_ops(c, batch, &n);
	if (!ops) {
		c->exhausted = true;
		return;
	}
	char ep[32];
	snprintf(ep, sizeof(ep), "%lld", lease_epoch);
	const char *p[] = { ep, ops };
	c->sent_at = now_s();
	if (!PQsendQueryParams(c->pg, "SELECT ws_engine_tx($1::bigint, $2::jsonb)", 2, NULL, p, NULL, NULL, 0))
		die("client %d: cannot send: %s", c->no, PQerrorMessage(c->pg));
	free(ops);
	c->busy = true;
	c->got_result = false;
}

/* The result of the client's call: a committed step, or the end of the run
 * (a failed call is a bug of this program or of ws_engine_tx: we stop). */
static void on_result(client *c, PGresult *r, int batch, lat *l)
{
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		die("client %d: ws_engine_tx failed at step %s -> %s (SQLSTATE %s): %s", c->no,
		    steps[c->step].from, steps[c->step].to, state ? state : "?", PQresultErrorMessage(r));
	}
	lat_add(l, now_s() - c->sent_at);
	int n = c->ndeps - c->group < batch ? c->ndeps - c->group : batch;
	if (c->step == 1) {
		/* the outbox ids, for the results committed in the next step */
		json_error_t err;
		json_t *res = json_loads(PQgetvalue(r, 0, 0), 0, &err);
		if (!json_is_array(res) || json_array_size(res) != (size_t)(2 * n))
			die("client %d: unexpected ws_engine_tx result (line %d: %s): %.200s", c->no, err.line,
			    res ? "not an array of one result per op" : err.text, PQgetvalue(r, 0, 0));
		for (int k = 0; k < n; k++) {
			json_t *id = json_object_get(json_array_get(res, (size_t)(2 * k + 1)), "id");
			if (!json_is_integer(id))
				die("client %d: the result of outbox op %d has no id: %.200s", c->no, 2 * k + 2,
				    PQgetvalue(r, 0, 0));
			c->outbox[k] = (long long)json_integer_value(id);
		}
		json_decref(res);
	}
	c->calls++;
	c->transitions += n;
	c->outbox_ops += c->step == 1 ? n : 0;
	c->outbox_done_ops += c->step == 2 ? n : 0;
	if (c->step > 0)
		c->at_step[c->step - 1] -= n;
	c->at_step[c->step] += n;
	if (++c->step == STEPS) {
		c->step = 0;
		c->group += n;
	}
}

/* Reads what arrived on a client's connection.  The call is over at the
 * NULL result that follows its one result; until then more input may be
 * needed, and PQgetResult would block, so it is only called while libpq has
 * a whole message. */
static void on_readable(client *c, int batch, lat *l)
{
	if (!PQconsumeInput(c->pg))
		die("client %d: connection lost: %s", c->no, PQerrorMessage(c->pg));
	while (c->busy && !PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);
		if (!r) {
			if (!c->got_result)
				die("client %d: the call ended without a result", c->no);
			c->busy = false;
			break;
		}
		if (c->got_result)
			die("client %d: a second result for one call: %s", c->no, PQresStatus(PQresultStatus(r)));
		on_result(c, r, batch, l);
		c->got_result = true;
		PQclear(r);
	}
}

static void run(client *cl, int nclients, int batch, double seconds, lat *l, double *elapsed)
{
	struct pollfd pfd[MAX_CLIENTS];
	double start = now_s(), deadline = start + seconds;
	for (int i = 0; i < nclients; i++)
		send_next(&cl[i], batch);
	for (;;) {
		int active = 0;
		for (int i = 0; i < nclients; i++) {
			/* an idle connection is left out (a negative fd is ignored) */
			pfd[i].fd = cl[i].busy ? PQsocket(cl[i].pg) : -1;
			pfd[i].events = POLLIN;
			pfd[i].revents = 0;
			if (!cl[i].busy)
				continue;
			active++;
			int f = PQflush(cl[i].pg);
			if (f < 0)
				die("client %d: cannot send: %s", i, PQerrorMessage(cl[i].pg));
			if (f == 1)
				pfd[i].events |= POLLOUT;
		}
		if (active == 0)
			break;
		if (poll(pfd, (nfds_t)nclients, 1000) < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		double t = now_s();
		for (int i = 0; i < nclients; i++) {
			if (!cl[i].busy || !(pfd[i].revents & (POLLIN | POLLERR | POLLHUP)))
				continue;
			on_readable(&cl[i], batch, l);
			if (!cl[i].busy && t < deadline)
				send_next(&cl[i], batch);
		}
	}
	*elapsed = now_s() - start;
}

/* ---- checks --------------------------------------------------------------------------- */

static int check(PGconn *pg, const client *cl, int nclients, long long audit0, long long events0)
{
	int bad = 0;
	long long trans = 0, ob = 0, obd = 0;
	for (int i = 0; i < nclients; i++) {
		trans += cl[i].transitions;
		ob += cl[i].outbox_ops;
		obd += cl[i].outbox_done_ops;
	}
	long long audit = q_int(pg, "counting audit rows", "SELECT count(*) FROM audit_log", 0, NULL) - audit0;
	long long events = q_int(pg, "counting events", "SELECT count(*) FROM events", 0, NULL) - events0;
	if (audit != trans + ob + obd) {
		fprintf(stderr, "%s: %lld audit rows were added, the clients committed %lld ops\n", prog, audit,
			trans + ob + obd);
		bad = 1;
	}
	if (events != trans) {
		fprintf(stderr, "%s: %lld events were added, the clients committed %lld transitions\n", prog,
			events, trans);
		bad = 1;
	}
	for (int i = 0; i < nclients; i++) {
		char rid[32];
		snprintf(rid, sizeof(rid), "%lld", cl[i].rollout);
		const char *p[] = { rid };
		PGresult *r = q(pg, "counting deployment states",
				"SELECT count(*) FILTER (WHERE state = 'waiting_window'),"
				"       count(*) FILTER (WHERE state = 'deploying'),"
				"       count(*) FILTER (WHERE state = 'verifying'),"
				"       count(*) FILTER (WHERE state = 'healthy'),"
				"       (SELECT count(*) FROM outbox o WHERE o.rollout_id = $1),"
				"       (SELECT count(*) FROM outbox o WHERE o.rollout_id = $1 AND o.state = 'done')"
				"  FROM deployments WHERE rollout_id = $1",
				1, p);
		for (int s = 0; s < STEPS; s++) {
			long long got = strtoll(PQgetvalue(r, 0, s), NULL, 10);
			if (got != cl[i].at_step[s]) {
				fprintf(stderr, "%s: rollout %lld has %lld deployments %s, client %d left %lld there\n",
					prog, cl[i].rollout, got, steps[s].to, i, cl[i].at_step[s]);
				bad = 1;
			}
		}
		long long got_ob = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
		long long got_obd = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
		if (got_ob != cl[i].outbox_ops || got_obd != cl[i].outbox_done_ops) {
			fprintf(stderr, "%s: rollout %lld has %lld outbox rows (%lld done), client %d committed %lld (%lld)\n",
				prog, cl[i].rollout, got_ob, got_obd, i, cl[i].outbox_ops, cl[i].outbox_done_ops);
			bad = 1;
		}
		PQclear(r);
	}
	PGresult *r = q(pg, "verifying the audit chain",
			"SELECT ok, checked, coalesce(problem, '') FROM ws_audit_verify()", 0, NULL);
	if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
		fprintf(stderr, "%s: the audit chain is broken after %s rows: %s\n", prog, PQgetvalue(r, 0, 1),
			PQgetvalue(r, 0, 2));
		bad = 1;
	}
	PQclear(r);
	return bad;
}

static void usage(void)
{
	fprintf(stderr, "usage: %s [-c CLIENTS] [-b BATCH] [-T SECONDS] [-d DEPLOYMENTS] URL\n"
			"  URL          a libpq URI of a database migrated with `wavesched migrate`\n"
			"  -c CLIENTS   connections, one call in flight each (default 1, max %d)\n"
			"  -b BATCH     transitions per ws_engine_tx call (default 1)\n"
			"  -T SECONDS   how long to send calls (default 10)\n"
			"  -d N         deployments per client (default 20000); the run fails when\n"
			"               a client moves them all to healthy before SECONDS end\n",
		prog, MAX_CLIENTS);
	exit(2);
}

static long parse_num(const char *s, const char *what, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "%s: %s must be a whole number from %ld to %ld, not \"%s\"\n", prog, what, lo, hi, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	int nclients = 1, batch = 1, ndeps = 20000;
	double seconds = 10;
	int opt;
	while ((opt = getopt(argc, argv, "c:b:T:d:h")) != -1) {
		switch (opt) {
		case 'c': nclients = (int)parse_num(optarg, "-c", 1, MAX_CLIENTS); break;
		case 'b': batch = (int)parse_num(optarg, "-b", 1, 10000); break;
		case 'T': seconds = (double)parse_num(optarg, "-T", 1, 3000); break;
		case 'd': ndeps = (int)parse_num(optarg, "-d", 1, 10000000); break;
		default: usage();
		}
	}
	if (optind != argc - 1)
		usage();
	const char *url = argv[optind];

	PGconn *pg = connect_db(url);
	if (q_int(pg, "looking for the engine tables",
		  "SELECT count(*) FROM pg_proc WHERE proname = 'ws_engine_tx'", 0, NULL) != 1)
		die("%s has no ws_engine_tx: run `wavesched migrate` on it first", url);

	/* The lease outlives the run with room to spare; it is released at the
	 * end so that a later run (or a real engine) takes it at once. */
	char ttl[32], tag[64];
	snprintf(lease_holder, sizeof(lease_holder), "tx_load-%ld", (long)getpid());
	long ttl_ms = (long)(seconds + 600) * 1000;
	snprintf(ttl, sizeof(ttl), "%ld", ttl_ms > 3600000 ? 3600000 : ttl_ms);
	const char *pl[] = { lease_holder, ttl };
	PGresult *r = q(pg, "taking the lease", "SELECT epoch, leader, remaining_ms, holder FROM ws_lease_acquire($1, $2)",
			2, pl);
	if (strcmp(PQgetvalue(r, 0, 1), "t") != 0)
		die("the engine lease is held by %s for %s ms more: stop that engine first", PQgetvalue(r, 0, 3),
		    PQgetvalue(r, 0, 2));
	lease_epoch = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	lease_url = url;
	atexit(lease_release_atexit);

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(tag, sizeof(tag), "txload-%ld-%lld", (long)getpid(), (long long)ts.tv_sec);
	client cl[MAX_CLIENTS];
	memset(cl, 0, sizeof(cl));
	fixture(pg, cl, nclients, ndeps, tag, lease_epoch);
	for (int i = 0; i < nclients; i++) {
		cl[i].no = i;
		cl[i].outbox = calloc((size_t)batch, sizeof(*cl[i].outbox));
		if (!cl[i].outbox)
			die("out of memory");
		cl[i].pg = connect_db(url);
		if (PQsetnonblocking(cl[i].pg, 1) != 0)
			die("client %d: %s", i, PQerrorMessage(cl[i].pg));
	}
	/* Fresh statistics, so that the plans ws_engine_tx prepares on each
	 * connection's first call are made for the fixture's table sizes. */
	PQclear(q(pg, "ANALYZE", "ANALYZE deployments, tenants, outbox, audit_log, events", 0, NULL));
	long long audit0 = q_int(pg, "counting audit rows", "SELECT count(*) FROM audit_log", 0, NULL);
	long long events0 = q_int(pg, "counting events", "SELECT count(*) FROM events", 0, NULL);

	lat l = { 0 };
	double elapsed;
	run(cl, nclients, batch, seconds, &l, &elapsed);

	long long calls = 0, trans = 0, ops = 0;
	int exhausted = -1;
	for (int i = 0; i < nclients; i++) {
		calls += cl[i].calls;
		trans += cl[i].transitions;
		ops += cl[i].transitions + cl[i].outbox_ops + cl[i].outbox_done_ops;
		if (cl[i].exhausted)
			exhausted = i;
		PQfinish(cl[i].pg);
	}
	if (exhausted >= 0)
		die("client %d moved all its %d deployments before %.0f s were over: raise -d", exhausted, ndeps,
		    seconds);
	int bad = check(pg, cl, nclients, audit0, events0);
	PQfinish(pg);
	lease_release_atexit();

	qsort(l.v, l.n, sizeof(*l.v), cmp_double);
	json_t *out = json_pack("{s:i, s:i, s:f, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:b}",
				"clients", nclients, "batch", batch, "seconds", elapsed,
				"calls", (json_int_t)calls, "transitions", (json_int_t)trans, "ops", (json_int_t)ops,
				"transitions_per_s", (double)trans / elapsed, "calls_per_s", (double)calls / elapsed,
				"ops_per_s", (double)ops / elapsed,
				"p50_ms", quantile(&l, 0.50) * 1000, "p99_ms", quantile(&l, 0.99) * 1000,
				"verified", !bad);
	json_dumpf(out, stdout, JSON_COMPACT);
	putchar('\n');
	json_decref(out);
	free(l.v);
	for (int i = 0; i < nclients; i++) {
		free(cl[i].deps);
		free(cl[i].outbox);
	}
	return bad;
}
