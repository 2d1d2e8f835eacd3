#!/usr/bin/env bats
# Chaos for rows: numbered heartbeats and sensor readings (a photo's
# metadata, then its one chunk) published at several hundred messages a
# second by tests/chaos-pub, which records each PUBACK, while the test
# SIGKILLs a random stage at random moments (at least 20) and, three times,
# the worker's whole process group, gxp-supervise included, and starts it
# again.  Then every message the broker accepted has exactly one row
# (device_status, sensor_readings, device_publish_log), none missing, none
# twice, its photo stored once, and no error row, on the local store and
# on the Supabase path (the endpoint on real PostgreSQL).
#
# Under SANITIZE=1 (CI's second pass) it runs shorter: 8 SIGKILLs, one of
# the group, 4 000 messages; the full run is the first pass's.

load helpers
load pg
load e2e

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
	STORE=$BATS_TEST_TMPDIR/store
	if [ -n "${SANITIZE:-}" ] && [ "$SANITIZE" != 0 ]; then
		KILLS=${CHAOS_KILLS:-8} GROUP_AT=" 4 " COUNT=${CHAOS_COUNT:-3000}
	else
		KILLS=${CHAOS_KILLS:-20} GROUP_AT=" 6 12 18 " COUNT=${CHAOS_COUNT:-18000}
	fi
}

teardown() {
	e2e_teardown
}

# rows_of KIND WHAT: the numbers the rows carry, one line a row.
#   status: device_status; reading: sensor_readings (pressure is the
#   number); in-status, in-meta, in-chunk: device_publish_log's inbound rows
rows_of() {
	if [ "$1" = pg ]; then
		case $2 in
		status) psql_q "select raw->>'seq' from device_status" ;;
		reading) psql_q "select pressure_hpa::bigint from sensor_readings" ;;
		in-status) psql_q "select payload->>'seq' from device_publish_log
			where direction = 'in' and topic like '%/status'" ;;
		in-meta) psql_q "select payload->>'seq' from device_publish_log
			where direction = 'in' and topic like '%/data' and payload ? 'seq'" ;;
		in-chunk) psql_q "select substring(payload->>'image_name' from '[0-9]+')
			from device_publish_log where direction = 'in' and payload ? 'chunk_id'" ;;
		stored) psql_q "select substring(device_capture_id from '[0-9]+') from captures
			where ingest_status = 'stored'" ;;
		esac
	else
		case $2 in
		status) local_status_seqs "$STORE" ;;
		reading) local_reading_seqs "$STORE" ;;
		in-status) jq -r 'select(.direction == "in" and (.topic | endswith("/status")))
			| .payload.seq' "$STORE/device_publish_log.ndjson" ;;
		in-meta) jq -r 'select(.direction == "in" and .payload.seq != null and
			(.topic | endswith("/data"))) | .payload.seq' "$STORE/device_publish_log.ndjson" ;;
		in-chunk) jq -r 'select(.direction == "in" and .payload.chunk_id != null)
			| .payload.image_name | ltrimstr("reading_") | rtrimstr(".jpg")' \
			"$STORE/device_publish_log.ndjson" ;;
		# an upsert log: the last line of a capture is its row
		stored) jq -sr 'group_by(.capture_id)[] | last | select(.ingest_status == "stored")
			| .device_capture_id | ltrimstr("reading_") | rtrimstr(".jpg")' \
			"$STORE/captures.ndjson" ;;
		esac
	fi | sort -n
}

# rows_complete KIND: the rows of every accepted heartbeat and reading are in.
rows_complete() {
	[ "$(rows_of "$1" status | sort -u | wc -l)" -ge "$(wc -l < "$T/acked.status")" ] &&
		[ "$(rows_of "$1" reading | sort -u | wc -l)" -ge "$(wc -l < "$T/acked.meta")" ]
}

