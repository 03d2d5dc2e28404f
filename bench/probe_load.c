/*
 * probe_load.c - health probes under load, for bench_probes.py.
 *
 *   probe_load [-n TARGETS] [-i INTERVAL_MS] [-T SECONDS] [-t TIMEOUT_MS]
 *              [-x EXPORTER_URL -P EXPORTER_PID] FLEET_URL
 *
 * Probes FLEET_URL/t/t1/health ... FLEET_URL/t/tN/health, each every
 * INTERVAL_MS, for SECONDS, then prints the figures as one JSON object.
 *
 * Without -x the probes are ours: one ws_prober on one ws_outbound, exactly
 * as the engine probes, and the CPU counted is this process's own
 * (getrusage).  With -x this program only drives the baseline: each probe is
 * a GET of EXPORTER_URL/probe?module=http_2xx&target=<the same URL> on
 * prometheus-blackbox-exporter, and the CPU counted is the exporter's
 * (/proc/EXPORTER_PID/stat utime + stime), read at the same two moments.
 *
 * Both sides follow the same schedule, so they do the same work at the same
 * rate: target i starts at i * INTERVAL_MS / N (adding all of them at once
 * would make the first probes one burst of N, which neither the engine --
 * waves start over time -- nor a Prometheus scraping with spread offsets
 * does), then probes every INTERVAL_MS from the start of its previous probe,
 * never two at once.  The rate is N per INTERVAL_MS from the first
 * millisecond.
 *
 * A probe counts when its answer arrives within the run; the ones still in
 * flight at the end are cancelled and not counted.  A probe succeeds on a 2xx
 * from the fleet; through the exporter, on an exporter answer of 200 whose
 * metrics say probe_success 1 with a 2xx probe_http_status_code (the
 * exporter answers 200 whatever the probe's outcome).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <curl/curl.h>
#include <uv.h>
#include "wavesched/health.h"
#include "wavesched/log.h"
#include "wavesched/outbound.h"

/* The driver's own margin over the exporter's probe time-out, so that a slow
 * probe is reported by the exporter rather than cut by the driver. */
#define DRIVER_EXTRA_TIMEOUT_MS 2000
/* An exporter answer is a page of metrics; anything much larger is wrong. */
#define EXPORTER_MAX_BYTES (64 * 1024)

typedef struct bench bench;

/* One target of the baseline driver (-x): the prober's schedule, redone
 * here because the exporter's verdict is in the body, which a ws_prober
 * does not hand over. */
typedef struct drv_target {
	uv_timer_t timer;
	bench *b;
	const char *url;       /* of the exporter's /probe */
	const char *target;    /* the fleet URL it probes */
	ws_outbound_call *call;
	uint64_t started;
} drv_target;

struct bench {
	uv_loop_t loop;
	ws_outbound *out;
	ws_prober *prober;          /* ours */
	drv_target *drv;            /* the driver's targets (-x) */
	uv_timer_t adder, stopper;
	/* settings */
	int n;
	uint64_t interval_ms, timeout_ms, seconds;
	const char *fleet, *exporter;
	int exporter_pid;
	/* the run */
	char **urls;                /* the fleet's health URLs */
	char **calls;               /* with -x: the exporter's /probe URLs for them */
	int added;
	uint64_t t0;
	bool stopped;
	int exit_code;
	/* figures */
	uint64_t probes, failures, answered;
	uint64_t latency_sum_us;
	char first_error[512];
	double cpu_start, cpu_end;      /* seconds: ours, or the exporter's */
	double self_cpu_start, self_cpu_end;
	double wall_start, wall_end;
};

static double rusage_self_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* utime + stime of another process, in seconds; -1 when it cannot be read
 * (the process is gone). */
