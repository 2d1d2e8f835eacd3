# report.bash: a known fleet for the gxp-report tests, played through the
# whole worker (gxp-sim and mosquitto_pub into gxp-supervise), and headless
# Chromium to look at the pages.  Load after helpers.bash and e2e.bash.

# The fleet, and what the report must say of each device:
#   SIM000001..3   2 photos each, stored, decodable
#   CORRUPT000001  1 photo stored whose bytes do not decode (FF D8 ... FF D9)
#   BADJPEG1       1 photo that is not a JPEG: failed (2203), an error row
#   DEVERR1        metadata with "error": 1: failed, an error row
#   QUIET1         a status whose text is HTML, nothing else
FLEET_IDS="SIM000001 SIM000002 SIM000003 CORRUPT000001 BADJPEG1 DEVERR1 QUIET1"
QUIET_STATUS='<b>Alive</b> & "well"'

# refute COMMAND...: COMMAND fails.  (A bare "! COMMAND" in a test never
# fails it: set -e ignores a negated command.)
refute() {
	if "$@"; then
		return 1
	fi
}

# corrupt_jpeg FILE: starts and ends like a JPEG, decodes as nothing.
corrupt_jpeg() {
	{
		printf '\xff\xd8'
		head -c 3000 /dev/zero | tr '\0' 'x'
		printf '\xff\xd9'
	} > "$1"
}

# many_scans_jpeg FILE SCANS: a 64 x 64 grey progressive JPEG of SCANS
# scans, a DC scan and then the same AC scan again and again (every scan a
# pass over the whole image: a few hundred kB of them in a large image
# take minutes to decode).
many_scans_jpeg() {
	python3 - "$1" "$2" <<-'EOF'
	import struct, sys
	def seg(marker, body):
	    return bytes([0xff, marker]) + struct.pack(">H", len(body) + 2) + body
	def entropy(bits):
	    bits += "1" * (-len(bits) % 8)
	    return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
	table = bytes([1] + [0] * 15)   # one code, "0"
	jpeg = b"\xff\xd8" + seg(0xdb, b"\x00" + b"\x01" * 64)
	jpeg += seg(0xc2, struct.pack(">BHHB", 8, 64, 64, 1) + b"\x01\x11\x00")
	jpeg += seg(0xc4, b"\x00" + table + b"\x00")   # DC: difference 0
	jpeg += seg(0xc4, b"\x10" + table + b"\x00")   # AC: end of block
	jpeg += seg(0xda, b"\x01\x01\x00\x00\x00\x00") + entropy("0" * 64)
	for _ in range(int(sys.argv[2]) - 1):
	    jpeg += seg(0xda, b"\x01\x01\x00\x01\x3f\x00") + entropy("0" * 64)
	open(sys.argv[1], "wb").write(jpeg + b"\xff\xd9")
	EOF
}

# fleet_play ENVFILE: plays the fleet through the running worker.
fleet_play() {
	local env=$1 bad
	gxp-sim --env "$env" -d 3 -n 2 -s 7 -t 60000 > "$BATS_TEST_TMPDIR/sim1" 2>&1 || return 1
	corrupt_jpeg "$BATS_TEST_TMPDIR/corrupt.jpg"
	gxp-sim --env "$env" --prefix CORRUPT -d 1 -n 1 -t 60000 \
		"$BATS_TEST_TMPDIR/corrupt.jpg" > "$BATS_TEST_TMPDIR/sim2" 2>&1 || return 1
	bad=$(printf 'notjpg' | base64)
	mpub -t ESP32CAM/BADJPEG1/status -m '{"device_id":"BADJPEG1","status":"Alive","pendingImg":1}'
	mpub -t ESP32CAM/BADJPEG1/data -m '{"device_id":"BADJPEG1","image_name":"image_1.jpg","image_size":6,"max_chunks_size":1024,"total_chunk_count":1,"capture_timeStamp":"'"$(date -u +%FT%TZ)"'"}'
	mpub -t ESP32CAM/BADJPEG1/data -m '{"device_id":"BADJPEG1","image_name":"image_1.jpg","chunk_id":0,"max_chunk_size":1024,"payload":"'"$bad"'"}'
	mpub -t ESP32CAM/DEVERR1/data -m '{"device_id":"DEVERR1","image_name":"image_1.jpg","image_size":100,"max_chunks_size":1024,"total_chunk_count":1,"error":1,"capture_timeStamp":"'"$(date -u +%FT%TZ)"'"}'
	mpub -t ESP32CAM/QUIET1/status -m "$(jq -cn --arg s "$QUIET_STATUS" '{device_id:"QUIET1",status:$s,pendingImg:0}')"
}

