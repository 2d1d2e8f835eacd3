#!/usr/bin/env bats
# gxp-pub against a real mosquitto: publishing, passthrough, bad lines,
# waiting for acknowledgements, one-off messages.

load helpers

setup() {
	start_broker plain
	broker_env
	OUT=$BATS_TEST_TMPDIR/out
	ERR=$BATS_TEST_TMPDIR/err
	GOT=$BATS_TEST_TMPDIR/got
	GOTERR=$BATS_TEST_TMPDIR/goterr
}

teardown() {
	[ -n "${PUB_PID:-}" ] && kill "$PUB_PID" 2>/dev/null
	[ -n "${BROKER_PID:-}" ] && kill -CONT "$BROKER_PID" 2>/dev/null
	teardown_broker
}

@test "pub: round trip gxp-pub -> broker -> gxp-sub keeps topic, payload, qos and retain" {
	start_sub "$GOT" "$GOTERR" -t 'ESP32CAM/#'
	printf '%s\n' \
		'{"topic":"ESP32CAM/AA01/ack","payload":{"image_name":"a.jpg","ACK_OK":{"next_wake_time":"5:30PM"}}}' \
		'{"topic":"ESP32CAM/AA01/ack","payload":"plain text","qos":0}' \
		'{"topic":"ESP32CAM/AA01/ack","payload":"/9j/2w==","payload_encoding":"base64","qos":2}' \
		| gxp-pub > "$OUT" 2> "$ERR"
	wait_until 10 has_lines "$GOT" 3
	[ ! -s "$OUT" ]
	[ "$(sed -n 1p "$GOT" | jq -c .payload)" = '{"image_name":"a.jpg","ACK_OK":{"next_wake_time":"5:30PM"}}' ]
	[ "$(sed -n 1p "$GOT" | jq -r .topic)" = ESP32CAM/AA01/ack ]
	[ "$(sed -n 2p "$GOT" | jq -c '[.qos, .payload]')" = '[0,"plain text"]' ]
	[ "$(sed -n 3p "$GOT" | jq -r .payload_encoding)" = base64 ]
	[ "$(sed -n 3p "$GOT" | jq -r .payload)" = "/9j/2w==" ]
	# a retained message reaches a subscriber that comes later
	echo '{"topic":"ESP32CAM/AA01/status","payload":{"r":1},"retain":true}' | gxp-pub
	run mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t ESP32CAM/AA01/status -C 1 -W 5 -F '%r %p'
	[ "$output" = '1 {"r":1}' ]
}

@test "pub: publishes the seed's ACK_OK and NACK messages byte for byte" {
	start_sub "$GOT" "$GOTERR" -t 'ESP32CAM/+/ack'
	ack='{"image_name":"image_123.jpg","ACK_OK":{"next_wake_time":"5:30PM"}}'
	nack='{"image_name":"image_123.jpg","missing_chunks":[5,12,23]}'
	printf '{"event":"publish","v":1,"kind":"ack_ok","topic":"ESP32CAM/AABBCCDDEEFF/ack","qos":1,"retain":false,"payload":%s}\n' "$ack" > "$BATS_TEST_TMPDIR/in"
	printf '{"event":"publish","v":1,"kind":"nack","topic":"ESP32CAM/AABBCCDDEEFF/ack","qos":1,"retain":false,"payload":%s}\n' "$nack" >> "$BATS_TEST_TMPDIR/in"
	gxp-pub < "$BATS_TEST_TMPDIR/in"
	wait_until 10 has_lines "$GOT" 2
	grep -qF "\"payload\":$ack}" "$GOT"
	grep -qF "\"payload\":$nack}" "$GOT"
}