static double proc_cpu_s(int pid)
{
	char path[64], buf[2048];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	/* The command name (field 2) may hold spaces and parentheses: the
	 * fields are counted from the last ')'.  utime and stime are fields 14
	 * and 15 (proc(5)), the 12th and 13th after the state. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	unsigned long long utime, stime;
	if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
		   &stime) != 2)
		return -1;
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double cpu_now(const bench *b)
{
	return b->exporter ? proc_cpu_s(b->exporter_pid) : rusage_self_s();
}

static void note_failure(bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_failure(bench *b, const char *fmt, ...)
{
	b->failures++;
	if (b->first_error[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b->first_error, sizeof(b->first_error), fmt, ap);
	va_end(ap);
}

/* ---- ours --------------------------------------------------------------- */

static void our_sample_cb(void *arg, ws_probe_target *t, const ws_health_sample *s)
{
	(void)t;
	bench *b = arg;
	if (b->stopped)
		return;
	b->probes++;
	if (s->answered) {
		b->answered++;
		b->latency_sum_us += s->latency_us;
	}
	if (s->answered && s->status >= 200 && s->status <= 299)
		return;
	if (s->answered)
		note_failure(b, "HTTP %d", s->status);
	else
		note_failure(b, "%s", s->error ? s->error : "no answer");
}

/* ---- the baseline driver ------------------------------------------------ */

static void drv_timer_cb(uv_timer_t *timer);

/* The exporter's verdict from its metrics page: the value of `name` at the
 * start of a line, or -1 when the page lacks it. */
static double metric_value(const char *page, const char *name)
{
	size_t nl = strlen(name);
	for (const char *p = page; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, name, nl) == 0 && p[nl] == ' ') {
			char *end;
			double v = strtod(p + nl + 1, &end);
			return end == p + nl + 1 ? -1 : v;
		}
	}
	return -1;
}

static void drv_done(void *arg, const ws_outbound_res *r)
{
	drv_target *t = arg;
	bench *b = t->b;
	t->call = NULL;
	if (b->stopped)
		return;
	b->probes++;
	if (r->reason != WS_OUT_OK) {
		note_failure(b, "%s", r->error);
	} else {
		b->answered++;
		b->latency_sum_us += r->latency_us;
		double success = metric_value(r->body, "probe_success");
		double code = metric_value(r->body, "probe_http_status_code");
		if (r->status != 200)
			note_failure(b, "the exporter answered HTTP %ld", r->status);
		else if (success != 1 || code < 200 || code > 299)
			note_failure(b, "the exporter's probe of %s failed: probe_success %g, "
				     "probe_http_status_code %g", t->target, success, code);
	}
	uint64_t elapsed = uv_now(&b->loop) - t->started;
	uv_timer_start(&t->timer, drv_timer_cb,
		       elapsed >= b->interval_ms ? 0 : b->interval_ms - elapsed, 0);
}

static void drv_timer_cb(uv_timer_t *timer)
{
	drv_target *t = timer->data;
	bench *b = t->b;
	t->started = uv_now(&b->loop);
	ws_outbound_req req = {
		.url = t->url,
		.timeout_ms = b->timeout_ms + DRIVER_EXTRA_TIMEOUT_MS,
		.max_bytes = EXPORTER_MAX_BYTES,
	};
	int rc = ws_outbound_request(b->out, &req, drv_done, t, &t->call);
	if (rc != 0) {
		fprintf(stderr, "probe_load: GET %s: cannot start the call (%s)\n", t->url,
			ws_strerror(rc));
		b->exit_code = 1;
		uv_stop(&b->loop);
	}
}

/* ---- the run ------------------------------------------------------------ */

static void start_target(bench *b, int i)
{
	if (!b->exporter) {
		if (!ws_prober_add(b->prober, b->urls[i], b->interval_ms, b->timeout_ms, our_sample_cb, b)) {
			fprintf(stderr, "probe_load: cannot add the target %s to the prober\n", b->urls[i]);
			b->exit_code = 1;
			uv_stop(&b->loop);
		}
		return;
	}
	drv_target *t = &b->drv[i];
	t->b = b;
	t->url = b->calls[i];
	t->target = b->urls[i];
	uv_timer_init(&b->loop, &t->timer);
	t->timer.data = t;
	uv_timer_start(&t->timer, drv_timer_cb, 0, 0);
}

/* Starts every target whose time has come (see the schedule above). */
static void adder_cb(uv_timer_t *timer)
{
	bench *b = timer->data;
	uint64_t elapsed = uv_now(&b->loop) - b->t0;
	while (b->added < b->n && !b->stopped &&
	       (uint64_t)b->added * b->interval_ms / (uint64_t)b->n <= elapsed)
		start_target(b, b->added++);
	if (b->added == b->n)
		uv_timer_stop(timer);
}

