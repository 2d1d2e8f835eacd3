#!/usr/bin/env bats
# gxp-assemble: photos rebuilt from chunks in any order, the spool entries
# and sidecars, the events, resent metadata, pass-through.

load assemble-lib

setup() {
	setup_assemble
}

@test "assemble: the seed's example (2-byte chunks, max_chunk_size 1024) becomes a ready photo" {
	line 0 ESP32CAM/TESTMAC123/data '{"device_id":"TESTMAC123","image_name":"test.jpg","image_size":4,"max_chunks_size":2,"total_chunk_count":2,"temperature":25.1,"humidity":45.0,"pressure":1010.2,"capture_timeStamp":"2025-10-04T12:00:00Z"}' >> "$IN"
	line 10 ESP32CAM/TESTMAC123/data '{"device_id":"TESTMAC123","image_name":"test.jpg","chunk_id":0,"max_chunk_size":1024,"payload":"/9g="}' >> "$IN"
	line 20 ESP32CAM/TESTMAC123/data '{"device_id":"TESTMAC123","image_name":"test.jpg","chunk_id":1,"max_chunk_size":1024,"payload":"/9k="}' >> "$IN"
	assemble
	[ "$ASM_RC" = 0 ]
	[ "$(xxd -p "$(ready_image TESTMAC123 test.jpg)")" = ffd8ffd9 ]
	sum=$(sha256sum < "$(ready_image TESTMAC123 test.jpg)" | cut -d' ' -f1)
	# the events, in order
	[ "$(jq -r .event "$OUT" | paste -sd' ')" = "inbound capture_started inbound inbound photo_complete" ]
	pc=$(events photo_complete)
	[ "$(jq -c '[.device,.image_name,.capture_name,.entry,.image_bytes,.chunk_size,.total_chunks,.nacks]' <<<"$pc")" = '["TESTMAC123","test.jpg","test.jpg","ready/TESTMAC123@test.jpg",4,2,2,0]' ]
	[ "$(jq -r .sha256 <<<"$pc")" = "$sum" ]
	[ "$(jq -r .ts <<<"$pc")" = "$(ts 20)" ]
	[ "$(jq -r .captured_at <<<"$pc")" = 2025-10-04T12:00:00.000000Z ]
	# the sidecar
	sc=$SPOOL/ready/TESTMAC123@test.jpg.json
	[ "$(jq -c '[.v,.device,.image_name,.capture_name,.captured_at,.captured_at_raw,.image_bytes,.chunk_size,.total_chunks]' "$sc")" = '[1,"TESTMAC123","test.jpg","test.jpg","2025-10-04T12:00:00.000000Z","2025-10-04T12:00:00Z",4,2,2]' ]
	[ "$(jq -r .sha256 "$sc")" = "$sum" ]
	[ "$(jq -c .sensor "$sc")" = '{"temperature_c":25.1,"humidity_pct":45,"pressure_hpa":1010.2,"gas_kohm":null}' ]
	[ "$(jq -c '[.timings.started_at,.timings.completed_at,.timings.nacks,.timings.duplicates]' "$sc")" = "[\"$(ts 0)\",\"$(ts 20)\",0,0]" ]
	[ "$(jq -r .meta.max_chunks_size "$sc")" = 2 ]
	# nothing left behind
	empty "$SPOOL/partial" "$SPOOL/tmp"
	grep -q "1 photos complete" "$ERR"
}

