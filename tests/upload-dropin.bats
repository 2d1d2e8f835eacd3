#!/usr/bin/env bats
# gxp in place of the user's worker (issue 14): device-reported errors
# recorded as that worker records them, on the local store and on Supabase;
# captures.image_url; the dashboards' view captures_with_sensors with row
# level security through it; sql/schema.sql on a database that worker
# filled.

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
	# a test may narrow the policies; every test starts from sql/rls.sql's
	psql_file "$GXP_TOP/sql/rls.sql"
	LEGACY_PID=
}

teardown() {
	teardown_upload
	if [ -n "$LEGACY_PID" ]; then
		kill "$LEGACY_PID" 2>/dev/null
		wait "$LEGACY_PID" 2>/dev/null
	fi
	return 0
}

# device_error_line DEV N: the metadata of a capture the device could not
# take, as the firmware sends it, in gxp-sub's envelope.
device_error_line() {
	printf '{"tst":"2025-10-04T12:0%d:00.000000Z","topic":"ESP32CAM/%s/data","qos":1,"retain":0,"payload":{"device_id":"%s","capture_timeStamp":"2025-10-04T12:00:00Z","image_name":"image_7.jpg","image_size":0,"max_chunks_size":1024,"total_chunk_count":0,"error":%s}}\n' \
		"${3:-0}" "$1" "$1" "$2"
}

# the user's error cases: errors 1, 2, 3, 4 and 99 from five devices
user_errors() {
	device_error_line ERR01 1 1
	device_error_line ERR02 2 2
	device_error_line ERR03 3 3
	device_error_line ERR04 4 4
	device_error_line ERR99 99 5
}

# The rows the user's worker writes for them: device, error_code, severity,
# message, details, the capture's name, then the captures row's
# ingest_status and ingest_error.
expected_rows() {
	local dev n meaning i=0
	for dev in ERR01 ERR02 ERR03 ERR04 ERR99; do
		i=$((i + 1))
		n=${dev#ERR}
		n=${n#0}
		case $n in
		1) meaning="camera initialization failed" ;;
		2) meaning="image capture failed" ;;
		3) meaning="sensor read failed" ;;
		4) meaning="memory allocation failed" ;;
		*) meaning="Unknown error (code $n)" ;;
		esac
		printf '%s|%d|error|esp32_capture_error: %s|{"esp32_error_code":%d,"metadata":{"device_id":"%s","capture_timeStamp":"2025-10-04T12:00:00Z","image_name":"image_7.jpg","image_size":0,"max_chunks_size":1024,"total_chunk_count":0,"error":%d}}|image_7.jpg|failed|ESP32 error %d: %s\n' \
			"$dev" $((1000 + n)) "$meaning" "$n" "$dev" "$n" "$n" "$meaning"
	done
}

# local_rows: those columns from the local store (the last captures line
# of a capture is its row).
local_rows() {
	jq -s -r --slurpfile caps "$GXP_STORE/captures.ndjson" --slurpfile devs \
		"$GXP_STORE/devices.ndjson" '
		($devs | map({(.device_id): .device_hw_id}) | add) as $hw |
		($caps | map({(.capture_id): .}) | add) as $cap |
		.[] | [$hw[.device_id], (.error_code|tostring), .severity, .message,
			(.details|tojson), $cap[.capture_id].device_capture_id,
			$cap[.capture_id].ingest_status, $cap[.capture_id].ingest_error] | join("|")' \
		"$GXP_STORE/device_errors.ndjson" | sort
}

# db_rows: the same from the database, the details' keys sorted.
db_rows() {
	psql_q "select d.device_hw_id, e.error_code, e.severity, e.message, e.details::text,
		c.device_capture_id, c.ingest_status, c.ingest_error
		from device_errors e join devices d using (device_id)
		left join captures c using (capture_id) order by 1" |
		norm_details
}

# norm_details: rows with the details (column 5) as JSON with sorted keys,
# as jsonb keeps them in its own order.
norm_details() {
	local a b c d det rest
	while IFS='|' read -r a b c d det rest; do
		printf '%s|%s|%s|%s|%s|%s\n' "$a" "$b" "$c" "$d" "$(jq -cS . <<<"$det")" "$rest"
	done
}

# through_assemble FILE: FILE replayed through gxp-assemble, the events
# into $IN for gxp-upload.
through_assemble() {
	gxp-assemble --flush-at-eof < "$1" > "$IN" 2> "$BATS_TEST_TMPDIR/assemble.err"
}

