#!/usr/bin/env bash
# Runs one of `unhidra bench`'s tools against a fresh server in its own
# process, plain and with TLS: builds the binary, starts `unhidra serve`
# with limits raised for load (one account holds every connection), runs
# the tool from a second process, prints its report, stops the server.
#
#   scripts/bench.sh conns -n 10000 --hold 20s
#   scripts/bench.sh fanout --receivers 1000 --senders 4 --rate 200 --duration 20s
#   scripts/bench.sh ab <commit> [OUTDIR]   A/B of <commit> against the working tree (scripts/bench-ab.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
tool=${1:?usage: scripts/bench.sh conns|fanout|ab [flags]}
[ "$tool" = ab ] && { shift; exec scripts/bench-ab.sh "$@"; }
shift
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/unhidra" ./cmd/unhidra
export UNHIDRA_ADMIN_PASSWORD=bench-password-1 UNHIDRA_BENCH_PASSWORD=bench-password-1

run() { # $1 = plain|tls
	local mode=$1 flags=() scheme=https port ca=()
	shift
	port=$((18000 + RANDOM % 1000))
	[ "$mode" = plain ] && flags=(--no-tls) && scheme=http
	rm -rf "$work/data"
	"$work/unhidra" serve --data-dir "$work/data" --listen 127.0.0.1:$port --log-level warn "${flags[@]}" \
		--ml-workers 0 --system-bot=false --drain-window 1s \
		--max-conns-per-identity 20000 --max-conns-per-ip 20000 --max-tcp-per-ip 20000 --conn-rate-per-identity 100000 \
		--conn-burst-per-identity 100000 --conn-rate-per-ip 100000 --conn-burst-per-ip 100000 \
		--message-rate 100000 --message-burst 100000 --send-rate 100000 --send-burst 100000 \
		>"$work/serve.out" 2>&1 &
	local pid=$!
	for _ in $(seq 600); do grep -q "listening on" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
	grep -q "listening on" "$work/serve.out" || { echo "server did not start:"; cat "$work/serve.out"; exit 1; }
	echo "== $tool, $mode: $*"
	[ "$mode" = tls ] && ca=(--ca-file "$work/data/tls-cert.pem")
	"$work/unhidra" bench "$tool" --url "$scheme://127.0.0.1:$port" "${ca[@]}" --user admin --source-addrs 8 "$@" \
		2> >(grep -v " connected (" >&2)
	kill -TERM $pid
	wait $pid 2>/dev/null || true
}
run plain "$@"
run tls "$@"