@test "assemble: capture_started carries the metadata, sensor values and location" {
	meta 0 AABBCCDDEEFF image_123.jpg 45678 1024 45 '"image_id":"abc-1"' >> "$IN"
	assemble
	cs=$(events capture_started)
	[ "$(jq -c '[.device,.image_name,.capture_name,.captured_at,.captured_at_raw,.image_size,.chunk_size,.total_chunks,.location,.image_id]' <<<"$cs")" = '["AABBCCDDEEFF","image_123.jpg","image_123.jpg","2025-10-04T12:34:56.000000Z","2025-10-04T12:34:56Z",45678,1024,45,"office_404","abc-1"]' ]
	[ "$(jq -c .sensor <<<"$cs")" = '{"temperature_c":23.5,"humidity_pct":45.2,"pressure_hpa":1013.25,"gas_kohm":12.34567}' ]
	[ "$(jq -r .meta.gas_resistance <<<"$cs")" = 12345.67 ]
	# the capture waits in partial/ with its metadata
	[ "$(in_progress | jq -c '[.device,.image_name,.capture_name,.chunks,.total_chunks]')" = \
		'["AABBCCDDEEFF","image_123.jpg","image_123.jpg",0,45]' ]
}

@test "assemble: newer firmware: timestamp in seconds or ms, nested sensor_data, image_id" {
	line 0 ESP32CAM/NEWFW1/data '{"image_name":"a.jpg","image_size":4,"max_chunks_size":2,"total_chunk_count":2,"timestamp":1759581296,"image_id":42,"sensor_data":{"temperature":20.5,"humidity":50,"pressure":1000.5,"gas_resistance":5000}}' >> "$IN"
	line 1 ESP32CAM/NEWFW1/data '{"image_name":"b.jpg","image_size":4,"max_chunks_size":2,"total_chunk_count":2,"timestamp":1759581296123}' >> "$IN"
	line 2 ESP32CAM/NEWFW1/data '{"image_name":"c.jpg","image_size":4,"max_chunks_size":2,"total_chunk_count":2,"timestamp":"not a time"}' >> "$IN"
	assemble
	[ "$(events capture_started | sed -n 1p | jq -c '[.captured_at,.captured_at_raw,.image_id,.sensor]')" = '["2025-10-04T12:34:56.000000Z",1759581296,42,{"temperature_c":20.5,"humidity_pct":50,"pressure_hpa":1000.5,"gas_kohm":5}]' ]
	[ "$(events capture_started | sed -n 2p | jq -c '[.captured_at,.captured_at_raw]')" = '["2025-10-04T12:34:56.123000Z",1759581296123]' ]
	# no usable time: the receive time, and captured_at_raw null
	[ "$(events capture_started | sed -n 3p | jq -c '[.captured_at,.captured_at_raw,.sensor.temperature_c]')" = "[\"$(ts 2)\",null,null]" ]
}

@test "assemble: status events: pendingImg, pending_list, raw payload" {
	status_line 0 AABBCCDDEEFF '{"device_id":"AABBCCDDEEFF","status":"Alive","pendingImg":3}' >> "$IN"
	status_line 1 NEWFW1 '{"status":"Alive","pending_list":["a.jpg","b.jpg"]}' >> "$IN"
	status_line 2 NEWFW2 '{"status":5}' >> "$IN"
	assemble
	[ "$(events status | jq -c '[.device,.topic,.status,.pending_count,.pending_list]')" = '["AABBCCDDEEFF","ESP32CAM/AABBCCDDEEFF/status","Alive",3,null]
["NEWFW1","ESP32CAM/NEWFW1/status","Alive",2,["a.jpg","b.jpg"]]
["NEWFW2","ESP32CAM/NEWFW2/status",null,null,null]' ]
	[ "$(events status | sed -n 1p | jq -c .raw)" = '{"device_id":"AABBCCDDEEFF","status":"Alive","pendingImg":3}' ]
	[ "$(events status | sed -n 1p | jq -r .ts)" = "$(ts 0)" ]
}

@test "assemble: chunks in order, reversed, shuffled, even-then-odd: byte-exact photos" {
	for order in asc desc random evenodd; do
		rm -rf "$SPOOL" "$BATS_TEST_TMPDIR/exp"
		genlog --devices 3 --photos 2 --chunks 17 --chunk-size 700 --order "$order" \
			--interleave photo --seed 7 --expect "$BATS_TEST_TMPDIR/exp" > "$IN"
		assemble
		[ "$ASM_RC" = 0 ]
		[ "$(count photo_complete)" = 6 ]
		for f in "$BATS_TEST_TMPDIR"/exp/*; do
			cmp "$f" "$SPOOL/ready/${f##*/}.jpg"
		done
	done
}