@test "pub: lines that are not publish requests pass through unchanged" {
	start_sub "$GOT" "$GOTERR" -t '#'
	cat > "$BATS_TEST_TMPDIR/in" <<-'EOT'
	{"tst":"2026-11-27T05:04:21.627829Z","topic":"ESP32CAM/A1/data","qos":1,"retain":0,"payloadlen":2,"payload":{}}
	{"event":"photo_complete","v":1,"topic":"x/y","payload":{"not":"a request"}}
	{"event":"stored",   "v":1, "device":"A1"}
	[1,2,3]
	"a string"
	{"topic":"t/1","payload":{"a":1}}
	EOT
	gxp-pub < "$BATS_TEST_TMPDIR/in" > "$OUT" 2> "$ERR"
	head -5 "$BATS_TEST_TMPDIR/in" | diff -u - "$OUT"
	wait_until 10 has_lines "$GOT" 1
	sleep 0.3
	[ "$(lines_in "$GOT")" = 1 ]
	[ "$(jq -r .topic "$GOT")" = t/1 ]
	[ ! -s "$ERR" ] || ! grep -q error "$ERR"
}

@test "pub: a malformed line gets one message with its line number; the rest go on" {
	start_sub "$GOT" "$GOTERR" -t 'ok/#'
	{
		echo '{"topic":"ok/1","payload":{"n":1}}'
		echo 'not json at all'
		echo '{"topic":"ok/+","payload":{}}'
		echo '{"topic":"ok/3","payload":{},"qos":3}'
		echo '{"topic":"ok/4","payload":{},"retain":"yes"}'
		echo '{"topic":"ok/5","payload":42}'
		echo '{"topic":17,"payload":{}}'
		echo '{"topic":"ok/8","payload":"!!!","payload_encoding":"base64"}'
		printf '{"topic":"ok/9","payload":"%s"}\n' "$(head -c 300000 /dev/zero | tr '\0' a)"
		echo '{"topic":"ok/10","payload":{"n":10}}'
		printf '{"topic":"ok/11","payl'
	} | gxp-pub > "$OUT" 2> "$ERR"
	[ ! -s "$OUT" ]
	grep -qx 'gxp-pub: error: line 2: not JSON; skipped' "$ERR"
	grep -qx 'gxp-pub: error: line 3: "topic" must be a topic name without wildcards; skipped' "$ERR"
	grep -qx 'gxp-pub: error: line 4: "qos" must be 0, 1 or 2; skipped' "$ERR"
	grep -qx 'gxp-pub: error: line 5: "retain" must be true or false; skipped' "$ERR"
	grep -qx 'gxp-pub: error: line 6: "payload" must be an object, an array or a string; skipped' "$ERR"
	grep -qx 'gxp-pub: error: line 7: "topic" must be a topic name without wildcards; skipped' "$ERR"
	grep -qx 'gxp-pub: error: line 8: "payload" is not valid base64; skipped' "$ERR"
	grep -qx 'gxp-pub: error: line 9: longer than MAX_LINE_BYTES; skipped' "$ERR"
	grep -qx 'gxp-pub: error: line 11: truncated line; skipped' "$ERR"
	[ "$(grep -c error "$ERR")" = 9 ]
	wait_until 10 has_lines "$GOT" 2
	[ "$(jq -r .topic "$GOT" | tr '\n' ' ')" = "ok/1 ok/10 " ]
}

@test "pub: at EOF it waits for every outstanding QoS 1 acknowledgement" {
	start_sub "$GOT" "$GOTERR" -t 'd/#'
	for i in $(seq 1 500); do echo "{\"topic\":\"d/x\",\"payload\":{\"i\":$i}}"; done > "$BATS_TEST_TMPDIR/in"
	# the broker stops answering; the input comes and ends; gxp-pub must wait
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	gxp-pub < "$BATS_TEST_TMPDIR/fifo" > "$OUT" 2> "$ERR" &
	PUB_PID=$!
	exec 5> "$BATS_TEST_TMPDIR/fifo"
	wait_until 10 file_has "$ERR" "connected successfully"
	kill -STOP "$BROKER_PID"
	cat "$BATS_TEST_TMPDIR/in" >&5
	exec 5>&-
	sleep 1
	kill -0 "$PUB_PID"	# still waiting: acknowledgements are missing
	kill -CONT "$BROKER_PID"
	rc=0; wait "$PUB_PID" || rc=$?
	PUB_PID=
	[ "$rc" = 0 ]
	wait_until 10 has_lines "$GOT" 500
	[ "$(jq '.payload.i' "$GOT" | sort -n | uniq | wc -l)" = 500 ]
}

