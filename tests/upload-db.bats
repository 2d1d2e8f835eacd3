#!/usr/bin/env bats
# gxp-upload against a real PostgreSQL behind the local PostgREST/Storage
# endpoint: sql/schema.sql and sql/rls.sql, every table's rows, their order,
# batching, idempotence, and the seed's Monitoring queries.

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
	if [ -n "${SCHEMA_CHANGED:-}" ]; then
		psql_q "drop trigger if exists gxp_test_slow on device_publish_log;
			drop trigger if exists gxp_test_refuse on device_status;
			alter table if exists device_errors_old rename to device_errors" > /dev/null
		psql_file "$GXP_TOP/sql/schema.sql"
		ep_control reload_schema '{}' > /dev/null
	fi
}

# A day of one device: heartbeat, a capture stored, a failed one, errors,
# messages in and out.
scenario() {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	{
		ev_status $DEV Alive 2
		ev_capture_started $DEV image_1.jpg 3000
		ev_inbound_meta $DEV image_1.jpg
		ev_inbound_chunk $DEV image_1.jpg 0
		ev_inbound_chunk $DEV image_1.jpg 1
		ev_photo_complete $DEV image_1.jpg
		ev_capture_started $DEV image_2.jpg 4000 2025-10-04T13:00:00.000000Z
		ev_error $DEV 2102 warn "chunk without payload" image_2.jpg
		ev_capture_failed $DEV image_2.jpg 2201 "assembly timeout (missing chunks)"
	} > "$IN"
}

