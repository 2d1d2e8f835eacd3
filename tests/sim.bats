#!/usr/bin/env bats
# gxp-sim against a real mosquitto and a small scripted worker made of stock
# tools (mosquitto_sub, jq, bash, mosquitto_pub): the wire formats, NACKs,
# ACK_OK, deadlines, device retries, reproducibility and the summaries.

load helpers

bats_require_minimum_version 1.5.0

setup() {
	start_broker plain
	broker_env
	W=$BATS_TEST_TMPDIR
	CAP=$W/capture		# every status and data message, mosquitto_sub -F %J
	WLOG=$W/worker.log	# what the worker saw and did, in order
	CHELSEA=$BATS_TEST_DIRNAME/../examples/chelsea.jpg
}

teardown() {
	worker_stop
	controller_stop
	capture_stop
	teardown_broker
}

# The scripted worker.  Records: "M dev img total", "C dev img id".  After
# WORKER_IDLE seconds without a message it NACKs the chunks it has not seen
# of each photo, or ACKs a complete one.  Modes:
#   normal     as above
#   extra      every NACK also lists chunk 0, which it did receive
#   dupack     sends each ACK_OK twice
#   retry      neither NACKs nor ACKs until the device sent the metadata a
#              second time (a device retry), then ACKs the complete photo
#   noisy      before each ACK_OK: a non-JSON message, a NACK with bad ids, an
#              ACK_OK for a photo the device does not have, one without name
worker_loop() {
	local mode=$1 kind dev img x key
	declare -A total have seen metas acked
	while :; do
		if IFS=$'\t' read -r -t "$WORKER_IDLE" kind dev img x; then
			key="$dev $img"
			if [ "$kind" = M ]; then
				total[$key]=$x
				metas[$key]=$((${metas[$key]:-0} + 1))
				echo "M $key $x" >> "$WLOG"
			elif [ -z "${seen[$key $x]:-}" ]; then
				seen[$key $x]=1
				have[$key]=$((${have[$key]:-0} + 1))
			fi
			continue
		elif [ $? -le 128 ]; then
			break
		fi
		for key in "${!total[@]}"; do
			[ -z "${acked[$key]:-}" ] || continue
			[ "$mode" != retry ] || [ "${metas[$key]}" -ge 2 ] || continue
			if [ "${have[$key]:-0}" -eq "${total[$key]}" ]; then
				acked[$key]=1
				worker_ack "$mode" $key
			elif [ "$mode" != retry ]; then
				worker_nack "$mode" $key "${total[$key]}"
			fi
		done
	done
}

worker_pub() {
	mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" -q 1 -t "ESP32CAM/$1/ack" -m "$2"
}

worker_nack() {
	local mode=$1 dev=$2 img=$3 n=$4 ids=() i
	for ((i = 0; i < n; i++)); do
		[ -n "${seen[$dev $img $i]:-}" ] || ids+=("$i")
	done
	[ "$mode" = extra ] && ids=(0 "${ids[@]}")
	echo "NACK $dev $img ${ids[*]}" >> "$WLOG"
	worker_pub "$dev" "{\"image_name\":\"$img\",\"missing_chunks\":[$(IFS=,; echo "${ids[*]}")]}"
}

worker_ack() {
	local mode=$1 dev=$2 img=$3
	if [ "$mode" = noisy ]; then
		worker_pub "$dev" 'not json'
		worker_pub "$dev" "{\"image_name\":\"$img\",\"missing_chunks\":[-1,99999,\"x\",1.5]}"
		worker_pub "$dev" '{"image_name":"image_99.jpg","ACK_OK":{}}'
		worker_pub "$dev" '{"ACK_OK":{}}'
	fi
	echo "ACK $dev $img" >> "$WLOG"
	worker_pub "$dev" "{\"image_name\":\"$img\",\"ACK_OK\":{\"next_wake_time\":\"5:30PM\"}}"
	[ "$mode" != dupack ] || worker_pub "$dev" "{\"image_name\":\"$img\",\"ACK_OK\":{}}"
}

