# upload-fixtures.bash: spool entries and event lines for the gxp-upload
# tests and bench/upload, written by hand from gxp-spool(5) and gxp(7) so
# that gxp-upload is tested without gxp-assemble.

# make_jpeg FILE BYTES: a JPEG-looking file (SOI, random bytes, EOI).
make_jpeg() {
	local f=$1 n=$2
	{
		printf '\xff\xd8'
		head -c $((n - 4)) /dev/urandom
		printf '\xff\xd9'
	} > "$f"
}

# make_entry SPOOL DEV CAPTURE [BYTES] [CAPTURED_AT] [IMAGE_NAME]: a complete
# photo in ready/: DEV@CAPTURE.jpg and its sidecar DEV@CAPTURE.json, the
# sidecar last, as gxp-assemble leaves them.
make_entry() {
	local spool=$1 dev=$2 cap=$3 n=${4:-2000} at=${5:-2025-10-04T12:34:56.000000Z}
	local name=${6:-$3} tmp=$1/tmp/$2@$3.$$ sha
	mkdir -p "$spool/tmp" "$spool/ready"
	make_jpeg "$tmp.jpg" "$n"
	sha=$(sha256sum "$tmp.jpg")
	sha=${sha%% *}
	printf '%s\n' "{\"v\":1,\"device\":\"$dev\",\"image_name\":\"$name\",\
\"capture_name\":\"$cap\",\"captured_at\":\"$at\",\"captured_at_raw\":\"${at%%.*}Z\",\
\"image_bytes\":$n,\"chunk_size\":1024,\"total_chunks\":$(((n + 1023) / 1024)),\
\"sha256\":\"$sha\",\"location\":\"office_404\",\"image_id\":null,\
\"sensor\":{\"temperature_c\":23.5,\"humidity_pct\":45.2,\"pressure_hpa\":1013.25,\"gas_kohm\":12.34567},\
\"meta\":{\"device_id\":\"$dev\",\"image_name\":\"$name\",\"image_size\":$n},\
\"timings\":{\"started_at\":\"2025-10-04T12:34:57.000000Z\",\
\"completed_at\":\"2025-10-04T12:35:01.000000Z\",\"nacks\":0,\"duplicates\":0}}" \
		> "$tmp.json"
	mv "$tmp.jpg" "$spool/ready/$dev@$cap.jpg"
	mv "$tmp.json" "$spool/ready/$dev@$cap.json"
}

# entry_photo SPOOL DEV CAPTURE, entry_meta ...: a ready photo and its
# sidecar; stored_record ...: the sidecar once the photo is stored.
entry_photo() {
	echo "$1/ready/$2@$3.jpg"
}

entry_meta() {
	echo "$1/ready/$2@$3.json"
}

stored_record() {
	echo "$1/stored/$2@$3.json"
}

# spool_settled SPOOL: nothing left in ready/ or work/ (but work/rows.at).
spool_settled() {
	[ -z "$(ls -A "$1/ready")" ] && [ -z "$(ls -A "$1/work" | grep -vx rows.at)" ]
}

# ev_capture_started DEV CAPTURE [BYTES] [CAPTURED_AT] [TS]
ev_capture_started() {
	local dev=$1 cap=$2 n=${3:-2000} at=${4:-2025-10-04T12:34:56.000000Z}
	local ts=${5:-2025-10-04T12:34:57.000000Z}
	printf '%s\n' "{\"event\":\"capture_started\",\"v\":1,\"ts\":\"$ts\",\"device\":\"$dev\",\
\"image_name\":\"$cap\",\"capture_name\":\"$cap\",\"captured_at\":\"$at\",\
\"captured_at_raw\":\"${at%%.*}Z\",\"image_size\":$n,\"chunk_size\":1024,\
\"total_chunks\":$(((n + 1023) / 1024)),\"location\":\"office_404\",\"image_id\":null,\
\"sensor\":{\"temperature_c\":23.5,\"humidity_pct\":45.2,\"pressure_hpa\":1013.25,\"gas_kohm\":12.34567},\
\"meta\":{\"device_id\":\"$dev\",\"image_name\":\"$cap\",\"image_size\":$n,\"gas_resistance\":12345.67}}"
}

# ev_photo_complete DEV CAPTURE
ev_photo_complete() {
	printf '%s\n' "{\"event\":\"photo_complete\",\"v\":1,\"ts\":\"2025-10-04T12:35:01.000000Z\",\
\"device\":\"$1\",\"image_name\":\"$2\",\"capture_name\":\"$2\",\
\"captured_at\":\"2025-10-04T12:34:56.000000Z\",\"entry\":\"ready/$1@$2\"}"
}

