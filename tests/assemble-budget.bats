#!/usr/bin/env bats
# gxp-assemble's budgets against hostile senders (issue 15): chunks without
# metadata from made-up device ids, one id filling its captures, a spool
# filling up, memory; recovery within the same budgets; refused work
# counted by cause and reported once per sender and cause.  Memory is the
# peak RSS the kernel reports (VmHWM), read while the process lives.

load assemble-lib

setup() {
	setup_assemble
	FIFO=$BATS_TEST_TMPDIR/fifo
	mkfifo "$FIFO"
	export GXP_METRICS_DIR=$BATS_TEST_TMPDIR/metrics METRICS_INTERVAL_S=1
}

teardown() {
	exec 7>&- 2>/dev/null
	[ -n "${ASM_PID:-}" ] && kill -9 "$ASM_PID" 2>/dev/null
	return 0
}

# flood N DEVICES START_MS: N chunk messages without metadata, chunk_id
# 8191, from DEVICES made-up ids (F0000...), image fK.jpg, one ms apart.
flood() {
	python3 - "$@" <<-'EOF'
	import sys
	n, devs, t0 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
	for i in range(n):
	    ms = t0 + i
	    tst = "2026-01-01T%02d:%02d:%02d.%03d000Z" % (ms // 3600000, ms // 60000 % 60,
	                                                 ms // 1000 % 60, ms % 1000)
	    p = '{"image_name":"f%d.jpg","chunk_id":8191,"payload":"AA=="}' % (i // devs)
	    print('{"tst":"%s","topic":"ESP32CAM/F%04d/data","qos":1,"retain":0,'
	          '"payloadlen":%d,"payload":%s}' % (tst, i % devs, len(p), p))
	EOF
}

# measured [ARGS...]: gxp-assemble --replay on $IN through a pipe kept open
# until every line is done; its peak RSS (kB) in HWM, output in $OUT.
measured() {
	echo '{"done":true}' >> "$IN"
	gxp-assemble --replay "$@" < "$FIFO" > "$OUT" 2> "$ERR" &
	ASM_PID=$!
	exec 7> "$FIFO"
	cat "$IN" >&7
	wait_until 60 file_has "$OUT" '{"done":true}'
	HWM=$(awk '/^VmHWM:/ { print $2 }' "/proc/$ASM_PID/status")
	exec 7>&-
	ASM_RC=0
	wait "$ASM_PID" || ASM_RC=$?
	ASM_PID=
	echo "peak RSS: $HWM kB" >&3
}

# under_bound KB: the peak RSS is under KB, unless the tools are built with
# the sanitizers (make check SANITIZE=1), whose shadow memory it counts.
under_bound() {
	ldd "$(command -v gxp-assemble)" | grep -q libasan || [ "$HWM" -lt "$1" ]
}

# refused CAUSE: gxp_assemble_refused_total{cause="CAUSE"} as last written.
refused() {
	awk -v m="gxp_assemble_refused_total{cause=\"$1\"}" '$1 == m { print $2 }' \
		"$GXP_METRICS_DIR/gxp-assemble.prom"
}

# spool_bytes: the bytes of every file in the spool.
spool_bytes() {
	find "$SPOOL" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'
}

@test "assemble-budget: 20 000 chunks without metadata from 1 250 made-up ids: memory bounded, a real photo still made, one error per sender; the restart drops them all" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 3000
	{
		flood 10000 1250 0
		photo 10000 REAL1 real.jpg "$BATS_TEST_TMPDIR/p" 1000
		flood 10000 1250 10010
	} > "$IN"
	measured
	[ "$ASM_RC" = 0 ]
	# 3.3 MB before the flood; 1.29 GB before the budgets
	under_bound 32768
	cmp "$BATS_TEST_TMPDIR/p" "$(ready_image REAL1 real.jpg)"
	# the made-up ids got ASSEMBLE_ORPHAN_CHUNKS (8) chunks each, then one
	# error each, no more (REFUSED_REPORT_INTERVAL_S)
	[ "$(in_progress | wc -l)" = 10000 ]
	[ "$(count error)" = 1250 ]
	[ "$(events error | jq -r .device | sort -u | wc -l)" = 1250 ]
	events error | jq -r .reason | grep -q "^refused: 8 chunks of this device wait for their metadata (ASSEMBLE_ORPHAN_CHUNKS)$"
	[ "$(refused orphans)" = 10000 ]
	[ "$(grep -c 'ASSEMBLE_ORPHAN_CHUNKS' "$ERR")" = 1250 ]
	# a restart: each keeps the time it started, so two minutes later every
	# one is past CAPTURE_TIMEOUT_MS: dropped once, and gone for good
	status_line 130000 REAL1 '{"status":"Alive"}' > "$IN"
	measured
	under_bound 32768
	[ -z "$(in_progress)" ]
	[ "$(count error)" = 1250 ]
	[ "$(events error | jq -r .reason | sort -u)" = "no metadata within 60000 ms; 1 chunks dropped" ]
	[ "$(count capture_failed)" = 0 ]
	IN=/dev/null assemble
	grep -q "captures left in flight" "$ERR"
	! grep -q "carrying on" "$ERR" || false
}

# bats test_tags=slow
@test "assemble-budget: 10 000 photos in flight at once: under 32 MB, every one made" {
	genlog --devices 1000 --photos 10 --chunks 10 --chunk-size 100 --interleave round \
		--seed 8 > "$IN"
	measured
	[ "$ASM_RC" = 0 ]
	under_bound 32768
	[ "$(ready_count)" = 10000 ]
	[ "$(count error)" = 0 ]
}

@test "assemble-budget: one id sending 16 captures of 64 chunks of 64 KiB holds ASSEMBLE_DEVICE_BYTES at most" {
	genlog --devices 1 --photos 16 --chunks 64 --chunk-size 65536 --interleave round \
		--seed 4 > "$IN"
	measured
	[ "$ASM_RC" = 0 ]
	# 64 MiB sent; 8 MiB (and the records' headers) kept
	held=$(in_progress | jq -s 'map(.bytes) | add')
	[ "$held" -le 8388608 ] && [ "$held" -gt 7000000 ]
	[ "$(find "$SPOOL/partial" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')" -lt 9000000 ]
	[ "$(refused device_bytes)" -gt 500 ]
	[ "$(events error | jq -c '[.device,.code]')" = '["AABB00000000",2200]' ]
	events error | jq -r .reason | grep -q "bytes in partial/ (ASSEMBLE_DEVICE_BYTES)"
	under_bound 32768
}

@test "assemble-budget: the whole spool stays under SPOOL_MAX_BYTES; what waits in ready/ counts" {
	genlog --devices 20 --photos 2 --chunks 40 --chunk-size 4096 --interleave photo \
		--seed 6 > "$IN"
	SPOOL_MAX_BYTES=4194304 measured
	[ "$ASM_RC" = 0 ]
	[ "$(spool_bytes)" -le 4194304 ]
	[ "$(ready_count)" -ge 15 ] && [ "$(ready_count)" -lt 40 ]
	[ "$(refused spool_full)" -gt 0 ]
	events error | jq -r .reason | grep -q "^refused: the spool is full: .*(SPOOL_MAX_BYTES)"
	# gxp-upload takes photos away: room again, as the spool is looked at again
	rm -f "$SPOOL"/ready/*
	genlog --devices 20 --photos 2 --chunks 40 --chunk-size 4096 --interleave photo \
		--seed 6 --start 2026-01-01T00:10:00 > "$IN"
	SPOOL_MAX_BYTES=4194304 measured
	[ "$(ready_count)" -ge 15 ]
	[ "$(spool_bytes)" -le 4194304 ]
}

# opened DEV NAME MS FILE: metadata and chunk 0; rest DEV NAME MS FILE: the others.
opened() {
	photo "$3" "$1" "$2" "$4" 1000 0
}

rest() {
	local n
	n=$(nchunks "$4" 1000)
	photo "$3" "$1" "$2" "$4" 1000 $(seq 1 $((n - 1))) | tail -n +2
}

@test "assemble-budget: when MAX_ASSEMBLIES is full, captures without metadata go first, then the sender holding the most gives way" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 3000
	{
		# one id opens 6 captures with metadata, 4 made-up ids one without
		for i in 1 2 3 4 5 6; do meta "$i" HOG1 "h$i.jpg" 3000 1000 3; done
		for d in 1 2 3 4; do chunk $((10 + d)) "ORPH$d" o.jpg 0 "$BATS_TEST_TMPDIR/p" 1000; done
		# the budget is full: two real devices come at once
		opened REAL1 r.jpg 100 "$BATS_TEST_TMPDIR/p"
		opened REAL2 r.jpg 110 "$BATS_TEST_TMPDIR/p"
		# a made-up id without metadata takes room from another only
		chunk 150 ORPH9 o.jpg 0 "$BATS_TEST_TMPDIR/p" 1000
		rest REAL1 r.jpg 200 "$BATS_TEST_TMPDIR/p"
		rest REAL2 r.jpg 210 "$BATS_TEST_TMPDIR/p"
	} > "$IN"
	MAX_ASSEMBLIES=10 measured
	cmp "$BATS_TEST_TMPDIR/p" "$(ready_image REAL1 r.jpg)"
	cmp "$BATS_TEST_TMPDIR/p" "$(ready_image REAL2 r.jpg)"
	# the captures without metadata went, oldest first, one error each;
	# nothing of HOG1 was needed
	[ "$(events error | jq -r 'select(.code == 2200 and (.reason | startswith("dropped"))) | .device' | paste -sd' ')" = "ORPH1 ORPH2 ORPH3" ]
	[ "$(count capture_failed)" = 0 ]
	[ "$(in_progress | jq -r .device | sort | uniq -c | awk '{ print $2 ":" $1 }' | paste -sd' ')" = "HOG1:6 ORPH4:1 ORPH9:1" ]
	# six more at once: two fit, two take the places of those without
	# metadata; then HOG1, holding the most, gives way, its oldest first
	{
		for i in 3 4 5 6 7 8; do opened "REAL$i" r.jpg $((400 + i)) "$BATS_TEST_TMPDIR/p"; done
		for i in 3 4 5 6 7 8; do rest "REAL$i" r.jpg 500 "$BATS_TEST_TMPDIR/p"; done
	} > "$IN"
	MAX_ASSEMBLIES=10 measured
	for i in 3 4 5 6 7 8; do cmp "$BATS_TEST_TMPDIR/p" "$(ready_image "REAL$i" r.jpg)"; done
	[ "$(events error | jq -r 'select(.reason | startswith("dropped")) | .device' | paste -sd' ')" = "ORPH4 ORPH9" ]
	[ "$(events capture_failed | jq -r '.device + "@" + .image_name' | paste -sd' ')" = "HOG1@h1.jpg HOG1@h2.jpg" ]
	events capture_failed | jq -e -s 'all(.code == 2200 and (.reason | startswith("evicted: the captures in flight (MAX_ASSEMBLIES) are full")))'
	[ "$(refused evicted)" = 4 ]
}

@test "assemble-budget: ASSEMBLE_MEMORY_BYTES bounds the indexes: metadata claiming 8192 chunks each" {
	for i in $(seq 1 40); do meta "$i" "BIG$i" big.jpg 4000000 500 8192; done > "$IN"
	ASSEMBLE_MEMORY_BYTES=1048576 measured
	# 8192 x 12 bytes of index each: ten fit in 1 MiB; each new sender
	# holding less than the one holding the most takes its place
	[ "$(in_progress | wc -l)" -le 10 ]
	[ "$(count capture_failed)" -ge 30 ]
	events capture_failed | jq -e -s 'all(.reason | test("ASSEMBLE_MEMORY_BYTES"))'
	[ "$(awk '$1 == "gxp_assemble_memory_bytes" { print $2 }' "$GXP_METRICS_DIR/gxp-assemble.prom")" -le 1048576 ]
	# one sender alone cannot pass it either
	for i in $(seq 1 40); do meta "$i" ONE "big$i.jpg" 4000000 500 8192; done > "$IN"
	rm -rf "$SPOOL"
	ASSEMBLE_MEMORY_BYTES=1048576 MAX_ASSEMBLIES_PER_DEVICE=100 measured
	[ "$(in_progress | wc -l)" -le 10 ]
	[ "$(refused memory)" -ge 30 ]
	events error | jq -r .reason | grep -q "bytes of memory (ASSEMBLE_MEMORY_BYTES)"
}

@test "assemble-budget: recovery keeps no more than the budgets allow; what it leaves out does not come back" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 3000
	for i in $(seq 1 30); do opened "DEV$i" p.jpg "$i" "$BATS_TEST_TMPDIR/p"; done > "$IN"
	assemble
	[ "$(in_progress | wc -l)" = 30 ]
	# a restart with a smaller budget: the first ten are taken up, the
	# others left out (the devices send them again)
	status_line 1000 DEV1 '{"status":"Alive"}' > "$IN"
	MAX_ASSEMBLIES=10 assemble
	[ "$(in_progress | jq -r .device | sort -V | paste -sd' ')" = "$(seq -f 'DEV%g' 1 10 | paste -sd' ')" ]
	grep -q "partial/: 40 records beyond the budgets left out" "$ERR"
	[ "$(count capture_failed)" = 0 ]
	[ "$(ls "$SPOOL/partial" | wc -l)" = 1 ]
	# and they stay out with the budget back where it was
	assemble
	[ "$(in_progress | wc -l)" = 10 ]
	[ "$(count capture_failed)" = 0 ]
	# the ten complete, their start kept
	in_progress | jq -r .device > "$BATS_TEST_TMPDIR/kept"
	while read -r d; do rest "$d" p.jpg 2000 "$BATS_TEST_TMPDIR/p"; done < "$BATS_TEST_TMPDIR/kept" > "$IN"
	assemble
	[ "$(count photo_complete)" = 10 ]
	d=$(head -1 "$BATS_TEST_TMPDIR/kept")
	[ "$(jq -r .timings.started_at "$(ready_meta "$d" p.jpg)")" = "$(ts "${d#DEV}")" ]
}

@test "assemble-budget: bad input from one sender: counted, one error and one log line per cause a minute, with how many more" {
	{
		for i in $(seq 0 99); do line "$i" ESP32CAM/BAD1/data '{"image_name":"x.jpg","chunk_id":0,"payload":"@@@="}'; done
		for i in $(seq 100 149); do line "$i" ESP32CAM/BAD1/data '"not an object"'; done
		line 30000 ESP32CAM/BAD1/data '{"image_name":"x.jpg","chunk_id":0,"payload":"@@@="}'
		line 61000 ESP32CAM/BAD1/data '{"image_name":"x.jpg","chunk_id":0,"payload":"@@@="}'
	} > "$IN"
	assemble
	[ "$(events error | jq -c '[.code,.ts]')" = "[2103,\"$(ts 0)\"]
[2101,\"$(ts 100)\"]
[2103,\"$(ts 61000)\"]" ]
	[ "$(events error | tail -1 | jq -r .reason)" = \
		"chunk 0: payload is not valid base64; and 100 more like it from this sender in the last 61 s" ]
	[ "$(grep -c 'BAD1' "$ERR")" = 3 ]
	[ "$(refused payload)" = 102 ] && [ "$(refused malformed)" = 50 ]
	# one HELP and TYPE for the family
	[ "$(grep -c '^# TYPE gxp_assemble_refused_total counter$' "$GXP_METRICS_DIR/gxp-assemble.prom")" = 1 ]
	# REFUSED_REPORT_INTERVAL_S=0: every one
	REFUSED_REPORT_INTERVAL_S=0 assemble
	[ "$(count error)" = 152 ]
}
