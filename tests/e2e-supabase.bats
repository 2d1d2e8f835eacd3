#!/usr/bin/env bats
# The whole worker end to end into Supabase: gxp-supervise against a real
# mosquitto, storing into the local PostgREST/Storage endpoint in front of a
# real PostgreSQL carrying sql/schema.sql and sql/rls.sql.

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
	# the current kind of key (the legacy JWT one in the other files)
	worker_env "$BATS_TEST_TMPDIR/w.env" "SUPABASE_URL=$EP_URL" \
		"SUPABASE_SECRET_KEY=$EP_SECRET_KEY"
	OBJECTS=$EP_DIR/objects/gxp-captures
}

teardown() {
	e2e_teardown
}

@test "e2e/supabase: the seed's example: ACK_OK, a stored captures row, the Monitoring queries" {
	start_worker "$BATS_TEST_TMPDIR/w.env"
	capture_acks "$BATS_TEST_TMPDIR/acks"
	mpub -t ESP32CAM/TESTMAC123/status -m '{"device_id":"TESTMAC123","status":"Alive","pendingImg":1}'
	mpub -t ESP32CAM/TESTMAC123/data \
		-m '{"device_id":"TESTMAC123","image_name":"test.jpg","image_size":4,"max_chunks_size":2,"total_chunk_count":2,"temperature":25.1,"humidity":45.0,"pressure":1010.2,"capture_timeStamp":"2025-10-04T12:00:00Z"}'
	mpub -t ESP32CAM/TESTMAC123/data \
		-m '{"device_id":"TESTMAC123","image_name":"test.jpg","chunk_id":0,"max_chunk_size":1024,"payload":"/9g="}'
	mpub -t ESP32CAM/TESTMAC123/data \
		-m '{"device_id":"TESTMAC123","image_name":"test.jpg","chunk_id":1,"max_chunk_size":1024,"payload":"/9k="}'
	wait_until 20 file_has "$BATS_TEST_TMPDIR/acks" ACK_OK
	# ACK_OK came only after the row said stored
	[ "$(psql_q "select ingest_status, storage_path, image_bytes from captures c join devices d using (device_id) where d.device_hw_id = 'TESTMAC123'")" = "stored|captures/TESTMAC123/2025/10/04/test.jpg|4" ]
	[ "$(psql_q "select image_sha256 from captures")" = "$(printf '\xff\xd8\xff\xd9' | sha256sum | cut -d' ' -f1)" ]
	[ "$(od -An -tx1 "$OBJECTS/captures/TESTMAC123/2025/10/04/test.jpg" | tr -d ' \n')" = ffd8ffd9 ]
	[ "$(psql_q "select metadata->>'mimetype' from storage.objects")" = image/jpeg ]
	stop_worker
	[ "$WORKER_RC" = 0 ]
	[ "$(psql_q "select temperature_c, humidity_pct, pressure_hpa from sensor_readings")" = "25.1|45|1010.2" ]
	[ "$(psql_q "select status, pending_count from device_status")" = "Alive|1" ]
	# the seed's Monitoring queries, unchanged, see it
	run psql -X -A -t -v ON_ERROR_STOP=1 -f "$GXP_TOP/tests/upload-monitoring.sql"
	[ "$status" = 0 ]
	[[ $output == *"test.jpg"* ]]
	[[ $output == *"captures/TESTMAC123/2025/10/04/test.jpg"* ]]
}

# bats test_tags=slow
@test "e2e/supabase: 50 devices x 4 photos with 5% loss: each stored once, byte-identical, sha256 in the database" {
	start_worker "$BATS_TEST_TMPDIR/w.env"
	run gxp-sim --env "$BATS_TEST_TMPDIR/w.env" -d 50 -n 4 -l 0.05 -t 90000 -s 21 -j
	echo "$output" | tail -3
	[ "$status" = 0 ]
	summary=$(tail -1 <<<"$output")
	[ "$(jq -r .acknowledged <<<"$summary")" = 200 ]
	[ "$(jq -r .nacks_answered <<<"$summary")" -gt 0 ]
	stop_worker
	[ "$WORKER_RC" = 0 ]
	# every device acknowledged, every photo one row, stored, one object
	[ "$(psql_q "select count(*), count(distinct device_id) from captures where ingest_status = 'stored'")" = "200|50" ]
	[ "$(psql_q "select count(*) from captures")" = 200 ]
	[ "$(psql_q "select count(*) from storage.objects where bucket_id = 'gxp-captures'")" = 200 ]
	[ "$(psql_q "select count(*) from devices")" = 50 ]
	# each object's bytes hash to the sha256 in its row
	psql_q "select storage_path, image_sha256, image_bytes from captures" | sort > "$BATS_TEST_TMPDIR/rows"
	[ "$(wc -l < "$BATS_TEST_TMPDIR/rows")" = 200 ]
	while IFS='|' read -r path sha bytes; do
		[ "$(sha256sum < "$OBJECTS/$path" | cut -d' ' -f1)" = "$sha" ]
		[ "$(stat -c %s "$OBJECTS/$path")" = "$bytes" ]
	done < "$BATS_TEST_TMPDIR/rows"
	# and each is one of the photos gxp-sim sent
	sent=$(for f in "$GXP_TOP"/examples/*.jpg; do sha256sum < "$f" | cut -d' ' -f1; done | sort)
	[ "$(cut -d'|' -f2 "$BATS_TEST_TMPDIR/rows" | sort -u)" = "$sent" ]
	# a sensor row per photo; the publish log without chunk bytes
	[ "$(psql_q "select count(*) from sensor_readings")" = 200 ]
	[ "$(psql_q "select count(*) from device_publish_log where payload ? 'payload'")" = 0 ]
	[ "$(psql_q "select count(*) > 7000 from device_publish_log where direction = 'in'")" = t ]
	[ "$(psql_q "select count(*) >= 200 from device_publish_log where direction = 'out'")" = t ]
	# batched: far fewer HTTP requests than messages
	req=$(ep_count total)
	echo "HTTP requests: $req for 200 photos"
	[ "$req" -lt 1000 ]
}

@test "e2e/supabase: a wrong service key stops the worker before it starts, with the reason" {
	worker_env "$BATS_TEST_TMPDIR/bad.env" "SUPABASE_URL=$EP_URL" "SUPABASE_SERVICE_ROLE=not-the-key-xyz"
	run timeout 60 gxp-supervise --env "$BATS_TEST_TMPDIR/bad.env"
	[ "$status" = 100 ]
	[[ $output == *"gxp-upload: FAIL: bucket gxp-captures: HTTP 401"* ]]
	[[ $output == *"the configuration is not usable"* ]]
	[[ $output != *not-the-key-xyz* ]]
}
