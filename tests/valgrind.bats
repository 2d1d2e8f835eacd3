#!/usr/bin/env bats
# A run of each long-running tool under valgrind: the whole pipeline, each
# stage in its own valgrind, fed by a simulated fleet (loss, duplicates,
# reordering) and some bad messages, into the Supabase endpoint on real
# PostgreSQL (so gxp-upload's HTTP and row code runs), then drained with
# SIGTERM.  No memory error and no leak in any of them.

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
	if nm -an "$GXP_TOP/bin/gxp-sub" | grep -q __asan_init; then
		skip "the binaries are built with AddressSanitizer (make check SANITIZE=1); the plain run covers valgrind"
	fi
	start_broker plain
	worker_env "$BATS_TEST_TMPDIR/w.env" "SUPABASE_URL=$EP_URL" \
		"SUPABASE_SERVICE_ROLE=$EP_SERVICE_KEY" RETRANSMIT_DELAY_MS=1500 METRICS_INTERVAL_S=1 \
		REFUSED_REPORT_INTERVAL_S=0 \
		"GXP_METRICS_DIR=$BATS_TEST_TMPDIR/metrics"
	W=$BATS_TEST_TMPDIR
}

teardown() {
	for p in ${VG_PIDS:-}; do kill -KILL "$p" 2>/dev/null; done
	teardown_broker
}

vg() {
	local name=$1
	shift
	exec valgrind -q --suppressions="$GXP_TOP/tests/valgrind.supp" \
		--leak-check=full --show-leak-kinds=definite,indirect \
		--errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
		--log-file="$W/vg.$name" "$GXP_TOP/bin/$name" --env "$W/w.env" "$@"
}

@test "valgrind: gxp-sub, gxp-control, gxp-assemble, gxp-upload, gxp-pub: a long run, no errors, no leaks" {
	mkfifo "$W/s" "$W/a" "$W/b" "$W/c"
	vg gxp-sub -c < /dev/null > "$W/s" 2> "$W/err.sub" &
	sub=$!
	vg gxp-control < "$W/s" > "$W/a" 2> "$W/err.control" &
	ctl=$!
	vg gxp-assemble < "$W/a" > "$W/b" 2> "$W/err.assemble" &
	asm=$!
	vg gxp-upload < "$W/b" > "$W/c" 2> "$W/err.upload" &
	up=$!
	vg gxp-pub < "$W/c" > "$W/out" 2> "$W/err.pub" &
	pub=$!
	VG_PIDS="$sub $ctl $asm $up $pub"
	wait_until 60 file_has "$W/err.sub" "Subscribed to topics"
	wait_until 60 file_has "$W/err.control" "answering hellos on"
	# bad input on the way: not JSON, bad base64, a chunk without payload
	mpub -t ESP32CAM/BAD1/data -m 'not json {'
	mpub -t ESP32CAM/BAD1/data -m '{"image_name":"x.jpg","chunk_id":0,"payload":"***"}'
	mpub -t ESP32CAM/BAD1/data -m '{"image_name":"x.jpg","chunk_id":1}'
	run gxp-sim --env "$W/w.env" -d 10 -n 3 -l 0.05 -D 0.05 -o 8 -t 240000 -s 9 -j
	echo "$output" | tail -1
	[ "$status" = 0 ]
	[ "$(tail -1 <<<"$output" | jq -r .acknowledged)" = 30 ]
	# the wake cycle: a command queued, found at a hello, its photo, a sleep
	id=$(gxp-cmd --env "$W/w.env" SIM000001 capture_image)
	run gxp-sim --env "$W/w.env" -d 2 -n 0 -W 1 -T 3600 -t 240000 -A 60000 -s 9 -j
	echo "$output" | tail -1
	[ "$status" = 0 ]
	[ "$(tail -1 <<<"$output" | jq -c '[.acknowledged, .wake.commands.capture_image]')" = '[1,1]' ]
	[ "$(psql_q "select status from device_commands where command_id = '$id'")" = sent ]
	kill -USR1 "$sub" "$ctl" "$asm" "$up" "$pub"	# the counters' code runs too
	kill -TERM "$sub"
	rcs=
	for p in $sub $ctl $asm $up $pub; do
		rc=0; wait "$p" || rc=$?
		echo "pid $p exited $rc"
		rcs+=$rc
	done
	VG_PIDS=
	for s in gxp-sub gxp-control gxp-assemble gxp-upload gxp-pub; do
		echo "== $s"; cat "$W/vg.$s"; tail -3 "$W/err.${s#gxp-}"
	done
	[ "$rcs" = 00000 ]
	for s in gxp-sub gxp-control gxp-assemble gxp-upload gxp-pub; do
		[ ! -s "$W/vg.$s" ]	# -q: valgrind writes nothing unless it found something
	done
	[ "$(psql_q "select count(*) from captures where ingest_status = 'stored'")" = 31 ]
	[ "$(psql_q "select count(*) from device_errors where error_code in (2101, 2102, 2103)")" -ge 3 ]
}
