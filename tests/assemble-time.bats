#!/usr/bin/env bats
# gxp-assemble's timers: NACK rounds and their content, the capture
# timeout, replay time against the monotonic clock, determinism, and logs
# captured with stock mosquitto_sub.

load assemble-lib

setup() {
	setup_assemble
	make_jpeg "$BATS_TEST_TMPDIR/p" 5000
}

teardown() {
	teardown_broker
	[ -n "${ASM_PID:-}" ] && kill -9 "$ASM_PID" 2>/dev/null
	[ -n "${MS_PIDS:-}" ] && kill $MS_PIDS 2>/dev/null
	return 0
}

# timeline: event, ts (as milliseconds from the test's epoch) and what matters.
timeline() {
	jq -r 'select(.event != "inbound") | [.event, .ts, (.payload.missing_chunks // .code // "" | tostring)] | @tsv' "$OUT"
}

@test "assemble-time: NACKs after RETRANSMIT_DELAY_MS of silence, at most RETRANSMIT_MAX, then the timeout" {
	{
		photo 0 D1 p.jpg "$BATS_TEST_TMPDIR/p" 1000 0 2 4
		status_line 3002 OTHER '{"status":"Alive"}'
		status_line 3003 OTHER '{"status":"Alive"}'
		chunk 4000 D1 p.jpg 1 "$BATS_TEST_TMPDIR/p" 1000
		status_line 10000 OTHER '{"status":"Alive"}'
		status_line 59999 OTHER '{"status":"Alive"}'
		status_line 61000 OTHER '{"status":"Alive"}'
	} > "$IN"
	assemble
	[ "$(timeline)" = "capture_started	$(ts 0)	
status	$(ts 3002)	
publish	$(ts 3003)	[1,3]
status	$(ts 3003)	
publish	$(ts 7000)	[3]
publish	$(ts 10000)	[3]
status	$(ts 10000)	
status	$(ts 59999)	
capture_failed	$(ts 60000)	2201
status	$(ts 61000)	" ]
	[ "$(events publish | sed -n 1p | jq -c '[.kind,.device,.image_name,.topic,.qos,.retain,.payload]')" = '["nack","D1","p.jpg","ESP32CAM/D1/ack",1,false,{"image_name":"p.jpg","missing_chunks":[1,3]}]' ]
	[ "$(events capture_failed | jq -c '[.device,.image_name,.capture_name,.code,.severity,.reason]')" = '["D1","p.jpg","p.jpg",2201,"error","timeout: 1 of 5 chunks missing after 60000 ms"]' ]
	empty "$SPOOL/partial" "$SPOOL/ready"
	grep -q "info: device D1 image p.jpg: NACK 3 of 3: 1 of 5 chunks missing" "$ERR"
}

@test "assemble-time: RETRANSMIT_MAX=0 sends no NACK; a chunk arriving resets the NACK clock" {
	{
		photo 0 D1 p.jpg "$BATS_TEST_TMPDIR/p" 1000 0
		status_line 2000 OTHER '{"status":"Alive"}'
		chunk 2500 D1 p.jpg 1 "$BATS_TEST_TMPDIR/p" 1000
		status_line 5000 OTHER '{"status":"Alive"}'
		status_line 5600 OTHER '{"status":"Alive"}'
	} > "$IN"
	assemble
	[ "$(events publish | jq -r '[.ts, (.payload.missing_chunks|tostring)] | @tsv')" = "$(ts 5500)	[2,3,4]" ]
	RETRANSMIT_MAX=0 assemble --spool "$BATS_TEST_TMPDIR/s2"
	[ "$(count publish)" = 0 ]
}

@test "assemble-time: long NACK lists are split into NACK_MAX_IDS ids a message; a round counts once" {
	make_jpeg "$BATS_TEST_TMPDIR/big" 250000
	photo 0 D1 big.jpg "$BATS_TEST_TMPDIR/big" 1000 0 > "$IN"
	NACK_MAX_IDS=100 RETRANSMIT_MAX=2 assemble --flush-at-eof
	[ "$(events publish | jq -r '[.ts, (.payload.missing_chunks | length), .payload.missing_chunks[0], .payload.missing_chunks[-1]] | @tsv')" = "$(ts 3001)	100	1	100
$(ts 3001)	100	101	200
$(ts 3001)	49	201	249
$(ts 6001)	100	1	100
$(ts 6001)	100	101	200
$(ts 6001)	49	201	249" ]
	# ascending, no id twice
	events publish | sed -n 1,3p | jq -c '.payload.missing_chunks[]' | sort -n -c
	grep -q "NACK 2 of 2: 249 of 250 chunks missing" "$ERR"
	[ "$(events capture_failed | jq -r '[.ts,.code] | @tsv')" = "$(ts 60000)	2201" ]
}

@test "assemble-time: chunks with no metadata time out (2201) and are removed" {
	{
		chunk 0 D1 orphan.jpg 0 "$BATS_TEST_TMPDIR/p" 1000
		chunk 5 D1 orphan.jpg 1 "$BATS_TEST_TMPDIR/p" 1000
	} > "$IN"
	CAPTURE_TIMEOUT_MS=5000 assemble
	[ "$(in_progress | jq -c '[.image_name,.capture_name,.chunks,.total_chunks]')" = \
		'["orphan.jpg",null,2,null]' ]
	[ "$(count error)" = 0 ]
	# at the end of a replay, timers wait for more input unless told otherwise
	IN=/dev/null CAPTURE_TIMEOUT_MS=5000 assemble --flush-at-eof
	[ "$(count error)" = 0 ]
	[ "$(in_progress | jq -r .image_name)" = orphan.jpg ]
	# the capture keeps the time it started: 5 s after the first chunk,
	# the restart or not
	CAPTURE_TIMEOUT_MS=5000 assemble --flush-at-eof
	[ "$(count publish)" = 0 ]
	# no capture was announced: no capture_failed, an error (reported at a
	# bounded rate: REFUSED_REPORT_INTERVAL_S)
	[ "$(count capture_failed)" = 0 ]
	[ "$(events error | jq -c '[.device,.image_name,.code,.reason,.ts]')" = \
		"[\"D1\",\"orphan.jpg\",2201,\"no metadata within 5000 ms; 2 chunks dropped\",\"$(ts 5000)\"]" ]
	empty "$SPOOL/partial"
}

@test "assemble-time: late chunks of a finished photo are ignored, even after a restart" {
	photo 0 D1 p.jpg "$BATS_TEST_TMPDIR/p" 1000 > "$IN"
	chunk 100 D1 p.jpg 2 "$BATS_TEST_TMPDIR/p" 1000 >> "$IN"
	assemble --flush-at-eof
	[ "$(jq -r .event "$OUT" | grep -v inbound | paste -sd' ')" = "capture_started photo_complete" ]
	empty "$SPOOL/partial"
	chunk 200 D1 p.jpg 3 "$BATS_TEST_TMPDIR/p" 1000 > "$IN"
	assemble --flush-at-eof
	[ "$(count capture_failed)" = 0 ]
	grep -q "late chunks of a finished photo dropped" "$ERR"
	empty "$SPOOL/partial"
}

@test "assemble-time: a replay is byte-identical run after run, NACKs, timeouts and failures included" {
	genlog --devices 8 --photos 3 --chunks 9 --chunk-size 800 --order random --dup 0.1 \
		--interleave device --step-us 200000 --seed 11 | awk 'NR % 23 != 7' > "$IN"
	chunk 1 BAD1 x.jpg 0 "$BATS_TEST_TMPDIR/p" 1000 >> "$IN"
	line 2 ESP32CAM/BAD1/data '{"image_name":"y.jpg","image_size":10,"max_chunks_size":5,"total_chunk_count":2}' >> "$IN"
	line 3 ESP32CAM/BAD1/data '{"image_name":"y.jpg","chunk_id":0,"payload":"/9gAAAA="}' >> "$IN"
	line 4 ESP32CAM/BAD1/data '{"image_name":"y.jpg","chunk_id":1,"payload":"AAA="}' >> "$IN"
	assemble --flush-at-eof --spool "$BATS_TEST_TMPDIR/a"
	cp "$OUT" "$BATS_TEST_TMPDIR/out.a"
	assemble --flush-at-eof --spool "$BATS_TEST_TMPDIR/b"
	cmp "$BATS_TEST_TMPDIR/out.a" "$OUT"
	# it is a real mix
	[ "$(count publish)" -gt 0 ]
	[ "$(count photo_complete)" -gt 0 ]
	[ "$(events capture_failed | jq .code | sort -u | paste -sd' ')" = "2201 2202" ]
	diff -r -x assemble.lock "$BATS_TEST_TMPDIR/a" "$BATS_TEST_TMPDIR/b"
}

@test "assemble-time: live input runs on the monotonic clock" {
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	RETRANSMIT_DELAY_MS=300 CAPTURE_TIMEOUT_MS=2000 gxp-assemble < "$BATS_TEST_TMPDIR/fifo" > "$OUT" 2> "$ERR" &
	ASM_PID=$!
	exec 7> "$BATS_TEST_TMPDIR/fifo"
	# tst far in the past: live, it only names the receive time
	photo 0 D1 p.jpg "$BATS_TEST_TMPDIR/p" 1000 0 1 >&7
	wait_until 10 file_has "$OUT" '"event":"publish"'
	# the first NACK round (a second may follow on a busy machine)
	[ "$(events publish | sed -n 1p | jq -c .payload.missing_chunks)" = '[2,3,4]' ]
	t=$(events publish | sed -n 1p | jq -r .ts)
	[ "$(date -u -d "${t%.*}Z" +%s)" -ge $(($(date -u +%s) - 60)) ]
	[ "$(events inbound | sed -n 1p | jq -r .received_at)" = "$(ts 0)" ]
	wait_until 10 file_has "$OUT" '"event":"capture_failed"'
	[ "$(events capture_failed | jq .code)" = 2201 ]
	exec 7>&-
	wait "$ASM_PID"
	ASM_PID=
	empty "$SPOOL/partial"
}

# msub FORMAT FILE: mosquitto_sub -F FORMAT in the background, subscribed
# before it returns.
msub() {
	mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -q 1 -t 'ESP32CAM/#' -F "$1" > "$2" &
	MS_PIDS="${MS_PIDS:-} $!"
	wait_until 10 probe_seen "$2"
}

probe_seen() {
	mpub -t ESP32CAM/PROBE/status -m '{"status":"probe"}'
	file_has "$1" probe
}

@test "assemble-time: a mosquitto_sub -F %j and -F %J capture made here replays into the same photo" {
	start_broker plain
	cap=$BATS_TEST_TMPDIR/cap
	TZ=Asia/Kolkata msub %j "$cap.j"
	msub %J "$cap.J"
	before=$(date -u +%s)
	make_jpeg "$BATS_TEST_TMPDIR/p" 4500
	photo 0 CAM1 mq.jpg "$BATS_TEST_TMPDIR/p" 1000 0 3 1 4 2 | jq -c .payload |
		while read -r msg; do mpub -q 1 -t ESP32CAM/CAM1/data -m "$msg"; done
	wait_until 10 file_has "$cap.j" '"chunk_id\":2'
	wait_until 10 file_has "$cap.J" '"chunk_id":2'
	kill $MS_PIDS
	wait $MS_PIDS 2>/dev/null || true
	MS_PIDS=
	# -F %j: payload as a string, local time with an offset
	grep -q '"payload":"{\\"device_id' "$cap.j"
	grep -q '+0530"' "$cap.j"
	for f in "$cap.j" "$cap.J"; do
		rm -rf "$SPOOL"
		IN=$f assemble
		[ "$ASM_RC" = 0 ]
		cmp "$BATS_TEST_TMPDIR/p" "$(ready_image CAM1 mq.jpg)"
		[ "$(count error)" = 0 ]
		[ "$(count status)" -ge 1 ]
		# tst in local time was read as the right UTC instant
		rcv=$(events inbound | sed -n '$p' | jq -r .received_at)
		t=$(date -u -d "${rcv%.*}Z" +%s)
		[ "$t" -ge $((before - 5)) ] && [ "$t" -le $(($(date -u +%s) + 5)) ]
	done
}