@test "assemble: duplicate chunks are ignored and counted" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 5000
	photo 0 DEV1 p.jpg "$BATS_TEST_TMPDIR/p" 1000 0 1 1 2 0 3 4 >> "$IN"
	assemble
	cmp "$BATS_TEST_TMPDIR/p" "$(ready_image DEV1 p.jpg)"
	[ "$(jq .timings.duplicates "$SPOOL/ready/DEV1@p.jpg.json")" = 2 ]
	[ "$(count photo_complete)" = 1 ]
}

@test "assemble: chunks before their metadata are kept until it comes" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 3000
	chunk 0 DEV1 early.jpg 2 "$BATS_TEST_TMPDIR/p" 1000 >> "$IN"
	chunk 1 DEV1 early.jpg 0 "$BATS_TEST_TMPDIR/p" 1000 >> "$IN"
	chunk 2 DEV1 early.jpg 1 "$BATS_TEST_TMPDIR/p" 1000 >> "$IN"
	meta 3 DEV1 early.jpg 3000 1000 3 >> "$IN"
	assemble
	cmp "$BATS_TEST_TMPDIR/p" "$(ready_image DEV1 early.jpg)"
	[ "$(jq -r .event "$OUT" | paste -sd' ')" = "inbound inbound inbound inbound capture_started photo_complete" ]
}

@test "assemble: metadata sent again while in progress keeps the chunks, no second capture_started" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 3000
	photo 0 DEV1 r.jpg "$BATS_TEST_TMPDIR/p" 1000 0 1 >> "$IN"
	meta 5 DEV1 r.jpg 3000 1000 3 >> "$IN"
	chunk 6 DEV1 r.jpg 2 "$BATS_TEST_TMPDIR/p" 1000 >> "$IN"
	assemble
	[ "$(count capture_started)" = 1 ]
	[ "$(count photo_complete)" = 1 ]
	cmp "$BATS_TEST_TMPDIR/p" "$(ready_image DEV1 r.jpg)"
	grep -q "metadata again for a capture in progress" "$ERR"
}

@test "assemble: metadata again for a photo waiting in ready/ or work/ is ignored" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 2000
	photo 0 DEV1 w.jpg "$BATS_TEST_TMPDIR/p" 1000 >> "$IN"
	assemble
	[ "$(count photo_complete)" = 1 ]
	meta 100 DEV1 w.jpg 2000 1000 2 > "$IN"
	chunk 101 DEV1 w.jpg 0 "$BATS_TEST_TMPDIR/p" 1000 >> "$IN"
	assemble
	[ "$(jq -r .event "$OUT" | paste -sd' ')" = "inbound inbound" ]
	grep -q "metadata again for a photo in ready/: ignored" "$ERR"
	# claimed by gxp-upload: the same
	mv "$SPOOL/ready/DEV1@w.jpg.json" "$SPOOL/work/"
	assemble
	[ "$(jq -r .event "$OUT" | paste -sd' ')" = "inbound inbound" ]
	grep -q "in work/: ignored" "$ERR"
	[ "$(ready_count)" = 0 ]
}

@test "assemble: metadata again for a stored photo gets ACK_OK again and is not stored twice" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 2000
	photo 0 DEV1 s.jpg "$BATS_TEST_TMPDIR/p" 1000 >> "$IN"
	assemble
	store_photo DEV1 s.jpg
	photo 5000 DEV1 s.jpg "$BATS_TEST_TMPDIR/p" 1000 > "$IN"
	ACK_NEXT_WAKE_TIME=5:30PM assemble
	[ "$(count capture_started)" = 0 ]
	[ "$(count photo_complete)" = 0 ]
	[ "$(events publish | jq -c '[.kind,.device,.image_name,.topic,.qos,.retain,.payload]')" = '["ack_ok","DEV1","s.jpg","ESP32CAM/DEV1/ack",1,false,{"image_name":"s.jpg","ACK_OK":{"next_wake_time":"5:30PM"}}]' ]
	empty "$SPOOL/ready" "$SPOOL/partial"
}

