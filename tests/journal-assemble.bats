#!/usr/bin/env bats
# gxp-assemble on a journal's lines (each with gxp-sub's "seq"): the same
# line read again (a replay after a crash) makes the same events, a mark
# follows the output of the lines up to its seq, and a line cut in the
# pipe is not taken as done.

load assemble-lib

setup() {
	setup_assemble
}

teardown() {
	[ -n "${ASM_PID:-}" ] && kill "$ASM_PID" 2>/dev/null
	return 0
}

# sline SEQ MS TOPIC PAYLOAD: a journal line (gxp-sub -J).
sline() {
	printf '{"seq":%d,"tst":"%s","topic":"%s","qos":1,"retain":0,"payloadlen":%d,"payload":%s}\n' \
		"$1" "$(ts "$2")" "$3" "${#4}" "$4"
}

# smeta SEQ MS DEV NAME SIZE: the metadata of a one-chunk photo, with a reading.
smeta() {
	sline "$1" "$2" "ESP32CAM/$3/data" "{\"device_id\":\"$3\",\"capture_timeStamp\":\"2025-10-04T12:34:56Z\",\"image_name\":\"$4\",\"image_size\":$5,\"max_chunks_size\":1024,\"total_chunk_count\":2,\"temperature\":21.5,\"pressure\":1001}"
}

@test "journal/assemble: live, a message's events carry its tst, errors name its seq, a mark follows the output; a line cut short is not done" {
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	gxp-assemble < "$BATS_TEST_TMPDIR/fifo" > "$OUT" 2> "$ERR" &
	ASM_PID=$!
	exec 7> "$BATS_TEST_TMPDIR/fifo"
	# tst a year ago: live, the events still take it, not the clock
	sline 7 100 ESP32CAM/D1/status '{"status":"Alive","pendingImg":2}' >&7
	sline 8 200 ESP32CAM/D1/data '{"image_name":"x.jpg","chunk_id":"one","payload":"AA=="}' >&7
	wait_until 10 file_has "$OUT" '{"event":"mark","v":1,"seq":8}'
	[ "$(events status | jq -r .ts)" = "$(ts 100)" ]
	[ "$(events inbound | jq -r '[.ts, .received_at] | join(" ")' | sort -u | paste -sd' ')" = \
		"$(ts 100) $(ts 100) $(ts 200) $(ts 200)" ]
	[ "$(events error | jq -c '[.ts, .seq, .line]')" = "[\"$(ts 200)\",8,null]" ]
	[ "$(tail -1 "$OUT")" = '{"event":"mark","v":1,"seq":8}' ]
	# a line cut by its writer's death: no error, and no mark covers it
	sline 9 300 ESP32CAM/D1/status '{"status":"Alive","pendingImg":1}' | head -c 60 >&7
	exec 7>&-
	wait "$ASM_PID"
	ASM_PID=
	[ "$(count error)" = 1 ]
	# one mark for each line, or one for both, as the reads fell; none for 9
	[[ "$(events mark | jq .seq | paste -sd' ')" =~ ^(7\ )?8$ ]]
	grep -q "the last line (seq 9) was cut short; the journal has it" "$ERR"
}

@test "journal/assemble: the metadata message read again makes its capture_started again, identical, in progress, ready or stored; a resent one does not" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 1500
	cs=1024
	smeta 1 1000 D1 r.jpg 1500 > "$IN"
	assemble
	[ "$(count capture_started)" = 1 ]
	events capture_started > "$BATS_TEST_TMPDIR/first"
	# after a restart, the same line (the journal replayed): the same event
	smeta 1 1000 D1 r.jpg 1500 > "$IN"
	assemble
	events capture_started | cmp - "$BATS_TEST_TMPDIR/first"
	grep -q "the metadata message read again: capture_started again" "$ERR"
	# the device sends it again (a new message, a new tst): nothing new
	smeta 2 5000 D1 r.jpg 1500 > "$IN"
	assemble
	[ "$(count capture_started)" = 0 ]
	grep -q "metadata again for a capture in progress" "$ERR"
	# complete: in ready/, then stored (as gxp-upload records it)
	{
		sline 3 6000 ESP32CAM/D1/data "{\"image_name\":\"r.jpg\",\"chunk_id\":0,\"payload\":\"$(b64_slice "$BATS_TEST_TMPDIR/p" $cs 0)\"}"
		sline 4 6001 ESP32CAM/D1/data "{\"image_name\":\"r.jpg\",\"chunk_id\":1,\"payload\":\"$(b64_slice "$BATS_TEST_TMPDIR/p" $cs 1)\"}"
	} > "$IN"
	assemble
	[ "$(count photo_complete)" = 1 ]
	[ "$(jq -r .timings.received_at "$SPOOL/ready/D1@r.jpg.json")" = "$(ts 1000)" ]
	smeta 1 1000 D1 r.jpg 1500 > "$IN"
	assemble
	events capture_started | cmp - "$BATS_TEST_TMPDIR/first"
	[ "$(count publish)" = 0 ]
	# as gxp-upload records it: the sidecar renamed to stored/, the photo gone
	mv "$SPOOL/ready/D1@r.jpg.json" "$SPOOL/stored/D1@r.jpg.json"
	rm "$SPOOL/ready/D1@r.jpg.jpg"
	{ smeta 1 1000 D1 r.jpg 1500; smeta 5 9000 D1 r.jpg 1500; } > "$IN"
	assemble
	events capture_started | cmp - "$BATS_TEST_TMPDIR/first"
	# both are answered with ACK_OK: the device may be waiting
	[ "$(count publish)" = 2 ]
	[ "$(tail -1 "$OUT")" = '{"event":"mark","v":1,"seq":5}' ]
}
