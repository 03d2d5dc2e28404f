# scripts/lib.sh - shared by scripts/demo and scripts/test: install what is
# missing, build, start and stop the private PostgreSQL and Redis.
# Everything the scripts start lives under $WS_ROOT/.run and is stopped by
# them; no system service is touched.

WS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export WS_ROOT

ws_say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
ws_die() { printf 'wavesched: %s\n' "$*" >&2; exit 1; }

# Debian packages the build, the tests and the demo need.
WS_PACKAGES=(
	gcc pkg-config meson ninja-build python3 tzdata ca-certificates curl
	libuv1-dev libpq-dev libhiredis-dev libcurl4-openssl-dev libyaml-dev
	libjansson-dev libcmocka-dev libical-dev libhttp-parser-dev libssl-dev python3-icalendar
	postgresql redis-server prometheus systemd groff-base chromium python3-jsonschema git
)

# Installs the packages that are missing (as root, or through sudo).
ws_install_deps() {
	local missing=() p
	for p in "${WS_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	ws_say "installing ${missing[*]}"
	local sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || ws_die "missing packages (${missing[*]}) and no sudo: install them as root"
		sudo=(sudo)
	fi
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null ||
		ws_die "apt-get update failed"
	# policy-rc.d-less containers may try to start the packaged services:
	# RUNLEVEL=1 keeps invoke-rc.d from doing so.  We never use them.
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null || ws_die "apt-get install failed"
}

# ws_test_tools: npm ci in tests/tools when its lock file is not the one
# installed (a stamp of its sha256 in node_modules).
ws_test_tools() {
	local dir="$WS_ROOT/tests/tools" sum
	sum=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
	[ "$(cat "$dir/node_modules/.ws-lock-sha256" 2>/dev/null)" = "$sum" ] && return 0
	command -v npm >/dev/null || ws_die "npm is missing: the test tools need Node.js 20.19+ and npm"
	ws_say "installing the test tools (npm ci in tests/tools)"
	npm ci --prefix "$dir" --no-audit --no-fund >/dev/null || ws_die "npm ci in tests/tools failed"
	echo "$sum" >"$dir/node_modules/.ws-lock-sha256"
}

# ws_build DIR [meson options...]: configure once, then compile.
ws_build() {
	local dir=$1
	shift
	if [ ! -f "$WS_ROOT/$dir/build.ninja" ]; then
		ws_say "configuring $dir"
		meson setup "$WS_ROOT/$dir" "$WS_ROOT" "$@" >/dev/null || ws_die "meson setup failed"
	fi
	ws_say "building $dir"
	meson compile -C "$WS_ROOT/$dir" >/dev/null 2>"$WS_ROOT/$dir/compile.log" || {
		tail -n 40 "$WS_ROOT/$dir/compile.log" >&2
		ws_die "build failed (full log: $dir/compile.log)"
	}
}

# ws_services_start NAME: a private PostgreSQL and Redis under .run/NAME;
# exports WS_TEST_PG_URL, WS_TEST_REDIS_URL and WS_TEST_PG_DIR.
ws_services_start() {
	local dir="$WS_ROOT/.run/$1" out
	mkdir -p "$dir"
	out=$("$WS_ROOT/tests/harness/services.sh" start "$dir") || ws_die "cannot start PostgreSQL and Redis (see $dir)"
	eval "$out"
}

ws_services_stop() {
	"$WS_ROOT/tests/harness/services.sh" stop "$WS_ROOT/.run/$1" >/dev/null 2>&1 || true
}