@test "assemble: chunks sent again for a finished photo after a restart make no partial/ entry" {
	# the metadata came before the restart, the retried chunks after it
	make_jpeg "$BATS_TEST_TMPDIR/p" 2000
	photo 0 DEV1 s.jpg "$BATS_TEST_TMPDIR/p" 1000 > "$IN"
	assemble
	photo 10 DEV1 s.jpg "$BATS_TEST_TMPDIR/p" 1000 | tail -n +2 > "$IN"
	assemble	# in ready/; the replay ends before any timeout
	[ "$(count photo_complete)" = 0 ]
	[ "$(count error)" = 0 ]
	[ "$(count capture_failed)" = 0 ]
	empty "$SPOOL/partial"
	# stored: the same
	store_photo DEV1 s.jpg
	assemble
	[ "$(count error)" = 0 ]
	[ "$(count capture_failed)" = 0 ]
	empty "$SPOOL/partial" "$SPOOL/ready"
}

@test "assemble: the same name with another size is a new capture with its own capture_name" {
	make_jpeg "$BATS_TEST_TMPDIR/a" 2000
	make_jpeg "$BATS_TEST_TMPDIR/b" 2500
	photo 0 DEV1 img.jpg "$BATS_TEST_TMPDIR/a" 1000 > "$IN"
	assemble
	photo 100 DEV1 img.jpg "$BATS_TEST_TMPDIR/b" 1000 > "$IN"
	assemble
	h8=$(printf 'DEV1\0img.jpg\0%s\0%s' 2500 2025-10-04T12:34:56.000000Z | sha256sum | cut -c1-8)
	[ "$(events capture_started | jq -r .capture_name)" = "img-$h8.jpg" ]
	[ "$(events photo_complete | jq -r .entry)" = "ready/DEV1@img-$h8.jpg" ]
	cmp "$BATS_TEST_TMPDIR/a" "$(ready_image DEV1 img.jpg)"
	cmp "$BATS_TEST_TMPDIR/b" "$(ready_image DEV1 "img-$h8.jpg")"
	# and sent again, it maps to the same name
	meta 200 DEV1 img.jpg 2500 1000 3 > "$IN"
	assemble
	grep -q "in ready/: ignored" "$ERR"
}

@test "assemble: a new capture of the same name supersedes the one in progress" {
	make_jpeg "$BATS_TEST_TMPDIR/a" 3000
	make_jpeg "$BATS_TEST_TMPDIR/b" 2000
	photo 0 DEV1 img.jpg "$BATS_TEST_TMPDIR/a" 1000 0 >> "$IN"
	photo 10 DEV1 img.jpg "$BATS_TEST_TMPDIR/b" 1000 >> "$IN"
	assemble
	[ "$(events capture_failed | jq -c '[.code,.severity,.reason,.capture_name]')" = '[2200,"error","superseded by a new capture of the same name","img.jpg"]' ]
	cmp "$BATS_TEST_TMPDIR/b" "$(ready_image DEV1 img.jpg)"
}