static void outbound_closed_cb(void *arg)
{
	(void)arg;
}

static void prober_closed_cb(void *arg)
{
	bench *b = arg;
	ws_outbound_close(b->out, outbound_closed_cb, NULL);
}

static void stopper_cb(uv_timer_t *timer)
{
	bench *b = timer->data;
	b->cpu_end = cpu_now(b);
	b->self_cpu_end = rusage_self_s();
	b->wall_end = (double)uv_hrtime() / 1e9;
	b->stopped = true;
	uv_close((uv_handle_t *)&b->adder, NULL);
	uv_close((uv_handle_t *)&b->stopper, NULL);
	if (b->exporter) {
		for (int i = 0; i < b->added; i++)
			uv_close((uv_handle_t *)&b->drv[i].timer, NULL);
		/* Cancels the calls in flight: their callbacks see `stopped`. */
		ws_outbound_close(b->out, outbound_closed_cb, NULL);
	} else {
		ws_prober_close(b->prober, prober_closed_cb, b);
	}
}

static char *target_url(const bench *b, int i)
{
	char *url;
	return asprintf(&url, "%s/t/t%d/health", b->fleet, i + 1) < 0 ? NULL : url;
}

static char *exporter_url(const bench *b, const char *target)
{
	char *url = NULL, *esc = curl_easy_escape(NULL, target, 0);
	if (!esc || asprintf(&url, "%s/probe?module=http_2xx&target=%s", b->exporter, esc) < 0)
		url = NULL;
	curl_free(esc);
	return url;
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || errno || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static void usage(void)
{
	fprintf(stderr, "usage: probe_load [-n TARGETS] [-i INTERVAL_MS] [-T SECONDS] [-t TIMEOUT_MS]\n"
			"                  [-x EXPORTER_URL -P EXPORTER_PID] FLEET_URL\n");
}

static int print_result(const bench *b)
{
	double wall = b->wall_end - b->wall_start;
	double cpu = b->cpu_end - b->cpu_start;
	json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:f, s:I, s:I, s:f, s:f, s:f, s:f, s:f}",
			      "side", b->exporter ? "exporter" : "wavesched",
			      "targets", (json_int_t)b->n,
			      "interval_ms", (json_int_t)b->interval_ms,
			      "timeout_ms", (json_int_t)b->timeout_ms,
			      "seconds", wall,
			      "probes", (json_int_t)b->probes,
			      "failures", (json_int_t)b->failures,
			      "probes_per_s", wall > 0 ? (double)b->probes / wall : 0.0,
			      "cpu_s", cpu,
			      "probes_per_cpu_s", cpu > 0 ? (double)b->probes / cpu : 0.0,
			      "mean_latency_ms", b->answered ? (double)b->latency_sum_us / (double)b->answered / 1000.0 : 0.0,
			      "driver_cpu_s", b->self_cpu_end - b->self_cpu_start);
	if (!o)
		return 1;
	json_object_set_new(o, "first_error", b->first_error[0] ? json_string(b->first_error) : json_null());
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s)
		return 1;
	printf("%s\n", s);
	free(s);
	return 0;
}

