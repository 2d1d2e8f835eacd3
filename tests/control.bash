# control.bash: the rig for gxp-control's tests: a broker, gxp-sub feeding
# gxp-control through a FIFO, every message on the devices' cmd topics
# recorded, hellos sent with mosquitto_pub.  Load after helpers.bash.

# control_env [SETTING=VALUE...]: a spool and store of this test's own,
# quick polls and refreshes; the files the helpers below use.
control_env() {
	export GXP_SPOOL=$BATS_TEST_TMPDIR/spool GXP_STORE=$BATS_TEST_TMPDIR/store
	export CONTROL_POLL_MS=200 CONTROL_REFRESH_S=1
	CMDS=$BATS_TEST_TMPDIR/cmds CTL_OUT=$BATS_TEST_TMPDIR/ctl.out
	CTL_ERR=$BATS_TEST_TMPDIR/ctl.err
	mkdir -p "$GXP_STORE"
}

# known_device DEV: the devices row gxp-upload would have written, which
# gxp-cmd looks for.
known_device() {
	printf '{"device_hw_id":"%s","last_seen_at":"2026-01-01T00:00:00.000000Z"}\n' "$1" \
		>> "$GXP_STORE/devices.ndjson"
}

subscribed() {
	grep -q "$1 1 $2" "$BROKER_DIR/mosquitto.log"
}

# record_cmds: every cmd-topic message, "topic payload", into $CMDS.
record_cmds() {
	: > "$CMDS"
	mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -i "cmds-$$" -q 1 -t 'ESP32CAM/+/cmd' -v \
		> "$CMDS" 2>/dev/null 3>&- &
	CMDSUB_PID=$!
	wait_until 10 subscribed "cmds-$$" 'ESP32CAM/+/cmd'
}

# start_control [ARGS...]: gxp-sub -> FIFO -> gxp-control ARGS, waited for
# until both are connected; sets SUB_PID and CTL_PID.
start_control() {
	local fifo=$BATS_TEST_TMPDIR/control.fifo
	[ -n "${CMDSUB_PID:-}" ] || record_cmds
	rm -f "$fifo"
	mkfifo "$fifo"
	gxp-control "$@" < "$fifo" > "$CTL_OUT" 2> "$CTL_ERR" 3>&- &
	CTL_PID=$!
	gxp-sub -c -i "ctl-sub-$$" > "$fifo" 2> "$BATS_TEST_TMPDIR/sub.err" 3>&- &
	SUB_PID=$!
	wait_until 10 file_has "$BATS_TEST_TMPDIR/sub.err" "Subscribed to topics" &&
		wait_until 10 file_has "$CTL_ERR" "MQTT connected"
}

# stop_control: gxp-sub stops, the end of input stops gxp-control; its
# status in CTL_RC.
stop_control() {
	[ -n "${SUB_PID:-}" ] && kill -TERM "$SUB_PID" 2>/dev/null && wait "$SUB_PID" 2>/dev/null
	SUB_PID=
	CTL_RC=0
	[ -n "${CTL_PID:-}" ] && { wait "$CTL_PID" || CTL_RC=$?; }
	CTL_PID=
	return 0
}

teardown_control() {
	[ -n "${SUB_PID:-}" ] && kill -KILL "$SUB_PID" 2>/dev/null
	[ -n "${CTL_PID:-}" ] && kill -KILL "$CTL_PID" 2>/dev/null
	[ -n "${CMDSUB_PID:-}" ] && kill "$CMDSUB_PID" 2>/dev/null
	SUB_PID= CTL_PID= CMDSUB_PID=
	teardown_broker
}

# hello DEV: the device wakes and says so.
hello() {
	mpub -q 1 -t "ESP32CAM/$1/status" -m "{\"device_id\":\"$1\",\"status\":\"Alive\",\"pendingImg\":0}"
}

# cmds_of DEV: the payloads sent to DEV, one a line.
cmds_of() {
	sed -n "s|^ESP32CAM/$1/cmd ||p" "$CMDS"
}

cmd_count() {
	cmds_of "$1" | wc -l
}

# has_cmds DEV N: DEV was sent at least N messages.
has_cmds() {
	[ "$(cmd_count "$1")" -ge "$2" ]
}

# last_cmd DEV: the last message sent to DEV.
last_cmd() {
	cmds_of "$1" | tail -1
}

# hello_answered DEV: says hello and waits for one answer more.
hello_answered() {
	local n
	n=$(cmd_count "$1")
	hello "$1"
	wait_until 10 has_cmds "$1" $((n + 1))
}

# utc_of EPOCH: the wire's time, 2026-12-01T17:30:00+00:00.
utc_of() {
	date -u -d "@$1" +%Y-%m-%dT%H:%M:%S+00:00
}

# queued_status ID: the status of a command, as gxp-cmd -l reports it.
cmd_status() {
	gxp-cmd -l | jq -r --arg id "$1" 'select(.command_id == $id) | .status'
}
