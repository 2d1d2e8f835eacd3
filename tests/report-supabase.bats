#!/usr/bin/env bats
# gxp-report on Supabase: the known fleet (tests/report.bash) played through
# the whole worker into the test endpoint (real PostgreSQL with sql/schema.sql,
# sql/rls.sql and sql/report.sql), read back through PostgREST and Storage,
# with the endpoint's request log to show what each run fetched.

load helpers
load pg
load e2e
load report

setup_file() {
	start_pg
	start_endpoint
	local BATS_TEST_TMPDIR=$BATS_FILE_TMPDIR/fleet
	mkdir -p "$BATS_TEST_TMPDIR"
	start_broker plain "$BATS_TEST_TMPDIR/broker"
	worker_env "$BATS_TEST_TMPDIR/w.env" "SUPABASE_URL=$EP_URL" \
		"SUPABASE_SERVICE_ROLE=$EP_SERVICE_KEY"
	start_worker "$BATS_TEST_TMPDIR/w.env"
	fleet_play "$BATS_TEST_TMPDIR/w.env"
	wait_until 30 errors_in 2
	wait_until 30 devices_in 7
	stop_worker
	stop_broker
}

teardown_file() {
	stop_endpoint
	stop_pg
}

errors_in() {
	[ "$(psql_q "select count(*) from device_errors")" -ge "$1" ]
}

devices_in() {
	[ "$(psql_q "select count(*) from devices")" -ge "$1" ]
}

setup() {
	ep_reset
	supabase_env
	OUT=$BATS_TEST_TMPDIR/report
	export UPLOAD_RETRY_BASE_MS=50 UPLOAD_RETRY_MAX_MS=200
}

# error_code ID: the error_code of device ID's device_errors row.
error_code() {
	psql_q "select e.error_code from device_errors e join devices d using (device_id)
		where d.device_hw_id = '$1' order by occurred_at desc limit 1"
}

# requests PATTERN: requests so far whose method and path match PATTERN.
requests() {
	ep_log | jq -r '"\(.method) \(.path)"' | grep -c -- "$1" || true
}

# put_photo ID NAME [CREATED_AGO]: what gxp-upload would do for a photo of
# device ID: the object in Storage, then a stored captures row.
put_photo() {
	local path sha
	path=captures/$1/$(date -u +%Y/%m/%d)/$2
	curl -sf -X POST -H "apikey: $EP_SERVICE_KEY" -H "Authorization: Bearer $EP_SERVICE_KEY" \
		-H 'Content-Type: image/jpeg' --data-binary @"$GXP_TOP/examples/rocket.jpg" \
		"$EP_URL/storage/v1/object/gxp-captures/$path" > /dev/null
	sha=$(sha256sum < "$GXP_TOP/examples/rocket.jpg" | cut -d' ' -f1)
	psql_q "insert into captures (device_id, device_capture_id, captured_at, ingest_status,
		storage_path, image_sha256, image_bytes, created_at)
		select device_id, '$2', now(), '${4:-stored}', '$path', '$sha', 31063, now() - interval '${3:-0 s}'
		from devices where device_hw_id = '$1'" > /dev/null
}