@test "dropin: the user's device errors 1, 2, 3, 4, 99 are the worker's rows on the local store" {
	unset SUPABASE_URL SUPABASE_SERVICE_ROLE
	user_errors > "$BATS_TEST_TMPDIR/log"
	through_assemble "$BATS_TEST_TMPDIR/log"
	run_upload
	[ "$RC" = 0 ]
	local_rows | diff -u <(expected_rows) -
	# occurred_at is the message's time, the same in every replay
	[ "$(jq -r .occurred_at "$GXP_STORE/device_errors.ndjson" | sort | head -1)" = \
		2025-10-04T12:01:00.000000Z ]
}

@test "dropin: the same errors give the same rows on Supabase" {
	user_errors > "$BATS_TEST_TMPDIR/log"
	through_assemble "$BATS_TEST_TMPDIR/log"
	run_upload
	[ "$RC" = 0 ]
	db_rows > "$BATS_TEST_TMPDIR/got"
	expected_rows | norm_details | diff -u - "$BATS_TEST_TMPDIR/got"
	[ "$(psql_q "select count(*) from captures")" = 5 ]
	[ "$(psql_q "select distinct occurred_at from device_errors order by 1 limit 1")" = \
		"2025-10-04 12:01:00+00" ]
	# dashboards and alerts look for 1001-1099
	[ "$(psql_q "select count(*) from device_errors where error_code between 1001 and 1099")" = 5 ]
}

@test "dropin: a device error that is no small whole number gets code 1000 and its value as sent, on both stores" {
	{
		device_error_line ODD1 -1 1
		device_error_line ODD2 1e30 2
		device_error_line ODD3 2.5 3
		device_error_line ODD4 '"overheat"' 4
		device_error_line ODD5 true 5
		device_error_line ODD6 1101 6
	} > "$BATS_TEST_TMPDIR/log"
	through_assemble "$BATS_TEST_TMPDIR/log"
	run_upload
	[ "$RC" = 0 ]
	psql_q "select d.device_hw_id, e.error_code, e.message, e.details->'esp32_error_code'
		from device_errors e join devices d using (device_id) order by 1" > "$BATS_TEST_TMPDIR/got"
	diff -u - "$BATS_TEST_TMPDIR/got" <<-'EOF'
		ODD1|1000|esp32_capture_error: Unknown error (code -1)|-1
		ODD2|1000|esp32_capture_error: Unknown error (code 1e+30)|1000000000000000000000000000000
		ODD3|1000|esp32_capture_error: Unknown error (code 2.5)|2.5
		ODD4|1000|esp32_capture_error: Unknown error (code overheat)|"overheat"
		ODD5|1000|esp32_capture_error: Unknown error (code true)|true
		ODD6|1000|esp32_capture_error: Unknown error (code 1101)|1101
	EOF
	unset SUPABASE_URL SUPABASE_SERVICE_ROLE
	run_upload
	[ "$RC" = 0 ]
	[ "$(jq -r '.error_code' "$GXP_STORE/device_errors.ndjson" | sort -u)" = 1000 ]
	[ "$(wc -l < "$GXP_STORE/device_errors.ndjson")" = 6 ]
}

@test "dropin: image_url is the object's Storage URL, which opens with a key and not without" {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	cp "$(entry_photo "$GXP_SPOOL" $DEV image_1.jpg)" "$BATS_TEST_TMPDIR/one.jpg"
	{ ev_capture_started $DEV image_1.jpg 3000; ev_photo_complete $DEV image_1.jpg; } > "$IN"
	run_upload
	[ "$RC" = 0 ]
	url=$(psql_q "select image_url from captures")
	[ "$url" = "$EP_URL/storage/v1/object/gxp-captures/captures/$DEV/2025/10/04/image_1.jpg" ]
	curl -sf -H "apikey: $EP_SERVICE_KEY" -H "Authorization: Bearer $EP_SERVICE_KEY" \
		-o "$BATS_TEST_TMPDIR/got.jpg" "$url"
	cmp "$BATS_TEST_TMPDIR/one.jpg" "$BATS_TEST_TMPDIR/got.jpg"
	run curl -s -H "apikey: $EP_ANON_KEY" "$url"
	[[ $output == *'"statusCode": "404"'* ]]
	# the view answers with it and the readings as numbers
	[ "$(psql_q "select device_capture_id, ingest_status, image_url, temperature_c + 1,
		humidity_pct, pressure_hpa, gas_kohm, image_bytes from captures_with_sensors")" = \
		"image_1.jpg|stored|$url|24.5|45.2|1013.25|12.34567|3000" ]
}

