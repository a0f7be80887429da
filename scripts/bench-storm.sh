#!/usr/bin/env bash
# Reconnect storm: N simulated devices (the seed firmware's behaviour, from
# `unhidra bench fleet`) connected to a server over TLS; the server is
# restarted; the script measures how long until all N are back online, the
# server's CPU time and peak memory during the storm, and the handshakes it
# refused. Everything runs on this machine against 127.0.0.x.
# Usage: scripts/bench-storm.sh [N]     (default 5000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
owners=$(( (N + 999) / 1000 ))
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/unhidra" ./cmd/unhidra
port=$((19000 + RANDOM % 500))
data="$work/data"

start_server() {
	"$work/unhidra" serve --data-dir "$data" --listen 127.0.0.1:$port --log-level warn \
		--ml-workers 0 --system-bot=false --drain-window 2s \
		--max-conns-per-ip 20000 --max-tcp-per-ip 20000 --conn-rate-per-ip 100000 --conn-burst-per-ip 100000 \
		>"$work/serve.out" 2>&1 &
	server=$!
	for _ in $(seq 600); do grep -q "listening on" "$work/serve.out" 2>/dev/null && return; sleep 0.05; done
	echo "server did not start"; cat "$work/serve.out"; exit 1
}

devices_online() {
	curl -s --cacert "$data/tls-cert.pem" "https://127.0.0.1:$port/metrics" |
		awk '/^unhidra_gateway_connections\{kind="device"\}/ {print $2; exit}' | cut -d. -f1
}

refusals() {
	curl -s --cacert "$data/tls-cert.pem" "https://127.0.0.1:$port/metrics" |
		awk '/^unhidra_gateway_refusals_total/ {s += $2} END {print s + 0}'
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

UNHIDRA_ADMIN_PASSWORD=storm-password-1 start_server
for i in $(seq 1 "$owners"); do
	echo "storm-password-1" | "$work/unhidra" admin --data-dir "$data" user create "owner$i" --password-stdin >/dev/null
	"$work/unhidra" admin --data-dir "$data" device create "d$i" --owner "owner$i" --count 1000 --keys-file "$work/keys$i" >/dev/null
done
cat "$work"/keys* | head -n "$N" > "$work/keys.txt"
chmod 600 "$work/keys.txt"

"$work/unhidra" bench fleet -n "$N" --url "wss://127.0.0.1:$port/ws" --ca-file "$data/tls-cert.pem" \
	--keys-file "$work/keys.txt" --duration 10m --ramp 2000 --report-every 30s >"$work/fleet.out" 2>&1 &
fleet=$!
for _ in $(seq 1200); do [ "$(devices_online)" = "$N" ] && break; sleep 0.1; done
echo "before the restart: $(devices_online) of $N devices online"

kill -TERM "$server"
wait "$server" 2>/dev/null || true
start_server
t0=$(date +%s.%N)
ticks0=$(cpu_ticks "$server")
online=0
for _ in $(seq 3000); do
	online=$(devices_online)
	[ "$online" = "$N" ] && break
	sleep 0.1
done
t1=$(date +%s.%N)
ticks1=$(cpu_ticks "$server")
hz=$(getconf CLK_TCK)
echo "after the restart: $online of $N online in $(echo "$t1 - $t0" | bc) s"
echo "server CPU during the storm: $(echo "scale=2; ($ticks1 - $ticks0) / $hz" | bc) s"
echo "server peak memory: $(awk '/VmHWM/ {print $2 / 1024 " MiB"}' "/proc/$server/status")"
echo "handshakes refused during the storm: $(refusals)"
kill -TERM "$fleet" 2>/dev/null || true