# The record of each status, metadata and chunk message: kind, device,
# image, total or chunk id.
WORKER_JQ='(.topic | split("/")[1]) as $d | .payload | select(type == "object") |
	if has("chunk_id") then ["C", $d, .image_name, .chunk_id]
	elif has("total_chunk_count") then ["M", $d, .image_name, .total_chunk_count]
	else empty end | @tsv'

# worker_start MODE: the worker in a session of its own (so that teardown
# can stop the whole pipe), waited for until it receives messages.
worker_start() {
	export -f worker_loop worker_pub worker_nack worker_ack
	export WLOG CAP BROKER_PORT WORKER_JQ WORKER_IDLE=${WORKER_IDLE:-0.3}
	: > "$WLOG"
	setsid bash -c 'echo $$ > "$0.pgid"
		mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -q 1 -F %J \
			-t "ESP32CAM/+/data" -t "ESP32CAM/+/status" | tee "$CAP" |
			jq --unbuffered -r "$WORKER_JQ" | worker_loop "$1"' "$W/worker" "$1" \
		< /dev/null > /dev/null 2> "$W/worker.err" 3>&- &
	wait_until 10 probe_seen
}

probe_seen() {
	mpub -t ESP32CAM/PROBE/data -m '{"probe":1}'
	file_has "$CAP" '"topic":"ESP32CAM/PROBE/data"'
}

worker_stop() {
	[ -f "$W/worker.pgid" ] || return 0
	kill -TERM -- "-$(cat "$W/worker.pgid")" 2>/dev/null
	rm -f "$W/worker.pgid"
}

# capture_start FILE: only record the messages (no worker).
capture_start() {
	CAP=$1
	mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -q 1 -F %J \
		-t "ESP32CAM/+/data" -t "ESP32CAM/+/status" > "$CAP" 2>/dev/null 3>&- &
	CAP_PID=$!
	wait_until 10 probe_seen
}

capture_stop() {
	[ -z "${CAP_PID:-}" ] || stop_pid "$CAP_PID"
	CAP_PID=
}

# sim ARGS...: gxp-sim with its summary in $W/out, its log in $W/err and its
# exit status in $SIM_RC.
sim() {
	SIM_RC=0
	timeout 60 gxp-sim "$@" > "$W/out" 2> "$W/err" || SIM_RC=$?
}

# payloads KIND: the payloads of that kind in the capture, one per line.
payloads() {
	case $1 in
	status) jq -c 'select(.topic | endswith("/status")) | .payload' "$CAP" ;;
	meta) jq -c 'select(.payload.total_chunk_count != null) | .payload' "$CAP" ;;
	chunk) jq -c 'select(.payload.chunk_id != null) | .payload' "$CAP" ;;
	esac
}

