#!/usr/bin/env bats
# gxp-control on the local store, against a real broker: every hello
# answered from the queue or the schedule, commands that wait for a
# sleeping device, at once for an awake one, expiry, replays, and gxp-cmd.

load helpers
load control

setup() {
	start_broker plain
	broker_env
	control_env
}

teardown() {
	teardown_control
}

@test "control: the first hello gets capture_image, the next one next_wake with the slot, in SCHEDULE_TZ" {
	# one wake time a day, two hours from now in Berlin: the slot is that instant
	slot=$(( ($(date +%s) + 7200) / 60 * 60 ))
	export SCHEDULE_TZ=Europe/Berlin SCHEDULE_WAKE_TIMES=$(TZ=Europe/Berlin date -d "@$slot" +%H:%M)
	start_control
	hello_answered DEV1
	[ "$(last_cmd DEV1)" = '{"device_id":"DEV1","capture_image":true}' ]
	hello_answered DEV1
	[ "$(last_cmd DEV1)" = "{\"device_id\":\"DEV1\",\"next_wake\":\"$(utc_of "$slot")\"}" ]
	[ "$(cmd_count DEV1)" = 2 ]
	stop_control
	[ "$CTL_RC" = 0 ]
	# the slot is stored, and told downstream with the ACK_OK's clock time
	[ "$(jq -r 'select(.device_hw_id == "DEV1") | .next_wake_at' "$GXP_STORE/control/next_wake.ndjson" | tail -1)" = "$(date -u -d "@$slot" +%Y-%m-%dT%H:%M:%S.000000Z)" ]
	ev=$(jq -c 'select(.event == "schedule")' "$CTL_OUT" | tail -1)
	[ "$(jq -r .next_wake_time <<<"$ev")" = "$(TZ=Europe/Berlin date -d "@$slot" +%-I:%M%p)" ]
	# each answer is a command event for the publish log; the hellos pass on
	[ "$(jq -r 'select(.event == "command") | .kind' "$CTL_OUT" | tr '\n' ' ')" = "capture_image next_wake " ]
	[ "$(jq -r 'select(.topic == "ESP32CAM/DEV1/status") | .payload.status' "$CTL_OUT" | wc -l)" = 2 ]
}

@test "control: a hello after the slot gets capture_image again, and the next slot" {
	export SCHEDULE_CAPTURES_PER_DAY=24
	start_control
	hello_answered DEV1
	hello_answered DEV1
	[[ $(last_cmd DEV1) == *'"next_wake":'* ]]
	# the slot passes: next_wake_at is now behind us, as an hour later
	past=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%S.000000Z)
	echo "{\"device_hw_id\":\"DEV1\",\"next_wake_at\":\"$past\"}" >> "$GXP_STORE/control/next_wake.ndjson"
	wait_until 10 file_has "$CTL_OUT" "\"next_wake_at\":\"$past\""
	hello_answered DEV1
	[ "$(last_cmd DEV1)" = '{"device_id":"DEV1","capture_image":true}' ]
	hello_answered DEV1
	next=$(( ($(date +%s) + 180) / 3600 * 3600 + 3600 ))
	[ "$(last_cmd DEV1)" = "{\"device_id\":\"DEV1\",\"next_wake\":\"$(utc_of "$next")\"}" ] ||
		[ "$(last_cmd DEV1)" = "{\"device_id\":\"DEV1\",\"next_wake\":\"$(utc_of $((next - 3600)))\"}" ]
}

@test "control: a command queued while the device sleeps reaches it at its next hello, and is marked sent" {
	known_device DEV1
	start_control
	hello_answered DEV1	# capture_image
	hello_answered DEV1	# next_wake: asleep now
	id=$(gxp-cmd DEV1 send_image image_7.jpg)
	[ "$(cmd_status "$id")" = queued ]
	# asleep: no poll reads its queue (nothing is expected, so wait a while)
	sleep 1
	[ "$(cmd_count DEV1)" = 2 ]
	[ "$(cmd_status "$id")" = queued ]
	hello_answered DEV1
	[ "$(last_cmd DEV1)" = "{\"device_id\":\"DEV1\",\"send_image\":\"image_7.jpg\",\"command_id\":\"$id\"}" ]
	wait_until 10 eval '[ "$(cmd_status "$id")" = sent ]'
	row=$(gxp-cmd -l DEV1 | jq -c --arg id "$id" 'select(.command_id == $id)')
	[ "$(jq -r .sent_at <<<"$row")" != null ]
	[ "$(jq -r 'select(.command_id == "'"$id"'") | .event_type' "$GXP_STORE/control/device_command_logs.ndjson" | tr '\n' ' ')" = "queued sent " ]
	# the schedule's turn comes at the hello after
	hello_answered DEV1
	[[ $(last_cmd DEV1) == *'"next_wake":'* ]]
	[ "$(cmd_count DEV1)" = 4 ]
	stop_control
	[ "$(jq -r 'select(.event == "command" and .source == "queue") | .command_id' "$CTL_OUT")" = "$id" ]
}