@test "assemble: 20 devices x 3 photos interleaved, all byte-exact" {
	genlog --devices 20 --photos 3 --chunks 12 --chunk-size 512 --order random \
		--interleave round --seed 3 --expect "$BATS_TEST_TMPDIR/exp" > "$IN"
	assemble
	[ "$(count photo_complete)" = 60 ]
	[ "$(count capture_started)" = 60 ]
	for f in "$BATS_TEST_TMPDIR"/exp/*; do
		cmp "$f" "$SPOOL/ready/${f##*/}.jpg"
		[ "$(jq -r .sha256 "$SPOOL/ready/${f##*/}.json")" = "$(sha256sum < "$f" | cut -d' ' -f1)" ]
	done
	[ "$(ready_count)" = 60 ]
}

@test "assemble: a size mismatch (2202) is kept in failed/ with its reason, no ACK" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 2000
	chunks=$(photo 0 DEV1 m.jpg "$BATS_TEST_TMPDIR/p" 1000 | tail -n +2)
	meta 0 DEV1 m.jpg 2100 1000 2 > "$IN"
	echo "$chunks" >> "$IN"
	assemble
	secs=$(date -u -d "$(ts 2 | sed 's/\.[0-9]*Z$/Z/')" +%s)
	entry=failed/DEV1@m.jpg.$secs
	[ "$(events capture_failed | jq -c '[.code,.severity,.capture_name,.entry]')" = "[2202,\"warn\",\"m.jpg\",\"$entry\"]" ]
	events capture_failed | jq -r .reason | grep -q "assembled 2000 bytes, image_size says 2100"
	cmp "$BATS_TEST_TMPDIR/p" "$SPOOL/$entry/image.jpg"
	[ "$(jq -c '[.code,.failed_at]' "$SPOOL/$entry/reason.json")" = "[2202,\"$(ts 2)\"]" ]
	[ "$(jq .image_bytes "$SPOOL/$entry/meta.json")" = 2000 ]
	empty "$SPOOL/ready" "$SPOOL/partial"
	[ "$(count publish)" = 0 ]
	grep -q "warning: line 3: device DEV1 image m.jpg: size mismatch" "$ERR"
}

@test "assemble: a bad JPEG signature (2203) is kept in failed/" {
	head -c 3000 /dev/urandom > "$BATS_TEST_TMPDIR/p"
	printf '\377\330' | dd of="$BATS_TEST_TMPDIR/p" conv=notrunc status=none
	photo 0 DEV1 x.jpg "$BATS_TEST_TMPDIR/p" 1000 >> "$IN"
	assemble
	[ "$(events capture_failed | jq -c '[.code,.severity]')" = '[2203,"warn"]' ]
	entry=$(events capture_failed | jq -r .entry)
	cmp "$BATS_TEST_TMPDIR/p" "$SPOOL/$entry/image.jpg"
	[ "$(jq .code "$SPOOL/$entry/reason.json")" = 2203 ]
	empty "$SPOOL/ready"
}

@test "assemble: a device-reported error fails the capture at once" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 2000
	chunk 0 DEV1 e.jpg 0 "$BATS_TEST_TMPDIR/p" 1000 >> "$IN"
	line 1 ESP32CAM/DEV1/data '{"image_name":"e.jpg","image_size":0,"max_chunks_size":1024,"total_chunk_count":0,"error":3,"capture_timeStamp":"2025-10-04T12:00:00Z"}' >> "$IN"
	assemble
	[ "$(jq -r .event "$OUT" | paste -sd' ')" = "inbound inbound capture_started capture_failed" ]
	[ "$(events capture_failed | jq -c '[.device,.image_name,.capture_name,.code,.severity,.reason,.entry]')" = '["DEV1","e.jpg","e.jpg",1003,"error","ESP32 error 3: sensor read failed",null]' ]
	# the device_errors row's message and details, as the user's worker writes them
	[ "$(events capture_failed | jq -c '[.message,.details]')" = '["esp32_capture_error: sensor read failed",{"esp32_error_code":3,"metadata":{"image_name":"e.jpg","image_size":0,"max_chunks_size":1024,"total_chunk_count":0,"error":3,"capture_timeStamp":"2025-10-04T12:00:00Z"}}]' ]
	empty "$SPOOL/partial" "$SPOOL/ready" "$SPOOL/failed"
}

