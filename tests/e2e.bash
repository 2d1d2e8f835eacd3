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

# start_worker ENVFILE: gxp-supervise in the background, waited for until
# the pipeline runs.  Sets WORKER_PID and WORKER_LOG.
start_worker() {
	WORKER_LOG=$BATS_TEST_TMPDIR/worker.log
	gxp-supervise --env "$1" --events "$BATS_TEST_TMPDIR/events.ndjson" \
		2> "$WORKER_LOG" 3>&- &
	WORKER_PID=$!
	wait_until 30 file_has "$WORKER_LOG" "Worker started" &&
		wait_until 10 file_has "$WORKER_LOG" "Subscribed to topics"
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

# sim_shas: the sha256 of each photo gxp-sim sends: the examples, cycled.
e2e_teardown() {
	stop_worker
	[ -n "${ACKCAP_PID:-}" ] && kill "$ACKCAP_PID" 2>/dev/null
	ACKCAP_PID=
	teardown_broker
}
