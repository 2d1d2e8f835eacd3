#!/usr/bin/env bats
# gxp-upload with the local store (SUPABASE_URL unset): the layout of
# objects and rows, the spool's life cycle, crash safety, pass-through.

load helpers
load upload-fixtures

DEV=AABBCCDDEEFF

setup() {
	upload_env
}

teardown() {
	[ -n "${IMMUTABLE:-}" ] && chattr -R -i "$GXP_SPOOL" 2>/dev/null
	teardown_upload
}

@test "upload/dir: objects, rows with the Supabase columns, stored/ records, events in order" {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	make_entry "$GXP_SPOOL" $DEV image_2.jpg 5000 2025-12-31T23:59:59.500000Z
	cp "$(entry_photo "$GXP_SPOOL" $DEV image_1.jpg)" "$BATS_TEST_TMPDIR/one.jpg"
	cp "$(entry_photo "$GXP_SPOOL" $DEV image_2.jpg)" "$BATS_TEST_TMPDIR/two.jpg"
	{
		ev_status $DEV Alive 2
		ev_capture_started $DEV image_1.jpg 3000
		ev_photo_complete $DEV image_1.jpg
	} > "$IN"
	ACK_NEXT_WAKE_TIME=5:30PM run_upload
	[ "$RC" = 0 ]
	# objects at <store>/<bucket>/captures/MAC/YYYY/MM/DD/name (UTC day)
	cmp "$BATS_TEST_TMPDIR/one.jpg" "$GXP_STORE/gxp-captures/captures/$DEV/2025/10/04/image_1.jpg"
	cmp "$BATS_TEST_TMPDIR/two.jpg" "$GXP_STORE/gxp-captures/captures/$DEV/2025/12/31/image_2.jpg"
	[ -z "$(find "$GXP_STORE" -name '*.tmp.*')" ]
	# one file per table, the Supabase column names
	[ "$(jq -sc 'map(keys) | unique' "$GXP_STORE/devices.ndjson")" = \
		'[["device_hw_id","device_id","last_seen_at"]]' ]
	[ "$(jq -sc 'map(keys) | unique' "$GXP_STORE/captures.ndjson")" = \
		'[["capture_id","captured_at","chunk_size_bytes","device_capture_id","device_id","image_bytes","image_sha256","image_url","img_format","ingest_error","ingest_meta","ingest_status","sensor_data","storage_path","total_chunks"]]' ]
	[ "$(jq -sc 'map(keys) | unique' "$GXP_STORE/sensor_readings.ndjson")" = \
		'[["capture_id","created_at","device_id","event_id","gas_kohm","humidity_pct","pressure_hpa","temperature_c"]]' ]
	[ "$(jq -sc 'map(keys) | unique' "$GXP_STORE/device_status.ndjson")" = \
		'[["created_at","device_id","event_id","pending_count","raw","status"]]' ]
	[ "$(jq -sc 'map(keys) | unique' "$GXP_STORE/device_publish_log.ndjson")" = \
		'[["device_id","direction","event_id","payload","received_at","topic"]]' ]
	# the ids fit together
	dev_id=$(jq -r .device_id "$GXP_STORE/devices.ndjson")
	[ "$(jq -r .device_id "$GXP_STORE/captures.ndjson" | sort -u)" = "$dev_id" ]
	cap_id=$(jq -r 'select(.device_capture_id == "image_1.jpg") | .capture_id' \
		"$GXP_STORE/captures.ndjson" | sort -u)
	[ "$(jq -r .capture_id "$GXP_STORE/sensor_readings.ndjson")" = "$cap_id" ]
	[ "$(jq -r .gas_kohm "$GXP_STORE/sensor_readings.ndjson")" = 12.34567 ]
	# the last captures line of each photo is the stored one
	[ "$(jq -sr 'group_by(.capture_id) | map(last | .ingest_status) | unique | join(",")' \
		"$GXP_STORE/captures.ndjson")" = stored ]
	sha=$(sha256sum < "$BATS_TEST_TMPDIR/two.jpg" | cut -d' ' -f1)
	jq -e --arg s "$sha" 'select(.device_capture_id == "image_2.jpg") |
		.image_sha256 == $s and .image_bytes == 5000 and
		.storage_path == "captures/AABBCCDDEEFF/2025/12/31/image_2.jpg"' \
		"$GXP_STORE/captures.ndjson"
	# stdout: each photo's stored event, then its ACK_OK (seed format)
	[ "$(jq -r '.event + ":" + .image_name' "$OUT" | tr '\n' ' ')" = \
		"stored:image_1.jpg publish:image_1.jpg stored:image_2.jpg publish:image_2.jpg " ]
	[ "$(events publish | head -1 | jq -c .payload)" = \
		'{"image_name":"image_1.jpg","ACK_OK":{"next_wake_time":"5:30PM"}}' ]
	[ "$(events publish | head -1 | jq -r '[.topic, .qos, .retain, .kind] | join(" ")')" = \
		"ESP32CAM/$DEV/ack 1 false ack_ok" ]
	# the spool: nothing left to do; each sidecar is its photo's stored/
	# record now, dated when it was stored
	spool_settled "$GXP_SPOOL"
	jq -e '.capture_name == "image_1.jpg" and .image_bytes == 3000' \
		"$(stored_record "$GXP_SPOOL" $DEV image_1.jpg)"
	[ "$(find "$GXP_SPOOL/stored" -name '*.json' -newer "$IN" | wc -l)" = 2 ]
	# the ACKs are logged as outbound messages
	[ "$(jq -r 'select(.direction == "out") | .payload.image_name' \
		"$GXP_STORE/device_publish_log.ndjson" | sort | tr '\n' ' ')" = "image_1.jpg image_2.jpg " ]
}

