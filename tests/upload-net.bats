#!/usr/bin/env bats
# gxp-upload's network behaviour against the local endpoint: retries and
# Retry-After, permanent refusals, keys, buckets, the key never logged,
# self-hosted URLs and HTTPS verification.

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
	if [ -n "${EP2_PID:-}" ]; then
		kill "$EP2_PID" 2>/dev/null
		wait "$EP2_PID" 2>/dev/null
	fi
	return 0
}

photos() {
	for i in $(seq 1 "$1"); do
		make_entry "$GXP_SPOOL" $DEV "p$i.jpg" 3000
	done
}

stored_count() {
	psql_q "select count(*) from captures where ingest_status = 'stored'"
}

@test "upload/net: 503s on uploads and rows are retried; nothing is lost" {
	photos 6
	ep_fault '{"match":"/object/","status":503,"count":4}'
	ep_fault '{"match":"/rest/v1/captures","status":503,"count":2}'
	ep_fault '{"match":"/rest/v1/devices","status":500,"count":1}'
	GXP_METRICS_DIR=$BATS_TEST_TMPDIR/metrics run_upload --once
	[ "$RC" = 0 ]
	[ "$(stored_count)" = 6 ]
	[ "$(psql_q "select count(*) from storage.objects")" = 6 ]
	[ "$(events publish | wc -l)" = 6 ]
	[ -z "$(ls -A "$GXP_SPOOL/ready")" ] && [ -z "$(ls -A "$GXP_SPOOL/failed")" ]
	[ "$(ep_log | jq -r 'select(.status == 503 or .status == 500) | .kind' | wc -l)" = 7 ]
	grep -qx 'gxp_upload_retries_total 7' "$BATS_TEST_TMPDIR/metrics/gxp-upload.prom"
	grep -qx 'gxp_upload_uploads_total 6' "$BATS_TEST_TMPDIR/metrics/gxp-upload.prom"
}

@test "upload/net: 429 with Retry-After waits that long; a 400 whose body says 503 is retried" {
	photos 1
	ep_fault '{"match":"/object/","status":429,"retry_after":"2","count":1}'
	run_upload --once
	[ "$RC" = 0 ]
	[ "$(stored_count)" = 1 ]
	# the retry came no sooner than the server asked
	ep_log | jq -se '[.[] | select(.kind == "storage") | .t] | .[1] - .[0] >= 1.9'
	reset_db
	ep_reset
	photos 1
	ep_fault '{"match":"/object/","status":400,"count":2,"body":{"statusCode":"503","error":"Service Unavailable","message":"try later"}}'
	run_upload --once
	[ "$RC" = 0 ]
	[ "$(stored_count)" = 1 ]
	[ "$(ep_count storage)" = 3 ]
}

@test "upload/net: a permanent 400 on the upload fails the photo with the server's message (2204)" {
	photos 2
	ep_fault '{"match":"/object/gxp-captures/captures/AABBCCDDEEFF/2025/10/04/p1.jpg","status":400,"count":1,"body":{"statusCode":"400","error":"Invalid Input","message":"mime type image/jpeg is not supported"}}'
	run_upload --once
	[ "$RC" = 0 ]
	[ "$(ep_count storage)" = 2 ]
	# p2 stored and acknowledged; p1 failed, kept, reported, not acknowledged
	[ "$(events publish | jq -r .image_name)" = p2.jpg ]
	[ "$(psql_q "select ingest_status, ingest_error from captures where device_capture_id = 'p1.jpg'")" = \
		"failed|storage upload failed: HTTP 400 Invalid Input: mime type image/jpeg is not supported" ]
	[ "$(psql_q "select e.error_code, e.severity, c.device_capture_id from device_errors e
		join captures c using (capture_id)")" = "2204|error|p1.jpg" ]
	failed=$(ls "$GXP_SPOOL/failed")
	[[ $failed == AABBCCDDEEFF@p1.jpg.* ]]
	jq -e '.code == 2204 and (.reason | contains("mime type image/jpeg is not supported"))' \
		"$GXP_SPOOL/failed/$failed/reason.json"
	events capture_failed | jq -e '.code == 2204 and .image_name == "p1.jpg" and
		(.entry | startswith("failed/AABBCCDDEEFF@p1.jpg."))'
	grep -q 'device AABBCCDDEEFF image p1.jpg: storage upload failed: HTTP 400' "$ERR"
}

