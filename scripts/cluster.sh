#!/usr/bin/env bash
# The reference cluster of deploy/cluster without containers: three
# `unhidra serve` nodes on loopback sharing one new PostgreSQL database and
# a NATS server of their own (with a password), behind HAProxy using
# deploy/cluster/haproxy.cfg.
#
#   scripts/cluster.sh up       start everything, wait until all are ready
#   scripts/cluster.sh status   what runs, and each node's /readyz
#   scripts/cluster.sh down     stop what `up` started, drop the database
#
# Environment:
#   UNHIDRA_CLUSTER_DIR       state, logs, secrets (default .cache/cluster)
#   UNHIDRA_CLUSTER_PORT      first of 6 ports (default 18080): balancer,
#                             nodes +1..+3, HAProxy stats +4, NATS +5
#   UNHIDRA_CLUSTER_POSTGRES  an administrative connection used to create and
#                             drop the database (default
#                             postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)
#   UNHIDRA_BIN               the unhidra binary (default: built into the state dir)
# Secrets (the NATS and administrator passwords) are generated and kept in
# the state directory, mode 0600; the administrator is "admin".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${UNHIDRA_CLUSTER_DIR:-$ROOT/.cache/cluster}
BASE=${UNHIDRA_CLUSTER_PORT:-18080}
PGADMIN=${UNHIDRA_CLUSTER_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
LB=127.0.0.1:$BASE
STATS=127.0.0.1:$((BASE + 4))
NATS_PORT=$((BASE + 5))
node_addr() { echo "127.0.0.1:$((BASE + $1))"; }

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

ready() { # URL: true when /readyz answers 200
	[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1/readyz" || true)" = 200 ]
}

wait_ready() { # URL WHAT
	for _ in $(seq 1 150); do ready "$1" && return 0; sleep 0.2; done
	die "$2 is not ready at $1 after 30 s (logs in $DIR/logs)"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_node() { # N
	local n=$1 extra=()
	mkdir -p "$DIR/node$n"
	chmod 700 "$DIR/node$n"
	[ "$n" = 1 ] || extra+=(--system-bot=false)
	(
		export UNHIDRA_BUS_PASSWORD
		UNHIDRA_BUS_PASSWORD=$(cat "$DIR/nats-password")
		if [ "$n" = 1 ]; then
			export UNHIDRA_ADMIN_PASSWORD
			UNHIDRA_ADMIN_PASSWORD=$(cat "$DIR/admin-password")
		fi
		exec setsid "$BIN" serve --data-dir "$DIR/node$n" --listen "$(node_addr "$n")" --no-tls \
			--store "$(cat "$DIR/store-url")" --bus "nats://127.0.0.1:$NATS_PORT" --bus-user unhidra \
			--trusted-proxies 127.0.0.1/32 --ml-workers 0 --log-format json --drain-window 1s "${extra[@]}" \
			</dev/null >>"$DIR/logs/node$n.log" 2>&1
	) &
	echo $! >"$DIR/node$n.pid"
}

up() {
	command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || die "nats-server is not installed"
	command -v haproxy >/dev/null || die "haproxy is not installed (scripts/setup.sh installs it)"
	command -v psql >/dev/null || die "psql is not installed"
	if alive "$DIR/node1.pid"; then die "already up (scripts/cluster.sh down first)"; fi
	mkdir -p "$DIR/logs"
	chmod 700 "$DIR"
	umask 077
	BIN=${UNHIDRA_BIN:-}
	if [ -z "$BIN" ]; then
		log "building unhidra"
		go build -o "$DIR/unhidra" ./cmd/unhidra
		BIN=$DIR/unhidra
	fi
	echo "$BIN" >"$DIR/bin"
	[ -f "$DIR/nats-password" ] || secret >"$DIR/nats-password"
	[ -f "$DIR/admin-password" ] || secret >"$DIR/admin-password"

	# PostgreSQL: a database of our own.
	if [ ! -f "$DIR/database" ]; then
		local db
		db="unhidra_cluster_$(secret | head -c 10)"
		psql -q -v ON_ERROR_STOP=1 "$PGADMIN" -c "CREATE DATABASE $db" >/dev/null
		echo "$db" >"$DIR/database"
	fi
	local db pgbase
	db=$(cat "$DIR/database")
	pgbase=${PGADMIN%%\?*}
	pgbase=${pgbase%/*}
	echo "$pgbase/$db?sslmode=disable" >"$DIR/store-url"

	# NATS with a password, on its own port.
	cat >"$DIR/nats.conf" <<-NATS
		listen: 127.0.0.1:$NATS_PORT
		authorization {
		  user: unhidra
		  password: "$(cat "$DIR/nats-password")"
		}
	NATS
	local nats
	nats=$(command -v nats-server || echo /usr/sbin/nats-server)
	setsid "$nats" -c "$DIR/nats.conf" </dev/null >>"$DIR/logs/nats.log" 2>&1 &
	echo $! >"$DIR/nats.pid"
	for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done

	# Node 1 creates the schema, the administrator and the keys; the others
	# get copies of the keys.
	start_node 1
	wait_ready "http://$(node_addr 1)" node1
	for n in 2 3; do
		mkdir -p "$DIR/node$n"
		cp "$DIR/node1/signing-keys.json" "$DIR/node1/cluster-keys.json" "$DIR/node$n/"
		start_node "$n"
	done
	for n in 2 3; do wait_ready "http://$(node_addr "$n")" "node$n"; done

	UNHIDRA_LB_BIND=$LB UNHIDRA_LB_STATS=$STATS UNHIDRA_NODE1=$(node_addr 1) UNHIDRA_NODE2=$(node_addr 2) \
		UNHIDRA_NODE3=$(node_addr 3) setsid haproxy -db -f deploy/cluster/haproxy.cfg \
		</dev/null >>"$DIR/logs/haproxy.log" 2>&1 &
	echo $! >"$DIR/haproxy.pid"
	wait_ready "http://$LB" "the balancer"
	log "up: balancer http://$LB (nodes $(node_addr 1) $(node_addr 2) $(node_addr 3), NATS :$NATS_PORT, database $db)"
	log "administrator: admin, password in $DIR/admin-password"
}

stop_pid() { # PIDFILE NAME
	local f=$1 pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		if kill -0 "$pid" 2>/dev/null; then
			log "$2 did not stop in 20 s: killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$f"
}

down() {
	[ -d "$DIR" ] || { log "nothing to stop"; return 0; }
	stop_pid "$DIR/haproxy.pid" haproxy
	for n in 3 2 1; do stop_pid "$DIR/node$n.pid" "node$n"; done
	stop_pid "$DIR/nats.pid" nats-server
	if [ -f "$DIR/database" ]; then
		psql -q "$PGADMIN" -c "DROP DATABASE IF EXISTS $(cat "$DIR/database") WITH (FORCE)" >/dev/null
	fi
	rm -rf "$DIR"
	log "down"
}

status() {
	[ -d "$DIR" ] || { echo "down"; return 3; }
	local bad=0 name
	for name in nats node1 node2 node3 haproxy; do
		if alive "$DIR/$name.pid"; then
			printf '%-8s running (pid %s)\n' "$name" "$(cat "$DIR/$name.pid")"
		else
			printf '%-8s STOPPED\n' "$name"
			bad=1
		fi
	done
	for n in 1 2 3; do
		if ready "http://$(node_addr "$n")"; then echo "node$n    ready"; else echo "node$n    NOT READY"; bad=1; fi
	done
	if ready "http://$LB"; then echo "balancer ready at http://$LB"; else echo "balancer NOT READY"; bad=1; fi
	return $bad
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
*) echo "usage: scripts/cluster.sh up|down|status" >&2; exit 2 ;;
esac
