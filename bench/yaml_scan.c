/*
 * yaml_scan.c - the baseline of bench_plan.py: a bare libyaml event scan of
 * a file (parse every event, keep nothing).  Planning cannot be faster than
 * reading its input, so the plan's time is reported as a multiple of this.
 */
#include <stdio.h>
#include <yaml.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: yaml_scan FILE\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "rb");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	yaml_parser_t p;
	yaml_parser_initialize(&p);
	yaml_parser_set_input_file(&p, f);
	unsigned long events = 0;
	int rc = 0;
	for (;;) {
		yaml_event_t e;
		if (!yaml_parser_parse(&p, &e)) {
			fprintf(stderr, "%s:%zu:%zu: %s\n", argv[1], p.problem_mark.line + 1,
				p.problem_mark.column + 1, p.problem);
			rc = 1;
			break;
		}
		events++;
		int done = e.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&e);
		if (done)
			break;
	}
	yaml_parser_delete(&p);
	fclose(f);
	printf("%lu events\n", events);
	return rc;
}