chaos_rows() {
	local kind=$1 i n_kills n_groups
	T=$BATS_TEST_TMPDIR
	start_worker "$T/w.env" --own-group
	numbered_pub "$T/pub" --mix readings --every 3 --count "$COUNT" --devices 50 --rate 400
	RANDOM=1010
	: > "$T/kills"
	for i in $(seq 1 "$KILLS"); do
		sleep "$((1 + RANDOM % 2)).$((RANDOM % 10))"
		kill_random_stage >> "$T/kills"
		if [[ $GROUP_AT == *" $i "* ]]; then
			sleep "0.$((RANDOM % 10))"
			kill_worker_group
			echo group >> "$T/kills"
			start_worker "$T/w.env" --own-group
		fi
		if [ "$kind" = pg ] && [ "$i" = 10 ]; then
			ep_fault '{"status":503,"seconds":5}'
			echo 503 >> "$T/kills"
		fi
	done
	wait_pub "$T/pub"
	echo "chaos-pub: $(cat "$T/pub")"
	for k in status meta chunk; do
		acked_seqs "$T/pub" "$k" > "$T/acked.$k"
	done
	wait_until 240 rows_complete "$kind" || true
	stop_worker
	[ "$WORKER_RC" = 0 ]

	n_kills=$(grep -c '^gxp-' "$T/kills")
	n_groups=$(grep -c '^group' "$T/kills")
	echo "checked: $n_kills SIGKILLs of stages ($(grep '^gxp-' "$T/kills" | sort | uniq -c | tr -s ' \n' ' ')), $n_groups of the whole worker, $(grep -c 'restarting the pipeline' "$WORKER_LOG") pipeline restarts"
	echo "checked: the journal's window, the gxp-sub run with the longest: $(grep -o 'p50 [0-9]* us, p99 [0-9]* us, max [0-9]* us' "$WORKER_LOG" | sort -t' ' -k8 -n | tail -1)"
	[ "$n_kills" -ge "$KILLS" ]
	rows_of "$kind" status > "$T/rows.status"
	rows_of "$kind" reading > "$T/rows.reading"
	rows_of "$kind" in-status > "$T/rows.in-status"
	rows_of "$kind" in-meta > "$T/rows.in-meta"
	rows_of "$kind" in-chunk > "$T/rows.in-chunk"
	rows_of "$kind" stored > "$T/rows.stored"
	# a photo is stored when the broker took both its messages
	comm -12 <(sort "$T/acked.meta") <(sort "$T/acked.chunk") | sort -n > "$T/acked.photo"
	ok=0
	compare_seqs device_status "$T/acked.status" "$T/rows.status" || ok=1
	compare_seqs sensor_readings "$T/acked.meta" "$T/rows.reading" || ok=1
	compare_seqs "device_publish_log (heartbeats)" "$T/acked.status" "$T/rows.in-status" || ok=1
	compare_seqs "device_publish_log (metadata)" "$T/acked.meta" "$T/rows.in-meta" || ok=1
	compare_seqs "device_publish_log (chunks)" "$T/acked.chunk" "$T/rows.in-chunk" || ok=1
	compare_seqs "captures stored" "$T/acked.photo" "$T/rows.stored" || ok=1
	if [ "$kind" = pg ]; then
		errors=$(psql_q "select count(*) from device_errors")
	else
		errors=$(lines_in "$STORE/device_errors.ndjson")
	fi
	echo "checked: $errors device_errors rows"
	if [ "$errors" != 0 ]; then
		if [ "$kind" = pg ]; then
			psql_q "select error_code, message, details from device_errors limit 5"
		else
			head -5 "$STORE/device_errors.ndjson"
		fi
	fi
	if [ "$ok" != 0 ] || [ "$errors" != 0 ]; then
		# the worker's lines about the first photo missing, for the diagnosis
		seq=$(comm -23 <(sort -u "$T/acked.photo") <(sort -u "$T/rows.stored") | head -1)
		[ -z "$seq" ] || grep -E "reading_$seq\.jpg|code\":22" "$WORKER_LOG" | head -20
	fi
	[ "$ok" = 0 ] && [ "$errors" = 0 ]
}

# bats test_tags=slow
@test "chaos/rows: local store: heartbeats and readings, >= 20 SIGKILLs and 3 of the whole worker: every accepted message one row" {
	worker_env "$BATS_TEST_TMPDIR/w.env" SUPERVISE_BACKOFF_MAX_S=1
	chaos_rows dir
}

# bats test_tags=slow
@test "chaos/rows: Supabase: heartbeats and readings, >= 20 SIGKILLs, 3 of the whole worker, 5 s of 503: every accepted message one row" {
	worker_env "$BATS_TEST_TMPDIR/w.env" "SUPABASE_URL=$EP_URL" \
		"SUPABASE_SECRET_KEY=$EP_SECRET_KEY" SUPERVISE_BACKOFF_MAX_S=1 UPLOAD_RETRY_MAX_MS=2000
	chaos_rows pg
}
