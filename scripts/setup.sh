#!/usr/bin/env bash
# Makes this machine ready for the test suite: starts PostgreSQL and NATS
# (JetStream) if they are not answering, and installs the Debian packages
# the tests use. Idempotent; safe to run before every test run.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
	for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
	log "nothing answers on 127.0.0.1:$1 after 30 s"
	return 1
}

# Debian packages: the reference Argon2 CLI (interop tests and benchmarks);
# podman (the container image test), haproxy (`haproxy -c` of the reference
# cluster's configuration and the cluster script's balancer), prometheus
# (promtool for the alert and recording rules).
need_pkgs=()
command -v argon2 >/dev/null || need_pkgs+=(argon2)
command -v podman >/dev/null || need_pkgs+=(podman)
command -v haproxy >/dev/null || need_pkgs+=(haproxy)
command -v promtool >/dev/null || need_pkgs+=(prometheus)
if ((${#need_pkgs[@]})); then
	log "installing ${need_pkgs[*]}"
	$SUDO apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! port_open 5432; then
	if command -v pg_ctlcluster >/dev/null; then
		log "starting PostgreSQL"
		$SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
	else
		log "PostgreSQL is not installed: install postgresql, or set UNHIDRA_TEST_POSTGRES"
	fi
	wait_port 5432
fi

if ! port_open 4222; then
	if [ -x /usr/sbin/nats-server ]; then
		log "starting NATS with JetStream"
		$SUDO mkdir -p /var/lib/nats-server
		$SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
			-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
	else
		log "nats-server is not installed: install nats-server, or set UNHIDRA_TEST_NATS"
	fi
	wait_port 4222
fi
# The arm64 emulator for the agent's cross-built test (only the one binary
# is kept, in .cache/qemu).
if ! scripts/agent-qemu.sh >/dev/null; then
	log "could not fetch qemu-aarch64-static; the agent's arm64 test will fail"
fi
# npm tools pinned by tools/apilint/package-lock.json (the OpenAPI
# validator); reinstalled when the lock file changes.
if command -v npm >/dev/null; then
	lock_sum=$(sha256sum tools/apilint/package-lock.json | cut -d' ' -f1)
	stamp=tools/apilint/node_modules/.package-lock.sha256
	if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
		log "installing tools/apilint (npm ci)"
		(cd tools/apilint && npm ci --no-audit --no-fund --loglevel=error >/dev/null) && echo "$lock_sum" >"$stamp"
	fi
else
	log "npm is not installed: the OpenAPI lint test will fail"
fi
log "ready"