@test "sim: status, metadata and chunks as the seed's firmware sends them, field by field" {
	worker_start normal
	sim -s 1 "$CHELSEA"
	[ "$SIM_RC" = 0 ]
	# the status
	status=$(payloads status)
	[ "$(jq -c 'keys_unsorted' <<<"$status")" = '["device_id","status","pendingImg"]' ]
	[ "$status" = '{"device_id":"SIM000001","status":"Alive","pendingImg":1}' ]
	jq -en '[inputs | select(.topic | endswith("/status"))] | length == 1 and
		.[0].topic == "ESP32CAM/SIM000001/status" and .[0].qos == 1' "$CAP"
	# the metadata: the seed's keys in the seed's order, its spellings
	meta=$(payloads meta)
	[ "$(jq -c 'keys_unsorted' <<<"$meta")" = '["device_id","capture_timeStamp","image_name","image_size","max_chunks_size","total_chunk_count","location","error","temperature","humidity","pressure","gas_resistance"]' ]
	size=$(stat -c %s "$CHELSEA")
	[ "$(jq -c '[.device_id, .image_name, .image_size, .max_chunks_size, .total_chunk_count, .error]' <<<"$meta")" = "[\"SIM000001\",\"image_1.jpg\",$size,1024,$(((size + 1023) / 1024)),0]" ]
	[[ $(jq -r .capture_timeStamp <<<"$meta") =~ ^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]]
	jq -e '(.location | type == "string") and ([.temperature, .humidity, .pressure, .gas_resistance] | all(type == "number"))
		and .temperature > -40 and .temperature < 85 and .gas_resistance > 1000' <<<"$meta"
	# the chunks: the seed's keys, max_chunk_size (sic), base64 of the photo
	payloads chunk > "$W/chunks"
	[ "$(jq -c 'keys_unsorted' "$W/chunks" | sort -u)" = '["device_id","image_name","chunk_id","max_chunk_size","payload"]' ]
	[ "$(jq -c '[.device_id, .image_name, .max_chunk_size]' "$W/chunks" | sort -u)" = '["SIM000001","image_1.jpg",1024]' ]
	[ "$(jq -r .chunk_id "$W/chunks" | tr '\n' ' ')" = "$(seq -s ' ' 0 21) " ]
	jq -r .payload "$W/chunks" | while read -r b; do base64 -d <<<"$b"; done > "$W/photo.jpg"
	cmp "$W/photo.jpg" "$CHELSEA"
	# every chunk but the last is full
	[ "$(jq -r '.payload | length' "$W/chunks" | sort -un | tr '\n' ' ')" = "$(((size % 1024 + 2) / 3 * 4)) 1368 " ]
	# data and status on the topics of the seed, the summary says it all went well
	jq -en '[inputs | select(.payload.image_name != null) | .topic] | unique == ["ESP32CAM/SIM000001/data"]' "$CAP"
	grep -qx 'photos:   1 sent, 1 acknowledged, 0 not acknowledged' "$W/out"
}

@test "sim: the newer firmware's format: timestamp, nested sensor_data, image_id, pending_list" {
	worker_start normal
	sim -F new -n 2 -s 3 "$CHELSEA"
	[ "$SIM_RC" = 0 ]
	[ "$(payloads status)" = '{"device_id":"SIM000001","status":"Alive","pending_list":["image_1.jpg","image_2.jpg"]}' ]
	payloads meta > "$W/meta"
	[ "$(jq -c 'keys_unsorted' "$W/meta" | sort -u)" = '["device_id","image_id","image_name","timestamp","image_size","max_chunks_size","total_chunk_count","location","error","sensor_data"]' ]
	[ "$(jq -c '[.image_id, .image_name]' "$W/meta" | tr '\n' ' ')" = '[1,"image_1.jpg"] [2,"image_2.jpg"] ' ]
	[ "$(jq -c '.sensor_data | keys_unsorted' "$W/meta" | sort -u)" = '["temperature","humidity","pressure","gas_resistance"]' ]
	[ "$(jq -r '.timestamp | test("^20[0-9-]{8}T[0-9:]{8}Z$")' "$W/meta" | sort -u)" = true ]
	# chunks are the same in both formats
	[ "$(payloads chunk | jq -c 'keys_unsorted' | sort -u)" = '["device_id","image_name","chunk_id","max_chunk_size","payload"]' ]
	grep -q 'new firmware' "$W/out"
}

@test "sim: lost chunks are NACKed and exactly the chunks listed are sent again" {
	worker_start extra
	sim -s 42 -l 0.2 -j "$CHELSEA"
	[ "$SIM_RC" = 0 ]
	payloads chunk | jq -r .chunk_id | sort -n | uniq -c | awk '{print $2, $1}' > "$W/sent"
	# every id listed in the worker's NACKs, with how often
	grep '^NACK ' "$WLOG" | cut -d' ' -f4- | tr ' ' '\n' | grep . | sort -n | uniq -c |
		awk '{print $2, $1}' > "$W/listed"
	[ -s "$W/listed" ]
	withheld=0
	for id in $(seq 0 21); do
		s=$(awk -v i="$id" '$1 == i {print $2}' "$W/sent")
		l=$(awk -v i="$id" '$1 == i {print $2}' "$W/listed")
		extra=$((${s:-0} - ${l:-0}))
		# each chunk went out once in the first pass, or was withheld, plus
		# once for every time a NACK listed it: no more, no less
		[ "$extra" = 1 ] || [ "$extra" = 0 ]
		[ "${s:-0}" -ge 1 ]
		[ "$extra" = 1 ] || withheld=$((withheld + 1))
	done
	[ "$withheld" -gt 0 ]
	# chunk 0 was never lost, yet the worker asked for it and got it again
	[ "$(awk '$1 == 0 {print $2}' "$W/sent")" -ge 2 ]
	summary=$(cat "$W/out")
	[ "$(jq -r .chunks_withheld <<<"$summary")" = "$withheld" ]
	[ "$(jq -r .nacks_answered <<<"$summary")" = "$(grep -c '^NACK ' "$WLOG")" ]
	[ "$(jq -r .chunks_resent_nack <<<"$summary")" = "$(awk '{n += $2} END {print n}' "$W/listed")" ]
	[ "$(jq -r .acknowledged <<<"$summary")" = 1 ]
}