@test "upload/net: a failed photo whose rows meet a setup error stays in ready/ (100), and the next run finishes it" {
	photos 1
	ep_fault '{"match":"/object/","status":400,"count":1,"body":{"statusCode":"400","error":"Invalid Input","message":"mime type image/jpeg is not supported"}}'
	ep_fault '{"match":"^/rest/v1/device_errors$","status":400,"count":1,"body":{"code":"PGRST204","message":"Could not find the '"'event_id'"' column of '"'device_errors'"' in the schema cache"}}'
	run_upload --once
	[ "$RC" = 100 ]
	grep -q "stopping: HTTP 400 (PGRST204)" "$ERR"
	# the photo is not failed: the database has not heard of its failure
	[ -f "$(entry_meta "$GXP_SPOOL" $DEV p1.jpg)" ]
	[ -z "$(ls -A "$GXP_SPOOL/failed")" ]
	[ "$(events capture_failed | wc -l)" = 0 ]
	run_upload --once
	[ "$RC" = 0 ]
	[ "$(stored_count)" = 1 ]
}

@test "upload/net: a permanent refusal of the captures row fails the photo (2205)" {
	photos 1
	ep_fault '{"match":"/rest/v1/captures","status":409,"count":1,"body":{"code":"23514","message":"new row violates check constraint"}}'
	run_upload --once
	[ "$RC" = 0 ]
	[ "$(events publish | wc -l)" = 0 ]
	[ "$(psql_q "select ingest_status from captures")" = failed ]
	[ "$(psql_q "select error_code from device_errors")" = 2205 ]
	[[ $(psql_q "select ingest_error from captures") == *"capture DB update failed: HTTP 409 (23514): new row violates check constraint"* ]]
	[ -n "$(ls "$GXP_SPOOL/failed")" ]
}

@test "upload/net: a wrong key stops with 100, logs no key, and leaves the photos in ready/" {
	photos 2
	SUPABASE_SERVICE_ROLE=wrong-$EP_SERVICE_KEY run_upload --once
	[ "$RC" = 100 ]
	grep -q "stopping: HTTP 401: Invalid API key.*check SUPABASE_SERVICE_ROLE" "$ERR"
	! grep -qF -- "$EP_SERVICE_KEY" "$ERR" "$OUT" || false
	[ "$(ls "$GXP_SPOOL/ready"/*.json | wc -l)" = 2 ]
	[ -z "$(ls -A "$GXP_SPOOL/work" | grep -vx rows.at)" ] && [ -z "$(ls -A "$GXP_SPOOL/failed")" ]
	[ "$(psql_q "select count(*) from captures")" = 0 ]
	# the anon key: refused before any request
	SUPABASE_SERVICE_ROLE=$EP_ANON_KEY run_upload --once
	[ "$RC" = 100 ]
	grep -q 'SUPABASE_SERVICE_ROLE (environment) holds a legacy anon key' "$ERR"
	! grep -qF -- "$EP_ANON_KEY" "$ERR" || false
	[ "$(ls "$GXP_SPOOL/ready"/*.json | wc -l)" = 2 ]
}