@test "upload/dir: ACK_OK without ACK_NEXT_WAKE_TIME has an empty ACK_OK object" {
	make_entry "$GXP_SPOOL" $DEV img.jpg
	run_upload --once
	[ "$RC" = 0 ]
	[ "$(events publish | jq -c .payload)" = '{"image_name":"img.jpg","ACK_OK":{}}' ]
}

@test "upload/dir: a restart after a crash between row and retirement writes no second line" {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	cp "$(entry_photo "$GXP_SPOOL" $DEV image_1.jpg)" "$BATS_TEST_TMPDIR/saved.jpg"
	cp "$(entry_meta "$GXP_SPOOL" $DEV image_1.jpg)" "$BATS_TEST_TMPDIR/saved.json"
	run_upload --once
	[ "$RC" = 0 ]
	lines=$(lines_in "$GXP_STORE/captures.ndjson")
	# The state a SIGKILL after the append leaves: the sidecar claimed in
	# work/, the photo in ready/, the captures file size noted before the
	# append in work/rows.at, no stored/ record.
	offset=$(grep -b '"device_capture_id":"image_1.jpg"' "$GXP_STORE/captures.ndjson" | cut -d: -f1)
	cp "$BATS_TEST_TMPDIR/saved.jpg" "$(entry_photo "$GXP_SPOOL" $DEV image_1.jpg)"
	cp "$BATS_TEST_TMPDIR/saved.json" "$GXP_SPOOL/work/$DEV@image_1.jpg.json"
	echo "$DEV@image_1.jpg $offset" >> "$GXP_SPOOL/work/rows.at"
	rm "$(stored_record "$GXP_SPOOL" $DEV image_1.jpg)"
	run_upload --once
	[ "$RC" = 0 ]
	[ "$(lines_in "$GXP_STORE/captures.ndjson")" = "$lines" ]
	grep -q 'already stored before a restart' "$ERR"
	# the rest is repeated: events, stored/ record, work/ emptied
	[ "$(events stored | wc -l)" = 1 ] && [ "$(events publish | wc -l)" = 1 ]
	[ -f "$(stored_record "$GXP_SPOOL" $DEV image_1.jpg)" ]
	spool_settled "$GXP_SPOOL"
	# a crash before the append: the row is written then, once
	make_entry "$GXP_SPOOL" $DEV image_2.jpg 3000
	mv "$(entry_meta "$GXP_SPOOL" $DEV image_2.jpg)" "$GXP_SPOOL/work/"
	echo "$DEV@image_2.jpg $(wc -c < "$GXP_STORE/captures.ndjson")" >> "$GXP_SPOOL/work/rows.at"
	run_upload --once
	[ "$RC" = 0 ]
	[ "$(grep -c '"device_capture_id":"image_2.jpg"' "$GXP_STORE/captures.ndjson")" = 1 ]
	# a crash between the object and its row: the object (a second name of
	# the spool's file) is put again over itself; nothing temporary is left
	make_entry "$GXP_SPOOL" $DEV image_3.jpg 3000
	cp "$(entry_meta "$GXP_SPOOL" $DEV image_3.jpg)" "$BATS_TEST_TMPDIR/meta3"
	run_upload --once
	obj=$(find "$GXP_STORE" -name image_3.jpg)
	ln "$obj" "$(entry_photo "$GXP_SPOOL" $DEV image_3.jpg)"
	cp "$BATS_TEST_TMPDIR/meta3" "$GXP_SPOOL/work/$DEV@image_3.jpg.json"
	rm "$(stored_record "$GXP_SPOOL" $DEV image_3.jpg)"
	run_upload --once
	[ "$RC" = 0 ]
	[ -f "$(stored_record "$GXP_SPOOL" $DEV image_3.jpg)" ]
	[ "$(find "$GXP_STORE" -name '*.tmp.*')" = "" ]
	[ "$(find "$GXP_STORE" -name image_3.jpg | wc -l)" = 1 ]
}