@test "sim: ACK_OK stops the device: the next photo only after it, nothing more of this one" {
	WORKER_IDLE=0.2 worker_start normal
	sim -n 2 -s 5 -R 800 --linger 1700 "$CHELSEA"
	[ "$SIM_RC" = 0 ]
	# one photo at a time: image_2's metadata came after image_1's ACK_OK
	[ "$(grep -E '^(M|ACK) ' "$WLOG" | cut -d' ' -f1-3 | tr '\n' ';')" = 'M SIM000001 image_1.jpg;ACK SIM000001 image_1.jpg;M SIM000001 image_2.jpg;ACK SIM000001 image_2.jpg;' ]
	# two retry intervals later no photo had been sent again
	[ "$(payloads meta | wc -l)" = 2 ]
	[ "$(payloads chunk | wc -l)" = 44 ]
	grep -qx 'photos:   2 sent, 2 acknowledged, 0 not acknowledged' "$W/out"
	grep -q 're-sent in 0 device retries' "$W/out"
}

@test "sim: -k 2 keeps two photos of a device in flight" {
	worker_start normal
	sim -n 2 -k 2 -s 5 "$CHELSEA"
	[ "$SIM_RC" = 0 ]
	[ "$(grep -E '^(M|ACK) ' "$WLOG" | head -2 | cut -d' ' -f1 | tr '\n' ' ')" = 'M M ' ]
}

@test "sim: without an ACK_OK the device sends the whole photo again after -R" {
	worker_start retry
	sim -s 9 -l 0.3 -R 1000 -j "$CHELSEA"
	[ "$SIM_RC" = 0 ]
	[ "$(payloads meta | wc -l)" = 2 ]
	summary=$(cat "$W/out")
	[ "$(jq -r .photo_retries <<<"$summary")" = 1 ]
	[ "$(jq -r .chunks_resent_retry <<<"$summary")" = 22 ]
	# the second pass is the whole photo, in order, the same capture
	payloads meta | jq -r .capture_timeStamp | uniq | wc -l | grep -qx 1
	[ "$(payloads chunk | jq -r .chunk_id | tail -22 | tr '\n' ' ')" = "$(seq -s ' ' 0 21) " ]
	[ "$(jq -r .acknowledged <<<"$summary")" = 1 ]
}

@test "sim: no ACK_OK by the deadline: exit 1, the photo named, a clear summary" {
	sim -t 700 -s 2 "$CHELSEA"
	[ "$SIM_RC" = 1 ]
	grep -qx 'photos:   1 sent, 0 acknowledged, 1 not acknowledged' "$W/out"
	grep -qx 'latency:  no ACK_OK' "$W/out"
	grep -q 'warning: SIM000001 image_1.jpg: no ACK_OK within the deadline (700 ms)' "$W/err"
	# it stopped at the deadline, not later
	secs=$(sed -n 's/^elapsed:  \([0-9.]*\) s.*/\1/p' "$W/out")
	awk -v s="$secs" 'BEGIN { exit !(s >= 0.7 && s < 5) }'
}