@test "assemble: a device error that is not a whole number from 1 to 999 gets code 1000, never another range" {
	i=0
	for e in -1 0.5 1000 1101 1e400 99999999999999999999 '"camera on fire"' '"\u0001x"' true \
		'"ééééééééééééééééééééééééééééééééééééééééééééééééééééééééé"' 999 1.0; do
		i=$((i + 1))
		line $i ESP32CAM/DEV$i/data "{\"image_name\":\"e.jpg\",\"image_size\":100,\"error\":$e}" >> "$IN"
	done
	# not errors: 0, false, null, "" (these time out, never sent)
	for e in 0 false null '""'; do
		i=$((i + 1))
		line $i ESP32CAM/DEV$i/data "{\"image_name\":\"e.jpg\",\"image_size\":100,\"total_chunk_count\":1,\"error\":$e}" >> "$IN"
	done
	assemble --flush-at-eof
	[ "$ASM_RC" = 0 ]
	jq -c . "$OUT" > /dev/null && iconv -f UTF-8 -t UTF-8 "$OUT" > /dev/null
	events capture_failed | jq -r '[.device,.code,.reason,.message,(.details.esp32_error_code|tojson)] | join("|")' > "$BATS_TEST_TMPDIR/got"
	diff -u - "$BATS_TEST_TMPDIR/got" <<-'EOF'
		DEV1|1000|ESP32 error -1: Unknown error (code -1)|esp32_capture_error: Unknown error (code -1)|-1
		DEV2|1000|ESP32 error 0.5: Unknown error (code 0.5)|esp32_capture_error: Unknown error (code 0.5)|0.5
		DEV3|1000|ESP32 error 1000: Unknown error (code 1000)|esp32_capture_error: Unknown error (code 1000)|1000
		DEV4|1000|ESP32 error 1101: Unknown error (code 1101)|esp32_capture_error: Unknown error (code 1101)|1101
		DEV5|1000|ESP32 error inf: Unknown error (code inf)|esp32_capture_error: Unknown error (code inf)|null
		DEV6|1000|ESP32 error 1e+20: Unknown error (code 1e+20)|esp32_capture_error: Unknown error (code 1e+20)|1e+20
		DEV7|1000|ESP32 error camera on fire: Unknown error (code camera on fire)|esp32_capture_error: Unknown error (code camera on fire)|"camera on fire"
		DEV8|1000|ESP32 error ?x: Unknown error (code ?x)|esp32_capture_error: Unknown error (code ?x)|"\u0001x"
		DEV9|1000|ESP32 error true: Unknown error (code true)|esp32_capture_error: Unknown error (code true)|true
		DEV10|1000|ESP32 error éééééééééééééééééééééééééééééé: Unknown error (code éééééééééééééééééééééééééééééé)|esp32_capture_error: Unknown error (code éééééééééééééééééééééééééééééé)|"ééééééééééééééééééééééééééééééééééééééééééééééééééééééééé"
		DEV11|1999|ESP32 error 999: Unknown error (code 999)|esp32_capture_error: Unknown error (code 999)|999
		DEV12|1001|ESP32 error 1: camera initialization failed|esp32_capture_error: camera initialization failed|1
		DEV13|2201|timeout: 1 of 1 chunks missing after 60000 ms||null
		DEV14|2201|timeout: 1 of 1 chunks missing after 60000 ms||null
		DEV15|2201|timeout: 1 of 1 chunks missing after 60000 ms||null
		DEV16|2201|timeout: 1 of 1 chunks missing after 60000 ms||null
	EOF
}

@test "assemble: lines that are not device messages pass through byte for byte" {
	cat > "$IN" <<'EOF'
{"tst":"2026-01-01T00:00:00Z","topic":"other/topic","qos":0,"retain":0,"payloadlen":2,"payload":{}}
{"event":"stored","v":1,"device":"X","topic":"ESP32CAM/X/ack","payload":{"a":1}}
{ "spaced" :  [1, 2,3] }
[1,2]

{"tst":"2026-01-01T00:00:00Z","topic":"ESP32CAM/X/data","qos":0,"retain":0,"payloadlen":7,"payload":{"foo":1}}
EOF
	assemble
	[ "$ASM_RC" = 0 ]
	cmp "$IN" "$OUT"
}

@test "assemble: ack-topic messages are consumed and only counted" {
	line 0 ESP32CAM/DEV1/ack '{"image_name":"a.jpg","missing_chunks":[1]}' > "$IN"
	assemble
	[ ! -s "$OUT" ]
	grep -q "1 messages" "$ERR"
}