@test "upload/dir: a retirement cut short leaves no damaged entry; gxp-assemble removes the photo" {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	cp "$(entry_photo "$GXP_SPOOL" $DEV image_1.jpg)" "$BATS_TEST_TMPDIR/saved.jpg"
	run_upload --once
	[ "$RC" = 0 ]
	[ "$(events stored | wc -l)" = 1 ]
	# a SIGKILL between the sidecar's move to stored/ and the photo's
	# removal leaves the photo without its sidecar
	cp "$BATS_TEST_TMPDIR/saved.jpg" "$(entry_photo "$GXP_SPOOL" $DEV image_1.jpg)"
	run_upload --once
	[ "$RC" = 0 ]
	[ -z "$(ls -A "$GXP_SPOOL/failed")" ]
	[ -z "$(events capture_failed)" ] && [ -z "$(events stored)" ]
	[ "$(jq -r .ingest_status "$GXP_STORE/captures.ndjson" | sort -u)" = stored ]
	# gxp-assemble, at its start, removes it
	gxp-assemble < /dev/null 2> "$ERR"
	grep -q "ready/$DEV@image_1.jpg.jpg: without its sidecar; removed" "$ERR"
	spool_settled "$GXP_SPOOL"
	# and a sidecar claimed whose photo is gone, stored: removed at start
	touch "$GXP_SPOOL/work/$DEV@image_1.jpg.json"
	run_upload --once
	[ "$RC" = 0 ]
	grep -q "work/$DEV@image_1.jpg.json: stored already; removed" "$ERR"
	[ -z "$(events capture_failed)" ]
	spool_settled "$GXP_SPOOL"
}

@test "upload/dir: rows an earlier run kept in rows/ are written; bad lines there are left out" {
	mkdir -p "$GXP_SPOOL/rows"
	cat > "$GXP_SPOOL/rows/1.1.ndjson" <<-EOF
	{"table":"device_status","dev":"$DEV","cap":"","need":0,"row":{"status":"Alive","pending_count":5,"created_at":"2025-10-04T12:30:00.000000Z"}}
	{"table":"device_publish_log","dev":"$DEV","cols":"topic,direction,payload,received_at","json":{"topic":"ESP32CAM/$DEV/status","direction":"in","payload":{"n":1.50},"received_at":"2025-10-04T12:30:00.000000Z"}}
	{"table":"devices","dev":"$DEV","seen":"2025-10-04T12:30:00.000000Z"}
	not json
	{"table":"device_status","dev":"../../etc","need":0,"row":{}}
	{"table":"device_publish_log","dev":"$DEV","cols":"topic&select=x","json":{"topic":"t"}}
	{"table":"captures","dev":"$DEV","cap":"x.jpg","need":0,"row":{"device_capture_id":"x.jpg"}}
	{"table":"sensor_readings","dev":"$DEV","need":7,"row":{}}
	EOF
	echo '{"table":"device_status","dev":"$DEV","cap":"","need":0,' > "$GXP_SPOOL/rows/2.2.ndjson.tmp.99"
	: > "$IN"
	run_upload --once
	[ "$RC" = 0 ]
	grep -q 'rows/1.1.ndjson: 3 rows an earlier run did not write, queued again' "$ERR"
	grep -q 'rows/1.1.ndjson: 5 lines not rows; left out' "$ERR"
	[ -z "$(ls -A "$GXP_SPOOL/rows")" ]
	[ "$(jq -r .pending_count "$GXP_STORE/device_status.ndjson")" = 5 ]
	# the log row's payload as it was written, number and all
	grep -q '"payload":{"n":1.50}' "$GXP_STORE/device_publish_log.ndjson"
	[ "$(jq -r .last_seen_at "$GXP_STORE/devices.ndjson")" = 2025-10-04T12:30:00.000000Z ]
	[ ! -e "$GXP_STORE/captures.ndjson" ]
}

