# pg.bash: a throwaway PostgreSQL 15 cluster (Debian's postgresql) set up the
# way a Supabase project is for gxp (roles, Storage tables, sql/schema.sql,
# sql/rls.sql, sql/report.sql), and the local endpoint
# (tests/endpoint/gxp-endpoint) that speaks the PostgREST and Storage subset
# gxp-upload and gxp-report use.  Load it after
# helpers.bash.  The server listens on a unix socket in its own directory
# only; as root it runs as the postgres system user.

# helpers.bash's clean-up of GXP_* variables also removes its GXP_TOP.
GXP_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export GXP_TOP
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
# Debian's interpreter: python3-psycopg2 belongs to it, not to another
# python3 that may come first on PATH.
GXP_PYTHON=${GXP_PYTHON:-/usr/bin/python3}
PG_TABLES="devices captures sensor_readings device_status device_errors device_publish_log"
# Outside bats (by hand), everything goes below one temporary directory.
PG_BASE=${BATS_FILE_TMPDIR:-${TMPDIR:-/tmp}/gxp-test.$$}

# as_pg COMMAND...: runs COMMAND as the cluster's owner.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# let_pg_in DIR: as root, lets the postgres user reach DIR (search
# permission on the directories above it that root owns).
let_pg_in() {
	local d=$1
	[ "$(id -u)" = 0 ] || return 0
	chown postgres: "$d"
	d=$(dirname "$d")
	while [ "$d" != / ]; do
		if [ "$(stat -c %u "$d")" = 0 ] && [ -z "$(find "$d" -maxdepth 0 -perm -o+x)" ]; then
			chmod o+x "$d"
		fi
		d=$(dirname "$d")
	done
}

# start_pg [DIR]: initdb, start, and apply the Supabase stand-in and sql/.
# Exports PG_DIR, PGHOST (the socket directory), PGUSER, PGDATABASE.
start_pg() {
	PG_DIR=${1:-$PG_BASE/pg}
	mkdir -p "$PG_DIR"
	let_pg_in "$PG_DIR"
	as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 \
		--locale=C --no-sync > "$PG_DIR/initdb.log" 2>&1 || {
		cat "$PG_DIR/initdb.log" >&2
		return 1
	}
	cat >> "$PG_DIR/data/postgresql.conf" <<-EOF
		listen_addresses = ''
		unix_socket_directories = '$PG_DIR'
		max_connections = 300
		fsync = off
		synchronous_commit = off
		full_page_writes = off
	EOF
	as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 start \
		> /dev/null || {
		cat "$PG_DIR/server.log" >&2
		return 1
	}
	export PG_DIR PGHOST=$PG_DIR PGUSER=postgres PGDATABASE=postgres
	psql_file "$GXP_TOP/tests/endpoint/supabase.sql" &&
		psql_file "$GXP_TOP/sql/schema.sql" &&
		psql_file "$GXP_TOP/sql/rls.sql" &&
		psql_file "$GXP_TOP/sql/report.sql"
}

stop_pg() {
	[ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ] || return 0
	as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop > /dev/null 2>&1
	return 0
}

# psql_file FILE: runs a SQL file as the superuser, stopping at an error.
psql_file() {
	PGOPTIONS=--client-min-messages=warning "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
		-f "$1" > /dev/null
}

# psql_q SQL [ROLE]: the result rows, unaligned, '|' between columns; as
# ROLE (anon, authenticated, service_role) when given.
psql_q() {
	local q=$1
	[ -n "${2:-}" ] && q="set role $2; $q"
	"$PG_BIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -c "$q"
}

# reset_db: empties gxp's tables and the Storage objects (rows and files).
reset_db() {
	psql_q "truncate $(echo $PG_TABLES | sed 's/ /, /g') cascade; delete from storage.objects;" \
		> /dev/null
	[ -n "${EP_DIR:-}" ] && rm -rf "$EP_DIR/objects"
	return 0
}

# run_endpoint DIR ARGS...: gxp-endpoint on a free 127.0.0.1 port, as the
# authenticator login, its port file and log in DIR; waits until it
# listens.  Sets RUN_PID and RUN_PORT.
run_endpoint() {
	local dir=$1
	shift
	mkdir -p "$dir"
	rm -f "$dir/port"
	"$GXP_PYTHON" "$GXP_TOP/tests/endpoint/gxp-endpoint" \
		--dsn "host=$PGHOST dbname=postgres user=authenticator" \
		--storage-dir "${EP_DIR:-$dir}/objects" --port-file "$dir/port" \
		--service-key "$EP_SERVICE_KEY" --anon-key "$EP_ANON_KEY" \
		--secret-key "$EP_SECRET_KEY" --publishable-key "$EP_PUBLISHABLE_KEY" "$@" \
		> "$dir/log" 2>&1 &
	RUN_PID=$!
	RUN_DIR=$dir
	if ! wait_until 20 endpoint_ready; then
		cat "$dir/log" >&2
		return 1
	fi
	RUN_PORT=$(cat "$dir/port")
}

