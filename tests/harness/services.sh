#!/usr/bin/env bash
# services.sh - PostgreSQL and Redis for the test suite, under one directory.
#
#   eval "$(tests/harness/services.sh start DIR)"
#       starts PostgreSQL in DIR/pg and Redis in DIR/redis (idempotent) and
#       prints, for eval:
#         export WS_TEST_PG_URL=...      libpq URI (database and user postgres)
#         export WS_TEST_PG_DIR=...      DIR/pg, for pg.sh restart and friends
#         export WS_TEST_REDIS_URL=...   unix:///.../redis.sock
#         export WS_TEST_REDIS_DIR=...   DIR/redis
#   services.sh stop DIR     stops both; kills leftovers of DIR only
#   services.sh restart DIR  stop then start (prints the exports again)
#   services.sh clean DIR    stops both and deletes DIR
#
# Only the export lines go to stdout; everything else goes to stderr.
set -euo pipefail
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
export WS_HARNESS_PROG=${WS_HARNESS_PROG:-services.sh}
. "$HERE/lib.sh"

USAGE_CMDS="start|stop|restart|clean"
harness_args services.sh "$USAGE_CMDS" "$@"

do_start() {
	local pg_url redis_url
	mkdir -p -- "$DIR" || die "cannot create directory $DIR"
	bash "$HERE/pg.sh" start "$DIR/pg" || exit 1
	if ! bash "$HERE/redis.sh" start "$DIR/redis"; then
		say "stopping PostgreSQL again because Redis did not start"
		bash "$HERE/pg.sh" stop "$DIR/pg" || true
		exit 1
	fi
	pg_url=$(bash "$HERE/pg.sh" url "$DIR/pg") || exit 1
	redis_url=$(bash "$HERE/redis.sh" url "$DIR/redis") || exit 1
	printf 'export WS_TEST_PG_URL=%q\n' "$pg_url"
	printf 'export WS_TEST_PG_DIR=%q\n' "$DIR/pg"
	printf 'export WS_TEST_REDIS_URL=%q\n' "$redis_url"
	printf 'export WS_TEST_REDIS_DIR=%q\n' "$DIR/redis"
}

do_stop() {
	local rc=0
	bash "$HERE/redis.sh" stop "$DIR/redis" || rc=1
	bash "$HERE/pg.sh" stop "$DIR/pg" || rc=1
	return $rc
}

case "$CMD" in
start) do_start ;;
stop) do_stop ;;
restart) do_stop; do_start ;;
clean)
	rc=0
	bash "$HERE/redis.sh" clean "$DIR/redis" || rc=1
	bash "$HERE/pg.sh" clean "$DIR/pg" || rc=1
	[ $rc = 0 ] && { rmdir -- "$DIR" 2>/dev/null || true; }
	exit $rc
	;;
*) harness_usage services.sh "$USAGE_CMDS" ;;
esac
