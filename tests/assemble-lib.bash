# assemble-lib.bash: helpers for the gxp-assemble tests: message lines
# with chosen times, JPEG-shaped photos cut into base64 chunks, and runs of
# gxp-assemble against a spool in the test's own directory.

load helpers

setup_assemble() {
	SPOOL=$BATS_TEST_TMPDIR/spool
	OUT=$BATS_TEST_TMPDIR/out
	ERR=$BATS_TEST_TMPDIR/err
	IN=$BATS_TEST_TMPDIR/in
	export GXP_SPOOL=$SPOOL
	: > "$IN"
}

# ts MS: the time MS milliseconds after 2026-01-01T00:00:00Z, as gxp-sub writes it.
ts() {
	local ms=$1
	printf '2026-01-01T%02d:%02d:%02d.%03d000Z' $((ms / 3600000)) $((ms / 60000 % 60)) \
		$((ms / 1000 % 60)) $((ms % 1000))
}

# line MS TOPIC PAYLOAD: an envelope as gxp-sub writes it.
line() {
	printf '{"tst":"%s","topic":"%s","qos":1,"retain":0,"payloadlen":%d,"payload":%s}\n' \
		"$(ts "$1")" "$2" "${#3}" "$3"
}

# meta MS DEV NAME SIZE CHUNK_SIZE TOTAL [EXTRA_JSON_MEMBERS]: metadata in the seed's format.
meta() {
	local extra=${7:+,$7}
	line "$1" "ESP32CAM/$2/data" "{\"device_id\":\"$2\",\"capture_timeStamp\":\"2025-10-04T12:34:56Z\",\"image_name\":\"$3\",\"image_size\":$4,\"max_chunks_size\":$5,\"total_chunk_count\":$6,\"location\":\"office_404\",\"error\":0,\"temperature\":23.5,\"humidity\":45.2,\"pressure\":1013.25,\"gas_resistance\":12345.67$extra}"
}

# b64_slice FILE CHUNK_SIZE ID: chunk ID of FILE, in base64.
b64_slice() {
	dd if="$1" bs="$2" skip="$3" count=1 status=none | base64 -w0
}

# chunk MS DEV NAME ID FILE CHUNK_SIZE: chunk ID of FILE.
chunk() {
	line "$1" "ESP32CAM/$2/data" "{\"device_id\":\"$2\",\"image_name\":\"$3\",\"chunk_id\":$4,\"max_chunk_size\":$6,\"payload\":\"$(b64_slice "$5" "$6" "$4")\"}"
}

# status MS DEV PAYLOAD
status_line() {
	line "$1" "ESP32CAM/$2/status" "$3"
}

# make_jpeg FILE SIZE: FF D8, random bytes, FF D9.
make_jpeg() {
	{ printf '\377\330'; head -c $(($2 - 4)) /dev/urandom; printf '\377\331'; } > "$1"
}

# nchunks FILE CHUNK_SIZE
nchunks() {
	local size
	size=$(stat -c %s "$1")
	echo $(((size + $2 - 1) / $2))
}

# photo MS DEV NAME FILE CHUNK_SIZE [ID...]: metadata then the chunks
# (all, in order, unless ids are given), one millisecond apart.
photo() {
	local ms=$1 dev=$2 name=$3 file=$4 cs=$5 n i
	shift 5
	n=$(nchunks "$file" "$cs")
	meta "$ms" "$dev" "$name" "$(stat -c %s "$file")" "$cs" "$n"
	[ $# -gt 0 ] || set -- $(seq 0 $((n - 1)))
	for i in "$@"; do
		ms=$((ms + 1))
		chunk "$ms" "$dev" "$name" "$i" "$file" "$cs"
	done
}

# assemble [ARGS...]: gxp-assemble on $IN (a file: replay), out to $OUT and $ERR.
assemble() {
	ASM_RC=0
	gxp-assemble "$@" < "$IN" > "$OUT" 2> "$ERR" || ASM_RC=$?
}

# events TYPE [FILE]: the events of one type, one compact JSON a line.
events() {
	jq -c "select(.event == \"$1\")" "${2:-$OUT}"
}

# count TYPE [FILE]
count() {
	events "$@" | wc -l
}

# ready_image DEV NAME: the path of a ready photo; ready_meta: its sidecar.
ready_image() {
	echo "$SPOOL/ready/$1@$2.jpg"
}

ready_meta() {
	echo "$SPOOL/ready/$1@$2.json"
}

# ready_count: the photos in ready/ (their sidecars).
ready_count() {
	find "$SPOOL/ready" -name '*.json' | wc -l
}

# store_photo DEV NAME: what gxp-upload does once the photo is stored: the
# sidecar becomes the stored/ record, the photo goes.
store_photo() {
	mkdir -p "$SPOOL/stored"
	mv "$(ready_meta "$1" "$2")" "$SPOOL/stored/$1@$2.json"
	rm "$(ready_image "$1" "$2")"
}

# in_progress: the captures in progress (gxp-assemble --list), one a line.
in_progress() {
	gxp-assemble --list
}

# genlog ARGS: bench/genlog, the log generator the benchmark uses.
genlog() {
	"$GXP_TOP/bench/genlog" "$@"
}

# empty DIR...: every DIR exists and holds nothing.
empty() {
	local d
	for d in "$@"; do
		[ -d "$d" ] && [ -z "$(ls -A "$d")" ] || return 1
	done
}
