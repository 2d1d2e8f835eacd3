#!/usr/bin/env bats
# Disk faults: the spool's file system full, the local store's full and
# read-only.  Each gives clear errors and no corruption, and the work goes on
# once the space (or write access) returns.  The file systems are small
# tmpfs mounts made by the test (it needs root, as CI runs).

load assemble-lib

setup() {
	setup_assemble
	MNT=$BATS_TEST_TMPDIR/mnt
	mkdir -p "$MNT"
}

teardown() {
	exec 7>&- 2>/dev/null
	[ -n "${ASM_PID:-}" ] && kill "$ASM_PID" 2>/dev/null && wait "$ASM_PID" 2>/dev/null
	mountpoint -q "$MNT" && umount "$MNT"
	return 0
}

# small_fs SIZE: a tmpfs of SIZE at $MNT.
small_fs() {
	mount -t tmpfs -o "size=$1" gxp-test "$MNT" || {
		echo "faults.bats needs to mount a tmpfs (run as root, as CI does)" >&2
		return 1
	}
}

# photo_lines DEV NAME FILE: the metadata and every chunk of FILE (1 KiB chunks).
photo_lines() {
	local n i
	n=$(nchunks "$3" 1024)
	meta 0 "$1" "$2" "$(stat -c %s "$3")" 1024 "$n"
	for i in $(seq 0 $((n - 1))); do chunk 0 "$1" "$2" "$i" "$3" 1024; done
}