int main(int argc, char **argv)
{
	bench b = { .n = 10000, .interval_ms = 10000, .timeout_ms = 5000, .seconds = 30 };
	uint64_t v;
	int opt;
	while ((opt = getopt(argc, argv, "n:i:T:t:x:P:")) != -1) {
		switch (opt) {
		case 'n':
			if (!parse_u64(optarg, 1, 1000000, &v)) {
				fprintf(stderr, "probe_load: -n %s: the number of targets must be 1 to 1000000\n", optarg);
				return 2;
			}
			b.n = (int)v;
			break;
		case 'i':
			if (!parse_u64(optarg, 1, 86400000, &b.interval_ms)) {
				fprintf(stderr, "probe_load: -i %s: the interval must be 1 to 86400000 ms\n", optarg);
				return 2;
			}
			break;
		case 'T':
			if (!parse_u64(optarg, 1, 86400, &b.seconds)) {
				fprintf(stderr, "probe_load: -T %s: the duration must be 1 to 86400 s\n", optarg);
				return 2;
			}
			break;
		case 't':
			if (!parse_u64(optarg, 1, 600000, &b.timeout_ms)) {
				fprintf(stderr, "probe_load: -t %s: the time-out must be 1 to 600000 ms\n", optarg);
				return 2;
			}
			break;
		case 'x':
			b.exporter = optarg;
			break;
		case 'P':
			if (!parse_u64(optarg, 1, 1 << 30, &v)) {
				fprintf(stderr, "probe_load: -P %s: not a process id\n", optarg);
				return 2;
			}
			b.exporter_pid = (int)v;
			break;
		default:
			usage();
			return 2;
		}
	}
	if (optind != argc - 1 || (b.exporter && !b.exporter_pid)) {
		usage();
		return 2;
	}
	b.fleet = argv[optind];
	if (b.exporter && proc_cpu_s(b.exporter_pid) < 0) {
		fprintf(stderr, "probe_load: -P %d: cannot read /proc/%d/stat\n", b.exporter_pid,
			b.exporter_pid);
		return 1;
	}
	ws_log_set_level("warn");

	int rc = 1;
	ws_outbound_policy *policy = NULL;
	ws_diags d;
	ws_diags_init(&d);
	uv_loop_init(&b.loop);
	b.urls = calloc((size_t)b.n, sizeof(*b.urls));
	b.calls = b.exporter ? calloc((size_t)b.n, sizeof(*b.calls)) : NULL;
	if (!b.urls || (b.exporter && !b.calls))
		goto fail;
	for (int i = 0; i < b.n; i++) {
		if (!(b.urls[i] = target_url(&b, i)))
			goto fail;
		if (b.exporter && !(b.calls[i] = exporter_url(&b, b.urls[i])))
			goto fail;
	}
	/* Both the fleet and the exporter listen on loopback, which the
	 * default policy refuses. */
	policy = ws_outbound_policy_parse("127.0.0.0/8, ::1", NULL, &d);
	if (!policy || !(b.out = ws_outbound_new(&b.loop, policy, NULL, &d))) {
		for (size_t i = 0; i < d.len; i++)
			fprintf(stderr, "probe_load: %s\n", d.items[i].message);
		goto fail;
	}
	if (b.exporter)
		b.drv = calloc((size_t)b.n, sizeof(*b.drv));
	else
		b.prober = ws_prober_new(&b.loop, b.out);
	if (b.exporter ? !b.drv : !b.prober)
		goto fail_out;

	uv_timer_init(&b.loop, &b.adder);
	uv_timer_init(&b.loop, &b.stopper);
	b.adder.data = b.stopper.data = &b;
	uv_update_time(&b.loop);
	b.t0 = uv_now(&b.loop);
	b.cpu_start = cpu_now(&b);
	b.self_cpu_start = rusage_self_s();
	b.wall_start = (double)uv_hrtime() / 1e9;
	uv_timer_start(&b.adder, adder_cb, 0, 1);
	uv_timer_start(&b.stopper, stopper_cb, b.seconds * 1000, 0);
	uv_run(&b.loop, UV_RUN_DEFAULT);
	if (b.exit_code) {
		/* uv_stop mid-run: the handles are still open, so is the loop. */
		fprintf(stderr, "probe_load: stopped early\n");
		goto fail_urls;
	}
	if (b.cpu_end < 0 || b.cpu_start < 0) {
		fprintf(stderr, "probe_load: the exporter (pid %d) went away during the run\n",
			b.exporter_pid);
		goto fail_loop;
	}
	rc = print_result(&b);
fail_loop:
	if (uv_loop_close(&b.loop) != 0) {
		fprintf(stderr, "probe_load: handles left open on the loop\n");
		rc = 1;
	}
fail_urls:
	free(b.drv);
	for (int i = 0; b.urls && i < b.n; i++)
		free(b.urls[i]);
	for (int i = 0; b.calls && i < b.n; i++)
		free(b.calls[i]);
	free(b.urls);
	free(b.calls);
	ws_diags_free(&d);
	return rc;
fail_out:
	ws_outbound_close(b.out, NULL, NULL);
	uv_run(&b.loop, UV_RUN_DEFAULT);
	goto fail_loop;
fail:
	fprintf(stderr, "probe_load: out of memory or invalid settings\n");
	goto fail_loop;
}
