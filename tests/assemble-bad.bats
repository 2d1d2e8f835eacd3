#!/usr/bin/env bats
# gxp-assemble and bad input: every kind gets an error event naming device,
# image and reason, and a log line; nothing crashes, nothing is written
# outside the spool, and the good messages around it still make photos.

load assemble-lib

setup() {
	setup_assemble
	make_jpeg "$BATS_TEST_TMPDIR/good" 2000
	# every error reported, not once a minute per device and cause
	export REFUSED_REPORT_INTERVAL_S=0
}

# good MS: a complete good photo, to show processing goes on.
good() {
	photo "$1" GOOD1 good.jpg "$BATS_TEST_TMPDIR/good" 1000
}

# errors: code, severity, device, image_name, reason, line of each error event.
errors() {
	events error | jq -c '[.code,.severity,.device,.image_name,.reason,.line]'
}

check_good() {
	[ "$ASM_RC" = 0 ]
	cmp "$BATS_TEST_TMPDIR/good" "$(ready_image GOOD1 good.jpg)"
}

@test "assemble-bad: lines that are not JSON, not UTF-8, truncated or too long" {
	{
		echo '{"tst":"2026-01-01T00:00:00Z","topic":"ESP32CAM/D1/data","payload":{"a":'
		echo 'hello world'
		printf '{"tst":"2026-01-01T00:00:00Z","topic":"ESP32CAM/D1/status","payload":{"status":"\377"}}\n'
		printf '{"tst":"2026-01-01T00:00:00Z","topic":"ESP32CAM/D1/status","payload":{"status":"%s"}}\n' "$(head -c 3000 /dev/zero | tr '\0' x)"
		good 10
		printf '{"tst":"2026-01-01T00:00:01Z","topic":"ESP32CAM/D1/data","payload":{"image_name":"t'
	} > "$IN"
	MAX_LINE_BYTES=2048 assemble
	check_good
	[ "$(errors)" = '[2101,"error",null,null,"not JSON",1]
[2101,"error",null,null,"not JSON",2]
[2101,"error",null,null,"not valid UTF-8",3]
[2101,"error",null,null,"line longer than MAX_LINE_BYTES (2048)",4]
[2101,"error",null,null,"truncated last line",8]' ]
	grep -q "error: line 1: device - image -: not JSON" "$ERR"
	grep -q "error: line 8: device - image -: truncated last line" "$ERR"
	# none of them passed through
	[ "$(jq -r .event "$OUT" | grep -c .)" = "$(lines_in "$OUT")" ]
}

@test "assemble-bad: payloads that are not JSON objects on device topics" {
	{
		line 0 ESP32CAM/D1/data '"not json"'
		line 1 ESP32CAM/D1/data '42'
		line 2 ESP32CAM/D1/status '[1,2]'
		echo '{"tst":"2026-01-01T00:00:00.003Z","topic":"ESP32CAM/D1/data","qos":0,"retain":0,"payloadlen":3,"payload_encoding":"base64","payload":"/9j/"}'
		echo '{"tst":"2026-01-01T00:00:00.004Z","topic":"ESP32CAM/D1/data","qos":0,"retain":0,"payloadlen":5,"payload_encoding":"utf8","payload":"{bad}"}'
		good 10
	} > "$IN"
	assemble
	check_good
	[ "$(errors)" = '[2101,"error","D1",null,"data: payload is not a JSON object",1]
[2101,"error","D1",null,"data: payload is not JSON",2]
[2101,"error","D1",null,"status: payload is not JSON",3]
[2101,"error","D1",null,"data: payload is not JSON",4]
[2101,"error","D1",null,"data: payload is not a JSON object",5]' ]
	[ "$(events error | sed -n 1p | jq -r .topic)" = ESP32CAM/D1/data ]
}

@test "assemble-bad: wrong types and out-of-range numbers in metadata" {
	{
		line 0 ESP32CAM/D1/data '{"image_name":"a.jpg","image_size":"big","max_chunks_size":1024,"total_chunk_count":3}'
		line 1 ESP32CAM/D1/data '{"image_name":"b.jpg","image_size":100,"max_chunks_size":1024,"total_chunk_count":-1}'
		line 2 ESP32CAM/D1/data '{"image_name":"c.jpg","image_size":0,"max_chunks_size":1024,"total_chunk_count":3}'
		line 3 ESP32CAM/D1/data '{"image_name":"d.jpg","image_size":99999999999,"max_chunks_size":1024,"total_chunk_count":3}'
		line 4 ESP32CAM/D1/data '{"image_name":"e.jpg","image_size":100,"max_chunks_size":1024,"total_chunk_count":9000}'
		line 5 ESP32CAM/D1/data '{"image_name":"f.jpg","image_size":100,"max_chunks_size":100000,"total_chunk_count":3}'
		line 6 ESP32CAM/D1/data '{"image_name":"g.jpg","image_size":100.5,"max_chunks_size":1024,"total_chunk_count":3}'
		line 7 ESP32CAM/D1/data '{"image_name":"h.jpg","image_size":100,"max_chunks_size":null,"total_chunk_count":3}'
		line 8 ESP32CAM/D1/data '{"image_name":42,"image_size":100,"max_chunks_size":1024,"total_chunk_count":3}'
		good 10
	} > "$IN"
	assemble
	check_good
	[ "$(errors)" = '[2101,"error","D1","a.jpg","metadata: image_size must be a positive whole number",1]
[2101,"error","D1","b.jpg","metadata: total_chunk_count must be a positive whole number",2]
[2101,"error","D1","c.jpg","metadata: image_size must be a positive whole number",3]
[2200,"error","D1","d.jpg","refused: image_size 99999999999 exceeds MAX_IMAGE_BYTES (4194304)",4]
[2200,"error","D1","e.jpg","refused: total_chunk_count 9000 exceeds MAX_CHUNKS (8192)",5]
[2200,"error","D1","f.jpg","refused: max_chunks_size 100000 exceeds MAX_CHUNK_BYTES (65536)",6]
[2101,"error","D1","g.jpg","metadata: image_size must be a positive whole number",7]
[2101,"error","D1","h.jpg","metadata: max_chunks_size must be a positive whole number",8]
[2101,"error","D1",null,"metadata: missing or invalid image_name",9]' ]
	grep -q "error: line 4: device D1 image d.jpg: refused: image_size 99999999999 exceeds MAX_IMAGE_BYTES" "$ERR"
	[ "$(count capture_started)" = 1 ]
	[ -z "$(in_progress)" ]
}

@test "assemble-bad: wrong, negative and huge chunk_id; chunk_id beyond total_chunk_count" {
	{
		meta 0 D1 p.jpg 2000 1000 2
		line 1 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":"1","payload":"/9g="}'
		line 2 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":-1,"payload":"/9g="}'
		line 3 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":1.5,"payload":"/9g="}'
		line 4 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":1e30,"payload":"/9g="}'
		line 5 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":8192,"payload":"/9g="}'
		line 6 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":2,"payload":"/9g="}'
		line 7 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":null,"payload":"/9g="}'
		good 10
	} > "$IN"
	assemble
	check_good
	[ "$(errors)" = '[2101,"error","D1","p.jpg","chunk: chunk_id must be a whole number from 0",2]
[2101,"error","D1","p.jpg","chunk: chunk_id must be a whole number from 0",3]
[2101,"error","D1","p.jpg","chunk: chunk_id must be a whole number from 0",4]
[2200,"error","D1","p.jpg","refused: chunk_id 9223372036854775807 is beyond MAX_CHUNKS (8192)",5]
[2200,"error","D1","p.jpg","refused: chunk_id 8192 is beyond MAX_CHUNKS (8192)",6]
[2200,"error","D1","p.jpg","refused: chunk_id 2 is beyond total_chunk_count 2",7]
[2101,"error","D1","p.jpg","chunk: chunk_id must be a whole number from 0",8]' ]
	# nothing of it reached partial/
	[ "$(in_progress | jq -c '[.image_name,.chunks]')" = '["p.jpg",0]' ]
}

@test "assemble-bad: chunks without payload (2102), bad base64 (2103), too large (2200)" {
	{
		meta 0 D1 p.jpg 2000 4 500
		line 1 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":0}'
		line 2 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":0,"payload":""}'
		line 3 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":0,"payload":null}'
		line 4 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":0,"payload":"@@@="}'
		line 5 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":0,"payload":12}'
		line 6 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":0,"payload":"/9g"}'
		line 7 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":0,"max_chunk_size":2,"payload":"/9j/"}'
		line 8 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":0,"payload":"/9j/4AAQ"}'
		line 9 ESP32CAM/D1/data "{\"image_name\":\"p.jpg\",\"chunk_id\":1,\"max_chunk_size\":100000,\"payload\":\"$(head -c 70000 /dev/zero | base64 -w0)\"}"
		line 10 ESP32CAM/D1/data '{"image_name":"p.jpg","chunk_id":0,"max_chunk_size":0,"payload":"/9g="}'
		good 20
	} > "$IN"
	MAX_LINE_BYTES=200000 assemble
	check_good
	[ "$(errors)" = '[2102,"warn","D1","p.jpg","chunk 0: no payload",2]
[2102,"warn","D1","p.jpg","chunk 0: no payload",3]
[2102,"warn","D1","p.jpg","chunk 0: no payload",4]
[2103,"error","D1","p.jpg","chunk 0: payload is not valid base64",5]
[2103,"error","D1","p.jpg","chunk 0: payload is not valid base64",6]
[2103,"error","D1","p.jpg","chunk 0: payload is not valid base64",7]
[2200,"error","D1","p.jpg","refused: chunk 0 holds 3 bytes, more than its max_chunk_size 2",8]
[2200,"error","D1","p.jpg","refused: chunk 0 holds 6 bytes, more than max_chunks_size 4",9]
[2200,"error","D1","p.jpg","refused: chunk 1 is larger than MAX_CHUNK_BYTES (65536)",10]
[2101,"error","D1","p.jpg","chunk 0: max_chunk_size must be a positive whole number",11]' ]
	grep -q "warning: line 2: device D1 image p.jpg: chunk 0: no payload" "$ERR"
	# the inbound event of a chunk that did not decode says so
	[ "$(events inbound | sed -n 5p | jq -c .payload)" = '{"image_name":"p.jpg","chunk_id":0,"payload_bytes":null}' ]
}

@test "assemble-bad: image names with / .. NUL or control characters write nothing anywhere" {
	cd "$BATS_TEST_TMPDIR"
	{
		line 0 ESP32CAM/D1/data '{"image_name":"../../evil.jpg","image_size":4,"max_chunks_size":2,"total_chunk_count":2}'
		line 1 ESP32CAM/D1/data '{"image_name":"../../evil.jpg","chunk_id":0,"payload":"/9g="}'
		line 2 ESP32CAM/D1/data '{"image_name":"a/b.jpg","chunk_id":0,"payload":"/9g="}'
		line 3 ESP32CAM/D1/data '{"image_name":"..","chunk_id":0,"payload":"/9g="}'
		line 4 ESP32CAM/D1/data '{"image_name":".hidden","image_size":4,"max_chunks_size":2,"total_chunk_count":2}'
		line 5 ESP32CAM/D1/data '{"image_name":"x\u0000.jpg","chunk_id":0,"payload":"/9g="}'
		line 6 ESP32CAM/D1/data '{"image_name":"x\u0000/../../evil.jpg","image_size":4,"max_chunks_size":2,"total_chunk_count":2}'
		line 7 ESP32CAM/D1/data '{"image_name":"red\u001b[31m.jpg","chunk_id":0,"payload":"/9g="}'
		line 8 ESP32CAM/D1/data "{\"image_name\":\"$(head -c 129 /dev/zero | tr '\0' a)\",\"chunk_id\":0,\"payload\":\"/9g=\"}"
		line 9 ESP32CAM/D1/data '{"image_name":"","chunk_id":0,"payload":"/9g="}'
		good 10
	} > "$IN"
	assemble
	check_good
	[ "$(events error | jq -r '[.code,.line,.reason] | @tsv' | cut -f1,2 | paste -sd' ')" = "$(printf '2101\t%d ' 1 2 3 4 5 6 7 8 9 10 | sed 's/ $//')" ]
	events error | jq -r .reason | sort -u | grep -qx "chunk: missing or invalid image_name"
	events error | jq -r .reason | sort -u | grep -qx "metadata: missing or invalid image_name"
	# nothing outside the spool, nothing in it but the good photo
	[ -z "$(find "$BATS_TEST_TMPDIR" -name 'evil*')" ]
	[ "$(ls "$SPOOL/ready" | paste -sd' ')" = "GOOD1@good.jpg.jpg GOOD1@good.jpg.json" ]
	empty "$SPOOL/partial" "$SPOOL/tmp" "$SPOOL/failed"
	# no control character reaches the log
	! grep -q $'\033' "$ERR" || false
}

@test "assemble-bad: device ids that are not valid in the topic" {
	{
		line 0 'ESP32CAM/bad.id/data' '{"image_name":"a.jpg","chunk_id":0,"payload":"/9g="}'
		line 1 'ESP32CAM/a/b/data' '{"image_name":"a.jpg","chunk_id":0,"payload":"/9g="}'
		line 2 "ESP32CAM/$(head -c 65 /dev/zero | tr '\0' A)/status" '{"status":"Alive"}'
		line 3 'ESP32CAM/x\u0000y/data' '{"image_name":"a.jpg","chunk_id":0,"payload":"/9g="}'
		good 10
	} > "$IN"
	assemble
	check_good
	[ "$(errors)" = '[2101,"error",null,null,"invalid device id in topic",1]
[2101,"error",null,null,"invalid device id in topic",2]
[2101,"error",null,null,"invalid device id in topic",3]
[2101,"error",null,null,"topic is not a valid string",4]' ]
	[ "$(events error | sed -n 2p | jq -r .topic)" = ESP32CAM/a/b/data ]
}

@test "assemble-bad: MAX_ASSEMBLIES and MAX_ASSEMBLIES_PER_DEVICE refuse new captures" {
	{
		for i in 1 2 3; do meta "$i" D1 "p$i.jpg" 2000 1000 2; done
		meta 4 D2 q.jpg 2000 1000 2
		line 5 ESP32CAM/D3/data '{"image_name":"r.jpg","chunk_id":0,"payload":"/9g="}'
	} > "$IN"
	MAX_ASSEMBLIES_PER_DEVICE=2 MAX_ASSEMBLIES=3 assemble
	[ "$ASM_RC" = 0 ]
	[ "$(errors)" = '[2200,"error","D1","p3.jpg","refused: 2 captures in flight for this device (MAX_ASSEMBLIES_PER_DEVICE)",3]
[2200,"error","D3","r.jpg","refused: 3 captures in flight (MAX_ASSEMBLIES)",5]' ]
	[ "$(count capture_started)" = 3 ]
	[ "$(in_progress | jq -r '.device + "@" + .image_name' | sort | paste -sd' ')" = \
		"D1@p1.jpg D1@p2.jpg D2@q.jpg" ]
}

@test "assemble-bad: a capture growing past MAX_IMAGE_BYTES is refused chunk by chunk" {
	{
		for i in 0 1 2 3; do
			line "$i" ESP32CAM/D1/data "{\"image_name\":\"big.jpg\",\"chunk_id\":$i,\"payload\":\"$(head -c 1000 /dev/zero | base64 -w0)\"}"
		done
	} > "$IN"
	MAX_IMAGE_BYTES=2500 assemble
	[ "$(errors | jq -c '.[0:2]' | uniq -c | awk '{print $1, $2}')" = '2 [2200,"error"]' ]
	events error | jq -r .reason | grep -q "refused: chunk 2 would make the capture larger than MAX_IMAGE_BYTES (2500)"
	[ "$(in_progress | jq -c '[.image_name,.chunks,.bytes]')" = '["big.jpg",2,2000]' ]
}