@test "upload/db: every table's columns and types" {
	psql_q "select table_name, column_name, data_type, is_nullable
		from information_schema.columns where table_schema = 'public'
		order by table_name, ordinal_position" > "$BATS_TEST_TMPDIR/got"
	diff -u - "$BATS_TEST_TMPDIR/got" <<-'EOF'
		captures|capture_id|uuid|NO
		captures|device_id|uuid|NO
		captures|device_capture_id|text|NO
		captures|captured_at|timestamp with time zone|YES
		captures|image_bytes|integer|YES
		captures|chunk_size_bytes|integer|YES
		captures|total_chunks|integer|YES
		captures|img_format|text|YES
		captures|ingest_status|text|NO
		captures|ingest_meta|jsonb|YES
		captures|ingest_error|text|YES
		captures|storage_path|text|YES
		captures|image_sha256|text|YES
		captures|sensor_data|jsonb|YES
		captures|created_at|timestamp with time zone|NO
		captures|image_url|text|YES
		captures_with_sensors|capture_id|uuid|YES
		captures_with_sensors|device_id|uuid|YES
		captures_with_sensors|device_capture_id|text|YES
		captures_with_sensors|captured_at|timestamp with time zone|YES
		captures_with_sensors|image_url|text|YES
		captures_with_sensors|storage_path|text|YES
		captures_with_sensors|ingest_status|text|YES
		captures_with_sensors|image_bytes|integer|YES
		captures_with_sensors|image_sha256|text|YES
		captures_with_sensors|temperature_c|numeric|YES
		captures_with_sensors|humidity_pct|numeric|YES
		captures_with_sensors|pressure_hpa|numeric|YES
		captures_with_sensors|gas_kohm|numeric|YES
		captures_with_sensors|sensor_data|jsonb|YES
		captures_with_sensors|created_at|timestamp with time zone|YES
		device_command_logs|id|uuid|NO
		device_command_logs|command_id|uuid|YES
		device_command_logs|device_id|uuid|YES
		device_command_logs|event_type|text|NO
		device_command_logs|event_payload|jsonb|YES
		device_command_logs|created_at|timestamp with time zone|NO
		device_commands|command_id|uuid|NO
		device_commands|device_id|uuid|NO
		device_commands|command_type|text|NO
		device_commands|command_payload|jsonb|NO
		device_commands|status|text|NO
		device_commands|requested_at|timestamp with time zone|NO
		device_commands|sent_at|timestamp with time zone|YES
		device_commands|expires_at|timestamp with time zone|YES
		device_configs|device_id|uuid|NO
		device_configs|capture_per_day|integer|NO
		device_configs|wakeup_time_1|time without time zone|YES
		device_configs|wakeup_time_2|time without time zone|YES
		device_configs|wakeup_window_sec|integer|NO
		device_configs|test_mode|boolean|NO
		device_configs|test_interval_minutes|integer|NO
		device_configs|updated_at|timestamp with time zone|NO
		device_errors|id|uuid|NO
		device_errors|device_id|uuid|YES
		device_errors|capture_id|uuid|YES
		device_errors|error_code|integer|NO
		device_errors|severity|text|NO
		device_errors|message|text|YES
		device_errors|details|jsonb|YES
		device_errors|occurred_at|timestamp with time zone|NO
		device_errors|event_id|uuid|YES
		device_publish_log|id|uuid|NO
		device_publish_log|device_id|uuid|YES
		device_publish_log|topic|text|NO
		device_publish_log|direction|text|NO
		device_publish_log|payload|jsonb|YES
		device_publish_log|received_at|timestamp with time zone|NO
		device_publish_log|event_id|uuid|YES
		device_status|id|uuid|NO
		device_status|device_id|uuid|NO
		device_status|status|text|YES
		device_status|pending_count|integer|YES
		device_status|raw|jsonb|YES
		device_status|created_at|timestamp with time zone|NO
		device_status|event_id|uuid|YES
		devices|device_id|uuid|NO
		devices|device_hw_id|text|NO
		devices|model|text|YES
		devices|last_seen_at|timestamp with time zone|YES
		devices|last_ip|text|YES
		devices|created_at|timestamp with time zone|NO
		devices|next_wake_at|timestamp with time zone|YES
		gxp_report_captures|capture_id|uuid|YES
		gxp_report_captures|device_id|uuid|YES
		gxp_report_captures|device_capture_id|text|YES
		gxp_report_captures|captured_at|timestamp with time zone|YES
		gxp_report_captures|image_bytes|integer|YES
		gxp_report_captures|ingest_status|text|YES
		gxp_report_captures|ingest_error|text|YES
		gxp_report_captures|storage_path|text|YES
		gxp_report_captures|image_sha256|text|YES
		gxp_report_captures|created_at|timestamp with time zone|YES
		gxp_report_captures|image_url|text|YES
		gxp_report_devices|device_id|uuid|YES
		gxp_report_devices|device|jsonb|YES
		gxp_report_devices|latest_status|jsonb|YES
		gxp_report_devices|latest_reading|jsonb|YES
		gxp_report_devices|latest_error|jsonb|YES
		gxp_report_devices|latest_photo|jsonb|YES
		sensor_readings|id|uuid|NO
		sensor_readings|device_id|uuid|NO
		sensor_readings|capture_id|uuid|YES
		sensor_readings|temperature_c|double precision|YES
		sensor_readings|humidity_pct|double precision|YES
		sensor_readings|pressure_hpa|double precision|YES
		sensor_readings|gas_kohm|double precision|YES
		sensor_readings|created_at|timestamp with time zone|NO
		sensor_readings|event_id|uuid|YES
	EOF
	# the keys the upserts need, and the checks
	psql_q "select conname from pg_constraint where contype = 'u' and
		connamespace = 'public'::regnamespace order by 1" | diff -u - <(printf '%s\n' \
		captures_device_id_device_capture_id_key device_errors_event_id_key \
		device_publish_log_event_id_key device_status_event_id_key \
		devices_device_hw_id_key sensor_readings_event_id_key)
	run psql_q "insert into devices (device_hw_id) values ('D1'), ('D1')"
	[ "$status" != 0 ] && [[ $output == *duplicate* ]]
	run psql_q "insert into devices (device_hw_id) values ('D2');
		insert into captures (device_id, device_capture_id, ingest_status)
		select device_id, 'x.jpg', 'lost' from devices where device_hw_id = 'D2'"
	[ "$status" != 0 ] && [[ $output == *ingest_status_check* ]]
}