@test "upload/dir: rows/ survives a SIGKILL of the run that loaded it: no row lost, none written twice" {
	mkdir -p "$GXP_SPOOL/rows"
	for n in 1 2 3; do
		printf '{"table":"device_status","dev":"%s","cap":"","need":0,"row":{"status":"Alive","pending_count":%d,"created_at":"2025-10-04T12:30:0%d.000000Z","event_id":"00000000-0000-4000-8000-00000000000%d"}}\n' \
			"$DEV" "$n" "$n" "$n"
	done > "$GXP_SPOOL/rows/1.1.ndjson"
	# batches of two: two rows are written at once, the third waits for
	# its batch, and the run is killed meanwhile
	ROW_BATCH_MAX=2 ROW_FLUSH_MS=60000 start_upload
	wait_until 10 eval '[ "$(lines_in "$GXP_STORE/device_status.ndjson" 2>/dev/null)" = 2 ]'
	[ -f "$GXP_SPOOL/rows/1.1.ndjson" ]
	[ -f "$GXP_SPOOL/rows/1.1.at" ]
	kill -KILL "$UP_PID"
	wait "$UP_PID" 2>/dev/null || true
	UP_PID=
	: > "$IN"
	run_upload --once
	[ "$RC" = 0 ]
	grep -q 'device_status: 2 rows written after the committed position' "$ERR"
	[ "$(jq -r .pending_count "$GXP_STORE/device_status.ndjson" | sort | tr '\n' ' ')" = "1 2 3 " ]
	[ -z "$(ls -A "$GXP_SPOOL/rows")" ]
}

@test "upload/dir: a torn last line is cut before the next append; every line is JSON" {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg
	run_upload --once
	printf '{"device_capture_id":"torn' >> "$GXP_STORE/captures.ndjson"
	make_entry "$GXP_SPOOL" $DEV image_2.jpg
	run_upload --once
	[ "$RC" = 0 ]
	grep -q 'removing a torn last line' "$ERR"
	jq -e . "$GXP_STORE/captures.ndjson" > /dev/null
	[ "$(lines_in "$GXP_STORE/captures.ndjson")" = 2 ]
	! grep -q torn "$GXP_STORE/captures.ndjson" || false
}

@test "upload/dir: other lines pass through byte for byte; publish events pass and are logged" {
	printf '%s\n' '{"tst":"2025-10-04T12:00:00Z","topic":"x/y","payload":{"n":12345678901234567890}}' \
		'not json at all' '{"event":"something_else","v":1,"x":1.10}' > "$IN"
	printf '%s\n' '{"event":"publish","v":1,"ts":"2025-10-04T12:40:00.000000Z","kind":"nack","device":"AABBCCDDEEFF","image_name":"i.jpg","topic":"ESP32CAM/AABBCCDDEEFF/ack","qos":1,"retain":false,"payload":{"image_name":"i.jpg","missing_chunks":[5,12]}}' >> "$IN"
	ev_status $DEV Alive 0 >> "$IN"
	run_upload
	[ "$RC" = 0 ]
	head -4 "$IN" | diff -u - "$OUT"
	grep -q 'publish nack to ESP32CAM/AABBCCDDEEFF/ack' "$ERR"
	jq -e 'select(.direction == "out") | .payload.missing_chunks == [5,12] and
		.received_at == "2025-10-04T12:40:00.000000Z"' "$GXP_STORE/device_publish_log.ndjson"
	[ "$(lines_in "$GXP_STORE/device_status.ndjson")" = 1 ]
}

