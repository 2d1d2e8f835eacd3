#!/usr/bin/env bats
# gxp-upload -J: the marks gxp-assemble writes become journal/committed
# once the rows of their lines are durable; after a restart the lines read
# again write no row twice; rows wait for the journal instead of being
# dropped or spilled to rows/.

load helpers
load pg
load upload-fixtures

setup_file() {
	upload_db_setup_file
}

teardown_file() {
	upload_db_teardown_file
}

setup() {
	upload_env
	J=$BATS_TEST_TMPDIR/journal
	export JOURNAL_COMMIT_MS=10
}

teardown() {
	teardown_upload
}

# mark SEQ
mark() {
	printf '{"event":"mark","v":1,"seq":%d}\n' "$1"
}

# statuses FROM TO: status events with distinct times, for lines FROM..TO.
statuses() {
	for i in $(seq "$1" "$2"); do
		ev_status DEV1 Alive "$i" "2025-10-04T12:30:$(printf %02d "$i").000000Z"
	done
}

# journal_has N: a journal whose last line is seq N, as gxp-sub leaves it.
journal_has() {
	mkdir -p "$J"
	for i in $(seq 1 "$1"); do
		printf '{"seq":%d,"tst":"2025-10-04T12:30:00.000000Z","topic":"x","payload":{}}\n' "$i"
	done > "$J/00000000000000000001.ndjson"
}

@test "journal/upload: -J commits the marks whose rows are durable; the lines read again after crashes write no row twice" {
	journal_has 5
	{ statuses 1 3; mark 3; statuses 4 5; } > "$IN"
	run_upload -J "$J"
	[ "$RC" = 0 ]
	[ "$(jq .seq "$J/committed")" = 3 ]
	[ "$(jq -r .store "$J/committed")" = "file://$GXP_STORE" ]
	[ "$(lines_in "$GXP_STORE/device_status.ndjson")" = 5 ]
	# the mark is gxp-upload's: not passed on
	[ "$(grep -c '"mark"' "$OUT")" = 0 ]
	# a crash, then lines 4 and 5 come again (gxp-sub replays after the
	# commit) with new ones; this run dies having committed 4 only
	journal_has 7
	{ statuses 4 4; mark 4; statuses 5 7; } > "$IN"
	run_upload -J "$J"
	[ "$RC" = 0 ]
	grep -q "device_status: [2-5] rows written after the committed position" "$ERR"
	grep -q "2 rows made again by lines read again after a restart were already written" "$ERR"
	[ "$(jq .seq "$J/committed")" = 4 ]
	# rows 5 to 7 again, after a second crash: row 5, written two runs
	# before, is still known
	{ statuses 5 8; mark 8; } > "$IN"
	run_upload -J "$J"
	[ "$RC" = 0 ]
	[ "$(jq -r .raw.pendingImg "$GXP_STORE/device_status.ndjson" | paste -sd' ')" = "1 2 3 4 5 6 7 8" ]
	[ "$(jq .seq "$J/committed")" = 8 ]
}

@test "journal/upload: a stored photo's capture_started read again: its sensor row gets the capture's id, no captures line is written" {
	make_entry "$GXP_SPOOL" AABBCCDDEEFF image_1.jpg 3000
	gxp-upload --once < /dev/null > /dev/null 2>&1
	[ "$(lines_in "$GXP_STORE/captures.ndjson")" = 1 ]
	cap_id=$(jq -r .capture_id "$GXP_STORE/captures.ndjson")
	# a log replayed without a journal: its rows were written before
	{ ev_capture_started AABBCCDDEEFF image_1.jpg 3000; mark 1; } > "$IN"
	run_upload
	[ "$RC" = 0 ]
	[ ! -e "$GXP_STORE/sensor_readings.ndjson" ] || [ "$(lines_in "$GXP_STORE/sensor_readings.ndjson")" = 0 ]
	# the journal's line again: the reading may be missing, and is written
	run_upload -J "$J"
	[ "$RC" = 0 ]
	[ "$(lines_in "$GXP_STORE/sensor_readings.ndjson")" = 1 ]
	[ "$(jq -r .capture_id "$GXP_STORE/sensor_readings.ndjson")" = "$cap_id" ]
	[ "$(lines_in "$GXP_STORE/captures.ndjson")" = 1 ]
	# once only
	run_upload -J "$J"
	[ "$(lines_in "$GXP_STORE/sensor_readings.ndjson")" = 1 ]
}

@test "journal/upload: Supabase: with -J rows wait for the database at ROW_QUEUE_MAX instead of being dropped, and an outage at the end leaves them to the journal, not to rows/" {
	supabase_env
	reset_db
	ep_reset
	export ROW_QUEUE_MAX=100 UPLOAD_ONCE_ATTEMPTS=2
	ep_fault '{"match":"/rest/v1/device_status","status":503,"seconds":4}'
	for b in 0 1 2 3 4 5; do
		statuses $((b * 50 + 1)) $((b * 50 + 50))
		mark $((b * 50 + 50))
	done > "$IN"
	run_upload -J "$J"
	[ "$RC" = 0 ]
	[ "$(psql_q "select count(*) from device_status")" = 300 ]
	! grep -q "dropping" "$ERR" || false
	[ "$(jq .seq "$J/committed")" = 300 ]
	# the database away when the input ends: nothing in rows/, the commit
	# stays before the lines whose rows were not written, exit 111
	ep_fault '{"match":"/rest/v1/device_status","status":503,"seconds":60}'
	{ statuses 301 310; mark 310; } > "$IN"
	run_upload -J "$J"
	[ "$RC" = 111 ]
	[ -z "$(ls "$GXP_SPOOL/rows")" ]
	[ "$(jq .seq "$J/committed")" = 300 ]
	# without a journal the same rows go to rows/
	run_upload
	[ "$RC" = 111 ]
	[ -n "$(ls "$GXP_SPOOL/rows")" ]
}