endpoint_ready() {
	kill -0 "$RUN_PID" 2>/dev/null || return 2
	[ -s "$RUN_DIR/port" ] && port_open "$(cat "$RUN_DIR/port")"
}

# jwt_for ROLE: a JWT-shaped key whose payload names ROLE, as Supabase's
# legacy keys do (the endpoint compares keys; no signature is checked).
jwt_for() {
	local payload
	payload=$(printf '{"iss":"supabase","role":"%s"}' "$1" | base64 -w0 | tr '+/' '-_' | tr -d '=')
	echo "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.$payload.c2lnbmVkLWZvci10ZXN0cy1vbmx5$RANDOM"
}

# start_endpoint [ARGS...]: the test endpoint (run_endpoint).  Exports
# EP_URL, EP_PORT, EP_DIR, EP_PID and the keys: the legacy JWTs
# EP_SERVICE_KEY and EP_ANON_KEY, and the new EP_SECRET_KEY (sb_secret_...)
# and EP_PUBLISHABLE_KEY (sb_publishable_...).  ARGS go to gxp-endpoint
# (--storage-prefix "", --tls-cert ..., --verbose).
start_endpoint() {
	EP_DIR=${EP_DIR:-$PG_BASE/endpoint}
	export EP_SERVICE_KEY=${EP_SERVICE_KEY:-$(jwt_for service_role)}
	export EP_ANON_KEY=${EP_ANON_KEY:-$(jwt_for anon)}
	export EP_SECRET_KEY=${EP_SECRET_KEY:-sb_secret_$(head -c 24 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')}
	export EP_PUBLISHABLE_KEY=${EP_PUBLISHABLE_KEY:-sb_publishable_$(head -c 16 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')}
	run_endpoint "$EP_DIR" "$@" || return 1
	EP_PID=$RUN_PID
	EP_PORT=$RUN_PORT
	EP_URL=http://127.0.0.1:$EP_PORT
	export EP_DIR EP_PID EP_PORT EP_URL
}

stop_endpoint() {
	[ -n "${EP_PID:-}" ] || return 0
	kill "$EP_PID" 2>/dev/null
	wait "$EP_PID" 2>/dev/null
	EP_PID=
	return 0
}

# supabase_env: the environment gxp-upload needs to use the endpoint, with
# the legacy service_role key (the tests of the new keys set
# SUPABASE_SECRET_KEY themselves).
supabase_env() {
	export SUPABASE_URL=$EP_URL SUPABASE_SERVICE_ROLE=$EP_SERVICE_KEY
}

# ep_control PATH [JSON]: POSTs JSON (or GETs) to the endpoint's control API.
ep_control() {
	if [ $# -ge 2 ]; then
		curl -sf -X POST -H 'Content-Type: application/json' --data "$2" \
			"http://127.0.0.1:$EP_PORT/_control/$1"
	else
		curl -sf "http://127.0.0.1:$EP_PORT/_control/$1"
	fi
}

# ep_fault JSON: injects a fault (see tests/endpoint/gxp-endpoint), e.g.
#   ep_fault '{"match":"/object/","status":503,"count":3}'
#   ep_fault '{"match":"/rest/v1/captures","hold_ms":30000,"count":1}'
ep_fault() {
	ep_control fault "$1" > /dev/null
}

# ep_reset: forgets faults, counts and the request log.
ep_reset() {
	ep_control reset '{}' > /dev/null
}

# ep_count KIND: requests of KIND so far ("storage", "rest:captures", ...,
# or "total").
ep_count() {
	if [ "$1" = total ]; then
		ep_control stats | jq -r '.total'
	else
		ep_control stats | jq -r --arg k "$1" '.requests[$k] // 0'
	fi
}

# ep_held: requests being held now.
ep_held() {
	ep_control stats | jq -r '.held'
}

# ep_log: the request log, one JSON object a line.
ep_log() {
	ep_control log | jq -c '.[]'
}