@test "upload/dir: PUBLISH_LOG=no-chunks keeps metadata rows, off keeps none; chunk bytes never logged" {
	{
		ev_inbound_meta $DEV img.jpg
		ev_inbound_chunk $DEV img.jpg 0
		printf '%s\n' '{"event":"inbound","v":1,"device":"AABBCCDDEEFF","topic":"ESP32CAM/AABBCCDDEEFF/data","received_at":"2025-10-04T12:34:58.000000Z","kind":"chunk","payload":{"image_name":"img.jpg","chunk_id":1,"payload":"/9j/4AAQ"}}'
		# padding alone is no bytes (not 2^64 - 2)
		printf '%s\n' '{"event":"inbound","v":1,"device":"AABBCCDDEEFF","topic":"ESP32CAM/AABBCCDDEEFF/data","received_at":"2025-10-04T12:34:59.000000Z","kind":"chunk","payload":{"image_name":"img.jpg","chunk_id":2,"payload":"=="}}'
	} > "$IN"
	run_upload
	[ "$(lines_in "$GXP_STORE/device_publish_log.ndjson")" = 4 ]
	jq -se 'map(select(.payload.chunk_id == 2))[0].payload.payload_bytes == 0' \
		"$GXP_STORE/device_publish_log.ndjson"
	! grep -q '/9j/4AAQ' "$GXP_STORE/device_publish_log.ndjson" || false
	jq -se 'map(select(.payload.chunk_id == 1))[0].payload.payload_bytes == 6' \
		"$GXP_STORE/device_publish_log.ndjson"
	rm -rf "$GXP_STORE"
	PUBLISH_LOG=no-chunks run_upload
	[ "$(lines_in "$GXP_STORE/device_publish_log.ndjson")" = 1 ]
	rm -rf "$GXP_STORE"
	PUBLISH_LOG=off run_upload
	[ "$(lines_in "$GXP_STORE/device_publish_log.ndjson")" = 0 ]
	PUBLISH_LOG=some run_upload
	[ "$RC" = 100 ]
	grep -q 'PUBLISH_LOG=some (environment): expected all, no-chunks or off' "$ERR"
}

