#!/usr/bin/env bats
# The whole worker end to end, on the local store: gxp-supervise running
# gxp-sub | gxp-assemble | gxp-upload | gxp-pub against a real mosquitto,
# fed by the seed's mosquitto_pub example and by gxp-sim.

load helpers
load e2e

setup() {
	start_broker plain
	worker_env "$BATS_TEST_TMPDIR/w.env"
	STORE=$BATS_TEST_TMPDIR/store
}

teardown() {
	e2e_teardown
}

@test "e2e: the seed's mosquitto_pub example gets ACK_OK and a stored capture" {
	start_worker "$BATS_TEST_TMPDIR/w.env"
	capture_acks "$BATS_TEST_TMPDIR/acks"
	# the three messages of the seed's "Testing Without Devices", verbatim
	mpub -t ESP32CAM/TESTMAC123/data \
		-m '{"device_id":"TESTMAC123","image_name":"test.jpg","image_size":4,"max_chunks_size":2,"total_chunk_count":2,"temperature":25.1,"humidity":45.0,"pressure":1010.2,"capture_timeStamp":"2025-10-04T12:00:00Z"}'
	mpub -t ESP32CAM/TESTMAC123/data \
		-m '{"device_id":"TESTMAC123","image_name":"test.jpg","chunk_id":0,"max_chunk_size":1024,"payload":"/9g="}'
	mpub -t ESP32CAM/TESTMAC123/data \
		-m '{"device_id":"TESTMAC123","image_name":"test.jpg","chunk_id":1,"max_chunk_size":1024,"payload":"/9k="}'
	wait_until 20 file_has "$BATS_TEST_TMPDIR/acks" ACK_OK
	[ "$(cat "$BATS_TEST_TMPDIR/acks")" = 'ESP32CAM/TESTMAC123/ack {"image_name":"test.jpg","ACK_OK":{"next_wake_time":"5:30PM"}}' ]
	obj=$STORE/gxp-captures/captures/TESTMAC123/2025/10/04/test.jpg
	[ "$(od -An -tx1 "$obj" | tr -d ' \n')" = ffd8ffd9 ]
	row=$(jq -c 'select(.device_capture_id == "test.jpg" and .ingest_status == "stored")' "$STORE/captures.ndjson" | tail -1)
	[ "$(jq -r .storage_path <<<"$row")" = captures/TESTMAC123/2025/10/04/test.jpg ]
	[ "$(jq -r .image_sha256 <<<"$row")" = "$(sha256sum "$obj" | cut -d' ' -f1)" ]
	[ "$(jq -r .image_bytes <<<"$row")" = 4 ]
	stop_worker
	[ "$WORKER_RC" = 0 ]
	[ "$(jq -c '[.temperature_c, .humidity_pct, .pressure_hpa, .gas_kohm]' "$STORE/sensor_readings.ndjson")" = '[25.1,45,1010.2,null]' ]
}