@test "dropin: image_url on the local store is a file:// URL of the object" {
	unset SUPABASE_URL SUPABASE_SERVICE_ROLE
	export GXP_STORE=$BATS_TEST_TMPDIR/a\ store
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	cp "$(entry_photo "$GXP_SPOOL" $DEV image_1.jpg)" "$BATS_TEST_TMPDIR/one.jpg"
	{ ev_capture_started $DEV image_1.jpg 3000; ev_photo_complete $DEV image_1.jpg; } > "$IN"
	run_upload
	[ "$RC" = 0 ]
	url=$(jq -r 'select(.ingest_status == "stored") | .image_url' "$GXP_STORE/captures.ndjson")
	[ "$url" = "file://$(cd "$GXP_STORE" && pwd -P | sed 's/ /%20/g')/gxp-captures/captures/$DEV/2025/10/04/image_1.jpg" ]
	curl -sf -o "$BATS_TEST_TMPDIR/got.jpg" "$url"
	cmp "$BATS_TEST_TMPDIR/one.jpg" "$BATS_TEST_TMPDIR/got.jpg"
}

@test "dropin: RLS applies through the view: authenticated reads what the policies allow, anon nothing" {
	for d in DEVA DEVB; do
		make_entry "$GXP_SPOOL" $d image_1.jpg 2000
		ev_photo_complete $d image_1.jpg
	done > "$IN"
	run_upload
	[ "$RC" = 0 ]
	[ "$(psql_q "select count(*) from captures_with_sensors" authenticated)" = 2 ]
	[ "$(psql_q "select count(*) from captures_with_sensors" service_role)" = 2 ]
	run psql_q "select count(*) from captures_with_sensors" anon
	[ "$status" != 0 ] && [[ $output == *"permission denied"* ]]
	run psql_q "insert into captures_with_sensors (device_capture_id) values ('x')" authenticated
	[ "$status" != 0 ] && [[ $output == *"permission denied"* ]]
	# a narrower policy on the table narrows the view too
	psql_q "drop policy gxp_authenticated_read on captures;
		create policy gxp_authenticated_read on captures for select to authenticated
		using (device_id = (select device_id from devices where device_hw_id = 'DEVB'))"
	[ "$(psql_q "select d.device_hw_id from captures_with_sensors v
		join devices d using (device_id)" authenticated)" = DEVB ]
	[ "$(psql_q "select count(*) from captures_with_sensors" service_role)" = 2 ]
	[ "$(psql_q "select reloptions::text from pg_class
		where relname = 'captures_with_sensors'")" = '{security_invoker=true}' ]
}

# legacy_db NAME LATER: a database as the user's worker left it: the tables
# with the columns it writes (SPEC.md) and nothing of gxp's, rows in them;
# with LATER=1 also the columns, index and view of its later migrations.
legacy_db() {
	local db=$1 later=$2
	psql_q "drop database if exists $db" > /dev/null
	psql_q "create database $db" > /dev/null
	PGDATABASE=$db psql_file "$GXP_TOP/tests/endpoint/supabase.sql"
	PGDATABASE=$db psql_q "
		create table devices (device_id uuid primary key default gen_random_uuid(),
			device_hw_id text unique, model text, last_seen_at timestamptz,
			last_ip text);
		create table captures (capture_id uuid primary key default gen_random_uuid(),
			device_id uuid references devices, device_capture_id text,
			captured_at timestamptz, image_bytes integer, chunk_size_bytes integer,
			total_chunks integer, img_format text, ingest_status text,
			ingest_meta jsonb, ingest_error text, storage_path text,
			image_sha256 text, sensor_data jsonb, created_at timestamptz default now(),
			unique (device_id, device_capture_id));
		create table sensor_readings (device_id uuid references devices,
			capture_id uuid references captures, temperature_c double precision,
			humidity_pct double precision, pressure_hpa double precision,
			gas_kohm double precision, created_at timestamptz default now());
		create table device_status (device_id uuid references devices, status text,
			pending_count integer, raw jsonb, created_at timestamptz default now());
		create table device_errors (device_id uuid references devices,
			capture_id uuid references captures, error_code integer, severity text,
			message text, details jsonb, occurred_at timestamptz default now());
		create table device_publish_log (device_id uuid references devices,
			topic text, direction text, payload jsonb,
			received_at timestamptz default now());
		insert into devices (device_hw_id, model) values ('$DEV', 'esp32-s3');
		insert into captures (device_id, device_capture_id, captured_at, ingest_status,
			storage_path, sensor_data)
		select device_id, c, '2025-10-03 10:00:00+00', 'stored',
			'captures/$DEV/2025/10/03/' || c, s::jsonb
		from devices, (values ('image_0.jpg', '{\"temperature_c\": 21.5}'),
			('image_old.jpg', '{\"temperature_c\": \"n/a\", \"humidity_pct\": 50}'))
			as v (c, s);
		insert into device_errors (device_id, error_code, severity, message)
		select device_id, 1002, 'error', 'esp32_capture_error: image capture failed'
		from devices;" > /dev/null
	[ "$later" = 1 ] || return 0
	PGDATABASE=$db psql_q "
		alter table captures add column image_url text;
		update captures set image_url = 'https://x.supabase.co/storage/v1/object/public/'
			|| storage_path;
		create index idx_captures_sensor_data on captures using gin (sensor_data);
		create view captures_with_sensors as select capture_id, device_id,
			device_capture_id, captured_at, image_url, storage_path, ingest_status,
			image_bytes, image_sha256,
			(sensor_data->>'temperature_c')::numeric as temperature_c,
			(sensor_data->>'humidity_pct')::numeric as humidity_pct,
			(sensor_data->>'pressure_hpa')::numeric as pressure_hpa,
			(sensor_data->>'gas_kohm')::numeric as gas_kohm,
			sensor_data, created_at from captures where sensor_data->>'temperature_c' <> 'n/a'" \
		> /dev/null
}

