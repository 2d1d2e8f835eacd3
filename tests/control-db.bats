#!/usr/bin/env bats
# gxp-control and gxp-cmd on the Supabase path: a real broker, and the
# endpoint in front of PostgreSQL carrying sql/schema.sql and sql/rls.sql
# (devices.next_wake_at, device_configs, device_commands with its checks,
# device_command_logs filled by its trigger).

load helpers
load pg
load e2e
load control

setup_file() {
	start_pg
	start_endpoint
}

teardown_file() {
	stop_endpoint
	stop_pg
}

setup() {
	reset_db
	ep_reset
	start_broker plain
	broker_env
	control_env
	supabase_env
}

teardown() {
	[ -n "${SIM_PID:-}" ] && kill "$SIM_PID" 2>/dev/null
	[ -n "${WORKER_PID:-}" ] && stop_worker
	teardown_control
}

# device_row DEV: a devices row, as gxp-upload writes it for a device seen.
device_row() {
	psql_q "insert into devices (device_hw_id) values ('$1') on conflict (device_hw_id) do nothing"
}

@test "control/db: capture_image, then next_wake with the slot stored in devices.next_wake_at; after the slot, capture_image again" {
	export SCHEDULE_CAPTURES_PER_DAY=24
	start_control
	hello_answered DEV1
	[ "$(last_cmd DEV1)" = '{"device_id":"DEV1","capture_image":true}' ]
	hello_answered DEV1
	next=$(sed 's/.*"next_wake":"\([^"]*\)".*/\1/' <<<"$(last_cmd DEV1)")
	[ "$(date -u -d "$next" +%M:%S)" = 00:00 ]
	# stored with an upsert: the devices row exists though gxp-upload never ran
	wait_until 10 eval '[ "$(psql_q "select next_wake_at = '"'$next'"' from devices where device_hw_id = '"'DEV1'"'")" = t ]'
	# an hour later, as far as the database is concerned
	psql_q "update devices set next_wake_at = now() - interval '1 minute' where device_hw_id = 'DEV1'"
	wait_until 10 eval '[ "$(jq -r '"'"'select(.event == "schedule") | .next_wake_at'"'"' "$CTL_OUT" | tail -1)" \< "$(date -u +%Y-%m-%dT%H:%M:%S)" ]'
	hello_answered DEV1
	[ "$(last_cmd DEV1)" = '{"device_id":"DEV1","capture_image":true}' ]
	wait_until 10 eval '[ "$(psql_q "select next_wake_at > now() from devices where device_hw_id = '"'DEV1'"'")" = t ]'
}

@test "control/db: device_configs: wake times in SCHEDULE_TZ, test mode; a bad row leaves the default" {
	export SCHEDULE_TZ=America/New_York
	device_row DEV1
	device_row DEV2
	device_row DEV3
	slot=$(( ($(date +%s) + 7200) / 60 * 60 ))
	psql_q "insert into device_configs (device_id, wakeup_time_1, wakeup_time_2)
		select device_id, '$(TZ=America/New_York date -d "@$slot" +%H:%M)', '$(TZ=America/New_York date -d "@$((slot + 3600))" +%H:%M)'
		from devices where device_hw_id = 'DEV1';
		insert into device_configs (device_id, test_mode, test_interval_minutes)
		select device_id, true, 10 from devices where device_hw_id = 'DEV2'"
	# an older row the checks did not see: a day of 30 captures
	psql_q "alter table device_configs drop constraint if exists device_configs_capture_per_day_check;
		insert into device_configs (device_id, capture_per_day) select device_id, 30 from devices where device_hw_id = 'DEV3'"
	start_control
	for d in DEV1 DEV2 DEV3; do hello_answered $d; done
	# every 10 minutes: the first slot more than 180 s (the tolerance) ahead
	before=$(( ($(date +%s) + 180) / 600 * 600 + 600 ))
	for d in DEV1 DEV2 DEV3; do hello_answered $d; done
	after=$(( ($(date +%s) + 180) / 600 * 600 + 600 ))
	[ "$(last_cmd DEV1)" = "{\"device_id\":\"DEV1\",\"next_wake\":\"$(utc_of "$slot")\"}" ]
	[ "$(last_cmd DEV2)" = "{\"device_id\":\"DEV2\",\"next_wake\":\"$(utc_of "$before")\"}" ] ||
		[ "$(last_cmd DEV2)" = "{\"device_id\":\"DEV2\",\"next_wake\":\"$(utc_of "$after")\"}" ]
	grep -q "device DEV3: device_configs.capture_per_day is not valid; the default schedule is used" "$CTL_ERR"
	[[ $(last_cmd DEV3) == *'"next_wake":'* ]]
	psql_q "delete from device_configs; alter table device_configs add constraint
		device_configs_capture_per_day_check check (capture_per_day between 1 and 24)"
}