@test "e2e: 50 devices x 4 photos with 5% loss, local store: every photo once, byte-identical, acknowledged" {
	start_worker "$BATS_TEST_TMPDIR/w.env"
	run gxp-sim --env "$BATS_TEST_TMPDIR/w.env" -d 50 -n 4 -l 0.05 -t 60000 -s 11 -j
	echo "$output"
	[ "$status" = 0 ]
	summary=$(tail -1 <<<"$output")
	[ "$(jq -r .acknowledged <<<"$summary")" = 200 ]
	[ "$(jq -r .nacks_answered <<<"$summary")" -gt 0 ]
	stop_worker
	[ "$WORKER_RC" = 0 ]
	# 200 objects, each a photo gxp-sim sent, byte for byte
	[ "$(find "$STORE/gxp-captures" -name '*.jpg' | wc -l)" = 200 ]
	sent=$(for f in "$GXP_TOP"/examples/*.jpg; do sha256sum < "$f" | cut -d' ' -f1; done | sort)
	stored=$(photo_shas "$STORE/gxp-captures" | uniq)
	[ "$stored" = "$sent" ]
	# one stored captures row per photo, its sha256 that of the object
	jq -r 'select(.ingest_status == "stored") | [.storage_path, .image_sha256] | @tsv' \
		"$STORE/captures.ndjson" | sort -u > "$BATS_TEST_TMPDIR/rows"
	[ "$(cut -f1 "$BATS_TEST_TMPDIR/rows" | sort -u | wc -l)" = 200 ]
	while IFS=$'\t' read -r path sha; do
		[ "$(sha256sum < "$STORE/gxp-captures/$path" | cut -d' ' -f1)" = "$sha" ]
	done < "$BATS_TEST_TMPDIR/rows"
	# nothing left behind in the spool
	[ -z "$(find "$BATS_TEST_TMPDIR/spool/ready" "$BATS_TEST_TMPDIR/spool/partial" -mindepth 1)" ]
	[ -z "$(find "$BATS_TEST_TMPDIR/spool/work" -mindepth 1 ! -name rows.at)" ]
	[ "$(find "$BATS_TEST_TMPDIR/spool/stored" -name '*.json' | wc -l)" = 200 ]
}

@test "e2e: SIGTERM drains the pipeline: what was received is stored and acknowledged" {
	start_worker "$BATS_TEST_TMPDIR/w.env"
	capture_acks "$BATS_TEST_TMPDIR/acks"
	# 20 devices send as fast as they can and, like real ones, send a photo
	# again when no ACK_OK came within 4 s; the worker is stopped mid-stream
	gxp-sim --env "$BATS_TEST_TMPDIR/w.env" -d 20 -n 5 -R 4000 -t 90000 -s 5 -j \
		> "$BATS_TEST_TMPDIR/sim" 2>&1 3>&- &
	sim=$!
	wait_until 20 sh -c "[ \$(find '$STORE' -name '*.jpg' 2>/dev/null | wc -l) -ge 10 ]"
	stop_worker
	[ "$WORKER_RC" = 0 ]
	grep -q "stopping: draining the pipeline" "$WORKER_LOG"
	# every photo that completed was stored, and every stored photo ACKed
	spool=$BATS_TEST_TMPDIR/spool
	[ -z "$(find "$spool/ready" "$spool/work" -mindepth 1 ! -name rows.at)" ]
	stored=$(find "$STORE/gxp-captures" -name '*.jpg' | wc -l)
	wait_until 5 sh -c "[ \$(grep -c ACK_OK '$BATS_TEST_TMPDIR/acks') -ge $stored ]"
	[ "$(grep -c ACK_OK "$BATS_TEST_TMPDIR/acks")" -eq "$stored" ]
	# the worker comes back; the devices' retries finish every photo, once
	start_worker "$BATS_TEST_TMPDIR/w.env"
	rc=0; wait "$sim" || rc=$?
	cat "$BATS_TEST_TMPDIR/sim"
	[ "$rc" = 0 ]
	stop_worker
	[ "$(find "$STORE/gxp-captures" -name '*.jpg' | wc -l)" = 100 ]
	[ "$(jq -r 'select(.ingest_status == "stored") | .storage_path' "$STORE/captures.ndjson" | sort -u | wc -l)" = 100 ]
}

@test "e2e: replaying a captured log from a file stores the same photos (cron use)" {
	mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -q 1 -t 'ESP32CAM/#' -F %j \
		> "$BATS_TEST_TMPDIR/day.ndjson" 2>/dev/null 3>&- &
	cap=$!
	sleep 0.3
	# nobody answers: gxp-sim's photos are only captured
	gxp-sim -p "$BROKER_PORT" -h 127.0.0.1 -d 3 -n 2 -t 1500 -s 3 > /dev/null 2>&1 || true
	kill "$cap"
	export GXP_SPOOL=$BATS_TEST_TMPDIR/rspool GXP_STORE=$BATS_TEST_TMPDIR/rstore
	gxp-assemble --flush-at-eof < "$BATS_TEST_TMPDIR/day.ndjson" |
		gxp-upload > "$BATS_TEST_TMPDIR/replay.out"
	[ "$(jq -r 'select(.event == "stored") | .storage_path' "$BATS_TEST_TMPDIR/replay.out" | wc -l)" = 6 ]
	[ "$(jq -r 'select(.event == "publish" and .kind == "ack_ok") | .topic' "$BATS_TEST_TMPDIR/replay.out" | wc -l)" = 6 ]
	[ "$(find "$GXP_STORE" -name '*.jpg' | wc -l)" = 6 ]
	# a second run of the same log stores nothing twice
	gxp-assemble --flush-at-eof < "$BATS_TEST_TMPDIR/day.ndjson" | gxp-upload --once > /dev/null
	[ "$(find "$GXP_STORE" -name '*.jpg' | wc -l)" = 6 ]
	[ "$(jq -r 'select(.ingest_status == "stored") | .storage_path' "$GXP_STORE/captures.ndjson" | sort -u | wc -l)" = 6 ]
}
