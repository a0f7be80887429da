#!/usr/bin/env bash
# Measures the server's memory per idle WebSocket connection, plain and TLS:
# builds the binary, starts a server in its own process, opens N idle
# authenticated connections from another process (`unhidra bench conns`)
# from several loopback addresses, and prints the result of each run.
# Usage: scripts/bench-conns.sh [N] [HOLD]     (defaults: 10000 130s)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
HOLD=${2:-130s}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/unhidra" ./cmd/unhidra
export UNHIDRA_ADMIN_PASSWORD=bench-password-1 UNHIDRA_BENCH_PASSWORD=bench-password-1

run() { # $1 = plain|tls
	local mode=$1 flags=() scheme=https port ca=()
	port=$((18000 + RANDOM % 1000))
	[ "$mode" = plain ] && flags=(--no-tls) && scheme=http
	rm -rf "$work/data"
	"$work/unhidra" serve --data-dir "$work/data" --listen 127.0.0.1:$port --log-level warn "${flags[@]}" \
		--max-conns-per-identity 20000 --max-conns-per-ip 20000 --conn-rate-per-identity 100000 \
		--conn-burst-per-identity 100000 --conn-rate-per-ip 100000 --conn-burst-per-ip 100000 \
		--drain-window 1s >"$work/serve.out" 2>&1 &
	local pid=$!
	for _ in $(seq 600); do grep -q "listening on" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
	grep -q "listening on" "$work/serve.out" || { echo "server did not start:"; cat "$work/serve.out"; exit 1; }
	echo "== $mode, N=$N, hold $HOLD"
	[ "$mode" = tls ] && ca=(--ca-file "$work/data/tls-cert.pem")
	"$work/unhidra" bench conns --url "$scheme://127.0.0.1:$port" "${ca[@]}" \
		--user admin -n "$N" --source-addrs 8 --hold "$HOLD" 2> >(grep -v " connected (" >&2)
	kill -TERM $pid; wait $pid 2>/dev/null || true
}
run plain
run tls
