#!/usr/bin/env bats
# gxp-upload when Supabase is away or refuses rows: the backlog it counts and
# says, a poisoned payload that must not sink its batch, and --spool.
# Against a real PostgreSQL behind the local endpoint.

load helpers
load pg
load upload-fixtures

DEV=AABBCCDDEEFF

setup_file() {
	upload_db_setup_file
}

teardown_file() {
	upload_db_teardown_file
}

setup() {
	upload_db_setup
	export GXP_METRICS_DIR=$BATS_TEST_TMPDIR/metrics METRICS_INTERVAL_S=1
}

teardown() {
	teardown_upload
	# an endpoint of the test's own (the file's is not the test's to stop)
	[ -z "${OWN_EP:-}" ] || stop_endpoint || true
	psql_q "alter table device_publish_log drop constraint if exists gxp_test_no_poison" > /dev/null
}

# prom NAME: gxp-upload's counter NAME in its metrics file.
prom() {
	awk -v n="gxp_upload_$1" '$1 == n { print $2 }' "$GXP_METRICS_DIR/gxp-upload.prom" 2>/dev/null
}

# bats test_tags=slow
@test "outage: Supabase away: the backlog counts the waiting photos, the log says so within seconds and again, --check and SIGUSR1 show the oldest; then every photo goes" {
	OWN_EP=1
	EP_DIR=$BATS_TEST_TMPDIR/ep start_endpoint
	supabase_env
	for i in $(seq 1 15); do make_entry "$GXP_SPOOL" "$DEV" "image_$i.jpg" 2000; done
	stop_endpoint || true
	wait_until 10 port_closed "$EP_PORT"
	export UPLOAD_OUTAGE_REPORT_S=2
	start_upload
	wait_until 15 file_has "$ERR" "Supabase unreachable for"
	grep -E "warning: Supabase unreachable for [0-9]+ s \(.*\): 15 photos waiting, oldest [0-9]+ s; [0-9]+ rows? queued; retrying" "$ERR"
	wait_until 10 eval '[ "$(prom backlog)" = 15 ]'
	wait_until 10 eval '[ "$(prom store_failing_seconds)" -ge 2 ]'
	[ "$(prom oldest_waiting_seconds)" -ge 0 ]
	# said again, at a bounded rate: at most once per UPLOAD_OUTAGE_REPORT_S
	start=$SECONDS
	wait_until 15 eval '[ "$(grep -c "Supabase unreachable for" "$ERR")" -ge 3 ]'
	sleep 2
	n=$(grep -c "Supabase unreachable for" "$ERR")
	[ "$n" -le $(( (SECONDS - start) / 2 + 3 )) ]
	[ "$(prom http_requests_total)" -gt "$n" ]
	kill -USR1 "$UP_PID"
	wait_until 10 file_has "$ERR" "counters:"
	grep -E "counters: .*backlog=15 oldest_waiting_seconds=[0-9]+ store_failing_seconds=[0-9]+" "$ERR"
	run gxp-upload --check
	echo "$output"
	[[ $output == *"gxp-upload: ok: spool $GXP_SPOOL: 15 photos waiting, oldest "*" s"* ]]
	# Supabase back on the same port: the photos go, and the log says so
	# (not holding gxp-upload's input open)
	EP_DIR=$BATS_TEST_TMPDIR/ep start_endpoint --port "$EP_PORT" 7>&-
	wait_until 60 eval '[ "$(psql_q "select count(*) from captures where ingest_status = '"'stored'"'")" = 15 ]'
	wait_until 10 file_has "$ERR" "Supabase answers again"
	wait_until 10 eval '[ "$(prom backlog)" = 0 ]'
	wait_until 10 eval '[ "$(prom store_failing_seconds)" = 0 ]'
	stop_upload
	[ "$RC" = 0 ]
}

# inbound N PAYLOAD: an inbound status event, as gxp-assemble writes it, at
# second N of the day (a different time each: a different row).
inbound() {
	printf '{"event":"inbound","v":1,"ts":"2025-10-04T12:00:00.000000Z","device":"%s","topic":"ESP32CAM/%s/status","received_at":"2025-10-04T%02d:%02d:%02d.000000Z","kind":"status","payload":%s}\n' \
		"$DEV" "$DEV" $(($1 / 3600)) $(($1 / 60 % 60)) $(($1 % 60)) "$2"
}