@test "control: a command queued while the device is awake reaches it at once" {
	known_device DEV1
	start_control
	hello_answered DEV1	# capture_image: awake for its wakeup_window_sec
	id=$(gxp-cmd DEV1 capture_image)
	wait_until 10 has_cmds DEV1 2
	[ "$(last_cmd DEV1)" = "{\"device_id\":\"DEV1\",\"capture_image\":true,\"command_id\":\"$id\"}" ]
	wait_until 10 eval '[ "$(cmd_status "$id")" = sent ]'
	grep -q "device DEV1: sending command $id (capture_image), the device is awake" "$CTL_ERR"
	# no second copy at a later poll or hello
	hello_answered DEV1
	[[ $(last_cmd DEV1) == *'"next_wake":'* ]]
	[ "$(cmds_of DEV1 | grep -c "$id")" = 1 ]
}

@test "control: the hello after a command sent at once gets the schedule's answer; a command still queued waits for the next" {
	known_device DEV1
	start_control
	hello_answered DEV1	# capture_image: awake
	wake=$(utc_of $(( $(date +%s) + 3600 )))
	a=$(gxp-cmd DEV1 next_wake "$wake")
	wait_until 10 has_cmds DEV1 2
	[ "$(last_cmd DEV1)" = "{\"device_id\":\"DEV1\",\"next_wake\":\"$wake\",\"command_id\":\"$a\"}" ]
	wait_until 10 eval '[ "$(cmd_status "$a")" = sent ]'
	b=$(gxp-cmd DEV1 capture_image)
	# this hello may have left before the device had the next_wake, which it
	# then took as its answer: a command now would reach it asleep
	hello_answered DEV1
	[[ $(last_cmd DEV1) != *"$b"* ]]
	[ "$(cmd_status "$b")" = queued ]
	grep -q "device DEV1: a command went to it awake since its last hello" "$CTL_ERR"
	hello_answered DEV1
	[ "$(last_cmd DEV1)" = "{\"device_id\":\"DEV1\",\"capture_image\":true,\"command_id\":\"$b\"}" ]
	wait_until 10 eval '[ "$(cmd_status "$b")" = sent ]'
}

@test "control: an expired command is never sent" {
	known_device DEV1
	start_control
	hello_answered DEV1
	hello_answered DEV1	# asleep
	old=$(gxp-cmd -x +1s DEV1 capture_image)
	young=$(gxp-cmd -x +1h DEV1 send_image image_2.jpg)
	# the refresh marks it expired; a hello then gets the one still valid
	wait_until 10 eval '[ "$(cmd_status "$old")" = expired ]'
	hello_answered DEV1
	[[ $(last_cmd DEV1) == *"\"command_id\":\"$young\""* ]]
	! grep -q "$old" "$CMDS" || false
	# a next_wake whose time has passed is expired at the hello, not sent
	hello_answered DEV1	# asleep again
	[[ $(last_cmd DEV1) == *'"next_wake":'* ]]
	late=$(gxp-cmd DEV1 next_wake +2s)
	passed=$(( $(date +%s) + 3 ))
	wait_until 10 eval '[ $(date +%s) -ge $passed ]'
	hello_answered DEV1
	! grep -q "$late" "$CMDS" || false
	[ "$(cmd_status "$late")" = expired ]
	grep -q "command $late: its wake_time has passed; marking it expired" "$CTL_ERR"
}

@test "control: a command past its expires_at at a hello is marked expired there, not sent, before any refresh" {
	export CONTROL_REFRESH_S=3600
	known_device DEV1
	start_control
	hello_answered DEV1
	hello_answered DEV1	# asleep
	old=$(gxp-cmd -x +1s DEV1 capture_image)
	passed=$(( $(date +%s) + 2 ))
	wait_until 10 eval '[ $(date +%s) -ge $passed ]'
	[ "$(cmd_status "$old")" = queued ]
	hello_answered DEV1
	! grep -q "$old" "$CMDS" || false
	wait_until 10 eval '[ "$(cmd_status "$old")" = expired ]'
	grep -q "command $old: past its expires_at; marking it expired" "$CTL_ERR"
}