@test "report/supabase: every device of the fleet, as on the local store; the links open the photos" {
	run_report
	[ "$RC" = 0 ]
	fleet_tiles_ok "$OUT" "$(error_code BADJPEG1)" "$(error_code DEVERR1)"
	grep -q 'device "CORRUPT000001", photo image_1.jpg .*: not a JPEG we can read' "$BATS_TEST_TMPDIR/stderr"
	# a page of the view, a page of captures, a page of errors (each then an
	# empty page), the open captures by id; a download per photo; one signing
	[ "$(requests 'GET /rest/v1/')" -le 8 ]
	[ "$(requests 'GET /storage/v1/object/authenticated/gxp-captures/captures/')" = 7 ]
	[ "$(requests 'POST /storage/v1/object/sign/gxp-captures$')" = 1 ]
	# a device page links each photo by a signed URL that opens it, no key needed
	urls=$(grep -o 'href="http[^"]*"' "$OUT/devices/SIM000002.html" | cut -d'"' -f2 | sed 's/&amp;/\&/g' | sort -u)
	[ "$(wc -l <<<"$urls")" = 2 ]
	for u in $urls; do
		[[ $u == "$EP_URL/storage/v1/object/sign/gxp-captures/captures/SIM000002/"*"?token="* ]]
		path=${u#*/object/sign/gxp-captures/}
		path=${path%%\?*}
		[ "$(curl -sf "$u" | sha256sum | cut -d' ' -f1)" = \
			"$(psql_q "select image_sha256 from captures where storage_path = '$path'")" ]
	done
	# a token for another photo, or altered, opens nothing
	u=$(head -1 <<<"$urls")
	run curl -s "${u/image_1.jpg/image_2.jpg}"
	[[ $output == *'"statusCode": "400"'* ]]
	# the key is in no output
	refute grep -qF "$EP_SERVICE_KEY" "$BATS_TEST_TMPDIR/stderr" "$BATS_TEST_TMPDIR/stdout"
	refute grep -rqF "$EP_SERVICE_KEY" "$OUT"
}

@test "report/supabase: a second run downloads and signs nothing; a new photo is the only download" {
	run_report
	[ "$RC" = 0 ]
	ep_reset
	run_report
	[ "$RC" = 0 ]
	grep -q 'incremental read: .* 0 made, 6 kept, 1 unreadable, 0 for later; 0 photos fetched (0 bytes), 0 URLs signed' "$BATS_TEST_TMPDIR/stderr"
	[ "$(requests 'GET /storage/')" = 0 ]
	[ "$(requests 'POST /storage/')" = 0 ]
	# only rows: a page and an empty page per table, the open captures by id
	[ "$(requests 'GET /rest/v1/')" -le 12 ]
	[ "$(requests 'GET /rest/v1/gxp_report_devices')" = 0 ]
	# a new photo: one download, one signing
	put_photo SIM000001 image_9.jpg
	ep_reset
	run_report
	[ "$RC" = 0 ]
	[ "$(ep_log | jq -r 'select(.path | contains("/object/authenticated/")) | .path')" = \
		"/storage/v1/object/authenticated/gxp-captures/captures/SIM000001/$(date -u +%Y/%m/%d)/image_9.jpg" ]
	[ "$(requests 'POST /storage/v1/object/sign/')" = 1 ]
	[ "$(tile "$OUT" SIM000001 | cut -f3)" = 3 ]
	# a capture seen while its outcome was open, and stored in place once
	# newer rows have moved the read past it: read again by its id
	export REPORT_OVERLAP_S=0
	put_photo SIM000003 image_8.jpg '0 s' assembling
	run_report
	[ "$(tile "$OUT" SIM000003 | cut -f3)" = 2 ]
	put_photo SIM000002 image_7.jpg
	run_report
	psql_q "update captures set ingest_status = 'stored' where device_capture_id = 'image_8.jpg'" > /dev/null
	ep_reset
	run_report
	[ "$RC" = 0 ]
	[ "$(tile "$OUT" SIM000003 | cut -f3)" = 3 ]
	grep -q 'image_8.jpg' "$OUT/devices/SIM000003.html"
	psql_q "delete from captures where device_capture_id in ('image_7.jpg', 'image_8.jpg', 'image_9.jpg')" > /dev/null
}

@test "report/supabase: read in pages of REPORT_PAGE_ROWS rows, the same report" {
	run_report -f
	tiles_of "$OUT" > "$BATS_TEST_TMPDIR/one"
	ep_reset
	OUT=$BATS_TEST_TMPDIR/paged
	REPORT_PAGE_ROWS=2 run_report
	[ "$RC" = 0 ]
	tiles_of "$OUT" | diff -u "$BATS_TEST_TMPDIR/one" -
	# 7 devices: 4 pages and the empty one
	[ "$(requests 'GET /rest/v1/gxp_report_devices')" = 5 ]
}

@test "report/supabase: next_wake_at shows when the column exists" {
	# a project whose schema predates the control plane has no such column
	psql_q "alter table devices drop column next_wake_at" > /dev/null
	run_report
	psql_q "alter table devices add column next_wake_at timestamptz" > /dev/null
	[ "$RC" = 0 ]
	refute grep -q 'next wake' "$OUT/index.html"
	psql_q "update devices set next_wake_at = now() - interval '3 hours' where device_hw_id = 'SIM000001';
		update devices set next_wake_at = now() + interval '5 hours' where device_hw_id = 'SIM000002'" > /dev/null
	run_report -f
	psql_q "update devices set next_wake_at = null" > /dev/null
	[ "$RC" = 0 ]
	[[ $(tile "$OUT" SIM000001 | cut -f7) == *late* ]]
	[[ $(tile "$OUT" SIM000002 | cut -f7) != *late* ]]
	grep 'id="d-SIM000002"' "$OUT/index.html" | grep -q '<dt>next wake</dt><dd>in 4 h'
	grep -q "<dt>next wake</dt><dd>$(date -u -d '+5 hours' +%F)" "$OUT/devices/SIM000002.html"
	grep -q '<dt>next wake</dt><dd><span class="mut">not scheduled' "$OUT/devices/SIM000003.html"
}

@test "report/supabase: no view, a wrong key, an outage: clear errors, and the last report stays" {
	run_report
	[ "$RC" = 0 ]
	sum=$(cat "$OUT"/index.html "$OUT"/devices/*.html | sha256sum)
	psql_q "drop view gxp_report_devices" > /dev/null
	run_report -f
	psql_file "$GXP_TOP/sql/report.sql"
	[ "$RC" = 100 ]
	grep -q 'reading gxp_report_devices: HTTP 404.*; run sql/report.sql in the project' "$BATS_TEST_TMPDIR/stderr"
	grep -q 'the store could not be read: the report is left as it was' "$BATS_TEST_TMPDIR/stderr"
	SUPABASE_SERVICE_ROLE=wrong-$EP_SERVICE_KEY run_report
	[ "$RC" = 100 ]
	grep -q 'HTTP 401.*check SUPABASE_SERVICE_ROLE' "$BATS_TEST_TMPDIR/stderr"
	refute grep -qF "$EP_SERVICE_KEY" "$BATS_TEST_TMPDIR/stderr"
	ep_fault '{"match":"/rest/","status":503,"seconds":30}'
	UPLOAD_ONCE_ATTEMPTS=2 run_report
	[ "$RC" = 111 ]
	grep -q 'HTTP 503' "$BATS_TEST_TMPDIR/stderr"
	[ "$(cat "$OUT"/index.html "$OUT"/devices/*.html | sha256sum)" = "$sum" ]
	ep_reset
	# photos that cannot be fetched now: placeholders this time, fetched next run
	OUT=$BATS_TEST_TMPDIR/fresh
	ep_fault '{"match":"/object/authenticated/","status":503,"seconds":30}'
	UPLOAD_ONCE_ATTEMPTS=1 run_report
	[ "$RC" = 111 ]
	grep -q 'trying again next run' "$BATS_TEST_TMPDIR/stderr"
	[ "$(tile "$OUT" SIM000001 | cut -f6)" = "ph:photo not fetched yet" ]
	ep_reset
	run_report
	[ "$RC" = 0 ]
	[[ $(tile "$OUT" SIM000001 | cut -f6) == thumbs/*.jpg ]]
}

@test "report/supabase: a secret key (sb_secret_...) goes in apikey alone; a publishable key is refused" {
	unset SUPABASE_SERVICE_ROLE
	export SUPABASE_SECRET_KEY=$EP_SECRET_KEY
	run_report
	[ "$RC" = 0 ]
	[ "$(tiles_of "$OUT" | wc -l)" = 7 ]
	# every request had no bearer token, and said who it is
	[ "$(ep_log | jq -r 'select(.path | startswith("/_control") | not) | .bearer' | sort -u)" = false ]
	[ "$(ep_log | jq -r 'select(.path | startswith("/_control") | not) | .ua' | sort -u)" = "gxp/$(sed -n '1s/^gxp (\([^)]*\)).*/\1/p' "$GXP_TOP/debian/changelog")" ]
	refute grep -rqF "$EP_SECRET_KEY" "$OUT" "$BATS_TEST_TMPDIR/stderr"
	SUPABASE_SECRET_KEY=$EP_PUBLISHABLE_KEY run gxp-report -o "$OUT"
	[ "$status" = 100 ]
	[[ $output == *"SUPABASE_SECRET_KEY (environment) holds a publishable key (sb_publishable_...)"* ]]
	[[ $output != *"$EP_PUBLISHABLE_KEY"* ]]
}

@test "report/supabase: --check reads the views and the bucket with the key" {
	run gxp-report --check -o "$OUT"
	echo "$output"
	[ "$status" = 0 ]
	[[ $output == *"key: a legacy service_role key (JWT), from SUPABASE_SERVICE_ROLE"* ]]
	[[ $output == *"ok: view gxp_report_devices readable with the key"* ]]
	[[ $output == *"ok: view gxp_report_captures readable with the key"* ]]
	[[ $output == *"ok: bucket gxp-captures readable with the key"* ]]
	SUPABASE_SERVICE_ROLE=nope run gxp-report --check -o "$OUT"
	[ "$status" = 100 ]
	[[ $output == *"FAIL: view gxp_report_devices: HTTP 401"* ]]
}

@test "report/supabase: sql/report.sql runs again; its views answer as the tables do (security_invoker)" {
	psql_file "$GXP_TOP/sql/report.sql"
	psql_file "$GXP_TOP/sql/report.sql"
	[ "$(psql_q "select count(*) from gxp_report_devices" service_role)" = 7 ]
	[ "$(psql_q "select count(*) from gxp_report_captures" authenticated)" = 9 ]
	run psql_q "select count(*) from gxp_report_devices" anon
	[ "$status" != 0 ]
	[[ $output == *"permission denied for view gxp_report_devices"* ]]
	# granted the view, anon still reads nothing: the view runs with the
	# rights of whoever reads it, not of its owner
	psql_q "grant select on gxp_report_devices to anon" > /dev/null
	run psql_q "select count(*) from gxp_report_devices" anon
	psql_q "revoke select on gxp_report_devices from anon" > /dev/null
	[ "$status" != 0 ]
	[[ $output == *"permission denied for table devices"* ]]
	# and through PostgREST with the anon key: nothing
	run curl -s -H "apikey: $EP_ANON_KEY" "$EP_URL/rest/v1/gxp_report_devices?select=*"
	[[ $output == *'"code": "42501"'* ]]
}
