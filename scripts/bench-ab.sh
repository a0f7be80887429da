#!/usr/bin/env bash
# A/B benchmark of two builds of the server: a given commit ("base") and the
# working tree ("new"), measured in alternation (base, new, base, new, ...)
# with the same load tools and flags, and a ratio table (new ÷ base) with the
# machine's load average next to every run.
#
#   scripts/bench.sh ab <commit> [OUTDIR]        (or: make bench-ab BASE=<commit>)
#   scripts/bench-ab.sh --summary OUTDIR          re-print the table from OUTDIR
#
# Scenarios (SCENARIOS, default all), each REPS rounds, a fresh server per run:
#   idle    wsload -mode conns -n N_IDLE: server CPU per handshake, open rate, KiB per idle connection
#   fanout  wsload -mode fanout -n N_FAN, 16 unpaced publishers: deliveries/s, latency
#   paced   wsload -mode fanout -n N_FAN, 10 pub/s (20,000 deliveries/s at 2,000): latency
#   devices `unhidra bench fleet -n DEV_N` over TLS: server KiB per idle device, then a server
#           restart (reconnect storm): seconds until all are back, server CPU seconds in the storm
#   floor   the same fanout and paced runs against internal/ws/wsfloor, a minimal broadcaster on the
#           server's WebSocket engine (no auth, no storage): the machine's floor (not part of the ratio)
#   ml      `unhidra bench ml`: paced API round trips to a trivial model (scripts/bench/ml_echo_model.py)
#           and, once per round, the same to a bare Unix-socket echo (internal/mlbridge/testdata/echo_server.py);
#           the API twice per server: net/http's client (rows "ml"), then --http-client raw (rows "mlraw"), which
#           like the bare mode writes and reads in the calling goroutine; CPU per call from --cpu-pid
#   regress the "no regression" figures, each build's own code: stored messages/s with group commit
#           (BenchmarkSend_GroupCommit, SQLite, 1 and 64 senders), history pages/s (BenchmarkHistory),
#           engine idle memory per connection plain and TLS (wsmeasure, N_MEASURE), and login
#           throughput against a server (LOGIN_SECONDS of 8 concurrent correct logins)
# The first three run through the shared load tool's side-by-side script (WSLOAD_DIR, default
# ../shared/bench/wsload) with TARGETS="ub uh"; the load generators of devices and ml are the
# working tree's `unhidra bench` (the same client for both servers).
# Knobs (env): SCENARIOS REPS N_IDLE HOLD N_FAN DURATION WARMUP DEV_N ML_N ML_INTERVAL N_MEASURE LOGIN_SECONDS
# NICE WSLOAD_DIR
# Runs are kept short for a shared machine; prefer the CPU figures (per handshake, per delivery)
# over wall-clock ones when the load average is high.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