@test "control/db: a command queued while the device sleeps reaches it at its next hello; sent_at, and the log rows" {
	start_control
	hello_answered DEV1
	hello_answered DEV1	# asleep
	id=$(gxp-cmd DEV1 send_image image_4.jpg)
	[ "$(psql_q "select status from device_commands where command_id = '$id'")" = queued ]
	sleep 1	# nothing is expected: no poll reads a sleeping device's queue
	[ "$(cmd_count DEV1)" = 2 ]
	hello_answered DEV1
	[ "$(last_cmd DEV1)" = "{\"device_id\":\"DEV1\",\"send_image\":\"image_4.jpg\",\"command_id\":\"$id\"}" ]
	wait_until 10 eval '[ "$(psql_q "select status, sent_at is not null from device_commands where command_id = '"'$id'"'")" = "sent|t" ]'
	[ "$(psql_q "select string_agg(event_type, ' ' order by created_at) from device_command_logs where command_id = '$id'")" = "queued sent" ]
}

@test "control/db: a command an operator inserts while the device is awake reaches it at once" {
	start_control
	hello_answered DEV1	# capture_image: awake
	psql_q "insert into device_commands (device_id, command_type, command_payload)
		select device_id, 'next_wake', jsonb_build_object('wake_time', to_char(now() + interval '1 hour', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))
		from devices where device_hw_id = 'DEV1'"
	id=$(psql_q "select command_id from device_commands")
	wait_until 10 has_cmds DEV1 2
	[[ $(last_cmd DEV1) == *"\"command_id\":\"$id\""* ]]
	wait_until 10 eval '[ "$(psql_q "select status from device_commands")" = sent ]'
	# told to sleep: no longer polled
	n=$(ep_count rest:device_commands)
	sleep 1	# nothing is expected: give a poll time to happen
	[ "$(ep_count rest:device_commands)" -le $((n + 1)) ]
}

@test "control/db: expired commands are never sent; bad rows that got past no check are marked failed" {
	start_control
	hello_answered DEV1
	hello_answered DEV1	# asleep
	old=$(gxp-cmd -x +1s DEV1 capture_image)
	# a row from before the checks: a type gxp cannot send
	psql_q "alter table device_commands drop constraint device_commands_command_check;
		insert into device_commands (device_id, command_type, requested_at)
		select device_id, 'reboot', now() - interval '1 minute' from devices where device_hw_id = 'DEV1'"
	psql_file "$GXP_TOP/sql/schema.sql"
	bad=$(psql_q "select command_id from device_commands where command_type = 'reboot'")
	wait_until 10 eval '[ "$(psql_q "select status from device_commands where command_id = '"'$old'"'")" = expired ]'
	hello_answered DEV1
	[[ $(last_cmd DEV1) == *'"next_wake":'* ]]
	! grep -q "$old\|$bad" "$CMDS" || false
	wait_until 10 eval '[ "$(psql_q "select status from device_commands where command_id = '"'$bad'"'")" = failed ]'
	grep -q "device DEV1 command $bad: unknown command type .*; marking it failed" "$CTL_ERR"
	[ "$(psql_q "select string_agg(event_type, ' ' order by created_at) from device_command_logs where command_id = '$old'")" = "queued expired" ]
}

