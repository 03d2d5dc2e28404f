# shellcheck shell=bash
# lib.sh - helpers shared by pg.sh, redis.sh and services.sh.  Sourced, not run.
#
# Everything a harness script starts lives under one directory given by the
# caller; nothing here touches a system service.  Messages go to stderr,
# prefixed with the name of the script the user ran (WS_HARNESS_PROG, which
# services.sh sets for the scripts it calls), so stdout stays eval-able.

WS_HARNESS_PROG=${WS_HARNESS_PROG:-$(basename "$0")}

say() { printf '%s: %s\n' "$WS_HARNESS_PROG" "$*" >&2; }
die() { say "$*"; exit 1; }

# The longest path a unix socket may have (sizeof(sun_path) - 1 on Linux).
WS_SUN_PATH_MAX=107

# RUNAS: the prefix that runs a command as the unprivileged user when we are
# root (PostgreSQL refuses to run as root), empty otherwise.
RUNAS=()
WS_RUN_USER=
WS_RUN_GROUP=
if [ "$(id -u)" -eq 0 ]; then
	WS_RUN_USER=nobody
	WS_RUN_GROUP=$(id -gn nobody 2>/dev/null) || die "running as root, but there is no user 'nobody' to run servers as"
	if command -v runuser >/dev/null 2>&1; then
		RUNAS=(runuser -u "$WS_RUN_USER" --)
	elif command -v setpriv >/dev/null 2>&1; then
		RUNAS=(setpriv "--reuid=$WS_RUN_USER" "--regid=$WS_RUN_GROUP" --clear-groups --)
	else
		die "running as root, but neither runuser nor setpriv is installed to drop privileges"
	fi
fi

# usage_dir CMD DIR: checks that a directory argument was given.
need_dir() {
	[ -n "${1:-}" ] || die "missing directory argument"
}

