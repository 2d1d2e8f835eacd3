#!/usr/bin/env bats
# The journal: what gxp-sub received is on disk before it goes down the
# pipe, so that a SIGKILL of any stage loses no row and writes none twice.

load helpers
load e2e

setup() {
	start_broker plain
	worker_env "$BATS_TEST_TMPDIR/w.env" SUPERVISE_BACKOFF_MAX_S=1
	STORE=$BATS_TEST_TMPDIR/store
	SPOOL=$BATS_TEST_TMPDIR/spool
}

teardown() {
	e2e_teardown
}

# The issue's numbers: before the journal, 269 of these 400 were lost.
@test "journal: 400 heartbeats from 20 devices at 500/s, gxp-upload SIGKILLed 4 times: every one a row, once" {
	start_worker "$BATS_TEST_TMPDIR/w.env"
	numbered_pub "$BATS_TEST_TMPDIR/pub" --count 400 --devices 20 --rate 500
	for i in 1 2 3 4; do
		kill_when_up gxp-upload 0.2
	done
	wait_pub "$BATS_TEST_TMPDIR/pub"
	acked_seqs "$BATS_TEST_TMPDIR/pub" status > "$BATS_TEST_TMPDIR/acked"
	[ "$(wc -l < "$BATS_TEST_TMPDIR/acked")" = 400 ]
	# the rows come after the last restart; give them time, then drain
	wait_until 30 eval '[ "$(local_status_seqs "$STORE" | sort -u | wc -l)" -ge 400 ]' || true
	stop_worker
	[ "$WORKER_RC" = 0 ]
	[ "$(grep -c 'restarting the pipeline' "$WORKER_LOG")" -ge 4 ]
	local_status_seqs "$STORE" > "$BATS_TEST_TMPDIR/rows"
	compare_seqs device_status "$BATS_TEST_TMPDIR/acked" "$BATS_TEST_TMPDIR/rows"
}

# big_messages N BYTES: N lines of JSON payload of about BYTES bytes each,
# for mosquitto_pub -l.
big_messages() {
	local pad
	pad=$(head -c "$2" /dev/zero | tr '\0' x)
	for i in $(seq 1 "$1"); do
		printf '{"n":%d,"pad":"%s"}\n' "$i" "$pad"
	done
}

# seqs FILE: the seq of each line.
seqs() {
	jq -r .seq "$1"
}