@test "control/db: a database outage still answers every hello, from the schedule; queued commands wait for it to end" {
	export CONTROL_DB_WAIT_MS=300 UPLOAD_RETRY_MAX_MS=300 UPLOAD_TIMEOUT_MS=2000
	start_control
	hello_answered DEV1	# capture_image, next_wake_at stored
	id=$(gxp-cmd DEV1 capture_image)
	hello_answered DEV1	# the command
	[[ $(last_cmd DEV1) == *"\"command_id\":\"$id\""* ]]
	hello_answered DEV1	# asleep
	id2=$(gxp-cmd DEV1 send_image image_1.jpg)
	# the database answers 503, then nothing at all
	ep_fault '{"match":"/rest/v1/","status":503,"seconds":600}'
	for d in DEV1 DEV2 DEV1; do hello_answered $d; done
	ep_reset
	ep_fault '{"match":"/rest/v1/","hold_ms":600000,"seconds":600}'
	hello_answered DEV3
	hello_answered DEV1
	# every hello answered; a device known from the schedule it had, a new
	# one from the default (capture first); nothing from the queue
	[ "$(cmds_of DEV1 | tail -3 | grep -c '"next_wake":')" = 3 ]
	[ "$(cmds_of DEV1 | grep -c "$id2")" = 0 ]
	[ "$(last_cmd DEV2)" = '{"device_id":"DEV2","capture_image":true}' ]
	[ "$(last_cmd DEV3)" = '{"device_id":"DEV3","capture_image":true}' ]
	grep -q "device DEV1: its queue was not read within CONTROL_DB_WAIT_MS (300 ms); answering from the schedule" "$CTL_ERR"
	# the database is back: the command goes at the next hello
	ep_reset
	hello_answered DEV1
	[[ $(last_cmd DEV1) == *"\"command_id\":\"$id2\""* ]]
	wait_until 20 eval '[ "$(psql_q "select status from device_commands where command_id = '"'$id2'"'")" = sent ]'
}

@test "control/db: a burst of hellos costs a few requests: their queues are read together" {
	export CONTROL_DB_READS=2 CONTROL_DB_WAIT_MS=5000
	# 50 devices not due: each hello is answered with next_wake
	psql_q "insert into devices (device_hw_id, next_wake_at)
		select 'SIM' || lpad(i::text, 6, '0'), now() + interval '1 day' from generate_series(1, 50) i"
	ep_fault '{"match":"/rest/v1/device_commands","method":"GET","latency_ms":300,"seconds":600}'
	start_control
	run gxp-sim -d 50 -n 0 -W 1 -A 20000 -s 1 -j
	echo "$output" | tail -1
	[ "$status" = 0 ]
	[ "$(jq -c '[.wake.hellos, .wake.answered, .wake.commands.next_wake]' <<<"${lines[-1]}")" = '[50,50,50]' ]
	gets=$(ep_log | jq -r 'select(.kind == "rest:device_commands" and .method == "GET") | .path' | wc -l)
	echo "GET device_commands: $gets for 50 hellos"
	[ "$gets" -le 6 ]
	! grep -q "not read within CONTROL_DB_WAIT_MS" "$CTL_ERR" || false
}

@test "control/db: gxp-cmd: bad input and unknown devices are refused before anything is written; list; cancel" {
	device_row DEV1
	for args in "DEV1 reboot" "DEV1 send_image ../x.jpg" "DEV1 next_wake 2020-01-01T00:00:00Z" \
		"-x yesterday DEV1 capture_image" "-c 123" "DEV1"; do
		# shellcheck disable=SC2086
		run gxp-cmd $args
		echo "$args: $status $output"
		[ "$status" = 100 ]
	done
	run gxp-cmd NOSUCHDEV capture_image
	[ "$status" = 100 ]
	[[ $output == *"device NOSUCHDEV is not known: no devices row"* ]]
	[ "$(psql_q "select count(*) from device_commands")" = 0 ]
	# and the database refuses what gxp-cmd would have, with the reason
	run psql_q "insert into device_commands (device_id, command_type) select device_id, 'reboot' from devices" service_role
	[ "$status" != 0 ]
	[[ $output == *'violates check constraint "device_commands_command_check"'* ]]
	a=$(gxp-cmd DEV1 capture_image)
	b=$(gxp-cmd -x +1h DEV1 next_wake +30m)
	[ "$(gxp-cmd -l DEV1 | jq -r .command_id | tr '\n' ' ')" = "$b $a " ]
	[ "$(gxp-cmd -l | jq -c 'select(.command_id == "'"$b"'") | [.command_type, .status, .device_hw_id, (.expires_at != null)]')" = '["next_wake","queued","DEV1",true]' ]
	[ "$(gxp-cmd -c "$a")" = "$a" ]
	run gxp-cmd -c "$a"
	[ "$status" = 100 ]
	[[ $output == *"command $a is cancelled, not queued; not cancelled"* ]]
	[ "$(psql_q "select string_agg(event_type, ' ' order by created_at) from device_command_logs where command_id = '$a'")" = "queued cancelled" ]
}