# run_report [ARGS...]: gxp-report -o $OUT; status in RC, stdout in
# $BATS_TEST_TMPDIR/stdout, stderr in $BATS_TEST_TMPDIR/stderr.
run_report() {
	RC=0
	gxp-report -o "$OUT" "$@" > "$BATS_TEST_TMPDIR/stdout" 2> "$BATS_TEST_TMPDIR/stderr" || RC=$?
	cat "$BATS_TEST_TMPDIR/stderr"
}

# fleet_tiles_ok DIR BADJPEG_CODE DEVERR_CODE: the report in DIR says of
# each device of the fleet what it must (the codes: those of the store's
# device_errors rows).
fleet_tiles_ok() {
	local out=$1 id page label stored failed err thumb badges
	tiles_of "$out" > "$BATS_TEST_TMPDIR/tiles"
	cat "$BATS_TEST_TMPDIR/tiles"
	[ "$(wc -l < "$BATS_TEST_TMPDIR/tiles")" = 7 ] || return 1
	for id in $FLEET_IDS; do
		[ "$(tile "$out" "$id" | wc -l)" = 1 ] || return 1
	done
	# the stored photos: counts and a thumbnail, a JPEG
	for id in SIM000001 SIM000002 SIM000003; do
		IFS=$'\t' read -r page label stored failed err thumb badges <<<"$(tile "$out" "$id")"
		[ "$page" = "$id" ] && [ "$stored" = 2 ] && [ "$failed" = 0 ] && [ "$err" = - ] &&
			[[ $thumb == thumbs/*.jpg ]] && [ -f "$out/devices/$id.html" ] &&
			[ "$(od -An -tx1 -N3 "$out/$thumb" | tr -d ' ')" = ffd8ff ] || return 1
	done
	# the failed ones: counted, with their last error's code and meaning
	IFS=$'\t' read -r page label stored failed err thumb badges <<<"$(tile "$out" BADJPEG1)"
	[ "$stored" = 0 ] && [ "$failed" = 1 ] && [ "$err" = 2203 ] && [ "$err" = "$2" ] &&
		[[ $badges == errors* ]] && grep -q 'Invalid JPEG signature' "$out/index.html" || return 1
	IFS=$'\t' read -r page label stored failed err thumb badges <<<"$(tile "$out" DEVERR1)"
	[ "$failed" = 1 ] && [ "$err" = "$3" ] && [ "$err" != - ] &&
		[ "$thumb" = "ph:no photo yet" ] || return 1
	IFS=$'\t' read -r page label stored failed err thumb badges <<<"$(tile "$out" CORRUPT000001)"
	[ "$stored" = 1 ] && [ "$thumb" = "ph:photo unreadable" ] || return 1
	# attention first: the two with errors lead
	[ "$(head -2 "$BATS_TEST_TMPDIR/tiles" | cut -f2 | sort | tr '\n' ' ')" = "BADJPEG1 DEVERR1 " ] &&
		grep -q 'Photos per hour over the last 24 h: 7 stored, 2 failed' "$out/index.html"
}

# tiles_of DIR: the tiles of every index page of the report in DIR.
tiles_of() {
	local pages=("$1"/index.html)
	[ -e "$1/page-2.html" ] && pages+=("$1"/page-*.html)
	"$GXP_TOP/tests/report-tiles" "${pages[@]}"
}

# tile DIR ID: the tile of device ID (report-tiles' columns).
tile() {
	tiles_of "$1" | awk -F'\t' -v id="$2" '$2 == id'
}

# chromium_run OUT ARGS...: headless Chromium, its own profile, no network
# of its own; stderr in OUT.err.
chromium_run() {
	local out=$1
	shift
	rm -rf "$BATS_TEST_TMPDIR/chromium"
	timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic \
		--no-first-run --disable-background-networking --disable-component-update \
		--disable-sync --disable-dev-shm-usage --hide-scrollbars \
		--user-data-dir="$BATS_TEST_TMPDIR/chromium" "$@" > "$out" 2> "$out.err" 3>&-
}

# screenshot PNG URL: a 1280 x 1000 screenshot once every image has loaded.
screenshot() {
	chromium_run "$1.log" --run-all-compositor-stages-before-draw \
		--virtual-time-budget=10000 --window-size=1280,1000 --screenshot="$1" "$2"
}
