#!/usr/bin/env bats
# gxp-assemble and crashes: a real SIGKILL in the middle of a photo, torn
# chunk logs, kills at random points of a replay; the spool lock; SIGTERM
# and SIGUSR1; memory errors and leaks under valgrind.

load assemble-lib

setup() {
	setup_assemble
	FIFO=$BATS_TEST_TMPDIR/fifo
	mkfifo "$FIFO"
}

teardown() {
	[ -n "${ASM_PID:-}" ] && kill -9 "$ASM_PID" 2>/dev/null
	exec 7>&- 2>/dev/null
	return 0
}

# start_live: gxp-assemble reading the FIFO, which fd 7 keeps open.
start_live() {
	gxp-assemble "$@" < "$FIFO" > "$OUT" 2> "$ERR" &
	ASM_PID=$!
	exec 7> "$FIFO"
}

inbound_count() {
	[ "$(count inbound)" -ge "$1" ]
}

@test "assemble-crash: kill -9 in the middle of a photo, then a restart completes it byte-exact" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 9500
	photo 0 CAM1 k.jpg "$BATS_TEST_TMPDIR/p" 1000 7 0 3 9 1 > "$BATS_TEST_TMPDIR/first"
	photo 0 CAM1 k.jpg "$BATS_TEST_TMPDIR/p" 1000 2 4 5 6 8 | tail -n +2 > "$BATS_TEST_TMPDIR/rest"
	start_live
	cat "$BATS_TEST_TMPDIR/first" >&7
	# an inbound event is written after its chunk is in the spool
	wait_until 10 inbound_count 6
	kill -9 "$ASM_PID"
	wait "$ASM_PID" || true
	ASM_PID=
	exec 7>&-
	[ "$(count capture_started)" = 1 ]
	[ "$(count photo_complete)" = 0 ]
	[ "$(in_progress | jq -c '[.image_name,.chunks,.bytes]')" = '["k.jpg",5,4500]' ]
	cp "$OUT" "$BATS_TEST_TMPDIR/out1"
	IN=$BATS_TEST_TMPDIR/rest assemble
	[ "$ASM_RC" = 0 ]
	grep -q "carrying on with 1 partial captures" "$ERR"
	cmp "$BATS_TEST_TMPDIR/p" "$(ready_image CAM1 k.jpg)"
	[ "$(count capture_started)" = 0 ]
	[ "$(events photo_complete | jq -c '[.image_bytes,.total_chunks]')" = '[9500,10]' ]
	[ "$(jq -r .sha256 "$(ready_meta CAM1 k.jpg)")" = "$(sha256sum < "$BATS_TEST_TMPDIR/p" | cut -d' ' -f1)" ]
	# the sidecar remembers when the capture started, before the crash
	started=$(jq -r .timings.started_at "$(ready_meta CAM1 k.jpg)")
	announced=$(jq -r 'select(.event=="capture_started").ts' "$BATS_TEST_TMPDIR/out1")
	d=$(($(date -u -d "${announced%.*}Z" +%s) - $(date -u -d "${started%.*}Z" +%s)))
	[ "$d" -ge 0 ] && [ "$d" -le 1 ]
	empty "$SPOOL/partial" "$SPOOL/tmp"
}

@test "assemble-crash: a torn record at the end of a segment is cut off and asked for again" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 3000
	photo 0 CAM1 t.jpg "$BATS_TEST_TMPDIR/p" 1000 0 1 > "$IN"
	assemble
	[ "$(ls "$SPOOL/partial")" = seg.1 ]
	seg=$SPOOL/partial/seg.1
	# what a SIGKILL inside write(2) leaves: a header and part of its bytes
	{ head -c 32 "$seg"; head -c 300 /dev/urandom; } >> "$seg"
	{
		status_line 5000 OTHER '{"status":"Alive"}'
		chunk 9000 CAM1 t.jpg 2 "$BATS_TEST_TMPDIR/p" 1000
	} > "$IN"
	assemble
	grep -q "partial/seg.1: cut off 332 bytes that are not a whole record" "$ERR"
	# timers of a recovered capture start at the first time replayed
	[ "$(events publish | jq -r '[.ts, (.payload.missing_chunks|tostring)] | @tsv')" = "$(ts 8000)	[2]" ]
	cmp "$BATS_TEST_TMPDIR/p" "$(ready_image CAM1 t.jpg)"
}