# abs_path PATH: PATH made absolute without resolving symlinks.
abs_path() {
	case "$1" in
	/*) printf '%s\n' "$1" ;;
	*) printf '%s/%s\n' "$(pwd)" "$1" ;;
	esac
}

# prepare_dir DIR PREFIX FOR_RUNAS: makes DIR exist and prints its real path.
# With FOR_RUNAS=1 and root, the directory must be usable by the unprivileged
# user: when DIR sits where that user cannot go (a clone under /root), the
# data goes to a fresh mktemp directory under /tmp and DIR becomes a symlink
# to it.
prepare_dir() {
	local dir=$1 prefix=$2 for_runas=$3 tmp
	if [ -L "$dir" ] && [ ! -e "$dir" ]; then
		rm -f -- "$dir"   # dangling: its /tmp target was cleaned away
	fi
	mkdir -p -- "$dir" || die "cannot create directory $dir"
	if [ "$for_runas" = 1 ] && [ ${#RUNAS[@]} -gt 0 ]; then
		if [ ! -L "$dir" ]; then
			chown "$WS_RUN_USER:$WS_RUN_GROUP" -- "$dir" || die "cannot chown $dir to $WS_RUN_USER"
			chmod 0700 -- "$dir"
		fi
		if [ -L "$dir" ]; then
			# Made by an earlier run: judge the target, not the way to it.
			tmp=$(cd -- "$dir" && pwd -P) || die "cannot enter $dir"
			"${RUNAS[@]}" test -w "$tmp" -a -x "$tmp" 2>/dev/null ||
				die "$dir is a symlink to $tmp, which $WS_RUN_USER cannot write"
		elif ! "${RUNAS[@]}" test -w "$dir" -a -x "$dir" 2>/dev/null; then
			if [ -n "$(ls -A -- "$dir")" ]; then
				die "$WS_RUN_USER cannot reach $dir (a parent directory is closed to it) and $dir is not empty; remove it or choose a directory under /tmp"
			fi
			gc_orphans "$prefix"
			tmp=$(mktemp -d "/tmp/$prefix.XXXXXX") || die "mktemp failed under /tmp"
			chown "$WS_RUN_USER:$WS_RUN_GROUP" -- "$tmp" || die "cannot chown $tmp to $WS_RUN_USER"
			chmod 0700 -- "$tmp"
			if ! rmdir -- "$dir" || ! ln -s -- "$tmp" "$dir"; then
				die "cannot replace $dir by a symlink to $tmp"
			fi
			# Written after the symlink exists, so gc_orphans never takes a
			# directory that is still being set up.
			printf '%s\n' "$dir" >"$tmp/.owner"
			say "$WS_RUN_USER cannot reach $dir; using $tmp (symlinked from $dir)"
		fi
	fi
	(cd -- "$dir" && pwd -P) || die "cannot enter $dir"
}

# lock_dir REALDIR: serialises harness commands on one directory.  The lock fd
# (9) must be closed for every daemon we start (9>&-), or the daemon would
# hold the lock for its whole life.
lock_dir() {
	exec 9>>"$1/.harness.lock" || die "cannot create $1/.harness.lock"
	flock -w 120 9 || die "another harness command holds $1/.harness.lock"
}

# short_sock_dir REALDIR FILE PREFIX LEAF PREFERRED: prints the directory for
# a unix socket whose file name is LEAF: PREFERRED (created when missing) when
# the resulting path fits in sun_path, else a short mktemp directory recorded
# in REALDIR/FILE so that later commands find it again.
short_sock_dir() {
	local real=$1 rec=$1/$2 prefix=$3 leaf=$4 want=$5 d
	if [ -s "$rec" ]; then
		d=$(cat -- "$rec")
	elif [ $((${#want} + 1 + ${#leaf})) -le $WS_SUN_PATH_MAX ]; then
		d=$want
	else
		d=$(mktemp -d "/tmp/$prefix.XXXXXX") || die "mktemp failed under /tmp"
		printf '%s\n' "$d" >"$rec"
		say "socket path under $real would exceed $WS_SUN_PATH_MAX bytes; using $d"
	fi
	mkdir -p -- "$d" || die "cannot create socket directory $d"
	printf '%s\n' "$d"
}

# pids_with_cwd DIR COMM: pids of processes named COMM whose working
# directory is DIR.  Servers chdir into their data directory, so this finds
# the leftovers of this directory only and never another instance.
pids_with_cwd() {
	local want=$1 comm=$2 p cwd name
	for p in /proc/[0-9]*; do
		name=$(cat "$p/comm" 2>/dev/null) || continue
		case "$name" in "$comm"*) ;; *) continue ;; esac
		cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
		[ "$cwd" = "$want" ] && printf '%s\n' "${p#/proc/}"
	done
	return 0
}

# is_alive PID: true while PID runs.  A zombie counts as gone: daemons are
# reparented to PID 1, which in a container may never reap them.
is_alive() {
	local line rest
	read -r line 2>/dev/null <"/proc/$1/stat" || return 1
	rest=${line##*) }
	[ "${rest%% *}" != Z ]
}

# pids_under DIR: pids of processes working in DIR or below it.
pids_under() {
	local want=$1 p cwd
	for p in /proc/[0-9]*; do
		cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
		case "$cwd" in "$want" | "$want"/*) printf '%s\n' "${p#/proc/}" ;; esac
	done
	return 0
}

# gc_orphans PREFIX: removes the /tmp/PREFIX.* directories that prepare_dir
# made for a DIR which has since been deleted without 'clean' (its symlink
# is gone), when nothing runs in them.  Only directories carrying our
# .owner marker are considered.
gc_orphans() {
	local d link
	for d in /tmp/"$1".*; do
		[ -f "$d/.owner" ] || continue
		link=$(cat -- "$d/.owner" 2>/dev/null) || continue
		[ "$(readlink -- "$link" 2>/dev/null)" = "$d" ] && continue
		[ -n "$(pids_under "$d")" ] && continue
		say "removing $d, left behind by $link (deleted without '$(basename "$0") clean')"
		rm -rf -- "$d"
	done
	return 0
}

# kill_pids SECONDS PID...: TERM, wait up to SECONDS, then KILL.
kill_pids() {
	local secs=$1 p alive i
	shift
	[ $# -gt 0 ] || return 0
	kill -TERM "$@" 2>/dev/null || true
	for ((i = 0; i < secs * 10; i++)); do
		alive=0
		for p in "$@"; do
			is_alive "$p" && alive=1
		done
		[ $alive = 0 ] && return 0
		sleep 0.1
	done
	say "processes $* did not stop within ${secs}s; killing them"
	kill -KILL "$@" 2>/dev/null || true
	sleep 0.2
}

# uri_escape STRING: percent-encodes everything but unreserved characters and
# '/' (enough for a socket path inside a libpq URI query parameter).
uri_escape() {
	local s=$1 out='' c i
	for ((i = 0; i < ${#s}; i++)); do
		c=${s:i:1}
		case "$c" in
		[A-Za-z0-9._~/-]) out+=$c ;;
		*) out+=$(printf '%%%02X' "'$c") ;;
		esac
	done
	printf '%s\n' "$out"
}

# safe_rm_tree DIR: rm -rf with a guard against the obvious disasters.
safe_rm_tree() {
	case "$1" in
	"" | / | /tmp | /tmp/ | /root | /home | /usr | /var) die "refusing to remove '$1'" ;;
	esac
	rm -rf -- "$1"
}

# harness_usage NAME COMMANDS: the usage line of a harness script; exits 2.
harness_usage() {
	echo "usage: $1 $2 DIR" >&2
	exit 2
}

# harness_args NAME COMMANDS ARG...: the command line every harness script
# takes (CMD DIR): sets CMD and DIR (absolute), or prints the usage.
harness_args() {
	local name=$1 cmds=$2
	shift 2
	[ $# -eq 2 ] || harness_usage "$name" "$cmds"
	CMD=$1
	DIR=$(abs_path "$2")
	need_dir "$DIR"
}

# The commands of a server script (pg.sh, redis.sh).
WS_SERVER_CMDS="start|stop|restart|url|status|clean"

# harness_dispatch NAME WHAT PREFIX FOR_RUNAS: runs CMD on the server in DIR
# with the script's do_start, do_stop, do_url, do_status and do_clean, which
# find the real directory in REAL.  start and restart create DIR
# (prepare_dir PREFIX FOR_RUNAS); the others on a DIR that does not exist
# answer as for a stopped server.  WHAT names the server in messages ("no
# WHAT in DIR").  Commands that change the server hold DIR's lock.
harness_dispatch() {
	local name=$1 what=$2 prefix=$3 for_runas=$4
	case "$CMD" in
	start | restart)
		REAL=$(prepare_dir "$DIR" "$prefix" "$for_runas")
		lock_dir "$REAL"
		[ "$CMD" = restart ] && do_stop
		do_start
		;;
	stop | url | status | clean)
		if [ ! -e "$DIR" ]; then
			[ "$CMD" = url ] && die "no $what in $DIR: run '$name start $DIR' first"
			[ "$CMD" = status ] && exit 1
			exit 0
		fi
		REAL=$(cd -- "$DIR" && pwd -P)
		case "$CMD" in
		stop) lock_dir "$REAL"; do_stop ;;
		url) do_url ;;
		status) do_status ;;
		clean) lock_dir "$REAL"; do_clean ;;
		esac
		;;
	*) harness_usage "$name" "$WS_SERVER_CMDS" ;;
	esac
}