# ev_status DEV STATUS PENDING [TS]
ev_status() {
	printf '%s\n' "{\"event\":\"status\",\"v\":1,\"ts\":\"${4:-2025-10-04T12:30:00.000000Z}\",\
\"device\":\"$1\",\"topic\":\"ESP32CAM/$1/status\",\"status\":\"$2\",\"pending_count\":$3,\
\"raw\":{\"device_id\":\"$1\",\"status\":\"$2\",\"pendingImg\":$3}}"
}

# ev_error DEV CODE SEVERITY REASON [IMAGE]
ev_error() {
	printf '%s\n' "{\"event\":\"error\",\"v\":1,\"ts\":\"2025-10-04T12:36:00.000000Z\",\
\"code\":$2,\"severity\":\"$3\",\"reason\":\"$4\",\"device\":\"$1\"${5:+,\"image_name\":\"$5\"},\
\"topic\":\"ESP32CAM/$1/data\",\"line\":7}"
}

# ev_capture_failed DEV CAPTURE CODE REASON
ev_capture_failed() {
	printf '%s\n' "{\"event\":\"capture_failed\",\"v\":1,\"ts\":\"2025-10-04T12:37:00.000000Z\",\
\"device\":\"$1\",\"image_name\":\"$2\",\"capture_name\":\"$2\",\"code\":$3,\
\"severity\":\"error\",\"reason\":\"$4\"}"
}

# ev_inbound_meta DEV IMAGE; ev_inbound_chunk DEV IMAGE ID
ev_inbound_meta() {
	printf '%s\n' "{\"event\":\"inbound\",\"v\":1,\"ts\":\"2025-10-04T12:34:57.000000Z\",\
\"device\":\"$1\",\"topic\":\"ESP32CAM/$1/data\",\"received_at\":\"2025-10-04T12:34:57.000000Z\",\
\"kind\":\"metadata\",\"payload\":{\"device_id\":\"$1\",\"image_name\":\"$2\",\"image_size\":2000}}"
}

ev_inbound_chunk() {
	printf '%s\n' "{\"event\":\"inbound\",\"v\":1,\"ts\":\"2025-10-04T12:34:58.000000Z\",\
\"device\":\"$1\",\"topic\":\"ESP32CAM/$1/data\",\"received_at\":\"2025-10-04T12:34:58.$(printf %06d "$3")Z\",\
\"kind\":\"chunk\",\"payload\":{\"device_id\":\"$1\",\"image_name\":\"$2\",\"chunk_id\":$3,\
\"max_chunk_size\":1024,\"payload_bytes\":1024}}"
}

# upload_env: a fresh spool and store for this test, fast retries and
# flushes, and the files run_upload and start_upload use.
upload_env() {
	export GXP_SPOOL=$BATS_TEST_TMPDIR/spool GXP_STORE=$BATS_TEST_TMPDIR/store
	mkdir -p "$GXP_SPOOL/tmp"
	export UPLOAD_RETRY_BASE_MS=50 UPLOAD_RETRY_MAX_MS=400 ROW_FLUSH_MS=50 \
		UPLOAD_RESCAN_MS=200
	IN=$BATS_TEST_TMPDIR/in OUT=$BATS_TEST_TMPDIR/out ERR=$BATS_TEST_TMPDIR/err
	: > "$IN"
}

# run_upload [ARGS...]: gxp-upload < $IN > $OUT 2> $ERR; the status in RC.
run_upload() {
	RC=0
	gxp-upload "$@" < "$IN" > "$OUT" 2> "$ERR" || RC=$?
}

# start_upload [ARGS...]: gxp-upload in the background reading a FIFO that
# stays open (write events to fd 7); sets UP_PID.
start_upload() {
	rm -f "$BATS_TEST_TMPDIR/fifo"
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	gxp-upload "$@" < "$BATS_TEST_TMPDIR/fifo" > "$OUT" 2> "$ERR" &
	UP_PID=$!
	exec 7> "$BATS_TEST_TMPDIR/fifo"
}

# stop_upload: end of input, then wait; the status in RC.
stop_upload() {
	exec 7>&-
	RC=0
	wait "$UP_PID" || RC=$?
	UP_PID=
}

teardown_upload() {
	exec 7>&- 2>/dev/null
	if [ -n "${UP_PID:-}" ]; then
		kill -KILL "$UP_PID" 2>/dev/null
		wait "$UP_PID" 2>/dev/null
	fi
	UP_PID=
	return 0
}

# count FILE TEXT: lines of FILE holding TEXT.
count() {
	grep -cF -- "$2" "$1" 2>/dev/null || true
}

# events TYPE: the events of TYPE gxp-upload wrote, one a line.
events() {
	jq -c --arg t "$1" 'select(.event == $t)' "$OUT"
}

# The files that test against the database: one cluster and one endpoint a
# file, emptied before each test.
upload_db_setup_file() {
	start_pg
	start_endpoint
}

upload_db_teardown_file() {
	stop_endpoint
	stop_pg
}

upload_db_setup() {
	reset_db
	ep_reset
	upload_env
	supabase_env
}
