#!/usr/bin/env bats
# A spool written by an earlier gxp (tests/fixtures/spool-v1, made by
# tests/fixtures/make-spool-v1 with that version's own tools) is taken over
# without loss: every photo in it is stored, the partial captures complete
# when the rest of their chunks come, and a photo stored before is
# acknowledged again.

load assemble-lib

FIX=$GXP_TOP/tests/fixtures
P=$GXP_TOP/tests/fixtures/spool-v1.photos

setup() {
	setup_assemble
	export GXP_STORE=$BATS_TEST_TMPDIR/store
	cp -r "$FIX/spool-v1" "$SPOOL"
}

# stored_object DEV NAME: where the local store keeps the photo.
stored_object() {
	echo "$GXP_STORE/gxp-captures/captures/$1/2025/10/04/$2"
}

@test "upgrade: a spool of the earlier layout is taken over, every photo stored, partial ones completed" {
	# the rest of the two partial captures, 20 s after they started
	{
		meta 20000 DUPLICATE01 partial_nometa.jpg 1700 512 4
		chunk 20001 DUPLICATE01 partial_nometa.jpg 3 "$P/partial_nometa.jpg" 512
		chunk 20002 TESTMAC123 partial_meta.jpg 2 "$P/partial_meta.jpg" 512
		chunk 20003 TESTMAC123 partial_meta.jpg 3 "$P/partial_meta.jpg" 512
		# the device did not get its ACK_OK for a photo stored before
		meta 20004 TESTMAC123 stored_1.jpg 1300 512 3
	} > "$IN"
	assemble --flush-at-eof
	[ "$ASM_RC" = 0 ]
	[ "$(count capture_failed)" = 0 ]
	[ "$(events photo_complete | jq -r .capture_name | sort | paste -sd' ')" = \
		"partial_meta.jpg partial_nometa.jpg" ]
	[ "$(events publish | jq -r 'select(.kind == "ack_ok") | .image_name')" = stored_1.jpg ]

	gxp-upload --once < /dev/null > "$BATS_TEST_TMPDIR/up" 2> "$BATS_TEST_TMPDIR/uperr"
	[ "$(count stored "$BATS_TEST_TMPDIR/up")" = 5 ]
	cmp "$P/ready_1.jpg" "$(stored_object AABBCCDDEEFF ready_1.jpg)"
	cmp "$P/work_1.jpg" "$(stored_object AABBCCDDEEFF work_1.jpg)"
	cmp "$P/stored_1b.jpg" "$(stored_object TESTMAC123 stored_1-5a316c92.jpg)"
	cmp "$P/partial_meta.jpg" "$(stored_object TESTMAC123 partial_meta.jpg)"
	cmp "$P/partial_nometa.jpg" "$(stored_object DUPLICATE01 partial_nometa.jpg)"
	# one stored captures row each, and nothing stored twice
	[ "$(jq -r 'select(.ingest_status == "stored") | .device_capture_id' \
		"$GXP_STORE/captures.ndjson" | sort | paste -sd' ')" = \
		"partial_meta.jpg partial_nometa.jpg ready_1.jpg stored_1-5a316c92.jpg work_1.jpg" ]
	[ "$(find "$GXP_STORE/gxp-captures" -type f | wc -l)" = 5 ]
	# the rejected photo stays for inspection; nothing else is left
	[ "$(jq -r .code "$SPOOL"/failed/DUPLICATE01@bad_1.jpg.*/reason.json)" = 2203 ]
	run gxp-assemble --check
	[[ "$output" == *"0 photos in progress, 0 ready for upload"* ]]
	[ -z "$(find "$SPOOL/partial" "$SPOOL/ready" "$SPOOL/tmp" -mindepth 1)" ]
	[ -z "$(ls -A "$SPOOL/work" | grep -vx rows.at)" ]
	[ "$(ls "$SPOOL/failed")" = "$(ls "$FIX/spool-v1/failed")" ]

	# both stored photos of that name are known: metadata sent again for
	# either is answered with ACK_OK, nothing assembled again
	{
		meta 30000 TESTMAC123 stored_1.jpg 1300 512 3
		meta 30001 TESTMAC123 stored_1.jpg 1400 512 3
	} > "$IN"
	assemble --flush-at-eof
	[ "$(events publish | jq -r 'select(.kind == "ack_ok") | .image_name' | wc -l)" = 2 ]
	[ "$(count capture_started)" = 0 ]
}
