# e2e.bash: the whole worker (gxp-supervise) against a real broker, on the
# local store or on the Supabase endpoint.  Load after helpers.bash (and
# pg.bash for Supabase).

# worker_env FILE [KEY=VALUE...]: an env file for the worker and gxp-sim.
worker_env() {
	local f=$1
	shift
	{
		echo "MQTT_HOST=127.0.0.1"
		echo "MQTT_PORT=$BROKER_PORT"
		echo "MQTT_CLIENT_ID=gxp-e2e-$$"
		echo "GXP_SPOOL=$BATS_TEST_TMPDIR/spool"
		echo "GXP_STORE=$BATS_TEST_TMPDIR/store"
		echo "RETRANSMIT_DELAY_MS=1000"
		echo "ACK_NEXT_WAKE_TIME=5:30PM"
		for kv in "$@"; do echo "$kv"; done
	} > "$f"
}

# start_worker ENVFILE [--own-group]: gxp-supervise in the background (in
# a process group of its own with --own-group, which kill_worker_group
# kills), waited for until the pipeline runs.  Sets WORKER_PID and
# WORKER_LOG, which each start appends to.
start_worker() {
	local pre=() started subscribed answering
	[ "${2:-}" = --own-group ] && pre=(setsid)
	WORKER_LOG=$BATS_TEST_TMPDIR/worker.log
	started=$(grep -c "Worker started" "$WORKER_LOG" 2>/dev/null || true)
	subscribed=$(grep -c "Subscribed to topics" "$WORKER_LOG" 2>/dev/null || true)
	answering=$(grep -c "gxp-control: info: answering hellos" "$WORKER_LOG" 2>/dev/null || true)
	"${pre[@]}" gxp-supervise --env "$1" --events "$BATS_TEST_TMPDIR/events.ndjson" \
		2>> "$WORKER_LOG" 3>&- &
	WORKER_PID=$!
	# the worker says it has started once gxp-sub has subscribed; then
	# gxp-control's subscription (a hello before it is not heard)
	wait_until 30 eval '[ "$(grep -c "Worker started" "$WORKER_LOG")" -gt "${started:-0}" ]' &&
		wait_until 10 eval '[ "$(grep -c "Subscribed to topics" "$WORKER_LOG")" -gt "${subscribed:-0}" ]' &&
		wait_until 10 eval '[ "$(grep -c "gxp-control: info: answering hellos" "$WORKER_LOG")" -gt "${answering:-0}" ]'
}

# kill_worker_group: SIGKILL to the whole process group of a worker started
# with --own-group, gxp-supervise included, as a crash of the machine's
# service manager would; its stages must die with it.  Waits for them.
kill_worker_group() {
	local stages
	stages=$(pgrep -P "$WORKER_PID" | tr '\n' ' ')
	kill -KILL -- "-$WORKER_PID"
	wait "$WORKER_PID" 2>/dev/null || true
	WORKER_PID=
	wait_until 10 all_gone $stages
}

# all_gone PID...: none of these processes is alive.
all_gone() {
	local p
	for p in "$@"; do
		! kill -0 "$p" 2>/dev/null || return 1
	done
}

# stop_worker: SIGTERM and wait; the status is left in WORKER_RC.
stop_worker() {
	[ -n "${WORKER_PID:-}" ] || return 0
	kill -TERM "$WORKER_PID" 2>/dev/null
	WORKER_RC=0
	wait "$WORKER_PID" 2>/dev/null || WORKER_RC=$?
	WORKER_PID=
}

# ack_topic_capture FILE: records every ack-topic message (mosquitto_sub).
capture_acks() {
	mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -q 1 -t 'ESP32CAM/+/ack' -v \
		> "$1" 2>/dev/null 3>&- &
	ACKCAP_PID=$!
	sleep 0.3
}

# photo_shas DIR: "sha256 size" of every JPEG under DIR, sorted.
photo_shas() {
	find "$1" -name '*.jpg' -exec sha256sum {} + | awk '{print $1}' | sort
}

# stage_pid NAME: the pid of the running stage NAME under this test's worker.
stage_pid() {
	pgrep -P "$WORKER_PID" -x "$1" | head -1
}