summary() {
	python3 - "$1" <<'PY'
import json, os, sys, glob, statistics
out = sys.argv[1]
def load(p):
    try:
        with open(p) as f: return json.load(f)
    except Exception: return None
def runs(sc, tg):
    rs = []
    for d in (os.path.join(out, "ws"), out):
        for p in sorted(glob.glob(os.path.join(d, f"{sc}-{tg}-r*.json"))):
            if p.endswith(".meta.json"): continue
            rs.append((load(p) or {}, load(p[:-5] + ".meta.json") or {}))
    return rs
def per_handshake_ms(j):
    if not j.get("open_ok") or j.get("open_cpu_server_cores") is None: return None
    return j["open_cpu_server_cores"] * j["open_seconds"] / j["open_ok"] * 1000
def us_per_delivery(j):
    if not j.get("delivered_per_s") or j.get("cpu_server_cores") is None: return None
    return j["cpu_server_cores"] / j["delivered_per_s"] * 1e6
def cpu(i): # bench ml --cpu-pid: CPU µs per call of the i-th process tree
    return lambda j: (j.get("cpu_us_per_call") or [])[i] if len(j.get("cpu_us_per_call") or []) > i else None
F = {
 "idle": [("server CPU ms per handshake", per_handshake_ms, "lower"),
          ("open rate conn/s", "open_rate_per_s", "higher"),
          ("server CPU cores while opening", "open_cpu_server_cores", ""),
          ("per-conn open ms p50", "open_subscribed_ms_p50", "lower"),
          ("server KiB per idle conn", "server_kib_per_conn", "lower")],
 "fanout": [("delivered msgs/s", "delivered_per_s", "higher"),
            ("latency ms p50", "latency_ms_p50", "lower"),
            ("latency ms p99", "latency_ms_p99", "lower"),
            ("server CPU µs per delivery", us_per_delivery, "lower"),
            ("server CPU cores", "cpu_server_cores", "")],
 "paced": [("delivered msgs/s", "delivered_per_s", ""),
           ("latency ms p50", "latency_ms_p50", "lower"),
           ("latency ms p99", "latency_ms_p99", "lower"),
           ("latency ms p99.9", "latency_ms_p999", "lower"),
           ("server CPU µs per delivery", us_per_delivery, "lower")],
 "devices": [("server KiB per idle device", "kib_per_device", "lower"),
             ("storm: s until all back (from listening)", "storm_seconds", "lower"),
             ("storm: s from first to last reconnect", "storm_span_seconds", "lower"),
             ("storm: server CPU s", "storm_cpu_seconds", "lower"),
             ("storm: handshakes refused", "storm_refused", "lower")],
 "regress": [("stored msgs/s, group commit, SQLite, 1 sender", "commit1_per_s", "higher"),
             ("stored msgs/s, group commit, SQLite, 64 senders", "commit64_per_s", "higher"),
             ("history pages of 50 per s", "history_per_s", "higher"),
             ("engine RSS KiB per idle conn, plain", "idle_plain_kib", "lower"),
             ("engine RSS KiB per idle conn, TLS", "idle_tls_kib", "lower"),
             ("logins/s (8 concurrent, Argon2id bound)", "logins_per_s", "higher")],
 "ml": [("API round trip ms p50", "p50_ms", "lower"),
        ("API round trip ms p99", "p99_ms", "lower"),
        ("API p50 ÷ bare Unix-socket p50 (same round)", "ratio_to_bare", "lower"),
        ("of the p50: the server's call to the worker, ms (its duration_ms)", "infer_p50_ms", "lower"),
        ("server + worker CPU µs per call", cpu(0), "lower"),
        ("of which the worker", cpu(1), "lower"),
        ("client CPU µs per call", "client_cpu_us_per_call", "lower")],
 "mlraw": [("API round trip ms p50", "p50_ms", "lower"),
           ("API p50 ÷ bare Unix-socket p50 (same round)", "ratio_to_bare", "lower"),
           ("server + worker CPU µs per call", cpu(0), "lower"),
           ("client CPU µs per call", "client_cpu_us_per_call", "lower")],
}
def val(j, k): return k(j) if callable(k) else j.get(k)
def fmt(v):
    if v is None: return "–"
    if abs(v) >= 1000: return f"{v:,.0f}"
    if abs(v) >= 10: return f"{v:.1f}"
    return f"{v:.3g}"
def mean(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.mean(xs) if xs else None
lines = []
info = load(os.path.join(out, "info.json")) or {}
lines.append(f"A/B: base {info.get('base','?')} vs new {info.get('new','?')}, {info.get('date','')}; "
             f"{info.get('reps','?')} rounds in alternation; values are round 1 / round 2 / …, ratio = mean(new) ÷ mean(base)")
lines.append("")
lines.append("| scenario | figure | base | new | new ÷ base |")
lines.append("|---|---|---|---|---|")
problems = []
for sc, figs in F.items():
    b, n = runs(sc, "ub"), runs(sc, "uh")
    if not b and not n: continue
    if sc in ("ml", "mlraw"):
        bare = {os.path.basename(p).split("-r")[-1][:-5]: load(p) for p in glob.glob(os.path.join(out, "ml-bare-r*.json"))}
        for tg, rs in (("ub", b), ("uh", n)):
            for i, (j, m) in enumerate(rs):
                bj = bare.get(str(i + 1)) or {}
                if j.get("p50_ms") and bj.get("p50_ms"): j["ratio_to_bare"] = j["p50_ms"] / bj["p50_ms"]
    first = True
    for title, key, better in figs:
        bs, ns = [val(j, key) for j, _ in b], [val(j, key) for j, _ in n]
        mb, mn = mean(bs), mean(ns)
        ratio = f"{mn/mb:.2f}" if mb and mn is not None else "–"
        lines.append(f"| {sc if first else ''} | {title} | {' / '.join(fmt(x) for x in bs)} | {' / '.join(fmt(x) for x in ns)} | {ratio} |")
        first = False
    if sc == "ml":
        bare_rs = [load(p) or {} for p in sorted(glob.glob(os.path.join(out, "ml-bare-r*.json")))]
        lines.append(f"| | bare Unix-socket echo ms p50 (per round) | {' / '.join(fmt(j.get('p50_ms')) for j in bare_rs)} | | |")
        lines.append(f"| | bare echo: echo server CPU µs per call / client CPU µs per call | "
                     f"{' / '.join(fmt((j.get('cpu_us_per_call') or [None])[0]) for j in bare_rs)} | "
                     f"{' / '.join(fmt(j.get('client_cpu_us_per_call')) for j in bare_rs)} | |")
    if sc in ("fanout", "paced"):
        fl = [(load(p) or {}) for p in sorted(glob.glob(os.path.join(out, f"floor-{sc}-r*.json"))) if not p.endswith(".meta.json")]
        if fl:
            for title, key, _ in figs[:4]:
                lines.append(f"| | floor (wsfloor): {title} | | {' / '.join(fmt(val(j, key)) for j in fl)} | |")
            fm = [(load(p) or {}) for p in sorted(glob.glob(os.path.join(out, f"floor-{sc}-r*.meta.json")))]
            lines.append(f"| | floor: load average before each run | | {' / '.join(str(m.get('load1_before','?')) for m in fm)} | |")
    la = lambda rs: " / ".join(str(m.get("load1_before", "?")) for _, m in rs)
    lines.append(f"| | load average (1 min) before each run | {la(b)} | {la(n)} | |")
    for tg, rs in (("ub", b), ("uh", n)):
        for i, (j, m) in enumerate(rs):
            bad = [f"{k}={j[k]}" for k in ("open_failed", "publish_errors", "subscriber_read_errors", "read_errors_during_hold", "error") if j.get(k)]
            if "aborted" in j: bad.append("aborted: " + j["aborted"])
            if not j: bad.append("no result")
            if bad: problems.append(f"{sc}-{tg}-r{i+1}: " + "; ".join(bad))
lines.append("")
lines.append("problems: " + ("none" if not problems else ""))
lines += ["- " + p for p in problems]
txt = "\n".join(lines)
print(txt)
open(os.path.join(out, "summary.md"), "w").write(txt + "\n")
PY
}

if [ "${1:-}" = "--summary" ]; then summary "${2:?usage: $0 --summary OUTDIR}"; exit 0; fi

BASE=${1:?usage: scripts/bench.sh ab <commit> [OUTDIR]}
OUT=${2:-$ROOT/.bench-ab/$(date -u +%Y%m%dT%H%M%SZ)}
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
WSLOAD_DIR=${WSLOAD_DIR:-$ROOT/../shared/bench/wsload}
SCENARIOS=${SCENARIOS:-idle fanout paced devices ml floor regress}
REPS=${REPS:-2}
export N_IDLE=${N_IDLE:-5000} HOLD=${HOLD:-3s} N_FAN=${N_FAN:-2000} DURATION=${DURATION:-8s} WARMUP=${WARMUP:-2s}
DEV_N=${DEV_N:-5000}
ML_N=${ML_N:-200}
ML_INTERVAL=${ML_INTERVAL:-25ms}
N_MEASURE=${N_MEASURE:-5000}
LOGIN_SECONDS=${LOGIN_SECONDS:-10}
NICE=${NICE:-0}
PORT=${PORT:-$((20000 + RANDOM % 5000))}
BIN=$OUT/bin
mkdir -p "$BIN"

base_rev=$(git -C "$ROOT" rev-parse --short "$BASE^{commit}")
if [ -z "${SKIP_BUILD:-}" ]; then # SKIP_BUILD=1 reuses OUTDIR/bin from an earlier run
	echo "building base $BASE and the working tree into $BIN" >&2
	rm -rf "$OUT/base-src" && mkdir -p "$OUT/base-src"
	git -C "$ROOT" archive "$base_rev" | tar -x -C "$OUT/base-src"
	(cd "$OUT/base-src" && CGO_ENABLED=0 go build -o "$BIN/unhidra-base" ./cmd/unhidra)
	(cd "$OUT/base-src" && go build -o "$BIN/wsmeasure-base" ./internal/ws/wsbench/cmd/wsmeasure)
	(cd "$ROOT" && go build -o "$BIN/wsmeasure-new" ./internal/ws/wsbench/cmd/wsmeasure)
	(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/unhidra-new" ./cmd/unhidra)
	(cd "$WSLOAD_DIR" && go build -o "$BIN/wsload" .)
	(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN/wsfloor" ./internal/ws/wsfloor)
fi
new_rev="$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- . ':!.bench-ab' || echo +dirty)"
[ -n "${SKIP_BUILD:-}" ] && [ -f "$OUT/info.json" ] || # keep the record of the builds measured
	printf '{"base":"%s","new":"%s","date":"%s","reps":%s,"host":"%s cpus, %s"}\n' "$base_rev" "$new_rev" \
		"$(date -u +%FT%TZ)" "$REPS" "$(nproc)" "$(uname -r)" >"$OUT/info.json"
ulimit -n "$(ulimit -Hn)"
bin_of() { case $1 in ub) echo "$BIN/unhidra-base" ;; uh) echo "$BIN/unhidra-new" ;; esac; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# --- idle, fanout, paced: the shared load tool's side-by-side script, targets ub and uh ---
ws=()
run_floor() { # round
	local r=$1 fport=$((PORT + 1)) pid sc
	for sc in fanout paced; do
		"$BIN/wsfloor" -listen "127.0.0.1:$fport" >"$OUT/floor.out" 2>&1 &
		pid=$!
		for _ in $(seq 100); do curl -s -m 1 -o /dev/null "http://127.0.0.1:$fport/health" && break; sleep 0.1; done
		local l0 extra=(-pub-workers 16)
		[ "$sc" = paced ] && extra=(-pub-workers 4 -rate 10)
		l0=$(load1)
		"$BIN/wsload" -target centrifugo -addr "127.0.0.1:$fport" -channel bench:fanout -pid "$pid" -time-limit 40s \
			-mode fanout -n "$N_FAN" -duration "$DURATION" -warmup "$WARMUP" "${extra[@]}" -json "$OUT/floor-$sc-r$r.json" \
			>"$OUT/floor-$sc-r$r.out" 2>&1 || true
		printf '{"load1_before":%s,"load1_after":%s}\n' "$l0" "$(load1)" >"$OUT/floor-$sc-r$r.meta.json"
		kill -TERM "$pid"
		wait "$pid" 2>/dev/null || true
		echo "floor-$sc-r$r done" >&2
	done
}

for sc in $SCENARIOS; do case $sc in idle | fanout | paced) ws+=("$sc") ;; esac; done
# The shared script's fixed password contains its account name ("bench"), which our password policy
# refuses; run a copy that differs only in that line (its own directory is used only for Centrifugo).
sed 's/^UH_PASSWORD=.*/UH_PASSWORD=load-tool-$$-$RANDOM-secret/' "$WSLOAD_DIR/bench_side_by_side.sh" >"$OUT/side_by_side.sh"
grep -q '^UH_PASSWORD=load-tool-' "$OUT/side_by_side.sh" || { echo "bench-ab: could not adapt $WSLOAD_DIR/bench_side_by_side.sh" >&2; exit 1; }
if [ ${#ws[@]} -gt 0 ]; then
	SCENARIOS="${ws[*]}" TARGETS="ub uh" REPS=$REPS NICE=$NICE IDLE_WAIT_TRIES=${IDLE_WAIT_TRIES:-1} \
		UNHIDRA_BASE=$BIN/unhidra-base UNHIDRA=$BIN/unhidra-new WSLOAD=$BIN/wsload UH_PORT=$PORT \
		bash "$OUT/side_by_side.sh" "$OUT/ws" >"$OUT/ws.log" 2>&1 || { echo "side-by-side failed: see $OUT/ws.log" >&2; }
fi

# --- devices and ml: our own runs ---
SPID=
stop_server() {
	[ -n "$SPID" ] || return 0
	kill -TERM "$SPID" 2>/dev/null || true
	wait "$SPID" 2>/dev/null || true
	SPID=
}
FPID=
cleanup() {
	[ -z "$FPID" ] || { kill -TERM "$FPID" 2>/dev/null; wait "$FPID" 2>/dev/null; }
	stop_server
}
trap cleanup EXIT
COMMON=(--listen "127.0.0.1:$PORT" --log-level warn --system-bot=false --drain-window 1s
	--max-conns-per-ip 20000 --conn-rate-per-ip 100000 --conn-burst-per-ip 100000)
# Limits only newer builds have: passed to a build that knows them, so an older base still starts.
NEWER=(--max-tcp-per-ip 20000)
start_server() { # bin datadir log [flags]
	local bin=$1 dir=$2 log=$3 extra=() i help
	shift 3
	help=$("$bin" serve --help 2>&1 || true)
	for ((i = 0; i < ${#NEWER[@]}; i += 2)); do
		if grep -q -- "${NEWER[i]}\b" <<<"$help"; then extra+=("${NEWER[i]}" "${NEWER[i + 1]}"); fi
	done
	"$bin" serve --data-dir "$dir" "${COMMON[@]}" "${extra[@]}" "$@" >"$log" 2>&1 &
	SPID=$!
	for _ in $(seq 600); do grep -q "listening on" "$log" 2>/dev/null && return 0; sleep 0.05; done
	echo "server did not start: $log" >&2
	return 1
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
now() { date +%s.%N; }
metric() { # data dir, awk pattern -> sum
	curl -s -m 2 --cacert "$1/tls-cert.pem" "https://127.0.0.1:$PORT/metrics" | awk -v p="$2" '$0 ~ p {s += $2} END {print s + 0}'
}
devices_online() { metric "$1" '^unhidra_gateway_connections\\{kind="device"\\}' | cut -d. -f1; }
wait_online() { # data dir, n, tries of 0.05 s
	for _ in $(seq "$3"); do [ "$(devices_online "$1")" = "$2" ] && return 0; sleep 0.05; done
	return 1
}

PW=bench-password-$RANDOM$RANDOM
dev_template() { # tg
	local bin tpl=$OUT/devices-$1-template owners=$(((DEV_N + 999) / 1000))
	bin=$(bin_of "$1")
	rm -rf "$tpl" && mkdir -p "$tpl"
	for i in $(seq "$owners"); do
		printf '%s\n' "$PW" | "$bin" admin --data-dir "$tpl/data" user create "owner$i" --password-stdin >/dev/null
		"$bin" admin --data-dir "$tpl/data" device create "d$i" --owner "owner$i" --count 1000 --keys-file "$tpl/keys$i" >/dev/null
	done
	cat "$tpl"/keys[0-9]* | awk -v n="$DEV_N" 'NR <= n' >"$tpl/keys.txt"
	chmod 600 "$tpl/keys.txt"
}
run_devices() { # tg round
	local tg=$1 r=$2 tag="devices-$1-r$2" bin dir=$OUT/data-run l0 rss0 rss1 t0 t1 c0 c1 ok=true first=
	bin=$(bin_of "$tg")
	rm -rf "$dir" && cp -a "$OUT/devices-$tg-template/data" "$dir"
	l0=$(load1)
	start_server "$bin" "$dir" "$OUT/$tag.server.log" --ml-workers 0 || return 1
	sleep 2
	rss0=$(rss_kib "$SPID")
	"$BIN/unhidra-new" bench fleet -n "$DEV_N" --url "wss://127.0.0.1:$PORT/ws" --ca-file "$dir/tls-cert.pem" \
		--keys-file "$OUT/devices-$tg-template/keys.txt" --duration 10m --ramp 2000 --report-every 1m >"$OUT/$tag.fleet.log" 2>&1 &
	FPID=$!
	wait_online "$dir" "$DEV_N" 2400 || ok=false
	sleep 5
	rss1=$(rss_kib "$SPID")
	stop_server
	start_server "$bin" "$dir" "$OUT/$tag.server2.log" --ml-workers 0 || return 1
	t0=$(now) c0=$(cpu_s "$SPID")
	for _ in $(seq 2400); do
		n=$(devices_online "$dir")
		[ -z "$first" ] && [ "${n:-0}" -gt 0 ] && first=$(now)
		[ "$n" = "$DEV_N" ] && break
		sleep 0.05
	done
	t1=$(now) c1=$(cpu_s "$SPID")
	[ "$n" = "$DEV_N" ] || ok=false
	local refused
	refused=$(metric "$dir" '^unhidra_gateway_refusals_total')
	kill -TERM "$FPID" 2>/dev/null
	wait "$FPID" 2>/dev/null || true
	FPID=
	stop_server
	rm -rf "$dir"
	python3 -c 'import json,sys; a=sys.argv[1:]; print(json.dumps({"n":int(a[0]),"kib_per_device":(int(a[2])-int(a[1]))/int(a[0]),
"server_rss_before_kib":int(a[1]),"server_rss_after_kib":int(a[2]),"storm_seconds":float(a[4])-float(a[3]),
"storm_span_seconds":(float(a[4])-float(a[5])) if a[5] else None,"storm_cpu_seconds":float(a[7])-float(a[6]),
"storm_refused":float(a[8]),"all_online":a[9]=="true", **({} if a[9]=="true" else {"error":"not all devices came online"})}))' \
		"$DEV_N" "$rss0" "$rss1" "$t0" "$t1" "${first:-}" "$c0" "$c1" "$refused" "$ok" >"$OUT/$tag.json"
	printf '{"load1_before":%s,"load1_after":%s}\n' "$l0" "$(load1)" >"$OUT/$tag.meta.json"
	echo "$tag: $(cat "$OUT/$tag.json")" >&2
}

ML_USERS=ml1,ml2,ml3,ml4,ml5,ml6,ml7,ml8
ml_template() { # tg
	local bin tpl=$OUT/ml-$1-template
	bin=$(bin_of "$1")
	rm -rf "$tpl"
	for u in ${ML_USERS//,/ }; do
		printf '%s\n' "$PW" | "$bin" admin --data-dir "$tpl" user create "$u" --password-stdin >/dev/null
	done
}
run_ml() { # tg round
	local tg=$1 r=$2 tag="ml-$1-r$2" bin dir=$OUT/data-run l0 tok wpid client t
	bin=$(bin_of "$tg")
	rm -rf "$dir" && cp -a "$OUT/ml-$tg-template" "$dir"
	start_server "$bin" "$dir" "$OUT/$tag.server.log" --no-tls --ml-workers 1 \
		--ml-modules "$ROOT/scripts/bench/ml_echo_model.py" || return 1
	tok=$(curl -s -m 30 -X POST -H 'Content-Type: application/json' -d "{\"name\":\"ml1\",\"password\":\"$PW\"}" \
		"http://127.0.0.1:$PORT/api/v1/auth/login" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
	for _ in $(seq 300); do
		curl -s -m 2 -H "Authorization: Bearer $tok" "http://127.0.0.1:$PORT/api/v1/ml/models" | grep -q '"echo"' && break
		sleep 0.1
	done
	sleep 1
	# CPU per call: the server with its worker (its child), and the worker alone.
	wpid=$(pgrep -P "$SPID" python3 | head -1)
	for client in std raw; do # net/http's client, then the minimal one (as the bare mode's)
		[ $client = std ] && t=$tag || t=mlraw-$tg-r$r
		l0=$(load1)
		UNHIDRA_BENCH_PASSWORD=$PW "$BIN/unhidra-new" bench ml --url "http://127.0.0.1:$PORT" --user "$ML_USERS" \
			--model echo -n "$ML_N" --interval "$ML_INTERVAL" --http-client $client --cpu-pid "$SPID${wpid:+,$wpid}" \
			--json >"$OUT/$t.json" 2>"$OUT/$t.err" || echo '{"error":"bench ml failed"}' >"$OUT/$t.json"
		printf '{"load1_before":%s,"load1_after":%s}\n' "$l0" "$(load1)" >"$OUT/$t.meta.json"
		[ $client = std ] || echo "$t: $(cat "$OUT/$t.json")" >&2
		sleep 5 # the users' rate limit (5 calls/s each) refills
	done
	stop_server
	rm -rf "$dir"
	echo "$tag: $(cat "$OUT/$tag.json")" >&2
}
run_ml_bare() { # round
	local sock=$OUT/echo.sock pid
	rm -f "$sock"
	python3 "$ROOT/internal/mlbridge/testdata/echo_server.py" "$sock" >"$OUT/echo.out" 2>&1 &
	pid=$!
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
	"$BIN/unhidra-new" bench ml --unix "$sock" -n "$ML_N" --interval "$ML_INTERVAL" --cpu-pid "$pid" --json >"$OUT/ml-bare-r$1.json"
	kill -TERM "$pid"
	wait "$pid" 2>/dev/null || true
	echo "ml-bare-r$1: $(cat "$OUT/ml-bare-r$1.json")" >&2
}

src_of() { case $1 in ub) echo "$OUT/base-src" ;; uh) echo "$ROOT" ;; esac; }
gobench_per_s() { # tg package bench-regexp benchtime -> ops/s of the (single) matching benchmark
	local out
	out=$(cd "$(src_of "$1")" && go test -run NONE -bench "$3" -benchtime "$4" -count 1 "$2" 2>&1) || { echo "$out" >&2; return 1; }
	printf '%s\n' "$out" | awk '$1 ~ /^Benchmark/ && $4 == "ns/op" {printf "%.1f", 1e9 / $3; exit}'
}
wsmeasure_kib() { # tg [-tls] -> RSS KiB per idle connection
	"$BIN/wsmeasure-$([ "$1" = ub ] && echo base || echo new)" -n "$N_MEASURE" "${@:2}" 2>/dev/null |
		sed -n 's/.* rss\/conn=[0-9]* B (\([0-9.]*\) KiB).*/\1/p'
}
logins_per_s() { # tg: 8 concurrent clients log in with the right password for LOGIN_SECONDS
	local bin dir=$OUT/data-run
	bin=$(bin_of "$1")
	rm -rf "$dir"
	[ -d "$OUT/ml-$1-template" ] || ml_template "$1" # the ml scenario's accounts
	cp -a "$OUT/ml-$1-template" "$dir"
	# Every request comes from an address of its own (X-Forwarded-For from a trusted loopback proxy), as many
	# users would: the figure is the hashing bound, not the per-address login throttle (20 at once, then one per
	# 3 s, which with one address per client capped 8 clients at 18.4/s in 10 s and answered the rest 429).
	start_server "$bin" "$dir" "$OUT/login-$1.server.log" --no-tls --ml-workers 0 --trusted-proxies 127.0.0.1/32 || return 1
	python3 - "$PORT" "$PW" "$ML_USERS" "$LOGIN_SECONDS" <<'LOGIN'
import http.client, json, sys, threading, time
port, pw, users, secs = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), float(sys.argv[4])
ok, other, stop = [0], {}, time.monotonic() + secs
def worker(i, u):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"name": u, "password": pw})
    n = 0
    while time.monotonic() < stop:
        n += 1
        hdr = {"Content-Type": "application/json", "X-Forwarded-For": f"10.{i + 1}.{n // 250 % 250}.{n % 250 + 1}"}
        c.request("POST", "/api/v1/auth/login", body, hdr)
        r = c.getresponse(); r.read()
        if r.status == 200: ok[0] += 1
        else: other[r.status] = other.get(r.status, 0) + 1
t0 = time.monotonic()
ts = [threading.Thread(target=worker, args=(i, u)) for i, u in enumerate(users)]
for t in ts: t.start()
for t in ts: t.join()
print(f"{ok[0] / (time.monotonic() - t0):.2f}", file=sys.stdout)
if other: print(f"login answers other than 200: {other}", file=sys.stderr)
LOGIN
	stop_server
	rm -rf "$dir"
}
run_regress() { # tg round
	local tg=$1 r=$2 tag="regress-$1-r$2" l0 c1 c64 h ip it lg
	l0=$(load1)
	c1=$(gobench_per_s "$tg" ./internal/chat/ 'BenchmarkSend_GroupCommit/sqlite/senders=1$' 2000x) || c1=
	c64=$(gobench_per_s "$tg" ./internal/chat/ 'BenchmarkSend_GroupCommit/sqlite/senders=64$' 20000x) || c64=
	h=$(gobench_per_s "$tg" ./internal/chat/ 'BenchmarkHistory$' 20000x) || h=
	ip=$(wsmeasure_kib "$tg") it=$(wsmeasure_kib "$tg" -tls)
	lg=$(logins_per_s "$tg") || lg=
	python3 -c 'import json,sys; k=["commit1_per_s","commit64_per_s","history_per_s","idle_plain_kib","idle_tls_kib","logins_per_s"]
print(json.dumps({a: (float(v) if v else None) for a, v in zip(k, sys.argv[1:])}))' "$c1" "$c64" "$h" "$ip" "$it" "$lg" >"$OUT/$tag.json"
	printf '{"load1_before":%s,"load1_after":%s}\n' "$l0" "$(load1)" >"$OUT/$tag.meta.json"
	echo "$tag: $(cat "$OUT/$tag.json")" >&2
}

for sc in $SCENARIOS; do
	case $sc in
	regress)
		[ -d "$OUT/base-src" ] || { echo "regress needs the base source: run without SKIP_BUILD" >&2; continue; }
		for r in $(seq "$REPS"); do for tg in ub uh; do run_regress "$tg" "$r" || echo "$sc-$tg-r$r failed" >&2; done; done
		;;
	devices)
		dev_template ub && dev_template uh
		for r in $(seq "$REPS"); do for tg in ub uh; do run_devices "$tg" "$r" || echo "$sc-$tg-r$r failed" >&2; done; done
		;;
	floor)
		for r in $(seq "$REPS"); do run_floor "$r"; done
		;;
	ml)
		ml_template ub && ml_template uh
		for r in $(seq "$REPS"); do
			run_ml_bare "$r"
			for tg in ub uh; do run_ml "$tg" "$r" || echo "$sc-$tg-r$r failed" >&2; done
		done
		;;
	esac
done
summary "$OUT"