@test "upload/db: schema.sql refuses a deferrable unique key on_conflict cannot use, and replaces an invalid one" {
	# ON CONFLICT fails on a deferrable key matching its columns, whatever
	# else there is: schema.sql says so, with the fix
	psql_q "alter table device_status drop constraint device_status_event_id_key;
		alter table device_status add constraint device_status_event_id_key
		unique (event_id) deferrable initially deferred" > /dev/null
	psql_q "insert into devices (device_hw_id) values ('D1')" > /dev/null
	ins="insert into device_status (device_id, event_id, status)
		select device_id, gen_random_uuid(), 'x' from devices
		on conflict (event_id) do nothing"
	! psql_q "$ins" 2> /dev/null || false
	# gxp-upload stops (100) with the fix; the row waits in rows/
	ev_status $DEV Alive 1 > "$IN"
	run_upload
	[ "$RC" = 100 ]
	grep -q 'stopping: HTTP 500 (55000): ON CONFLICT does not support deferrable.*the unique key of table device_status on (event_id) cannot serve the upsert: run sql/schema.sql' "$ERR"
	run psql_file "$GXP_TOP/sql/schema.sql"
	[ "$status" != 0 ]
	[[ $output == *"table device_status: its unique key device_status_event_id_key on (event_id) is deferrable"* ]]
	[[ $output == *"drop constraint device_status_event_id_key) and run this file again"* ]]
	psql_q "alter table device_status drop constraint device_status_event_id_key"
	psql_file "$GXP_TOP/sql/schema.sql"
	psql_q "$ins"
	: > "$IN"
	run_upload
	[ "$RC" = 0 ]
	[ "$(psql_q "select count(*) from device_status where status = 'Alive'")" = 1 ]
	# an invalid unique index (a CREATE INDEX CONCURRENTLY that failed) is
	# no arbiter: a valid key is added beside it, under another name
	psql_q "alter table device_errors drop constraint device_errors_event_id_key;
		create unique index device_errors_event_id_key on device_errors (event_id);
		update pg_index set indisvalid = false
		where indexrelid = 'device_errors_event_id_key'::regclass" > /dev/null
	psql_file "$GXP_TOP/sql/schema.sql"
	[ "$(psql_q "select count(*) from pg_index where indrelid = 'device_errors'::regclass
		and indisunique and indisvalid and indnatts = 1
		and indexrelid = 'device_errors_event_id_key_arbiter'::regclass")" = 1 ]
}

@test "upload/db: schema.sql and rls.sql run twice, and complete an older set of tables" {
	psql_file "$GXP_TOP/sql/schema.sql"
	psql_file "$GXP_TOP/sql/rls.sql"
	psql_q "drop database if exists legacy" > /dev/null
	psql_q "create database legacy" > /dev/null
	PGDATABASE=legacy psql_q "create table devices (device_id uuid primary key
		default gen_random_uuid(), device_hw_id text unique);
		create table captures (capture_id uuid primary key default gen_random_uuid(),
		device_id uuid references devices, device_capture_id text, ingest_status text,
		unique (device_capture_id, device_id));
		insert into devices (device_hw_id) values ('OLD')" > /dev/null
	PGDATABASE=legacy psql_file "$GXP_TOP/sql/schema.sql"
	# the old rows and keys stay; missing columns and tables are added
	[ "$(PGDATABASE=legacy psql_q "select device_hw_id from devices")" = OLD ]
	[ "$(PGDATABASE=legacy psql_q "select count(*) from information_schema.columns
		where table_name = 'captures' and column_name in ('storage_path',
		'image_sha256', 'sensor_data', 'ingest_meta')")" = 4 ]
	[ "$(PGDATABASE=legacy psql_q "select count(*) from pg_indexes where tablename
		in ('devices', 'captures') and indexdef like 'CREATE UNIQUE%'")" = 4 ]
	# a new capture's row gets its status from the column's default
	[ "$(PGDATABASE=legacy psql_q "select column_default from information_schema.columns
		where table_name = 'captures' and column_name = 'ingest_status'")" = "'assembling'::text" ]
	PGDATABASE=legacy psql_q "select 1 from sensor_readings, device_status,
		device_errors, device_publish_log limit 1" > /dev/null
}

@test "upload/db: RLS: service_role writes, authenticated reads, anon gets nothing" {
	scenario
	run_upload
	[ "$RC" = 0 ]
	for t in $PG_TABLES; do
		n=$(psql_q "select count(*) from $t")
		[ "$n" -gt 0 ]
		[ "$(psql_q "select count(*) from $t" service_role)" = "$n" ]
		[ "$(psql_q "select count(*) from $t" authenticated)" = "$n" ]
		run psql_q "select count(*) from $t" anon
		[ "$status" != 0 ] && [[ $output == *"permission denied"* ]]
	done
	run psql_q "insert into devices (device_hw_id) values ('X')" authenticated
	[ "$status" != 0 ] && [[ $output == *"permission denied"* ]]
	run psql_q "update captures set ingest_status = 'failed'" authenticated
	[ "$status" != 0 ]
	[ "$(psql_q "select count(*) from storage.objects" authenticated)" = 1 ]
	[ "$(psql_q "select count(*) from storage.objects" anon)" = 0 ]
	run psql_q "insert into storage.objects (bucket_id, name) values ('gxp-captures', 'x')" authenticated
	[ "$status" != 0 ] && [[ $output == *"row-level security"* ]]
	# through the API: the anon key reads nothing and stores nothing
	run curl -s -o /dev/null -w '%{http_code}' -H "apikey: $EP_ANON_KEY" \
		"$EP_URL/rest/v1/captures?select=capture_id"
	[ "$output" = 401 ]
	run curl -s -H "apikey: $EP_ANON_KEY" \
		"$EP_URL/storage/v1/object/gxp-captures/captures/$DEV/2025/10/04/image_1.jpg"
	[[ $output == *'"statusCode": "404"'* ]]
	run curl -s -o /dev/null -w '%{http_code}' -H "apikey: $EP_SERVICE_KEY" \
		"$EP_URL/storage/v1/object/gxp-captures/captures/$DEV/2025/10/04/image_1.jpg"
	[ "$output" = 200 ]
}