@test "journal: gxp-sub -J: seq across segments and restarts, a torn last line cut, replay after the committed position, committed segments removed" {
	broker_env
	J=$BATS_TEST_TMPDIR/journal
	export JOURNAL_SEGMENT_BYTES=65536 METRICS_INTERVAL_S=1 GXP_METRICS_DIR=$BATS_TEST_TMPDIR/metrics
	start_sub "$BATS_TEST_TMPDIR/out1" "$BATS_TEST_TMPDIR/err1" -c -i j1 -J "$J"
	big_messages 200 1000 | mpub -q 1 -t ESP32CAM/AA/status -l
	wait_until 20 has_lines "$BATS_TEST_TMPDIR/out1" 200
	stop_pid "$SUB_PID"
	[ "$STOP_RC" = 0 ]
	[ "$(seqs "$BATS_TEST_TMPDIR/out1" | paste -sd' ')" = "$(seq 1 200 | paste -sd' ')" ]
	# the stream is the journal: segment files named by their first seq
	[ "$(ls "$J"/*.ndjson | wc -l)" -ge 3 ]
	[ "$(ls "$J" | head -1)" = 00000000000000000001.ndjson ]
	cat "$J"/*.ndjson | cmp - "$BATS_TEST_TMPDIR/out1"
	grep -q "journal: 200 messages; from the message callback .* p50 [0-9]* us, p99 [0-9]* us, max [0-9]* us" "$BATS_TEST_TMPDIR/err1"
	grep -q '^gxp_sub_journal_window_max_us [0-9]' "$BATS_TEST_TMPDIR/metrics/gxp-sub.prom"

	# a write a crash cut short, and gxp-upload's commit of the first 150
	last=$(ls "$J"/*.ndjson | tail -1)
	printf '{"seq":201,"tst":"2025-' >> "$last"
	echo '{"v":1,"seq":150}' > "$J/committed"
	start_sub "$BATS_TEST_TMPDIR/out2" "$BATS_TEST_TMPDIR/err2" -c -i j1 -J "$J"
	grep -q "removing a torn last line (23 bytes)" "$BATS_TEST_TMPDIR/err2"
	grep -q "replaying seq 151 to 200" "$BATS_TEST_TMPDIR/err2"
	mpub -q 1 -t ESP32CAM/AA/status -m '{"n":201}'
	wait_until 10 has_lines "$BATS_TEST_TMPDIR/out2" 51
	[ "$(seqs "$BATS_TEST_TMPDIR/out2" | paste -sd' ')" = "$(seq 151 201 | paste -sd' ')" ]
	[ "$(tail -1 "$BATS_TEST_TMPDIR/out2" | jq -c .payload)" = '{"n":201}' ]
	# the segments whose every line is committed go (within a second)
	wait_until 10 eval '[ ! -e "$J/00000000000000000001.ndjson" ]'
	first=$(ls "$J"/*.ndjson | head -1)
	[ "$(head -1 "$first" | jq .seq)" -le 151 ]
	stop_pid "$SUB_PID"

	# a commit past the journal's end (its last lines lost to a power cut):
	# no seq is given twice
	echo '{"v":1,"seq":500}' > "$J/committed"
	start_sub "$BATS_TEST_TMPDIR/out3" "$BATS_TEST_TMPDIR/err3" -c -i j1 -J "$J"
	mpub -q 1 -t ESP32CAM/AA/status -m '{"n":202}'
	wait_until 10 has_lines "$BATS_TEST_TMPDIR/out3" 1
	[ "$(seqs "$BATS_TEST_TMPDIR/out3")" = 501 ]
	stop_pid "$SUB_PID"
	# one gxp-sub per journal
	start_sub "$BATS_TEST_TMPDIR/out4" "$BATS_TEST_TMPDIR/err4" -c -i j1 -J "$J"
	run gxp-sub -c -i j2 -J "$J"
	[ "$status" = 111 ]
	[[ $output == *"journal $J is held by another gxp-sub"* ]]
}

@test "journal: gxp-sub -J with a stalled reader: 40 MB of backlog on disk, its memory stays small" {
	# AddressSanitizer keeps freed memory in quarantine: RSS says nothing
	[ -z "${SANITIZE:-}" ] || [ "$SANITIZE" = 0 ] ||
		skip "SANITIZE=$SANITIZE: memory is measured in the plain pass"
	broker_env
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	# a reader that never reads
	sleep 600 < "$BATS_TEST_TMPDIR/fifo" 3>&- &
	STALL_PID=$!
	gxp-sub -c -i rss -J "$BATS_TEST_TMPDIR/journal" > "$BATS_TEST_TMPDIR/fifo" \
		2> "$BATS_TEST_TMPDIR/err" &
	SUB_PID=$!
	wait_until 10 file_has "$BATS_TEST_TMPDIR/err" "Subscribed to topics"
	big_messages 4000 10000 | mpub -q 1 -t ESP32CAM/AA/status -l
	wait_until 30 eval '[ "$(cat "$BATS_TEST_TMPDIR"/journal/*.ndjson | wc -l)" -ge 4000 ]'
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SUB_PID/status")
	echo "checked: $(du -sm "$BATS_TEST_TMPDIR/journal" | cut -f1) MB in the journal, gxp-sub's peak RSS $hwm kB"
	kill "$STALL_PID" "$SUB_PID"
	[ "$hwm" -lt 16384 ]
}

@test "journal: at JOURNAL_MAX_BYTES gxp-sub stops reading, says so and counts it; the broker keeps the rest, which comes once committed" {
	broker_env
	J=$BATS_TEST_TMPDIR/journal
	export JOURNAL_SEGMENT_BYTES=65536 JOURNAL_MAX_BYTES=1048576 METRICS_INTERVAL_S=1 \
		GXP_METRICS_DIR=$BATS_TEST_TMPDIR/metrics
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	exec 7<> "$BATS_TEST_TMPDIR/fifo"	# a reader that does not read, yet
	gxp-sub -c -i full -J "$J" > "$BATS_TEST_TMPDIR/fifo" 2> "$BATS_TEST_TMPDIR/err" 7>&- &
	SUB_PID=$!
	wait_until 10 file_has "$BATS_TEST_TMPDIR/err" "Subscribed to topics"
	big_messages 300 10000 | mpub -q 1 -t ESP32CAM/AA/status -l
	wait_until 20 file_has "$BATS_TEST_TMPDIR/err" "(JOURNAL_MAX_BYTES 1048576): not reading from the broker"
	wait_until 10 file_has "$BATS_TEST_TMPDIR/metrics/gxp-sub.prom" "gxp_sub_journal_full_total 1"
	held=$(cat "$J"/*.ndjson | wc -l)
	echo "checked: $held messages in the journal at the bound"
	[ "$held" -lt 300 ]
	# the reader reads, and gxp-upload would commit: the rest comes
	cat <&7 > "$BATS_TEST_TMPDIR/out" &
	CAT_PID=$!
	for i in $(seq 1 40); do
		n=$(wc -l < "$BATS_TEST_TMPDIR/out")
		[ "$n" -gt 0 ] && echo "{\"v\":1,\"seq\":$n}" > "$J/committed.tmp" &&
			mv "$J/committed.tmp" "$J/committed"
		[ "$n" -ge 300 ] && break
		sleep 0.5
	done
	exec 7>&-
	kill "$SUB_PID" "$CAT_PID" 2>/dev/null || true
	[ "$(jq -r .payload.n "$BATS_TEST_TMPDIR/out" | sort -n | uniq | wc -l)" = 300 ]
	grep -q "journal below JOURNAL_MAX_BYTES again: reading" "$BATS_TEST_TMPDIR/err"
}

@test "journal: a message the broker sends again after a reconnect (its PUBACK lost) is not written twice" {
	broker_env
	J=$BATS_TEST_TMPDIR/journal
	start_sub "$BATS_TEST_TMPDIR/out1" "$BATS_TEST_TMPDIR/err1" -c -i redo -J "$J"
	mpub -q 1 -t ESP32CAM/AA/status -m '{"n":1}'
	wait_until 10 has_lines "$BATS_TEST_TMPDIR/out1" 1
	# a message arrives while gxp-sub cannot answer, and it dies: the broker
	# keeps it for the session.  As if it had been journaled just before
	# the death (the PUBACK lost with the connection), its line is added.
	kill -STOP "$SUB_PID"
	mpub -q 1 -t ESP32CAM/AA/status -m '{"n":2}'
	wait_until 10 eval "grep -q 'Sending PUBLISH to redo (d0, q1, r0, m2,' '$BROKER_DIR/mosquitto.log'"
	kill -KILL "$SUB_PID"
	wait "$SUB_PID" 2>/dev/null || true
	printf '{"seq":2,"tst":"2026-01-01T00:00:00.000000Z","topic":"ESP32CAM/AA/status","qos":1,"retain":0,"payloadlen":7,"mid":2,"payload":{"n":2}}\n' \
		>> "$(ls "$J"/*.ndjson | tail -1)"
	echo '{"v":1,"seq":2}' > "$J/committed"
	start_sub "$BATS_TEST_TMPDIR/out2" "$BATS_TEST_TMPDIR/err2" -c -i redo -J "$J"
	wait_until 10 eval "grep -q 'Sending PUBLISH to redo (d1, q1, r0, m2,' '$BROKER_DIR/mosquitto.log'"
	mpub -q 1 -t ESP32CAM/AA/status -m '{"n":3}'
	wait_until 10 has_lines "$BATS_TEST_TMPDIR/out2" 1
	sleep 0.5
	stop_pid "$SUB_PID"
	[ "$(jq -c '[.seq, .payload.n]' "$BATS_TEST_TMPDIR/out2")" = '[3,3]' ]
	grep -q 'the broker sent again a message received before the reconnect' "$BATS_TEST_TMPDIR/err2"
	[ "$(cat "$J"/*.ndjson | jq -c .payload.n | paste -sd' ')" = "1 2 3" ]
	# QoS 0 is never sent again: the same QoS 0 message first after a
	# reconnect is a new one (all committed: nothing replayed)
	echo '{"v":1,"seq":3}' > "$J/committed"
	start_sub "$BATS_TEST_TMPDIR/out3" "$BATS_TEST_TMPDIR/err3" -c -i redo -J "$J"
	mpub -q 0 -t ESP32CAM/AA/status -m '{"n":4}'
	wait_until 10 file_has "$BATS_TEST_TMPDIR/out3" '{"n":4}'
	stop_pid "$SUB_PID"
	echo '{"v":1,"seq":4}' > "$J/committed"
	start_sub "$BATS_TEST_TMPDIR/out4" "$BATS_TEST_TMPDIR/err4" -c -i redo -J "$J"
	mpub -q 0 -t ESP32CAM/AA/status -m '{"n":4}'
	wait_until 10 file_has "$BATS_TEST_TMPDIR/out4" '{"n":4}'
	stop_pid "$SUB_PID"
	[ "$(cat "$J"/*.ndjson | jq -c .payload.n | paste -sd' ')" = "1 2 3 4 4" ]
}