@test "upload/net: a server message that echoes the key is scrubbed before it is logged" {
	photos 1
	ep_fault '{"match":"/object/","status":400,"echo_key":true,"count":1}'
	run_upload --once
	grep -q 'bad key \*\*\*' "$ERR"
	! grep -qF -- "$EP_SERVICE_KEY" "$ERR" "$OUT" "$GXP_SPOOL"/failed/*/reason.json || false
	! psql_q "select ingest_error from captures; select message from device_errors" |
		grep -qF -- "$EP_SERVICE_KEY" || false
}

@test "upload/net: --check repeats a server's message with its control characters escaped" {
	# ESC [2J (clear screen; the message is read with C0 as spaces), DEL,
	# and U+009B (CSI to some terminals)
	ep_fault '{"match":"/bucket/","status":500,"count":1,"body":{"message":"broken \u001b[2J\u007f\u009b here"}}'
	run_upload --check
	[ "$RC" = 111 ]
	grep -qF 'gxp-upload: FAIL: bucket' "$OUT"
	grep -qF 'broken  [2J\x7f\xc2\x9b here' "$OUT"
	! grep -q $'[\x1b\x7f]' "$OUT" || false
	! grep -qF $'\xc2\x9b' "$OUT" || false
}

@test "upload/net: a missing bucket stops with 100, as Storage v1.11 and newer ones say it" {
	photos 1
	SUPABASE_STORAGE_BUCKET=no-such-bucket run_upload --once
	[ "$RC" = 100 ]
	grep -q 'HTTP 400 (statusCode 404) Bucket not found.*check that bucket no-such-bucket exists' "$ERR"
	[ -f "$(entry_meta "$GXP_SPOOL" $DEV p1.jpg)" ]
	ep_control config '{"storage_errors":"http"}' > /dev/null
	SUPABASE_STORAGE_BUCKET=no-such-bucket run_upload --once
	[ "$RC" = 100 ]
	grep -q 'HTTP 404 Bucket not found' "$ERR"
	[ -f "$(entry_meta "$GXP_SPOOL" $DEV p1.jpg)" ]
}

@test "upload/net: --once gives up after UPLOAD_ONCE_ATTEMPTS and exits 111, the photo kept" {
	photos 1
	ep_fault '{"match":"/object/","status":503,"seconds":60}'
	UPLOAD_ONCE_ATTEMPTS=3 run_upload --once
	[ "$RC" = 111 ]
	[ "$(ep_count storage)" = 3 ]
	[ -f "$(entry_meta "$GXP_SPOOL" $DEV p1.jpg)" ]
	grep -q 'device AABBCCDDEEFF image p1.jpg: upload failed (HTTP 503' "$ERR"
}

@test "upload/net: rows the database would not take before the end wait in rows/ for the next run" {
	{
		ev_status $DEV Alive 3 2025-10-04T12:30:01.000000Z
		ev_status $DEV Alive 2 2025-10-04T12:30:02.000000Z
		ev_capture_started $DEV image_9.jpg 3000
		ev_inbound_meta $DEV image_9.jpg
		ev_error $DEV 2102 warning "chunk_id is not a number" image_9.jpg
	} > "$IN"
	ep_fault '{"match":"^/rest/","status":503,"seconds":120}'
	UPLOAD_ONCE_ATTEMPTS=2 UPLOAD_RETRY_BASE_MS=20 run_upload
	[ "$RC" = 111 ]
	[ "$(psql_q "select count(*) from device_status")" = 0 ]
	grep -q 'rows not written yet, kept in rows/' "$ERR"
	[ "$(ls "$GXP_SPOOL/rows" | wc -l)" = 1 ]
	# the next run, the database back, writes them: the device as first seen,
	# the sensor reading and the error; the captures row is the photo's to
	# write, and the capture never completed, so they name no capture
	ep_reset
	: > "$IN"
	run_upload
	[ "$RC" = 0 ]
	grep -q 'an earlier run did not write, queued again' "$ERR"
	[ -z "$(ls -A "$GXP_SPOOL/rows")" ]
	[ "$(psql_q "select pending_count from device_status order by created_at")" = "3
2" ]
	[ "$(psql_q "select last_seen_at from devices where device_hw_id = '$DEV'")" = \
		"2025-10-04 12:30:01+00" ]
	[ "$(psql_q "select count(*) from captures")" = 0 ]
	[ "$(psql_q "select temperature_c, capture_id is null from sensor_readings")" = "23.5|t" ]
	[ "$(psql_q "select error_code from device_errors")" = 2102 ]
	[ "$(psql_q "select count(*) from device_publish_log where direction = 'in'")" = 1 ]
}

@test "upload/net: kept rows that already had their ids keep them for the next run" {
	{
		ev_capture_started $DEV image_9.jpg 3000
		ev_inbound_meta $DEV image_9.jpg
	} > "$IN"
	# devices and captures go in; the sensor reading and the log row do not
	ep_fault '{"match":"^/rest/v1/(device_publish_log|sensor_readings)","status":503,"seconds":120}'
	UPLOAD_ONCE_ATTEMPTS=2 UPLOAD_RETRY_BASE_MS=20 run_upload
	[ "$RC" = 111 ]
	[ "$(psql_q "select count(*) from captures")" = 1 ]
	[ "$(psql_q "select count(*) from sensor_readings")" = 0 ]
	ep_reset
	: > "$IN"
	run_upload
	[ "$RC" = 0 ]
	[ "$(psql_q "select count(*) from sensor_readings s join captures c using (capture_id)")" = 1 ]
	[ "$(psql_q "select count(*) from device_publish_log l join devices d using (device_id)
		where d.device_hw_id = '$DEV' and l.payload->>'image_name' = 'image_9.jpg'")" = 1 ]
	[ "$(psql_q "select count(*) from captures")" = 1 ]
}

@test "upload/net: SIGTERM in an outage exits 0 and keeps the rows for the next run" {
	ep_fault '{"match":"^/rest/","status":503,"seconds":120}'
	UPLOAD_DRAIN_MS=500 UPLOAD_RETRY_BASE_MS=20 start_upload
	ev_status $DEV Alive 4 >&7
	tried_twice() { [ "$(ep_count rest:devices)" -ge 2 ]; }
	wait_until 20 tried_twice
	kill -TERM "$UP_PID"
	stop_upload
	[ "$RC" = 0 ]
	[ "$(ls "$GXP_SPOOL/rows" | wc -l)" = 1 ]
	ep_reset
	: > "$IN"
	run_upload
	[ "$RC" = 0 ]
	[ "$(psql_q "select pending_count from device_status")" = 4 ]
}

# start_endpoint2 ARGS...: a second endpoint (other layout or TLS).
start_endpoint2() {
	run_endpoint "$BATS_TEST_TMPDIR/ep2" "$@"
	EP2_PID=$RUN_PID
	EP2_PORT=$RUN_PORT
}

@test "upload/net: self-hosted: Storage at its own root via SUPABASE_STORAGE_URL" {
	start_endpoint2 --storage-prefix "" --rest-prefix /rest/v1
	photos 1
	SUPABASE_URL=http://127.0.0.1:1 SUPABASE_STORAGE_URL=http://127.0.0.1:$EP2_PORT/ \
		SUPABASE_REST_URL=http://127.0.0.1:$EP2_PORT/rest/v1 run_upload --once
	[ "$RC" = 0 ]
	[ "$(stored_count)" = 1 ]
	# both went to the second endpoint, the object to /object/... at its root
	curl -sf "http://127.0.0.1:$EP2_PORT/_control/log" | jq -e '
		(map(select(.kind == "storage")) | length == 1 and
		 (.[0].path | startswith("/object/gxp-captures/captures/AABBCCDDEEFF/"))) and
		(map(select(.kind == "rest:captures")) | length >= 1)'
	[ "$(ep_count total)" = 0 ]
}

@test "upload/net: HTTPS is verified: the test CA via SUPABASE_CAFILE works, another CA fails" {
	make_certs "$BATS_TEST_TMPDIR/certs"
	start_endpoint2 --tls-cert "$BATS_TEST_TMPDIR/certs/server.pem" \
		--tls-key "$BATS_TEST_TMPDIR/certs/server.key"
	photos 1
	SUPABASE_URL=https://localhost:$EP2_PORT SUPABASE_CAFILE=$BATS_TEST_TMPDIR/certs/other-ca.pem \
		run_upload --once
	[ "$RC" = 100 ]
	grep -qi 'certificate' "$ERR"
	[ -f "$(entry_meta "$GXP_SPOOL" $DEV p1.jpg)" ]
	SUPABASE_URL=https://localhost:$EP2_PORT run_upload --once
	[ "$RC" = 100 ]
	SUPABASE_URL=https://localhost:$EP2_PORT SUPABASE_CAFILE=$BATS_TEST_TMPDIR/certs/ca.pem \
		run_upload --once
	[ "$RC" = 0 ]
	[ "$(stored_count)" = 1 ]
}

@test "upload/net: configuration errors exit 100 before any work" {
	photos 1
	SUPABASE_SERVICE_ROLE= run_upload --once
	[ "$RC" = 100 ]
	grep -q 'SUPABASE_SECRET_KEY is missing (or the legacy SUPABASE_SERVICE_ROLE)' "$ERR"
	SUPABASE_URL=ftp://example.invalid run_upload --once
	[ "$RC" = 100 ]
	grep -q 'expected an http:// or https:// URL' "$ERR"
	SUPABASE_STORAGE_BUCKET=../etc run_upload --once
	[ "$RC" = 100 ]
	[ -f "$(entry_meta "$GXP_SPOOL" $DEV p1.jpg)" ]
}