# kill_when_up NAME [DELAY]: SIGKILLs stage NAME once the pipeline runs a
# stage of that name other than the last one this killed, DELAY seconds
# (default 0.2) after it came up.  Sets KILLED_PID.
kill_when_up() {
	local pid stage=$1
	wait_until 60 eval 'pid=$(stage_pid "$stage") && [ -n "$pid" ] && [ "$pid" != "${KILLED_PID:-}" ]' ||
		return 1
	sleep "${2:-0.2}"
	kill -KILL "$pid" 2>/dev/null
	KILLED_PID=$pid
}

# kill_random_stage: SIGKILL one of the five stages, chosen at random, once
# the pipeline is up.  Prints the stage's name.
kill_random_stage() {
	local stages=(gxp-sub gxp-control gxp-assemble gxp-upload gxp-pub) s pid i
	s=${stages[RANDOM % 5]}
	# the stage may be between a death and its restart, or end on its own
	# between the lookup and the kill: look again
	for i in $(seq 1 60); do
		pid=$(stage_pid "$s")
		if [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; then
			echo "$s"
			return 0
		fi
		sleep 0.5
	done
	echo "no $s to kill for 30 s; the worker's log ends:" >&2
	tail -20 "$WORKER_LOG" >&2
	return 1
}

e2e_teardown() {
	stop_worker
	[ -n "${PUB_PID:-}" ] && kill "$PUB_PID" 2>/dev/null
	PUB_PID=
	[ -n "${ACKCAP_PID:-}" ] && kill "$ACKCAP_PID" 2>/dev/null
	ACKCAP_PID=
	teardown_broker
}

# numbered_pub OUT ARGS...: tests/chaos-pub in the background against the
# test broker (numbered heartbeats, and readings with --mix readings); the
# messages the broker acknowledged go to OUT.acked, its summary to OUT.
# Sets PUB_PID.
numbered_pub() {
	local out=$1
	shift
	/usr/bin/python3 "$GXP_TOP/tests/chaos-pub" --port "$BROKER_PORT" --acked "$out.acked" \
		"$@" > "$out" 2> "$out.err" 3>&- &
	PUB_PID=$!
}

# wait_pub: waits for numbered_pub; fails if it did not get every PUBACK.
wait_pub() {
	local rc=0
	wait "$PUB_PID" || rc=$?
	PUB_PID=
	[ "$rc" = 0 ] || { cat "$1" "$1.err" >&2; return 1; }
}

# acked_seqs OUT KIND: the numbers of the KIND messages the broker took, sorted.
acked_seqs() {
	awk -v k="$2" '$1 == k { print $2 }' "$1.acked" | sort -n
}

# local_status_seqs STORE / local_reading_seqs STORE: the numbers the rows
# in the local store carry, one line per row, sorted (a number twice: two rows).
local_status_seqs() {
	[ -f "$1/device_status.ndjson" ] || return 0
	jq -r '.raw.seq // empty' "$1/device_status.ndjson" | sort -n
}

local_reading_seqs() {
	[ -f "$1/sensor_readings.ndjson" ] || return 0
	jq -r '.pressure_hpa' "$1/sensor_readings.ndjson" | sort -n
}

# compare_seqs WHAT ACKED ROWS: every acknowledged number has one row,
# none has two; says how many are missing and how many are twice.
compare_seqs() {
	local what=$1 missing twice
	missing=$(comm -23 <(sort -u "$2") <(sort -u "$3") | wc -l)
	twice=$(sort "$3" | uniq -d | wc -l)
	echo "checked: $what: $(wc -l < "$2") acknowledged, $(wc -l < "$3") rows, $missing missing, $twice twice"
	[ "$missing" = 0 ] || echo "  missing: $(comm -23 <(sort -u "$2") <(sort -u "$3") | head -5 | tr '\n' ' ')"
	[ "$twice" = 0 ] || echo "  twice: $(sort "$3" | uniq -d | head -5 | tr '\n' ' ')"
	[ "$missing" = 0 ] && [ "$twice" = 0 ]
}