@test "sim: the same seed gives the same losses, duplicates, order and sensors" {
	for run in a b c; do
		seed=7
		[ "$run" = c ] && seed=8
		capture_start "$W/cap.$run"
		sim -d 3 -n 2 -k 2 -t 400 -s "$seed" -l 0.3 -D 0.3 -o 5 -j "$CHELSEA"
		[ "$SIM_RC" = 1 ]
		wait_until 10 has_lines "$CAP" "$(($(jq -r .messages "$W/out") + 1))"
		capture_stop
		# each photo's chunk sequence, the photos in a fixed order
		jq -r 'select(.payload.chunk_id != null) | "\(.topic) \(.payload.image_name) \(.payload.chunk_id)"' \
			"$W/cap.$run" | sort -s -k1,2 > "$W/seq.$run"
		jq -c 'select(.payload.total_chunk_count != null) | .payload | del(.capture_timeStamp)' \
			"$W/cap.$run" | sort > "$W/meta.$run"
	done
	diff -u "$W/seq.a" "$W/seq.b"
	diff -u "$W/meta.a" "$W/meta.b"
	run -1 cmp -s "$W/seq.a" "$W/seq.c"
	run -1 cmp -s "$W/meta.a" "$W/meta.c"
	# out of order, with duplicates and gaps
	sort -s -k1,2 -k3n "$W/seq.a" > "$W/sorted.a"
	run -1 cmp -s "$W/sorted.a" "$W/seq.a"
	[ "$(sort "$W/seq.a" | uniq -d | wc -l)" -gt 0 ]
	[ "$(cut -d' ' -f1,2 "$W/seq.a" | uniq -c | awk '$1 < 22' | wc -l)" -gt 0 ]
}

@test "sim: the JSON summary is one line that adds up" {
	worker_start dupack
	sim -d 4 -n 2 -s 11 -l 0.1 -D 0.1 --linger 500 -j "$CHELSEA"
	[ "$SIM_RC" = 0 ]
	[ "$(lines_in "$W/out")" = 1 ]
	s=$(cat "$W/out")
	jq -e '.v == 1 and .devices == 4 and .photos_per_device == 2 and .photos == 8 and .seed == 11
		and .photos_sent == 8 and .acknowledged == 8 and .not_acknowledged == 0
		and .acks == 8 and .duplicate_acks == 8 and .interrupted == false
		and .chunks_sent == .chunks_first_pass + .chunks_resent_nack + .chunks_resent_retry
		and .chunks_first_pass == 8 * 22 + .duplicates_sent - .chunks_withheld
		and (.latency_ms.p50 <= .latency_ms.p99) and (.latency_ms.p99 <= .latency_ms.max)
		and .latency_ms.p50 > 0 and .elapsed_s > 0 and .msgs_per_s > 0
		and .messages == 4 + 8 + .chunks_sent' <<<"$s"
	[ "$(jq -r .messages <<<"$s")" = "$(grep -vc PROBE "$CAP")" ]
}

@test "sim: 50 devices share one connection; MAC-like ids; generated photos" {
	worker_start normal
	sim -d 50 -n 2 -S 5000 -c 700 -M -i simfleet -s 4 -l 0.05 -j
	[ "$SIM_RC" = 0 ]
	jq -e '.acknowledged == 100 and .not_acknowledged == 0' "$W/out"
	[ "$(grep -c 'New client connected .* as simfleet' "$BROKER_DIR/mosquitto.log")" = 1 ]
	payloads status | jq -r .device_id | sort -u > "$W/ids"
	[ "$(wc -l < "$W/ids")" = 50 ]
	run -1 grep -vqE '^7CDFA1[0-9A-F]{6}$' "$W/ids"
	# a generated photo: the size asked for, SOI at the start, EOI at the end
	dev=$(head -1 "$W/ids")
	payloads meta | jq -en --arg d "$dev" '[inputs | select(.device_id == $d)] | length == 2 and
		all(.image_size == 5000 and .total_chunk_count == 8 and .max_chunks_size == 700)'
	payloads chunk | jq -r --arg d "$dev" 'select(.device_id == $d and .image_name == "image_1.jpg") | "\(.chunk_id) \(.payload)"' |
		sort -n -u -k1,1 | while read -r id b; do base64 -d <<<"$b"; done > "$W/gen.jpg"
	[ "$(stat -c %s "$W/gen.jpg")" = 5000 ]
	[ "$(head -c 2 "$W/gen.jpg" | od -An -tx1 | tr -d ' ')" = ffd8 ]
	[ "$(tail -c 2 "$W/gen.jpg" | od -An -tx1 | tr -d ' ')" = ffd9 ]
}