@test "assemble-crash: kill -9 at random points of a replay, restarted each time: every photo once, byte-exact" {
	genlog --devices 12 --photos 3 --chunks 25 --chunk-size 1000 --order random \
		--interleave round --seed 5 --expect "$BATS_TEST_TMPDIR/exp" > "$IN"
	total=36
	# killed while chunks are written (at about 1/5 ... 4/5 of them), then
	# while the photos are finished
	for k in 1 2 3 4 5 6; do
		if [ "$k" -le 4 ]; then
			what=chunk_bytes target=$((k * 180000 + RANDOM % 30000))
		else
			what=ready_count target=$((1 + RANDOM % (total - 1)))
		fi
		slow_feed "$IN" | gxp-assemble --replay > "$OUT.$k" 2> "$ERR.$k" &
		ASM_PID=$!
		wait_until 60 killable "$what" "$target"
		kill -9 "$ASM_PID" 2>/dev/null || true
		wait "$ASM_PID" || true
	done
	ASM_PID=
	cat "$ERR".* | grep -q "carrying on with"
	assemble
	[ "$ASM_RC" = 0 ]
	[ "$(ready_count)" = $total ]
	for f in "$BATS_TEST_TMPDIR"/exp/*; do
		cmp "$f" "$SPOOL/ready/${f##*/}.jpg"
	done
	empty "$SPOOL/partial" "$SPOOL/tmp" "$SPOOL/failed"
	# no photo was reported complete twice, across all the runs
	cat "$OUT"* | jq -r 'select(.event=="photo_complete").entry' | sort | uniq -d > "$BATS_TEST_TMPDIR/twice"
	[ ! -s "$BATS_TEST_TMPDIR/twice" ]
}

# slow_feed FILE: its lines, a millisecond apart.
slow_feed() {
	python3 -c 'import sys, time
for l in open(sys.argv[1]):
    sys.stdout.write(l); sys.stdout.flush(); time.sleep(0.001)' "$1" 2>/dev/null
}

chunk_bytes() {
	find "$SPOOL/partial" -name 'seg.*' -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'
}

# killable WHAT N: WHAT reached N, or the run is over.
killable() {
	! kill -0 "$ASM_PID" 2>/dev/null || [ "$("$1")" -ge "$2" ]
}

@test "assemble-crash: a photo whose sidecar gxp-upload moves back to ready/ while gxp-assemble starts is not taken for a lone one" {
	# a claimed photo: ready/E.jpg, its sidecar in work/; gxp-upload,
	# starting beside gxp-assemble, puts the sidecar back in ready/.  Each
	# look at ready/E.json returns 0.4 s late (strace), so the move falls
	# between gxp-assemble's looks: it once removed such a photo
	mkdir -p "$SPOOL/ready" "$SPOOL/work"
	make_jpeg "$SPOOL/ready/D1@p.jpg.jpg" 3000
	echo '{}' > "$SPOOL/work/D1@p.jpg.json"
	# (LeakSanitizer, under SANITIZE=1, does not run under ptrace)
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
		strace -f -qq -o /dev/null -P "$SPOOL/ready/D1@p.jpg.json" -e trace=access \
		-e inject=access:delay_exit=400000 gxp-assemble < /dev/null > "$OUT" 2> "$ERR" &
	ASM_PID=$!
	sleep 0.2
	mv "$SPOOL/work/D1@p.jpg.json" "$SPOOL/ready/D1@p.jpg.json"
	wait "$ASM_PID"
	ASM_PID=
	! grep -q "without its sidecar" "$ERR" || false
	[ -f "$SPOOL/ready/D1@p.jpg.jpg" ]
}