@test "upload/db: each table gets the right rows and values" {
	scenario
	cp "$(entry_photo "$GXP_SPOOL" $DEV image_1.jpg)" "$BATS_TEST_TMPDIR/one.jpg"
	sha=$(sha256sum < "$BATS_TEST_TMPDIR/one.jpg" | cut -d' ' -f1)
	run_upload
	[ "$RC" = 0 ]
	[ "$(psql_q "select device_hw_id, last_seen_at is not null from devices")" = "$DEV|t" ]
	dev=$(psql_q "select device_id from devices")
	[ "$(psql_q "select device_id, device_capture_id, captured_at, image_bytes,
		chunk_size_bytes, total_chunks, img_format, ingest_status, storage_path,
		image_sha256, ingest_error, sensor_data->>'gas_kohm', ingest_meta->>'location'
		from captures where device_capture_id = 'image_1.jpg'")" = \
		"$dev|image_1.jpg|2025-10-04 12:34:56+00|3000|1024|3|jpeg|stored|captures/$DEV/2025/10/04/image_1.jpg|$sha||12.34567|office_404" ]
	[ "$(psql_q "select ingest_status, ingest_error, captured_at, image_bytes
		from captures where device_capture_id = 'image_2.jpg'")" = \
		"failed|assembly timeout (missing chunks)|2025-10-04 13:00:00+00|4000" ]
	# sensor readings in kilo-ohms, tied to their capture
	[ "$(psql_q "select c.device_capture_id, s.temperature_c, s.humidity_pct,
		s.pressure_hpa, s.gas_kohm, s.created_at from sensor_readings s
		join captures c using (capture_id) order by 1")" = \
		"image_1.jpg|23.5|45.2|1013.25|12.34567|2025-10-04 12:34:57+00
image_2.jpg|23.5|45.2|1013.25|12.34567|2025-10-04 12:34:57+00" ]
	[ "$(psql_q "select status, pending_count, raw->>'pendingImg', created_at
		from device_status")" = "Alive|2|2|2025-10-04 12:30:00+00" ]
	[ "$(psql_q "select e.error_code, e.severity, e.message, c.device_capture_id,
		e.details->>'topic' from device_errors e left join captures c using (capture_id)
		order by e.error_code")" = \
		"2102|warn|chunk without payload|image_2.jpg|ESP32CAM/$DEV/data
2201|error|assembly timeout (missing chunks)|image_2.jpg|" ]
	[ "$(psql_q "select direction, topic, payload->>'chunk_id', payload ? 'payload'
		from device_publish_log order by received_at")" = \
		"in|ESP32CAM/$DEV/data||f
in|ESP32CAM/$DEV/data|0|f
in|ESP32CAM/$DEV/data|1|f
out|ESP32CAM/$DEV/ack||f" ]
	[ "$(psql_q "select payload from device_publish_log where direction = 'out'")" = \
		'{"ACK_OK": {}, "image_name": "image_1.jpg"}' ]
	# the object: bytes on disk, a storage.objects row, image/jpeg
	cmp "$BATS_TEST_TMPDIR/one.jpg" "$EP_DIR/objects/gxp-captures/captures/$DEV/2025/10/04/image_1.jpg"
	[ "$(psql_q "select bucket_id, name, metadata->>'mimetype', metadata->>'size'
		from storage.objects")" = "gxp-captures|captures/$DEV/2025/10/04/image_1.jpg|image/jpeg|3000" ]
}

@test "upload/db: the seed's Monitoring queries run unchanged and show the day" {
	for seed in /work/shared/seed/000_*.txt "$GXP_TOP"/../shared/seed/000_*.txt; do
		[ -f "$seed" ] || continue
		awk '/^## Monitoring/{m=1} /^## Testing Without Devices/{m=0}
			m && /^```sql/{s=1; next} m && /^```/{if (s) print ""; s=0; next} s' "$seed" |
			diff -u - <(tail -n +4 "$GXP_TOP/tests/upload-monitoring.sql")
	done
	scenario
	run_upload
	[ "$RC" = 0 ]
	# one query per statement of the copy, as it is
	awk -v dir="$BATS_TEST_TMPDIR" 'BEGIN{n=1} /^--/ && NR > 3 {f=dir "/q" n++} f {print > f}' \
		"$GXP_TOP/tests/upload-monitoring.sql"
	dev=$(psql_q "select device_id from devices")
	[ "$(psql_q "$(cat "$BATS_TEST_TMPDIR/q1")")" = "$dev|Alive|2|2025-10-04 12:30:00+00" ]
	run psql_q "$(cat "$BATS_TEST_TMPDIR/q2")"
	[ "${#lines[@]}" = 2 ]
	[[ ${lines[*]} == *"$dev|image_1.jpg|2025-10-04 12:34:56+00|3000|3|stored|captures/$DEV/2025/10/04/image_1.jpg|"* ]]
	[[ ${lines[*]} == *"$dev|image_2.jpg|2025-10-04 13:00:00+00|4000|4|failed||"* ]]
	[ "$(psql_q "$(cat "$BATS_TEST_TMPDIR/q3")" | cut -d'|' -f1-5)" = \
		"$dev|23.5|45.2|1013.25|2025-10-04 12:34:57+00
$dev|23.5|45.2|1013.25|2025-10-04 12:34:57+00" ]
	[ "$(psql_q "$(cat "$BATS_TEST_TMPDIR/q4")" | cut -d'|' -f3,4)" = \
		"2201|assembly timeout (missing chunks)
2102|chunk without payload" ]
	run psql_q "$(cat "$BATS_TEST_TMPDIR/q5")"
	[ "${#lines[@]}" = 4 ]
	[[ ${lines[0]} == "ESP32CAM/$DEV/ack|out|image_1.jpg||"* ]]
	[ "${lines[1]}" = "ESP32CAM/$DEV/data|in|image_1.jpg|1|2025-10-04 12:34:58.000001+00" ]
	[ "${lines[2]}" = "ESP32CAM/$DEV/data|in|image_1.jpg|0|2025-10-04 12:34:58+00" ]
	[ "${lines[3]}" = "ESP32CAM/$DEV/data|in|image_1.jpg||2025-10-04 12:34:57+00" ]
}

@test "upload/db: order: devices first, captures before its sensor row, object before the stored row" {
	scenario
	run_upload
	[ "$RC" = 0 ]
	ep_log | jq -r '.kind' | uniq > "$BATS_TEST_TMPDIR/kinds"
	first() { grep -n -m1 -x "$1" "$BATS_TEST_TMPDIR/kinds" | cut -d: -f1; }
	[ "$(grep -m1 '^rest:' "$BATS_TEST_TMPDIR/kinds")" = rest:devices ]
	[ "$(first rest:captures)" -lt "$(first rest:sensor_readings)" ]
	[ "$(first rest:devices)" -lt "$(first rest:device_status)" ]
	[ "$(first rest:devices)" -lt "$(first rest:device_publish_log)" ]
	# the stored upsert of image_1 comes after its object
	[ "$(psql_q "select count(*) from captures where ingest_status = 'stored'")" = 1 ]
	obj=$(ep_log | grep -n '"kind":"storage"' | cut -d: -f1)
	last_captures=$(ep_log | grep -n '"kind":"rest:captures"' | tail -1 | cut -d: -f1)
	[ "$obj" -lt "$last_captures" ]
}

@test "upload/db: rows are batched: 20 photos and 900 chunk events in a few requests" {
	for i in $(seq 1 20); do
		make_entry "$GXP_SPOOL" $DEV "p$i.jpg" 2000
		ev_capture_started $DEV "p$i.jpg" 2000 >> "$IN"
		for c in $(seq 0 44); do ev_inbound_chunk $DEV "p$i.jpg" "$c"; done >> "$IN"
		ev_photo_complete $DEV "p$i.jpg" >> "$IN"
	done
	ROW_FLUSH_MS=250 run_upload
	[ "$RC" = 0 ]
	[ "$(psql_q "select count(*) from device_publish_log where direction = 'in'")" = 900 ]
	[ "$(psql_q "select count(*) from captures where ingest_status = 'stored'")" = 20 ]
	[ "$(psql_q "select count(*) from sensor_readings")" = 20 ]
	[ "$(ep_count storage)" = 20 ]
	[ "$(ep_count rest:devices)" = 1 ]
	# 920 rows in at most 10 requests, not one per chunk
	[ "$(ep_count rest:device_publish_log)" -le 10 ]
	[ "$(ep_count rest:sensor_readings)" -le 6 ]
	[ "$(ep_count rest:captures)" -le 8 ]
	[ "$(ep_count total)" -le 40 ]
}

@test "upload/db: re-runs change nothing: --once twice, the same photo again, a replayed log" {
	scenario
	cp "$GXP_SPOOL/ready/$DEV@image_1.jpg".* "$BATS_TEST_TMPDIR/"
	run_upload
	[ "$RC" = 0 ]
	snapshot() {
		for t in devices captures sensor_readings device_errors; do
			psql_q "select count(*) from $t"
		done
		psql_q "select capture_id, ingest_status, storage_path, image_sha256 from captures order by 1"
		psql_q "select id, name, metadata->>'size' from storage.objects"
	}
	snapshot > "$BATS_TEST_TMPDIR/before"
	ep_reset
	: > "$IN"
	run_upload --once
	[ "$RC" = 0 ]
	[ "$(ep_count total)" = 0 ]
	# the same photo once more (a re-sent capture reassembled): upserts only
	cp "$BATS_TEST_TMPDIR/$DEV@image_1.jpg".* "$GXP_SPOOL/ready/"
	run_upload --once
	[ "$RC" = 0 ]
	snapshot | diff -u "$BATS_TEST_TMPDIR/before" -
	# the same log again: the stored capture is not set back to assembling
	scenario
	rm -f "$GXP_SPOOL/ready/$DEV@image_1.jpg".*
	run_upload
	[ "$RC" = 0 ]
	[ "$(psql_q "select ingest_status from captures where device_capture_id = 'image_1.jpg'")" = stored ]
	[ "$(psql_q "select count(*) from sensor_readings s join captures c using (capture_id)
		where c.device_capture_id = 'image_1.jpg'")" = 1 ]
}

@test "upload/db: a metadata-time upsert that lands after the photo's own keeps it stored" {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	: > "$IN"
	run_upload --once
	[ "$RC" = 0 ]
	before=$(psql_q "select ingest_status, storage_path, image_sha256, image_url from captures")
	[[ $before == *"|$EP_URL/storage/v1/object/gxp-captures/captures/"* ]]
	[ "${before%%|*}" = stored ]
	# as from a run that read the metadata before it knew of the photo
	# (killed with its request on the wire): the spool no longer says stored
	rm -r "$GXP_SPOOL/stored"
	ev_capture_started $DEV image_1.jpg 3000 > "$IN"
	run_upload
	[ "$RC" = 0 ]
	[ "$(ep_log | grep -c '"kind":"rest:captures"')" -ge 2 ]
	[ "$(psql_q "select ingest_status, storage_path, image_sha256, image_url from captures")" = "$before" ]
	# the sensor reading of that metadata still found its capture
	[ "$(psql_q "select count(*) from sensor_readings s join captures c using (capture_id)")" = 1 ]
	# a capture first seen this way starts as assembling (the column's default)
	ev_capture_started $DEV image_2.jpg 3000 > "$IN"
	run_upload
	[ "$(psql_q "select ingest_status from captures where device_capture_id = 'image_2.jpg'")" = assembling ]
}

@test "upload/db: last_seen_at is written at most once per DEVICE_SEEN_INTERVAL_S" {
	for i in $(seq 1 30); do ev_status $DEV Alive "$i" "2025-10-04T12:30:$(printf %02d "$i").000000Z"; done > "$IN"
	DEVICE_SEEN_INTERVAL_S=3600 run_upload
	[ "$RC" = 0 ]
	[ "$(psql_q "select count(*) from device_status")" = 30 ]
	[ "$(ep_count rest:devices)" = 1 ]
	[ "$(psql_q "select last_seen_at from devices")" = "2025-10-04 12:30:01+00" ]
}

# Rows per message, each table: what a single delivery of scenario() writes.
per_message() {
	psql_q "select 'devices', count(*), count(distinct device_hw_id) from devices"
	psql_q "select 'captures', count(*), count(distinct device_capture_id) from captures"
	psql_q "select 'sensor_readings', count(*), count(distinct capture_id) from sensor_readings"
	psql_q "select 'device_status', count(*), count(distinct created_at) from device_status"
	psql_q "select 'device_errors', count(*), count(distinct (error_code, occurred_at)) from device_errors"
	psql_q "select 'device_publish_log', count(*), count(distinct (direction, received_at,
		payload::text)) from device_publish_log"
}

@test "upload/db: an answer lost after the commit (dropped, or 502) stores no row twice, on any table" {
	for then in '"drop"' 502; do
		reset_db
		ep_reset
		rm -rf "$GXP_SPOOL/stored"
		scenario
		for t in $PG_TABLES; do
			ep_fault "{\"match\":\"^/rest/v1/$t\$\",\"then\":$then,\"count\":1}"
		done
		run_upload
		[ "$RC" = 0 ]
		# every table's first request was executed and its answer lost
		for t in $PG_TABLES; do
			ep_log | jq -e --arg k "rest:$t" 'select(.kind == $k) | .status' | head -1 |
				grep -qx -- "$([ "$then" = 502 ] && echo 502 || echo -1)"
		done
		per_message > "$BATS_TEST_TMPDIR/got"
		diff -u - "$BATS_TEST_TMPDIR/got" <<-'EOF'
			devices|1|1
			captures|2|2
			sensor_readings|2|2
			device_status|1|1
			device_errors|2|2
			device_publish_log|4|4
		EOF
	done
	# and every row carries the id it was given
	for t in sensor_readings device_status device_errors device_publish_log; do
		[ "$(psql_q "select count(*) from $t where event_id is null")" = 0 ]
	done
}

@test "upload/db: with columns= the body reaches PostgreSQL as sent: 1.10 stays 1.10" {
	printf '%s\n' "{\"event\":\"inbound\",\"v\":1,\"ts\":\"2025-10-04T12:34:57.000000Z\",\
\"device\":\"$DEV\",\"topic\":\"ESP32CAM/$DEV/status\",\"received_at\":\"2025-10-04T12:34:57.000000Z\",\
\"kind\":\"status\",\"payload\":{\"device_id\":\"$DEV\",\"volts\":1.10,\"big\":12345678901234567890}}" > "$IN"
	run_upload
	[ "$RC" = 0 ]
	[ "$(psql_q "select payload->>'volts', payload->>'big' from device_publish_log")" = "1.10|12345678901234567890" ]
}

# Changes to the schema this file's cluster shares: undone in teardown.
schema_change() {
	SCHEMA_CHANGED=1
	psql_q "$1" > /dev/null
}

# reload_cache: NOTIFY pgrst, 'reload schema', as Supabase's DDL hooks do,
# and wait until the endpoint has reloaded.
reload_cache() {
	local n
	n=$(ep_control stats | jq .schema_loads)
	psql_q "notify pgrst, 'reload schema'" > /dev/null
	wait_until 10 eval '[ "$(ep_control stats | jq .schema_loads)" -gt '"$n"' ]'
}

@test "upload/db: a column the schema cache lacks stops gxp-upload (100), the photo stays in ready/; schema.sql mends it" {
	schema_change "alter table captures drop column ingest_meta"
	reload_cache
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	run_upload --once
	[ "$RC" = 100 ]
	grep -q "stopping: HTTP 400 (PGRST204): Could not find the 'ingest_meta' column of 'captures' in the schema cache; table captures or a column gxp writes is missing, or PostgREST's schema cache does not know it yet: run sql/schema.sql, then reload the cache (NOTIFY pgrst, 'reload schema')" "$ERR"
	[ -f "$(entry_meta "$GXP_SPOOL" $DEV image_1.jpg)" ]
	[ -z "$(ls -A "$GXP_SPOOL/failed")" ] && [ -z "$(ls -A "$GXP_SPOOL/work" | grep -vx rows.at)" ]
	[ "$(psql_q "select count(*) from captures")" = 0 ]
	# the column back in the database, the cache not told: still refused
	psql_q "alter table captures add column ingest_meta jsonb" > /dev/null
	run_upload --once
	[ "$RC" = 100 ]
	grep -q "PGRST204" "$ERR"
	# the fix the message gives
	psql_file "$GXP_TOP/sql/schema.sql"
	reload_cache
	run_upload --once
	[ "$RC" = 0 ]
	[ "$(psql_q "select ingest_status from captures")" = stored ]
}

@test "upload/db: a column, a table or a unique key missing in the database stops gxp-upload (100), rows kept for later" {
	# the cache still knows the column: PostgreSQL says 42703
	schema_change "alter table captures drop column ingest_meta"
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	run_upload --once
	[ "$RC" = 100 ]
	grep -q 'stopping: HTTP 400 (42703): column "ingest_meta" of relation "captures" does not exist; table captures or a column gxp writes is missing.*run sql/schema.sql' "$ERR"
	[ -f "$(entry_meta "$GXP_SPOOL" $DEV image_1.jpg)" ] && [ -z "$(ls -A "$GXP_SPOOL/failed")" ]
	psql_file "$GXP_TOP/sql/schema.sql"
	# no unique key for on_conflict: 42P10
	schema_change "alter table device_status drop constraint device_status_event_id_key"
	ev_status $DEV Alive 1 > "$IN"
	run_upload
	[ "$RC" = 100 ]
	grep -q 'stopping: HTTP 400 (42P10): there is no unique or exclusion constraint matching the ON CONFLICT specification; table device_status has no unique key on (event_id) for the upsert: run sql/schema.sql' "$ERR"
	[ "$(psql_q "select count(*) from device_status")" = 0 ]
	# the row is not lost: it waits in rows/ for the run after the fix
	[ "$(ls "$GXP_SPOOL/rows" | wc -l)" = 1 ]
	psql_file "$GXP_TOP/sql/schema.sql"
	: > "$IN"
	run_upload
	[ "$RC" = 0 ]
	[ "$(psql_q "select status from device_status")" = Alive ]
	# a table the cache does not know: 404
	schema_change "alter table device_errors rename to device_errors_old"
	reload_cache
	ev_error $DEV 2102 warn "chunk without payload" > "$IN"
	run_upload
	[ "$RC" = 100 ]
	grep -q "stopping: HTTP 404 (PGRST205): Could not find the table 'public.device_errors' in the schema cache; table device_errors or a column gxp writes is missing" "$ERR"
}

@test "upload/db: a statement timeout on a large batch: halves, down to what passes, every row stored once" {
	schema_change "create function public.gxp_test_slow() returns trigger language plpgsql as
		\$\$ begin perform pg_sleep(0.005); return new; end \$\$;
		create trigger gxp_test_slow before insert on device_publish_log
		for each row execute function public.gxp_test_slow()"
	ep_control config '{"statement_timeout_ms":200}' > /dev/null
	for c in $(seq 0 299); do ev_inbound_chunk $DEV image_1.jpg "$c"; done > "$IN"
	ROW_FLUSH_MS=5000 ROW_BATCH_MAX=300 run_upload
	[ "$RC" = 0 ]
	[ "$(psql_q "select count(*), count(distinct payload->>'chunk_id') from device_publish_log")" = "300|300" ]
	# the batch of 300 and its halves timed out (500, 57014) before smaller ones passed
	[ "$(ep_log | jq -r 'select(.kind == "rest:device_publish_log") | .status' | head -1)" = 500 ]
	grep -q 'device_publish_log: a batch of 300 rows ran out of time (HTTP 500 (57014): canceling statement due to statement timeout); sending it in halves' "$ERR"
	grep -q 'a batch of 150 rows ran out of time' "$ERR"
	[ -z "$(ls -A "$GXP_SPOOL/rows")" ]
}

@test "upload/db: an SQLSTATE PostgREST does not list is a 400, refused at once, not retried" {
	schema_change "create function public.gxp_test_refuse() returns trigger language plpgsql as
		\$\$ begin raise exception 'refused by a test trigger' using errcode = 'GX001'; end \$\$;
		create trigger gxp_test_refuse before insert on device_status
		for each row execute function public.gxp_test_refuse()"
	for i in 1 2 3; do ev_status $DEV Alive "$i" "2025-10-04T12:30:0$i.000000Z"; done > "$IN"
	run_upload
	[ "$RC" = 0 ]
	# the batch of 3, then halves: [1,2] and then 1, 2 and 3 alone, each
	# refused (every row bad is the halving's worst case: 2n - 1)
	[ "$(ep_log | jq -r 'select(.kind == "rest:device_status") | .status' | sort | uniq -c |
		awk '{print $1 "x" $2}')" = 5x400 ]
	grep -q 'device_status: 1 row not written: HTTP 400 (GX001): refused by a test trigger' "$ERR"
	[ -z "$(ls -A "$GXP_SPOOL/rows")" ]
}
