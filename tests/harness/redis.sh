#!/usr/bin/env bash
# redis.sh - a throw-away Redis for tests, on a unix socket only.
#
#   redis.sh start DIR    start and wait for PONG (idempotent)
#   redis.sh stop DIR     stop; kills leftovers of DIR (and only of DIR)
#   redis.sh restart DIR  stop then start
#   redis.sh url DIR      prints unix://DIR/redis.sock
#   redis.sh status DIR   exit 0 when the server of DIR answers PING
#   redis.sh clean DIR    stop, then delete DIR
#
# Layout of DIR: redis.sock (or, when DIR is too deep for a socket path, a
# short /tmp directory named in DIR/sockpath), redis.pid, redis.log,
# redis-start.log (what redis-server said before it had its log file).  No
# persistence: nothing survives a stop.
set -euo pipefail
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

command -v redis-server >/dev/null 2>&1 || die "redis-server is not installed (apt-get install redis-server)"

sock_path() {
	local d
	d=$(short_sock_dir "$REAL" sockpath wavesched-redis redis.sock "$REAL")
	printf '%s/redis.sock\n' "$d"
}

pings() {
	local sock=$1
	if command -v redis-cli >/dev/null 2>&1; then
		[ "$(redis-cli -s "$sock" ping 2>/dev/null)" = PONG ]
	else
		[ -S "$sock" ]
	fi
}

# The pid of our server, when the pid file names a live redis-server that
# runs in DIR.
our_pid() {
	local pid
	[ -s "$REAL/redis.pid" ] || return 1
	pid=$(cat -- "$REAL/redis.pid")
	case "$pid" in '' | *[!0-9]*) return 1 ;; esac
	[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$REAL" ] || return 1
	printf '%s\n' "$pid"
}

do_start() {
	local sock i
	sock=$(sock_path)
	if our_pid >/dev/null && pings "$sock"; then
		return 0
	fi
	# A stale socket file would make every client fail with ECONNREFUSED.
	our_pid >/dev/null || rm -f -- "$sock" "$REAL/redis.pid"
	if ! (cd -- "$REAL" && redis-server --port 0 --unixsocket "$sock" --unixsocketperm 777 \
		--save '' --appendonly no --daemonize yes --pidfile "$REAL/redis.pid" \
		--logfile "$REAL/redis.log" --dir "$REAL" 9>&-) >/dev/null 2>>"$REAL/redis-start.log"; then
		tail -n 15 -- "$REAL/redis-start.log" "$REAL/redis.log" >&2 2>/dev/null || true
		die "redis-server failed to start: see $DIR/redis.log"
	fi
	for ((i = 0; i < 200; i++)); do
		pings "$sock" && return 0
		sleep 0.05
	done
	tail -n 15 -- "$REAL/redis.log" >&2 2>/dev/null || true
	die "redis-server does not answer on $sock: see $DIR/redis.log"
}

do_stop() {
	local pids pid
	pids=$(pids_with_cwd "$REAL" redis-server)
	if pid=$(our_pid); then
		pids=$(printf '%s\n%s\n' "$pid" "$pids" | sort -u)
	fi
	if [ -n "$pids" ]; then
		# shellcheck disable=SC2086
		kill_pids 10 $pids
	fi
	rm -f -- "$(sock_path)" "$REAL/redis.pid"
}

do_clean() {
	local sock=
	do_stop
	[ -s "$REAL/sockpath" ] && sock=$(cat -- "$REAL/sockpath")
	[ -n "$sock" ] && safe_rm_tree "$sock"
	if [ -L "$DIR" ]; then
		rm -f -- "$DIR"
	fi
	safe_rm_tree "$REAL"
}

do_url() {
	printf 'unix://%s\n' "$(sock_path)"
}

do_status() {
	pings "$(sock_path)"
}

harness_args redis.sh "$WS_SERVER_CMDS" "$@"
harness_dispatch redis.sh Redis wavesched-redis 0