@test "pub: gives up after PUB_DRAIN_TIMEOUT_MS with status 111 and says how many" {
	echo '{"topic":"d/x","payload":{"i":1}}' > "$BATS_TEST_TMPDIR/in"
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	PUB_DRAIN_TIMEOUT_MS=1500 gxp-pub < "$BATS_TEST_TMPDIR/fifo" > "$OUT" 2> "$ERR" &
	PUB_PID=$!
	exec 5> "$BATS_TEST_TMPDIR/fifo"
	wait_until 10 file_has "$ERR" "connected successfully"
	kill -STOP "$BROKER_PID"
	cat "$BATS_TEST_TMPDIR/in" >&5
	exec 5>&-
	rc=0; wait "$PUB_PID" || rc=$?
	PUB_PID=
	[ "$rc" = 111 ]
	grep -q "1 messages were not acknowledged within PUB_DRAIN_TIMEOUT_MS" "$ERR"
}

@test "pub: messages published while the broker restarts are delivered" {
	start_sub "$GOT" "$GOTERR" -c -i gxp-test-pubsub -t 'r/#'
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	MQTT_RECONNECT_MAX_S=1 gxp-pub < "$BATS_TEST_TMPDIR/fifo" > "$OUT" 2> "$ERR" &
	PUB_PID=$!
	exec 5> "$BATS_TEST_TMPDIR/fifo"
	for i in $(seq 1 50); do echo "{\"topic\":\"r/x\",\"payload\":{\"i\":$i}}" >&5; done
	wait_until 10 has_lines "$GOT" 50
	restart_broker
	for i in $(seq 51 100); do echo "{\"topic\":\"r/x\",\"payload\":{\"i\":$i}}" >&5; done
	exec 5>&-
	rc=0; wait "$PUB_PID" || rc=$?
	PUB_PID=
	[ "$rc" = 0 ]
	wait_until 20 has_lines "$GOT" 100
	[ "$(jq '.payload.i' "$GOT" | sort -n | uniq | wc -l)" = 100 ]
	grep -q "reconnected" "$ERR"
}

@test "pub: -t -m publishes one message, like mosquitto_pub" {
	start_sub "$GOT" "$GOTERR" -t 'one/#'
	run gxp-pub -t one/off -m '{"image_name":"x.jpg","missing_chunks":[1]}'
	[ "$status" = 0 ]
	gxp-pub -q 0 -t one/q0 -m 'text'
	wait_until 10 has_lines "$GOT" 2
	[ "$(sed -n 1p "$GOT" | jq -c '[.topic, .qos, .payload]')" = '["one/off",1,{"image_name":"x.jpg","missing_chunks":[1]}]' ]
	[ "$(sed -n 2p "$GOT" | jq -c '[.topic, .qos, .payload]')" = '["one/q0",0,"text"]' ]
}

@test "pub: usage errors exit 100 and print the synopsis" {
	run gxp-pub -t only-topic
	[ "$status" = 100 ]
	[[ $output == *"usage: gxp-pub"* ]]
	run gxp-pub -q 1
	[ "$status" = 100 ]
	run gxp-pub -q 7 -t a -m b
	[ "$status" = 100 ]
	run gxp-pub -t 'a/#' -m b
	[ "$status" = 100 ]
	[[ $output == *"a/#: not a topic name one can publish to"* ]]
	run gxp-pub --help
	[ "$status" = 0 ]
	[[ ${lines[0]} == "usage: gxp-pub [--check] [--env file] [-h host] [-i id] [-p port]" ]]
}

@test "pub: one-off with no broker fails at once with 111, like mosquitto_pub" {
	stop_broker
	# no retrying until PUB_DRAIN_TIMEOUT_MS: timeout(1) would end it with 124
	PUB_DRAIN_TIMEOUT_MS=600000 run timeout 20 gxp-pub -t a/b -m x
	[ "$status" = 111 ]
	[[ $output == *"error: cannot reach 127.0.0.1:$BROKER_PORT: Connection refused"* ]]
	[[ $output != *"retrying"* ]]
}
