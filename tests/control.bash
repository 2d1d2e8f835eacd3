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
		wait_until 10 file_has "$CTL_ERR" "answering hellos on"
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

# queue_for ENVFILE DEV COMMAND...: gxp-cmd queues it; its id goes to ids.
queue_for() {
	local env=$1
	shift
	gxp-cmd --env "$env" "$@" >> "$BATS_TEST_TMPDIR/ids"
}

# control_chaos ENVFILE KILLS: a fleet that cycles (gxp-sim -W) through the
# whole worker while commands are queued for it and random stages, gxp-control
# among them, are SIGKILLed; then each command must be sent, taken by its
# device exactly once, never lost to a sleeping device.  Needs start_worker
# (e2e.bash) and a broker.
control_chaos() {
	local env=$1 kills=$2 devs ids i s pid dev
	local stages=(gxp-control gxp-sub gxp-control gxp-assemble gxp-control gxp-upload gxp-pub)
	devs=$(seq -f 'SIM%06g' 1 10)
	start_worker "$env"
	record_cmds
	# 24 slots a day; an hour's sleep lasts a second
	gxp-sim --env "$env" -d 10 -n 1 -W 40 -T 3600 -A 5000 -R 5000 -t 120000 -s 9 -j \
		> "$BATS_TEST_TMPDIR/sim.out" 2> "$BATS_TEST_TMPDIR/sim.err" 3>&- &
	SIM_PID=$!
	# each device has said hello (so gxp-cmd knows it) before commands are queued
	for dev in $devs; do
		wait_until 30 has_cmds "$dev" 1
	done
	: > "$BATS_TEST_TMPDIR/ids" "$BATS_TEST_TMPDIR/kills"
	RANDOM=99
	for i in $(seq 1 "$kills"); do
		for dev in SIM$(printf %06d $((1 + RANDOM % 10))) SIM$(printf %06d $((1 + RANDOM % 10))) \
		    SIM$(printf %06d $((1 + RANDOM % 10))); do
			case $((RANDOM % 3)) in
			0) set -- send_image image_1.jpg ;;
			1) set -- capture_image ;;
			2) set -- next_wake +1h ;;
			esac
			# its devices row may be on its way still
			wait_until 20 queue_for "$env" "$dev" "$@"
		done
		sleep "0.$((3 + RANDOM % 7))"
		s=${stages[RANDOM % ${#stages[@]}]}
		for _ in $(seq 1 40); do
			pid=$(pgrep -P "$WORKER_PID" -x "$s" | head -1)
			[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null && { echo "$s" >> "$BATS_TEST_TMPDIR/kills"; break; }
			sleep 0.25
		done
	done
	rc=0; wait "$SIM_PID" || rc=$?
	SIM_PID=
	stop_worker
	summary=$(tail -1 "$BATS_TEST_TMPDIR/sim.out")
	echo "gxp-sim: $rc $summary"
	echo "kills: $(sort "$BATS_TEST_TMPDIR/kills" | uniq -c | tr -s ' \n' ' ')"
	ids=$(wc -l < "$BATS_TEST_TMPDIR/ids")
	echo "commands queued: $ids"
	[ "$(grep -c '^gxp-' "$BATS_TEST_TMPDIR/kills")" -eq "$kills" ]
	[ "$(grep -c '^gxp-control' "$BATS_TEST_TMPDIR/kills")" -ge 3 ]
	[ "$ids" -eq $((kills * 3)) ]
	# every command sent, none left queued
	gxp-cmd --env "$env" -l > "$BATS_TEST_TMPDIR/list"
	jq -r '.status' "$BATS_TEST_TMPDIR/list" | sort | uniq -c
	[ "$(jq -r 'select(.status != "sent") | .command_id' "$BATS_TEST_TMPDIR/list" | wc -l)" = 0 ]
	[ "$(jq -r .command_id "$BATS_TEST_TMPDIR/list" | sort)" = "$(sort "$BATS_TEST_TMPDIR/ids")" ]
	# each reached its device and was taken exactly once: a copy sent again
	# (gxp-control killed between the broker taking it and the mark) is
	# dropped by its command_id, as the firmware does
	while read -r id; do
		n=$(grep -c "\"command_id\":\"$id\"" "$CMDS" || true)
		took=$(grep -c "took command $id\$" "$BATS_TEST_TMPDIR/sim.err" || true)
		if [ "$n" != 1 ] || [ "$took" != 1 ]; then
			echo "command $id: sent $n times, taken $took times"
		fi
		[ "$n" -ge 1 ] && [ "$took" = 1 ]
	done < "$BATS_TEST_TMPDIR/ids"
	! grep -q "it is lost: command" "$BATS_TEST_TMPDIR/sim.err" || false
	echo "copies sent again and dropped by the device: $(jq .wake.repeats <<<"$summary")"
}
