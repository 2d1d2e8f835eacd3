#!/usr/bin/env bats
# gxp-upload held at known steps by the endpoint: a real SIGKILL between the
# upload and the row update, ACK_OK only after both, stdin read while an
# upload hangs, and the SIGTERM drain.

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
}

teardown() {
	teardown_upload
}

held() {
	[ "$(ep_held)" = "$1" ]
}

dropped() {
	[ "$(ep_control stats | jq -r .dropped)" = "$1" ]
}

objects() {
	psql_q "select count(*) from storage.objects"
}

# start_held MATCH: gxp-upload --once in the background, waited for until
# the endpoint holds its request whose path matches MATCH.
start_held() {
	ep_fault "{\"match\":\"$1\",\"hold_ms\":60000,\"count\":1}"
	gxp-upload --once < /dev/null > "$OUT" 2> "$ERR" &
	UP_PID=$!
	wait_until 20 held 1
}

# kill_held: SIGKILL, and wait until the endpoint has dropped the request
# it held without running it.
kill_held() {
	kill -KILL "$UP_PID"
	wait "$UP_PID" || true
	UP_PID=
	wait_until 10 dropped 1
}

# sql_is N QUERY: the query's result is N (for wait_until).
sql_is() {
	[ "$(psql_q "$2")" = "$1" ]
}

@test "upload/crash: SIGKILL between the upload and the row update; the restart finishes once" {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	start_held /rest/v1/captures
	# the object is stored, its row not yet: kill now
	[ "$(objects)" = 1 ]
	[ "$(psql_q "select count(*) from captures")" = 0 ]
	kill_held
	[ "$(psql_q "select count(*) from captures")" = 0 ]
	[ -f "$GXP_SPOOL/work/$DEV@image_1.jpg.json" ]
	[ "$(events publish | wc -l)" = 0 ] && [ "$(events stored | wc -l)" = 0 ]
	first=$(psql_q "select id from storage.objects")
	run_upload --once
	[ "$RC" = 0 ]
	grep -q "work/$DEV@image_1.jpg.json: back to ready/" "$ERR"
	[ "$(psql_q "select count(*), min(ingest_status) from captures")" = "1|stored" ]
	[ "$(psql_q "select id from storage.objects")" = "$first" ]
	[ "$(find "$EP_DIR/objects" -type f | wc -l)" = 1 ]
	[ "$(events stored | wc -l)" = 1 ] && [ "$(events publish | wc -l)" = 1 ]
	spool_settled "$GXP_SPOOL"
	[ -f "$(stored_record "$GXP_SPOOL" $DEV image_1.jpg)" ]
}

@test "upload/crash: SIGKILL during the upload; the restart stores it once" {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	start_held /object/
	kill_held
	[ "$(objects)" = 0 ]
	run_upload --once
	[ "$RC" = 0 ]
	[ "$(objects)" = 1 ]
	[ "$(psql_q "select count(*), min(ingest_status) from captures")" = "1|stored" ]
}

@test "upload/crash: ACK_OK (and stored) only after both the object and its row" {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	ep_fault '{"match":"/object/","hold_ms":1500,"count":1}'
	ep_fault '{"match":"/rest/v1/captures","hold_ms":1500,"count":1}'
	gxp-upload --once < /dev/null > "$OUT" 2> "$ERR" &
	UP_PID=$!
	wait_until 20 held 1
	# the upload hangs: no object, no row, no event
	[ "$(objects)" = 0 ] && [ ! -s "$OUT" ]
	wait_until 20 sql_is 1 "select count(*) from storage.objects"
	wait_until 20 held 1
	# the object is there, the row is held: still no event
	[ "$(objects)" = 1 ]
	[ "$(psql_q "select count(*) from captures")" = 0 ]
	[ ! -s "$OUT" ]
	RC=0
	wait "$UP_PID" || RC=$?
	UP_PID=
	[ "$RC" = 0 ]
	[ "$(psql_q "select ingest_status from captures")" = stored ]
	[ "$(jq -r .event "$OUT" | tr '\n' ' ')" = "stored publish " ]
}

@test "upload/crash: stdin is read and rows written while an upload hangs" {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	ep_fault '{"match":"/object/","hold_ms":60000,"count":1}'
	UPLOAD_DRAIN_MS=500 start_upload
	wait_until 20 held 1
	ev_status $DEV Alive 3 >&7
	echo '{"passes":"through"}' >&7
	wait_until 10 file_has "$OUT" '{"passes":"through"}'
	wait_until 10 sql_is 1 "select count(*) from device_status"
	[ "$(ep_held)" = 1 ]
	# SIGTERM: the hung upload outlasts UPLOAD_DRAIN_MS; the photo goes back
	kill -TERM "$UP_PID"
	stop_upload
	[ "$RC" = 0 ]
	[ -f "$(entry_meta "$GXP_SPOOL" $DEV image_1.jpg)" ]
	[ -z "$(ls -A "$GXP_SPOOL/work" | grep -vx rows.at)" ]
}

@test "upload/crash: SIGTERM lets requests in flight finish, flushes rows, exits 0" {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	ep_fault '{"match":"/object/","hold_ms":1500,"count":1}'
	GXP_METRICS_DIR=$BATS_TEST_TMPDIR/m METRICS_INTERVAL_S=1 ROW_FLUSH_MS=60000 start_upload
	wait_until 20 held 1
	ev_status $DEV Alive 1 >&7
	ev_capture_started $DEV image_9.jpg 3000 >&7
	# read, but their rows wait for the flush
	wait_until 10 grep -qx 'gxp_upload_events_total 2' "$BATS_TEST_TMPDIR/m/gxp-upload.prom"
	[ "$(psql_q "select count(*) from device_status")" = 0 ]
	kill -TERM "$UP_PID"
	stop_upload
	[ "$RC" = 0 ]
	grep -q 'SIGTERM: finishing 1 photo in flight' "$ERR"
	[ "$(jq -r .event "$OUT" | tr '\n' ' ')" = "stored publish " ]
	[ "$(psql_q "select device_capture_id, ingest_status from captures order by 1")" = \
		"image_1.jpg|stored
image_9.jpg|assembling" ]
	[ "$(psql_q "select pending_count from device_status")" = 1 ]
	[ "$(psql_q "select count(*) from sensor_readings")" = 1 ]
}