@test "control/db: row level security: authenticated reads the queue but may not queue; anon sees nothing" {
	device_row DEV1
	gxp-cmd DEV1 capture_image > /dev/null
	[ "$(psql_q "select count(*) from device_commands" authenticated)" = 1 ]
	[ "$(psql_q "select count(*) from device_command_logs" authenticated)" = 1 ]
	run psql_q "insert into device_commands (device_id, command_type) select device_id, 'capture_image' from devices" authenticated
	[ "$status" != 0 ]
	[[ $output == *"permission denied"* ]]
	for t in device_commands device_command_logs device_configs; do
		run psql_q "select count(*) from $t" anon
		[ "$status" != 0 ]
	done
}

# bats test_tags=slow
@test "control/db: SIGKILLs of random stages lose no queued command and send none twice" {
	worker_env "$BATS_TEST_TMPDIR/w.env" "SUPABASE_URL=$EP_URL" "SUPABASE_SERVICE_ROLE=$EP_SERVICE_KEY" \
		SCHEDULE_CAPTURES_PER_DAY=24 CONTROL_POLL_MS=200 SUPERVISE_BACKOFF_MAX_S=2 UPLOAD_RETRY_MAX_MS=1000
	control_chaos "$BATS_TEST_TMPDIR/w.env" "${CHAOS_KILLS:-12}"
}

@test "control/db: the README's Monitoring queries for commands run, unchanged, and show the queue" {
	# the README carries the same text as tests/control-monitoring.sql
	sed -n '/^-- Commands waiting for their device/,/^```/p' "$GXP_TOP/README.md" | sed '$d' \
		> "$BATS_TEST_TMPDIR/readme.sql"
	sed '1,/^$/d' "$GXP_TOP/tests/control-monitoring.sql" | diff -u - "$BATS_TEST_TMPDIR/readme.sql"
	start_control
	for d in DEV1 DEV2; do hello_answered $d; hello_answered $d; done	# asleep
	sent=$(gxp-cmd DEV1 capture_image)
	gxp-cmd DEV2 send_image image_5.jpg > /dev/null
	hello_answered DEV1
	wait_until 10 eval '[ "$(psql_q "select status from device_commands where command_id = '"'$sent'"'")" = sent ]'
	psql_q "update devices set next_wake_at = now() - interval '2 hours'"
	stop_control
	# gxp-upload makes the publish log's rows of gxp-control's events
	gxp-upload < "$CTL_OUT" > /dev/null 2> "$BATS_TEST_TMPDIR/upload.err"
	run psql -X -A -t -v ON_ERROR_STOP=1 -f "$GXP_TOP/tests/control-monitoring.sql"
	echo "$output"
	[ "$status" = 0 ]
	[[ $output == *'DEV2|send_image|{"image_name": "image_5.jpg"}|'* ]]
	[[ $output == *'DEV1|capture_image|sent|'* ]]
	[[ $output == *'|queued|{"expires_at": null, "command_type": "send_image"'* ]]
	[[ $output == *"ESP32CAM/DEV1/cmd|{\"device_id\": \"DEV1\", \"command_id\": \"$sent\", \"capture_image\": true}|"* ]]
}