# ready_ok: every entry in ready/ is whole: its image's sha256 and size are
# those its sidecar names, and no temporary file is left about.
ready_ok() {
	local e
	for e in "$SPOOL"/ready/*.json; do
		[ -f "$e" ] || continue
		[ "$(sha256sum < "${e%.json}.jpg" | cut -d' ' -f1)" = "$(jq -r .sha256 "$e")" ] || return 1
		[ "$(stat -c %s "${e%.json}.jpg")" = "$(jq -r .image_bytes "$e")" ] || return 1
	done
	[ -z "$(find "$SPOOL/ready" -name '*.tmp*')" ]
}

# bats test_tags=slow
@test "faults: the spool's disk full: clear errors, no corruption; work resumes when space returns" {
	small_fs 1m
	SPOOL=$MNT/spool
	export GXP_SPOOL=$SPOOL
	for i in $(seq 1 24); do make_jpeg "$BATS_TEST_TMPDIR/p$i.jpg" 60000; done
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	gxp-assemble < "$BATS_TEST_TMPDIR/fifo" > "$OUT" 2> "$ERR" &
	ASM_PID=$!
	exec 7> "$BATS_TEST_TMPDIR/fifo"
	# 24 photos of 60 KB into 1 MB: the disk fills part way
	for i in $(seq 1 24); do photo_lines DEVFULL "p$i.jpg" "$BATS_TEST_TMPDIR/p$i.jpg" >&7; done
	wait_until 30 file_has "$ERR" "No space left on device"
	# one error event for the device and cause, not one per chunk refused
	wait_until 10 sh -c "jq -c 'select(.event == \"error\" and .code == 2200 and (.reason | test(\"No space left on device\")))' '$OUT' | grep -q ."
	grep -q "device DEVFULL image p[0-9]*.jpg: .*No space left on device" "$ERR"
	kill -0 "$ASM_PID"	# still running
	done1=$(jq -r 'select(.event == "photo_complete") | .image_name' "$OUT" | sort -u | wc -l)
	[ "$done1" -lt 24 ]
	ready_ok
	# space returns; the devices resend what was not acknowledged
	mount -o remount,size=64m "$MNT"
	for i in $(seq 1 24); do
		jq -e --arg n "p$i.jpg" 'select(.event == "photo_complete" and .image_name == $n)' "$OUT" > /dev/null ||
			photo_lines DEVFULL "p$i.jpg" "$BATS_TEST_TMPDIR/p$i.jpg" >&7
	done
	wait_until 30 sh -c "[ \$(jq -r 'select(.event == \"photo_complete\") | .image_name' '$OUT' | sort -u | wc -l) = 24 ]"
	exec 7>&-
	wait "$ASM_PID"
	ASM_PID=
	ready_ok
	for i in $(seq 1 24); do
		cmp "$(ready_image DEVFULL "p$i.jpg")" "$BATS_TEST_TMPDIR/p$i.jpg"
	done
	# a full disk never fails a capture: it waits for room
	[ "$(jq -c 'select(.event == "capture_failed")' "$OUT")" = "" ]
	[ -z "$(find "$SPOOL/partial" "$SPOOL/tmp" "$SPOOL/failed" -mindepth 1)" ]
	postponed=$(grep -c 'finalized when there is room again' "$ERR" || true)
	echo "$done1 photos completed before the disk filled, 24 after; $postponed finalizations waited for room"
}

@test "faults: a photo whole in partial/ but without room to be built waits for room, past the capture timeout" {
	# room for the chunks (about 61 KB) but not for the photo beside them
	small_fs 100k
	SPOOL=$MNT/spool
	export GXP_SPOOL=$SPOOL RETRANSMIT_DELAY_MS=100 CAPTURE_TIMEOUT_MS=1000
	make_jpeg "$BATS_TEST_TMPDIR/p.jpg" 60000
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	gxp-assemble < "$BATS_TEST_TMPDIR/fifo" > "$OUT" 2> "$ERR" &
	ASM_PID=$!
	exec 7> "$BATS_TEST_TMPDIR/fifo"
	photo_lines DEVROOM p.jpg "$BATS_TEST_TMPDIR/p.jpg" >&7
	wait_until 10 file_has "$ERR" "finalized when there is room again"
	grep -q "device DEVROOM image p.jpg: spool: tmp/: No space left on device" "$ERR"
	[ "$(jq -c 'select(.event == "error") | [.code, .image_name]' "$OUT")" = '[2200,"p.jpg"]' ]
	# three capture timeouts later it is still waiting, not failed
	sleep 3
	[ "$(jq -c 'select(.event == "capture_failed" or .event == "photo_complete")' "$OUT")" = "" ]
	[ "$(in_progress | jq -c '[.image_name,.bytes]')" = '["p.jpg",60000]' ]
	[ -z "$(find "$SPOOL/tmp" -mindepth 1)" ]
	mount -o remount,size=64m "$MNT"
	wait_until 10 file_has "$OUT" '"event":"photo_complete"'
	cmp "$(ready_image DEVROOM p.jpg)" "$BATS_TEST_TMPDIR/p.jpg"
	grep -q "device DEVROOM image p.jpg: finalized now that the spool has room" "$ERR"
	[ "$(grep -c 'No space left on device' "$ERR")" = 1 ]	# said once, not every retry
	exec 7>&-
	wait "$ASM_PID"
	ASM_PID=
	[ -z "$(find "$SPOOL/partial" "$SPOOL/tmp" "$SPOOL/failed" -mindepth 1)" ]
}

# bats test_tags=slow
@test "faults: the store's disk full, then read-only: photos wait in the spool, then are stored" {
	export GXP_STORE=$MNT/store
	for i in $(seq 1 10); do
		make_jpeg "$BATS_TEST_TMPDIR/p$i.jpg" 40000
		photo_lines DEVSTORE "p$i.jpg" "$BATS_TEST_TMPDIR/p$i.jpg"
	done > "$IN"
	gxp-assemble --flush-at-eof < "$IN" > /dev/null 2> "$ERR"
	[ "$(ready_count)" = 10 ]
	# full: 100 KB for 400 KB of photos
	small_fs 100k
	run gxp-upload --once < /dev/null
	echo "$output" | tail -3
	[ "$status" = 111 ]
	[[ $output == *"No space left on device"* ]]
	[[ $output == *"left in the spool"* ]]
	[ -z "$(ls "$SPOOL/failed")" ]
	stored_full=$(ls "$SPOOL/stored" | grep -c '^DEVSTORE@' || true)
	[ "$(($(ready_count) + stored_full))" = 10 ]
	ready_ok
	# read-only: nothing can be written, nothing is lost or moved aside; a
	# heartbeat's row waits in the spool
	mount -o remount,ro "$MNT"
	echo '{"event":"status","v":1,"ts":"2025-10-04T12:30:00.000000Z","device":"DEVSTORE","status":"Alive","pending_count":7,"raw":{"status":"Alive","pendingImg":7}}' \
		> "$BATS_TEST_TMPDIR/heartbeat"
	run gxp-upload < "$BATS_TEST_TMPDIR/heartbeat"
	[ "$status" = 111 ]
	[[ $output == *"Read-only file system"* ]]
	[[ $output == *"kept in rows/"* ]]
	[ -z "$(ls "$SPOOL/failed")" ]
	[ "$(ready_count)" = $((10 - stored_full)) ]
	# writable and roomy again: everything is stored, once, whole
	mount -o remount,rw,size=64m "$MNT"
	run gxp-upload --once < /dev/null
	[ "$status" = 0 ]
	[ -z "$(ls "$SPOOL/ready")" ]
	for i in $(seq 1 10); do
		cmp "$(find "$GXP_STORE/gxp-captures" -name "p$i.jpg")" "$BATS_TEST_TMPDIR/p$i.jpg"
	done
	[ "$(find "$GXP_STORE" -name '*.jpg' | wc -l)" = 10 ]
	for t in "$GXP_STORE"/*.ndjson; do jq -e . "$t" > /dev/null; done
	[ "$(jq -r .pending_count "$GXP_STORE/device_status.ndjson")" = 7 ]
	[ -z "$(ls "$SPOOL/rows")" ]
	[ "$(jq -r 'select(.ingest_status == "stored") | .storage_path' "$GXP_STORE/captures.ndjson" | sort -u | wc -l)" = 10 ]
	[ "$(jq -r 'select(.ingest_status == "stored") | .storage_path' "$GXP_STORE/captures.ndjson" | wc -l)" = 10 ]
}