@test "dropin: schema.sql upgrades a database the user's worker filled, twice, and gxp writes into it" {
	for later in 0 1; do
		db=legacy$later
		legacy_db $db $later
		PGDATABASE=$db psql_file "$GXP_TOP/sql/schema.sql"
		PGDATABASE=$db psql_file "$GXP_TOP/sql/schema.sql"
		PGDATABASE=$db psql_file "$GXP_TOP/sql/rls.sql"
		# gxp-upload through an endpoint on that database
		run_endpoint "$BATS_TEST_TMPDIR/ep$later" \
			--dsn "host=$PGHOST dbname=$db user=authenticator"
		LEGACY_PID=$RUN_PID
		export SUPABASE_URL=http://127.0.0.1:$RUN_PORT
		rm -rf "$GXP_SPOOL" && mkdir -p "$GXP_SPOOL/tmp"
		# the photo the old worker stored, sent again (no ACK_OK reached the
		# device before the switch), and a new one; a device error
		make_entry "$GXP_SPOOL" $DEV image_0.jpg 2000 2025-10-03T10:00:00.000000Z
		make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
		{
			ev_capture_started $DEV image_1.jpg 3000
			ev_photo_complete $DEV image_0.jpg
			ev_photo_complete $DEV image_1.jpg
			device_error_line $DEV 1 9 > "$BATS_TEST_TMPDIR/err.log"
			gxp-assemble --flush-at-eof < "$BATS_TEST_TMPDIR/err.log" 2> /dev/null |
				grep capture_failed
		} > "$IN"
		run_upload
		[ "$RC" = 0 ]
		kill "$LEGACY_PID"
		wait "$LEGACY_PID" 2>/dev/null || true
		LEGACY_PID=
		q() { PGDATABASE=$db psql_q "$@"; }
		# matched, not duplicated: one device, one row per capture
		[ "$(q "select count(*) from devices")" = 1 ]
		[ "$(q "select device_capture_id, count(*) from captures group by 1 order by 1")" = \
			"image_0.jpg|1
image_1.jpg|1
image_7.jpg|1
image_old.jpg|1" ]
		[ "$(q "select error_code from device_errors order by 1")" = "1001
1002" ]
		# the view answers for the rows gxp wrote and the old ones, as
		# the captures table's policies allow
		[ "$(q "select device_capture_id, ingest_status, image_url, temperature_c, humidity_pct
			from captures_with_sensors order by 1" authenticated)" = \
			"image_0.jpg|stored|$SUPABASE_URL/storage/v1/object/gxp-captures/captures/$DEV/2025/10/03/image_0.jpg|23.5|45.2
image_1.jpg|stored|$SUPABASE_URL/storage/v1/object/gxp-captures/captures/$DEV/2025/10/04/image_1.jpg|23.5|45.2
image_7.jpg|failed|||
image_old.jpg|stored|$([ $later = 1 ] && echo "https://x.supabase.co/storage/v1/object/public/captures/$DEV/2025/10/03/image_old.jpg")||50" ]
		run q "select count(*) from captures_with_sensors" anon
		[ "$status" != 0 ] && [[ $output == *"permission denied"* ]]
		[ "$(q "select reloptions::text from pg_class
			where relname = 'captures_with_sensors'")" = '{security_invoker=true}' ]
		psql_q "drop database $db with (force)" > /dev/null
	done
}