@test "control: only hellos heard live are answered: none from a replayed log, a pipe, or a retained status" {
	start_control
	hello_answered DEV1
	stop_control
	[ "$(cmd_count DEV1)" = 1 ]
	grep ESP32CAM/DEV1/status "$CTL_OUT" > "$BATS_TEST_TMPDIR/log.ndjson"
	# the same hello again, fresh, from a file, with --replay, and through a
	# pipe into a gxp-control connected to the broker
	jq -c --arg t "$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)" '.tst = $t' "$BATS_TEST_TMPDIR/log.ndjson" \
		> "$BATS_TEST_TMPDIR/fresh.ndjson"
	gxp-control < "$BATS_TEST_TMPDIR/fresh.ndjson" > "$BATS_TEST_TMPDIR/r1" 2> "$BATS_TEST_TMPDIR/r1.err"
	grep -q "replay: lines pass through; no broker, no hello answered" "$BATS_TEST_TMPDIR/r1.err"
	gxp-control --replay < <(cat "$BATS_TEST_TMPDIR/fresh.ndjson") > "$BATS_TEST_TMPDIR/r2" 2> /dev/null
	{ cat "$BATS_TEST_TMPDIR/fresh.ndjson"; sleep 1; } | gxp-control > "$BATS_TEST_TMPDIR/r3" \
		2> "$BATS_TEST_TMPDIR/r3.err"
	grep -q "answering hellos on" "$BATS_TEST_TMPDIR/r3.err"
	# every line passed on unchanged (the schedules known told downstream)
	for r in r1 r2 r3; do
		cmp "$BATS_TEST_TMPDIR/fresh.ndjson" <(grep -v '"event":"schedule"' "$BATS_TEST_TMPDIR/$r")
	done
	# a retained status, delivered at subscription, is no device waking now
	mpub -r -q 1 -t ESP32CAM/DEV2/status -m '{"device_id":"DEV2","status":"Alive","pendingImg":0}'
	start_control
	hello_answered DEV3
	[ "$(cmd_count DEV2)" = 0 ]
	mpub -r -q 1 -t ESP32CAM/DEV2/status -n	# clear it
	# none of it reached a device: DEV1 has its one live answer
	[ "$(cmd_count DEV1)" = 1 ]
}

@test "control: bad gxp-cmd input is refused before the queue is touched" {
	known_device DEV1
	before=$(find "$GXP_STORE" | sort)
	for args in "DEV1 reboot" "DEV1 send_image" "DEV1 send_image ../etc/passwd" \
		"DEV1 next_wake yesterday" "DEV1 next_wake 2020-01-01T00:00:00Z" \
		"DEV1 capture_image extra" "BAD:ID capture_image" "-x 2020-01-01T00:00:00Z DEV1 capture_image" \
		"-c not-a-uuid" "-l BAD:ID" "-l -c x"; do
		# shellcheck disable=SC2086
		run gxp-cmd $args
		echo "$args: $status $output"
		[ "$status" = 100 ]
		[ -n "$output" ]
	done
	[ "$(find "$GXP_STORE" | sort)" = "$before" ]
	run gxp-cmd DEV1 reboot
	[[ $output == *"reboot: unknown command (capture_image, send_image or next_wake)"* ]]
	run gxp-cmd DEV1 next_wake 2020-01-01T00:00:00Z
	[[ $output == *"next_wake 2020-01-01T00:00:00Z: that time has passed"* ]]
	# a device the store has never seen is refused too, and nothing is queued
	run gxp-cmd NEVERSEEN capture_image
	[ "$status" = 100 ]
	[[ $output == *"device NEVERSEEN is not known"* ]]
	[ -z "$(find "$GXP_STORE/control/commands" -name '*.json' 2>/dev/null)" ]
}

@test "control: gxp-cmd lists commands and cancels one still queued" {
	known_device DEV1
	known_device DEV2
	a=$(gxp-cmd DEV1 capture_image)
	b=$(gxp-cmd DEV2 next_wake +2h)
	[ "$(gxp-cmd -l | jq -r .command_id | sort)" = "$(printf '%s\n' "$a" "$b" | sort)" ]
	[ "$(gxp-cmd -l DEV2 | jq -c '[.command_type, .status, .device_hw_id]')" = '["next_wake","queued","DEV2"]' ]
	run gxp-cmd -c "$a"
	[ "$status" = 0 ]
	[ "$output" = "$a" ]
	[ "$(cmd_status "$a")" = cancelled ]
	run gxp-cmd -c "$a"
	[ "$status" = 100 ]
	[[ $output == *"command $a is cancelled, not queued; not cancelled"* ]]
	run gxp-cmd -c 00000000-0000-4000-8000-000000000000
	[ "$status" = 100 ]
	[[ $output == *"no command 00000000-0000-4000-8000-000000000000"* ]]
	# a cancelled command is never sent
	start_control
	hello_answered DEV1
	[ "$(last_cmd DEV1)" = '{"device_id":"DEV1","capture_image":true}' ]
}