@test "assemble-crash: one gxp-assemble per spool: a second exits 100" {
	start_live
	wait_until 10 test -e "$SPOOL/assemble.lock"
	wait_until 10 file_has /proc/locks ":$(stat -c %i "$SPOOL/assemble.lock") "
	run gxp-assemble < /dev/null
	[ "$status" = 100 ]
	[[ $output == *"error: $SPOOL/assemble.lock is held by another gxp-assemble: one per spool"* ]]
	exec 7>&-
	wait "$ASM_PID"
	ASM_PID=
}

@test "assemble-crash: SIGTERM finishes the line, writes the output, exits 0; the partial stays" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 3000
	start_live
	photo 0 CAM1 s.jpg "$BATS_TEST_TMPDIR/p" 1000 0 1 >&7
	wait_until 10 inbound_count 3
	kill -USR1 "$ASM_PID"
	wait_until 10 file_has "$ERR" "counters: messages_total=3 chunks_total=2 duplicates_total=0"
	grep -q "assemblies_in_flight=1" "$ERR"
	stop_pid "$ASM_PID"
	ASM_PID=
	[ "$STOP_RC" = 0 ]
	[ "$(count capture_started)" = 1 ]
	[ "$(in_progress | jq -c '[.image_name,.chunks]')" = '["s.jpg",2]' ]
	grep -q "1 captures left in flight" "$ERR"
}

@test "assemble-crash: a closed output ends it cleanly" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 3000
	photo 0 CAM1 c.jpg "$BATS_TEST_TMPDIR/p" 1000 > "$IN"
	set +e
	gxp-assemble < "$IN" 2> "$ERR" | true
	rc=${PIPESTATUS[0]}
	set -e
	[ "$rc" = 0 ]
	! grep -q "error" "$ERR" || false
}

@test "assemble-crash: no memory errors or leaks under valgrind" {
	command -v valgrind || skip "valgrind is not installed"
	! ldd "$(command -v gxp-assemble)" | grep -q libasan || skip "built with sanitizers"
	genlog --devices 4 --photos 2 --chunks 6 --chunk-size 500 --order random --dup 0.2 \
		--interleave round --seed 2 | awk 'NR % 17 != 3' > "$IN"
	line 1 ESP32CAM/D1/data '{"image_name":"../x","chunk_id":0,"payload":"@"}' >> "$IN"
	echo 'not json' >> "$IN"
	valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
		--error-exitcode=99 gxp-assemble --flush-at-eof < "$IN" > "$OUT" 2> "$ERR" || {
		cat "$ERR" >&2
		false
	}
	[ "$(count photo_complete)" -gt 0 ]
	[ "$(count capture_failed)" -gt 0 ]
}

@test "assemble-crash: a capture that keeps an old segment is copied forward across several; old segments go, the photo is byte-exact, also after a restart" {
	make_jpeg "$BATS_TEST_TMPDIR/slow" 100000
	for i in $(seq 1 60); do make_jpeg "$BATS_TEST_TMPDIR/p$i" 20000; done
	# 64 KiB segments; the slow photo's 49 first chunks span two of them
	export SPOOL_MAX_BYTES=4194304
	{
		photo 0 SLOW s.jpg "$BATS_TEST_TMPDIR/slow" 2000 $(seq 0 48)
		for i in $(seq 1 60); do photo $((100 + i * 30)) "DEV$i" p.jpg "$BATS_TEST_TMPDIR/p$i" 2000; done
	} > "$IN"
	assemble
	[ "$(count photo_complete)" = 60 ]
	# what is left in partial/ is about the slow photo's, not the 1.2 MB
	# that went through
	[ "$(find "$SPOOL/partial" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')" -lt 400000 ]
	[ "$(in_progress | jq -c '[.image_name,.chunks]')" = '["s.jpg",49]' ]
	photo 5000 SLOW s.jpg "$BATS_TEST_TMPDIR/slow" 2000 49 | tail -n +2 > "$IN"
	assemble
	[ "$(count capture_failed)" = 0 ]
	cmp "$BATS_TEST_TMPDIR/slow" "$(ready_image SLOW s.jpg)"
	empty "$SPOOL/partial"
}