# mixed_log FORMAT: 3000 inbound status events, every 100th with the
# payload printf FORMAT makes of its number, the others good.
mixed_log() {
	local i p
	for i in $(seq 1 3000); do
		if [ $((i % 100)) = 0 ]; then
			# shellcheck disable=SC2059
			p=$(printf "$1" "$i")
		else
			p="{\"status\":\"Alive\",\"pendingImg\":$i}"
		fi
		inbound "$i" "$p"
	done
}

# bats test_tags=slow
@test "poison: a number PostgreSQL cannot hold (1e999999) is kept as a string; its batch goes in whole" {
	mixed_log '{"status":"Alive","pendingImg":1e999999}' > "$IN"
	ROW_FLUSH_MS=5000 ROW_BATCH_MAX=500 run_upload
	[ "$RC" = 0 ]
	[ "$(psql_q "select count(*) from device_publish_log")" = 3000 ]
	[ "$(psql_q "select count(*) from device_publish_log where payload->>'pendingImg' = '1e999999'")" = 30 ]
	[ "$(psql_q "select jsonb_typeof(payload->'pendingImg') from device_publish_log where payload->>'pendingImg' = '1e999999' limit 1")" = string ]
	# six batches of 500, none refused
	ep_log | jq -r 'select(.kind == "rest:device_publish_log") | .status' | sort | uniq -c
	[ "$(ep_log | jq -r 'select(.kind == "rest:device_publish_log") | .status' | grep -vc '^20')" = 0 ]
	[ "$(ep_log | jq -c 'select(.kind == "rest:device_publish_log")' | grep -c .)" -le 8 ]
	! grep -q "refused" "$ERR" || false
}

@test "poison: a status whose pending count is no integer column's (1e10, 1.5) is written, the count null, raw whole" {
	{
		ev_status "$DEV" Alive 10000000000 2025-10-04T12:30:01.000000Z
		ev_status "$DEV" Alive 1.5 2025-10-04T12:30:02.000000Z
		ev_status "$DEV" Alive 3 2025-10-04T12:30:03.000000Z
	} > "$IN"
	run_upload
	[ "$RC" = 0 ]
	[ "$(psql_q "select coalesce(pending_count::text, 'null'), raw->>'pendingImg' from device_status order by created_at")" = "null|10000000000
null|1.5
3|3" ]
}

# bats test_tags=slow
@test "poison: rows the database refuses are found by halving: k bad among n cost O(k log n) requests, not n" {
	psql_q "alter table device_publish_log add constraint gxp_test_no_poison check (not (payload ? 'poison'))" > /dev/null
	mixed_log '{"status":"Alive","poison":%d}' > "$IN"
	ROW_FLUSH_MS=5000 ROW_BATCH_MAX=500 run_upload
	[ "$RC" = 0 ]
	[ "$(psql_q "select count(*) from device_publish_log")" = 2970 ]
	[ "$(psql_q "select count(*) from device_publish_log where payload ? 'poison'")" = 0 ]
	n=$(ep_log | jq -c 'select(.kind == "rest:device_publish_log")' | grep -c .)
	echo "requests to device_publish_log: $n"
	# 6 batches, and for each of the 30 bad rows at most 2 requests per
	# halving of 500 (9 halvings); one by one it was 6 + 3000
	[ "$n" -le $((6 + 2 * 30 * 9)) ]
	grep -q "device_publish_log: a batch of 500 rows was refused (.*gxp_test_no_poison.*); sending it in halves to find the rows at fault" "$ERR"
	[ "$(grep -c 'device_publish_log: 1 row not written: .*gxp_test_no_poison' "$ERR")" = 30 ]
}

@test "--spool: gxp-upload stores from the spool it is given, as gxp-assemble --spool writes it" {
	unset SUPABASE_URL SUPABASE_SERVICE_ROLE
	make_entry "$BATS_TEST_TMPDIR/s2" "$DEV" image_1.jpg 2000
	gxp-upload --spool "$BATS_TEST_TMPDIR/s2" --once < /dev/null > "$OUT" 2> "$ERR"
	[ "$(find "$GXP_STORE" -name image_1.jpg | wc -l)" = 1 ]
	[ -z "$(ls -A "$BATS_TEST_TMPDIR/s2/ready")" ]
	run gxp-upload --spool
	[ "$status" = 100 ]
	[[ $output == *"option --spool needs an argument"* ]]
}