@test "assemble: PUBLISH_LOG all, no-chunks, off decide the inbound events" {
	make_jpeg "$BATS_TEST_TMPDIR/p" 2000
	status_line 0 DEV1 '{"status":"Alive"}' > "$IN"
	photo 1 DEV1 p.jpg "$BATS_TEST_TMPDIR/p" 1000 >> "$IN"
	for mode in all:4 no-chunks:2 off:0; do
		rm -rf "$SPOOL"
		PUBLISH_LOG=${mode%:*} assemble
		[ "$(count inbound)" = "${mode#*:}" ]
		[ "$(count photo_complete)" = 1 ]
	done
	inb=$(PUBLISH_LOG=all; rm -rf "$SPOOL"; assemble; events inbound | sed -n 3p)
	[ "$(jq -c '[.device,.topic,.received_at,.kind,.payload]' <<<"$inb")" = "[\"DEV1\",\"ESP32CAM/DEV1/data\",\"$(ts 2)\",\"chunk\",{\"device_id\":\"DEV1\",\"image_name\":\"p.jpg\",\"chunk_id\":0,\"max_chunk_size\":1000,\"payload_bytes\":1000}]" ]
	PUBLISH_LOG=some assemble
	[ "$ASM_RC" = 100 ]
	grep -q "PUBLISH_LOG=some (environment): expected all, no-chunks or off" "$ERR"
}

@test "assemble: usage and option errors exit 100; --spool overrides GXP_SPOOL" {
	run gxp-assemble --bogus
	[ "$status" = 100 ]
	[[ $output == *"unknown option --bogus"* ]]
	[[ $output == *"usage: gxp-assemble [--check | --list] [--flush-at-eof] [--replay] [--env file]"* ]]
	[[ $output == *"gxp-assemble --help lists the options; see gxp-assemble(1)"* ]]
	run gxp-assemble extra-arg
	[ "$status" = 100 ]
	run gxp-assemble --help
	[ "$status" = 0 ]
	[[ $output == "usage: gxp-assemble"* ]]
	run gxp-assemble --env "$BATS_TEST_TMPDIR/missing.env" < /dev/null
	[ "$status" = 100 ]
	make_jpeg "$BATS_TEST_TMPDIR/p" 2000
	photo 0 DEV1 p.jpg "$BATS_TEST_TMPDIR/p" 1000 > "$IN"
	assemble --spool "$BATS_TEST_TMPDIR/other"
	[ -f "$BATS_TEST_TMPDIR/other/ready/DEV1@p.jpg.jpg" ]
	[ ! -e "$SPOOL/ready/DEV1@p.jpg.jpg" ]
	echo "GXP_SPOOL=$BATS_TEST_TMPDIR/fromenv" > "$BATS_TEST_TMPDIR/x.env"
	unset GXP_SPOOL
	assemble --env "$BATS_TEST_TMPDIR/x.env"
	[ -f "$BATS_TEST_TMPDIR/fromenv/ready/DEV1@p.jpg.jpg" ]
}

@test "assemble: tmp/ is swept at start; stored/ records past STORED_RETENTION_DAYS are pruned" {
	mkdir -p "$SPOOL/tmp/DEV1@half.jpg" "$SPOOL/stored"
	echo x > "$SPOOL/tmp/DEV1@half.jpg/image.jpg"
	echo x > "$SPOOL/tmp/DEV1@half2.jpg.jpg"
	echo '{}' > "$SPOOL/stored/DEV1@old.jpg.json"
	echo '{}' > "$SPOOL/stored/DEV1@new.jpg.json"
	touch -d '10 days ago' "$SPOOL/stored/DEV1@old.jpg.json"
	assemble
	empty "$SPOOL/tmp"
	[ ! -e "$SPOOL/stored/DEV1@old.jpg.json" ]
	[ -e "$SPOOL/stored/DEV1@new.jpg.json" ]
	grep -q "swept 2 unfinished entries" "$ERR"
	grep -q "pruned 1 stored/ records" "$ERR"
}