@test "sim: bad messages on the ack topic are logged and ignored" {
	worker_start noisy
	sim -s 6 "$CHELSEA"
	[ "$SIM_RC" = 0 ]
	grep -q 'warning: SIM000001 -: ack-topic message is not JSON; ignored' "$W/err"
	grep -q 'warning: SIM000001 image_1.jpg: NACK lists 4 ids that are not chunks 0-21; skipped them' "$W/err"
	grep -q 'warning: SIM000001 image_99.jpg: ACK_OK for a photo the device is not sending; ignored' "$W/err"
	grep -q 'warning: SIM000001 -: ack-topic message has no image_name; ignored' "$W/err"
	grep -qx 'photos:   1 sent, 1 acknowledged, 0 not acknowledged' "$W/out"
	grep -q 'ACK_OK:   1, 0 duplicate, 0 late, 1 unknown' "$W/out"
}

@test "sim: the rate limit holds messages back" {
	sim -r 40 -t 500 -s 1 -j "$CHELSEA"
	[ "$SIM_RC" = 1 ]
	# 40 msgs/s for half a second: about 20 of the photo's 24 messages
	n=$(jq -r .messages "$W/out")
	[ "$n" -ge 10 ]
	[ "$n" -lt 24 ]
}

@test "sim: usage errors exit 100 before any I/O; an unreachable broker 111" {
	run -100 gxp-sim -x
	[[ $output == *"usage: gxp-sim [-jM]"* ]]
	run -100 gxp-sim -l 1.5 "$CHELSEA"
	[[ $output == *"1.5: the loss fraction must be a number from 0 to 1"* ]]
	run -100 gxp-sim -o 1 "$CHELSEA"
	[[ $output == *"the reordering window must be an integer from 2"* ]]
	run -100 gxp-sim -S 100 "$CHELSEA"
	[[ $output == *"-S and photo files exclude each other"* ]]
	run -100 gxp-sim -M --prefix X "$CHELSEA"
	run -100 gxp-sim --prefix 'a/b' "$CHELSEA"
	[[ $output == *"device ids must match"* ]]
	run -100 gxp-sim "$W/nothing.jpg"
	[[ $output == *"nothing.jpg: No such file or directory"* ]]
	mkdir "$W/empty"
	run -100 gxp-sim "$W/empty"
	[[ $output == *"no *.jpg or *.jpeg files"* ]]
	run -0 gxp-sim --help
	[[ $output == "usage: gxp-sim"* ]]
	port=$(free_port)
	run -111 gxp-sim -p "$port" -t 1500 "$CHELSEA"
	[[ $output == *"no broker connection within the deadline (1500 ms)"* ]]
}

@test "sim: SIGTERM ends the run with a summary of what is not acknowledged" {
	gxp-sim -t 30000 -s 1 "$CHELSEA" > "$W/out" 2> "$W/err" 3>&- &
	pid=$!
	wait_until 10 file_has "$BROKER_DIR/mosquitto.log" "Received PUBLISH from"
	stop_pid "$pid"
	[ "$STOP_RC" = 1 ]
	grep -q ', interrupted$' "$W/out"
	grep -qx 'photos:   1 sent, 0 acknowledged, 1 not acknowledged' "$W/out"
}

