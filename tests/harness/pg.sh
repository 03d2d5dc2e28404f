#!/usr/bin/env bash
# pg.sh - a throw-away PostgreSQL for tests, on a unix socket only.
#
#   pg.sh start DIR    initdb when needed, start, wait until ready (idempotent)
#   pg.sh stop DIR     fast shutdown; kills leftovers of DIR (and only of DIR)
#   pg.sh restart DIR  stop then start
#   pg.sh url DIR      prints a libpq URI: database postgres, user postgres
#   pg.sh status DIR   exit 0 when the server of DIR accepts connections
#   pg.sh clean DIR    stop, then delete DIR and anything it pointed to
#
# Layout of DIR: data/ (PGDATA), initdb.log, server.log, pg_ctl.log, the socket
# sock/.s.PGSQL.5432 (or, when DIR is too deep for a socket path, in a short
# /tmp directory named in DIR/sockdir).  As root the server
# runs as 'nobody'; when 'nobody' cannot reach DIR, the data lives in
# mktemp -d /tmp/wavesched-pg.XXXXXX and DIR is a symlink to it.
# The initdb/pg_ctl used: $PG_BINDIR, else `pg_config --bindir` when it has
# initdb, else the newest /usr/lib/postgresql/*/bin.
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

PG_PORT=5432

find_bindir() {
	local d
	if [ -n "${PG_BINDIR:-}" ]; then
		[ -x "$PG_BINDIR/initdb" ] || die "PG_BINDIR=$PG_BINDIR has no initdb"
		printf '%s\n' "$PG_BINDIR"
		return
	fi
	# Debian's pg_config comes from libpq-dev and may answer /usr/bin, where
	# there is no initdb: only trust it when initdb is really there.
	if command -v pg_config >/dev/null 2>&1; then
		d=$(pg_config --bindir 2>/dev/null || true)
		if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			printf '%s\n' "$d"
			return
		fi
	fi
	d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	if [ -n "$d" ] && [ -x "$d/initdb" ]; then
		printf '%s\n' "$d"
		return
	fi
	die "cannot find initdb: install the PostgreSQL server (postgresql-15) or set PG_BINDIR"
}

# as_server CMD...: runs CMD as the server's user, from the data directory's
# parent (root's working directory may be closed to 'nobody').
as_server() {
	(cd -- "$REAL" && "${RUNAS[@]}" "$@" 9>&-)
}

sock_dir() {
	short_sock_dir "$REAL" sockdir wavesched-pgsock ".s.PGSQL.$PG_PORT" "$REAL/sock"
}

is_running() {
	[ -f "$REAL/data/PG_VERSION" ] || return 1
	as_server "$BINDIR/pg_ctl" -D "$REAL/data" status >/dev/null 2>&1
}

do_init() {
	local sock
	if [ -f "$REAL/data/PG_VERSION" ]; then
		return 0
	fi
	if [ -e "$REAL/data" ]; then
		say "removing the remains of an earlier, unfinished initdb in $DIR/data"
		safe_rm_tree "$REAL/data"
	fi
	if ! as_server "$BINDIR/initdb" -D "$REAL/data" -A trust -U postgres -E UTF8 \
		--locale=C --no-sync >"$REAL/initdb.log" 2>&1; then
		die "initdb failed: see $DIR/initdb.log"
	fi
	sock=$(sock_dir)
	# Settings live in the configuration rather than on the command line so a
	# plain pg_ctl restart keeps them.  Unix socket only; speed over safety.
	cat >>"$REAL/data/postgresql.conf" <<-EOF

	# --- wavesched test harness ---
	listen_addresses = ''
	port = $PG_PORT
	unix_socket_directories = '$sock'
	unix_socket_permissions = 0777
	fsync = off
	synchronous_commit = off
	full_page_writes = off
	shared_buffers = 16MB
	max_connections = 100
	logging_collector = off
	log_line_prefix = '%m [%p] '
	EOF
}

do_start() {
	local sock i
	do_init
	sock=$(sock_dir)
	if [ ${#RUNAS[@]} -gt 0 ]; then
		chown "$WS_RUN_USER:$WS_RUN_GROUP" -- "$sock"
	fi
	if ! is_running; then
		if ! as_server "$BINDIR/pg_ctl" -D "$REAL/data" -l "$REAL/server.log" \
			-w -t 60 -s start >/dev/null 2>>"$REAL/pg_ctl.log"; then
			tail -n 15 -- "$REAL/pg_ctl.log" "$REAL/server.log" >&2 2>/dev/null || true
			die "PostgreSQL failed to start: see $DIR/server.log"
		fi
	fi
	for ((i = 0; i < 300; i++)); do
		if "$BINDIR/pg_isready" -q -h "$sock" -p "$PG_PORT" -U postgres -d postgres -t 1; then
			return 0
		fi
		sleep 0.1
	done
	die "PostgreSQL is running but does not accept connections on $sock: see $DIR/server.log"
}

do_stop() {
	local pids
	[ -d "$REAL/data" ] || return 0
	if is_running; then
		if ! as_server "$BINDIR/pg_ctl" -D "$REAL/data" -m fast -w -t 30 -s stop >/dev/null 2>&1; then
			say "pg_ctl stop failed for $DIR; killing its processes"
		fi
	fi
	# Whatever still runs in this data directory is a leftover of ours.
	pids=$(pids_with_cwd "$REAL/data" postgres)
	if [ -n "$pids" ]; then
		# shellcheck disable=SC2086
		kill_pids 10 $pids
	fi
}

do_url() {
	[ -f "$REAL/data/PG_VERSION" ] || die "no database in $DIR: run 'pg.sh start $DIR' first"
	printf 'postgresql:///postgres?host=%s&port=%s&user=postgres\n' "$(uri_escape "$(sock_dir)")" "$PG_PORT"
}

do_clean() {
	local target='' sock=''
	[ -e "$DIR" ] || [ -L "$DIR" ] || return 0
	if [ -d "$REAL/data" ]; then
		do_stop
	fi
	[ -s "$REAL/sockdir" ] && sock=$(cat -- "$REAL/sockdir")
	[ -L "$DIR" ] && target=$REAL
	[ -n "$sock" ] && safe_rm_tree "$sock"
	if [ -n "$target" ]; then
		rm -f -- "$DIR"
		safe_rm_tree "$target"
	else
		safe_rm_tree "$REAL"
	fi
}

do_status() {
	"$BINDIR/pg_isready" -q -h "$(sock_dir)" -p "$PG_PORT" -U postgres -d postgres -t 2
}

harness_args pg.sh "$WS_SERVER_CMDS" "$@"
BINDIR=$(find_bindir)
harness_dispatch pg.sh database wavesched-pg 1
