#!/usr/bin/env bash
# Runs the end-to-end browser tests: bash web/e2e/run.sh [node --test args…]
#
# Sets up what the tests need (Debian's Chromium, playwright-core from the
# lock file, a fresh build of the server), then runs every file in tests/
# one at a time. Extra arguments go to `node --test`; a file given there
# (relative to the caller's directory or to web/e2e/) replaces tests/.
# The exit status is the test runner's.
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$E2E_DIR/../.." && pwd)
CALLER_DIR=$PWD

# Screenshots and logs (UNHIDRA_E2E_ARTIFACTS moves them, e.g. for CI). Not
# emptied at start: another run may be using it. Logs are appended with a
# "=== start" line per process; screenshots are overwritten.
export UNHIDRA_E2E_ARTIFACTS="${UNHIDRA_E2E_ARTIFACTS:-$E2E_DIR/artifacts}"
ARTIFACTS=$UNHIDRA_E2E_ARTIFACTS
mkdir -p "$ARTIFACTS"

# Chromium: Playwright's browser downloads cannot work here (no network
# beyond the package registries), so the tests drive Debian's.
if [ ! -x /usr/bin/chromium ]; then
	echo "e2e: installing chromium (apt-get)…"
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
	export DEBIAN_FRONTEND=noninteractive
	# Try without refreshing the package lists first: they may be current.
	if ! $SUDO apt-get install -y -qq chromium >"$ARTIFACTS/apt.log" 2>&1; then
		if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium; } >>"$ARTIFACTS/apt.log" 2>&1; then
			cat "$ARTIFACTS/apt.log" >&2
			echo "e2e: could not install chromium" >&2
			exit 1
		fi
	fi
fi

# Node.js runs the tests; this machine kind has it, a bare Debian gets its own.
if ! command -v npm >/dev/null; then
	echo "e2e: installing nodejs and npm (apt-get)…"
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
	{ $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm; } >>"$ARTIFACTS/apt.log" 2>&1 ||
		{ cat "$ARTIFACTS/apt.log" >&2; echo "e2e: could not install nodejs" >&2; exit 1; }
fi

# playwright-core, exactly as locked; reinstalled when the lock file changes.
cd "$E2E_DIR"
LOCK_SUM=$(sha256sum package-lock.json | cut -d' ' -f1)
STAMP=node_modules/.package-lock.sha256
if [ ! -d node_modules ] || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$LOCK_SUM" ]; then
	echo "e2e: npm ci…"
	npm ci --no-audit --no-fund --loglevel=error
	echo "$LOCK_SUM" >"$STAMP"
fi

# One build of the server for the whole run, outside the work tree.
BUILD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/unhidra-e2e-bin.XXXXXX")
trap 'rm -rf "$BUILD_DIR"' EXIT
echo "e2e: go build ./cmd/unhidra…"
(cd "$REPO_ROOT" && go build -o "$BUILD_DIR/unhidra" ./cmd/unhidra)
export UNHIDRA_BIN="$BUILD_DIR/unhidra"

# Paths among the arguments are made absolute against the caller's
# directory, so `web/e2e/run.sh web/e2e/tests/x.test.js` works from the
# repository root as well as `run.sh tests/x.test.js` from here.
args=()
have_path=0
for a in "$@"; do
	if [[ "$a" != -* ]]; then
		have_path=1
		if [ -e "$CALLER_DIR/$a" ]; then a=$(cd "$CALLER_DIR" && realpath "$a"); fi
	fi
	args+=("$a")
done
if [ "$have_path" -eq 0 ]; then args+=(tests/); fi

# One file at a time: each file starts its own servers and browser, and the
# machine has two cores. --test-force-exit: a test that fails before its
# cleanup leaves servers or a browser behind, which would keep the file's
# process (and the run) alive forever; forcing the exit runs the harness's
# exit handler, which kills them.
status=0
node --test --test-concurrency=1 --test-force-exit "${args[@]}" || status=$?
echo "e2e: artifacts (screenshots, logs) in $ARTIFACTS"
exit "$status"