# The scripted controller for -W: the Nth hello is answered with line N of
# $W/orders, payloads for the device's cmd topic separated by " | ", where
# WAKE+N stands for a next_wake N seconds from now; SILENCE answers nothing.
controller_loop() {
	local topic dev n=0 order msg msgs
	while IFS= read -r topic; do
		dev=${topic#ESP32CAM/}
		dev=${dev%/status}
		n=$((n + 1))
		order=$(sed -n "${n}p" "$W/orders")
		echo "H $n $dev $(date +%s.%N)" >> "$W/hellos"
		[ "$order" = SILENCE ] && continue
		IFS='|' read -ra msgs <<<"$order"
		for msg in "${msgs[@]}"; do
			msg=$(echo $msg)
			case $msg in
			WAKE+*) msg="{\"device_id\":\"$dev\",\"next_wake\":\"$(date -u -d "+${msg#WAKE+} seconds" +%Y-%m-%dT%H:%M:%S+00:00)\"}" ;;
			esac
			mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" -q 1 -t "ESP32CAM/$dev/cmd" -m "$msg"
		done
	done
}

controller_start() {
	export -f controller_loop
	export W BROKER_PORT
	: > "$W/hellos"
	setsid bash -c 'echo $$ > "$0.pgid"
		mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -q 1 -i ctl-script -F %t \
			-t "ESP32CAM/+/status" | controller_loop' "$W/controller" \
		< /dev/null > /dev/null 2> "$W/controller.err" 3>&- &
	wait_until 10 grep -q "ctl-script 1 ESP32CAM/+/status" "$BROKER_DIR/mosquitto.log"
}

controller_stop() {
	[ -f "$W/controller.pgid" ] || return 0
	kill -TERM -- "-$(cat "$W/controller.pgid")" 2>/dev/null
	rm -f "$W/controller.pgid"
}

@test "sim -W: hello, capture_image, the photo, hello, next_wake, asleep until then; send_image; a repeat dropped" {
	worker_start normal
	controller_start
	printf '%s\n' '{"device_id":"SIM000001","capture_image":true,"command_id":"c1"}' 'WAKE+2' \
		'{"device_id":"SIM000001","send_image":"image_1.jpg","command_id":"s1"}' \
		'{"device_id":"SIM000001","capture_image":true,"command_id":"c1"} | WAKE+2' > "$W/orders"
	sim -s 1 -n 1 -W 2 -j
	controller_stop
	cat "$W/err"
	[ "$SIM_RC" = 0 ]
	summary=$(tail -1 "$W/out")
	[ "$(jq -c .wake.commands <<<"$summary")" = '{"capture_image":1,"send_image":1,"next_wake":2}' ]
	[ "$(jq -c '[.wake.wakes, .wake.hellos, .wake.answered, .wake.unanswered, .wake.repeats, .wake.while_asleep]' <<<"$summary")" = '[2,4,4,0,1,0]' ]
	[ "$(jq -c '[.photos, .acknowledged]' <<<"$summary")" = '[2,2]' ]
	jq -e '.wake.answer_latency_ms.p99 > 0' <<<"$summary"
	# four hellos, then the new photo (image_2), then the one asked for
	[ "$(payloads status | wc -l)" = 4 ]
	[ "$(payloads meta | jq -r .image_name | tr '\n' ' ')" = "image_2.jpg image_1.jpg " ]
	# the second wake came after the time it was told, not before
	h2=$(awk '$2 == 2 { print $4 }' "$W/hellos")
	h3=$(awk '$2 == 3 { print $4 }' "$W/hellos")
	awk -v a="$h2" -v b="$h3" 'BEGIN { exit !(b - a >= 1) }'
	grep -q "command c1 came again; dropped" "$W/err"
}

@test "sim -W: an unanswered hello is counted (exit 1), an order to a sleeping device lost; -T shortens sleeps" {
	controller_start
	printf '%s\n' SILENCE 'WAKE+3600 | {"device_id":"SIM000001","capture_image":true}' 'WAKE+3600' \
		> "$W/orders"
	# an hour's sleep at -T 1000 is 3.6 s
	sim -s 1 -n 0 -W 3 -A 500 -T 1000 --linger 500 -j
	controller_stop
	cat "$W/err"
	[ "$SIM_RC" = 1 ]
	summary=$(tail -1 "$W/out")
	[ "$(jq -c '[.wake.wakes, .wake.hellos, .wake.answered, .wake.unanswered, .wake.while_asleep]' <<<"$summary")" = '[3,3,2,1,1]' ]
	grep -q "SIM000001: no order within 500 ms of its hello" "$W/err"
	grep -q "SIM000001: an order came while the device slept; it is lost" "$W/err"
	run gxp-sim -W 2 -T 0
	[ "$status" = 100 ]
}