@test "upload/dir: a capture_failed for a photo already complete writes no failed row" {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	# a copy assembled again timed out while the photo waited in ready/
	ev_capture_failed $DEV image_1.jpg 2201 "timeout: 3 of 3 chunks missing" > "$IN"
	ev_capture_failed $DEV image_2.jpg 2201 "timeout: 3 of 3 chunks missing" >> "$IN"
	run_upload
	[ "$RC" = 0 ]
	[ "$(jq -r '[.device_capture_id, .ingest_status] | @tsv' "$GXP_STORE/captures.ndjson" | sort)" = \
"image_1.jpg	stored
image_2.jpg	failed" ]
	# the error itself is kept
	[ "$(jq -r .error_code "$GXP_STORE/device_errors.ndjson" | sort | uniq -c | awk '{print $1, $2}')" = "2 2201" ]
}

@test "upload/dir: a damaged entry goes to failed/ with its reason, a 2204 row and a capture_failed event" {
	make_entry "$GXP_SPOOL" $DEV bad.jpg 3000
	printf 'X' | dd of="$(entry_photo "$GXP_SPOOL" $DEV bad.jpg)" bs=1 seek=100 conv=notrunc 2>/dev/null
	run_upload --once
	[ "$RC" = 0 ]
	failed=$(ls "$GXP_SPOOL/failed")
	[[ $failed =~ ^AABBCCDDEEFF@bad\.jpg\.[0-9]+$ ]]
	jq -e '.code == 2204 and (.reason | test("SHA-256")) and (.failed_at | test("Z$"))' \
		"$GXP_SPOOL/failed/$failed/reason.json"
	[ -f "$GXP_SPOOL/failed/$failed/image.jpg" ] && [ -f "$GXP_SPOOL/failed/$failed/meta.json" ]
	events capture_failed | jq -e --arg e "failed/$failed" '.code == 2204 and .entry == $e and
		.device == "AABBCCDDEEFF" and .capture_name == "bad.jpg"'
	[ "$(events publish | wc -l)" = 0 ]
	jq -e 'select(.device_capture_id == "bad.jpg") | .ingest_status == "failed"' \
		"$GXP_STORE/captures.ndjson"
	jq -e '.error_code == 2204 and .capture_id != null' "$GXP_STORE/device_errors.ndjson"
	grep -q 'device AABBCCDDEEFF image bad.jpg: bad spool entry' "$ERR"
}

@test "upload/dir: a photo no event announced is found by the rescan; SIGTERM exits 0" {
	start_upload
	wait_until 10 file_has "$ERR" "local store"
	make_entry "$GXP_SPOOL" $DEV late.jpg
	wait_until 10 file_has "$OUT" '"event":"publish"'
	[ -f "$GXP_STORE/gxp-captures/captures/$DEV/2025/10/04/late.jpg" ]
	kill -TERM "$UP_PID"
	stop_upload
	[ "$RC" = 0 ]
}

@test "upload/dir: a pipeline's gxp-upload waits for a cron --once holding the spool, instead of stopping the worker" {
	make_entry "$GXP_SPOOL" "$DEV" waited.jpg 3000
	# a --once run holds the lock for 2 s (flock(1) in its place)
	flock "$GXP_SPOOL/upload.lock" sh -c 'echo "$$ once" > "$1"; sleep 2' sh "$GXP_SPOOL/upload.lock" &
	HOLDER=$!
	wait_until 10 file_has "$GXP_SPOOL/upload.lock" once
	run gxp-upload < /dev/null
	wait "$HOLDER"
	[ "$status" = 0 ]
	[[ $output == *"a gxp-upload --once is storing this spool's photos; waiting for it to end"* ]]
	[ -f "$GXP_STORE/gxp-captures/captures/$DEV/2025/10/04/waited.jpg" ]
	grep -q " run" "$GXP_SPOOL/upload.lock"
}

@test "upload/dir: one gxp-upload per spool; usage errors" {
	start_upload
	wait_until 10 file_has "$ERR" "local store"
	# a cron --once leaves the spool to the running gxp-upload
	run gxp-upload --once
	[ "$status" = 0 ]
	[[ $output == *"upload.lock: another gxp-upload is storing this spool's photos; leaving them to it"* ]]
	# a second pipeline on the same spool is a mistake
	run gxp-upload < /dev/null
	[ "$status" = 100 ]
	[[ $output == *"upload.lock: another gxp-upload is using this spool"* ]]
	stop_upload
	[ "$RC" = 0 ]
	run gxp-upload --bogus
	[ "$status" = 100 ]
	[[ $output == *"usage: gxp-upload [--check | --once] [--env file]"* ]]
	run gxp-upload extra
	[ "$status" = 100 ]
	run gxp-upload --help
	[ "$status" = 0 ]
	[ "${lines[0]}" = "usage: gxp-upload [--check | --once] [--env file] [--spool dir] [-J dir]" ]
	[ "${lines[-1]}" = "see gxp-upload(1)" ]
}

@test "upload/dir: gxp-control's schedule gives ACK_OK its next_wake_time; its commands are logged as out rows" {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	make_entry "$GXP_SPOOL" OTHERDEV image_1.jpg 3000
	{
		printf '%s\n' "{\"event\":\"schedule\",\"v\":1,\"ts\":\"2026-06-01T10:00:00.000000Z\",\"device\":\"$DEV\",\"next_wake_at\":\"2026-06-01T15:30:00.000000Z\",\"next_wake_time\":\"5:30PM\"}"
		printf '%s\n' "{\"event\":\"command\",\"v\":1,\"ts\":\"2026-06-01T10:00:00.100000Z\",\"device\":\"$DEV\",\"kind\":\"capture_image\",\"source\":\"schedule\",\"topic\":\"ESP32CAM/$DEV/cmd\",\"payload\":{\"device_id\":\"$DEV\",\"capture_image\":true}}"
		ev_photo_complete $DEV image_1.jpg
		ev_photo_complete OTHERDEV image_1.jpg
	} > "$IN"
	run_upload
	[ "$RC" = 0 ]
	# the device with a schedule gets its clock time; one without gets none
	[ "$(events publish | jq -c 'select(.device == "'$DEV'") | .payload')" = '{"image_name":"image_1.jpg","ACK_OK":{"next_wake_time":"5:30PM"}}' ]
	[ "$(events publish | jq -c 'select(.device == "OTHERDEV") | .payload')" = '{"image_name":"image_1.jpg","ACK_OK":{}}' ]
	# ACK_NEXT_WAKE_TIME stays the override
	rm -rf "$GXP_SPOOL/stored" "$GXP_STORE"
	make_entry "$GXP_SPOOL" $DEV image_2.jpg 3000
	sed -i "s/image_1.jpg/image_2.jpg/g" "$IN"
	ACK_NEXT_WAKE_TIME=7:00AM run_upload
	[ "$(events publish | jq -c 'select(.device == "'$DEV'") | .payload.ACK_OK')" = '{"next_wake_time":"7:00AM"}' ]
	# the command is an "out" row of the publish log; neither event passes on
	[ "$(jq -c 'select(.direction == "out" and .topic == "ESP32CAM/'$DEV'/cmd") | .payload' "$GXP_STORE/device_publish_log.ndjson")" = "{\"device_id\":\"$DEV\",\"capture_image\":true}" ]
	[ -z "$(events schedule)" ] && [ -z "$(events command)" ]
}
