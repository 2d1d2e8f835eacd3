#!/usr/bin/env bats
# gxp-sub against a real mosquitto: the envelope, payload kinds, TLS, login,
# broker restarts, slow readers and shutdown.

load helpers

setup() {
	start_broker plain
	broker_env
	OUT=$BATS_TEST_TMPDIR/out
	ERR=$BATS_TEST_TMPDIR/err
}

teardown() {
	# a gxp-sub whose wall clock stands still may never finish its drain
	[ -n "${FROZEN:-}" ] && kill -KILL "$SUB_PID" 2>/dev/null
	teardown_broker
}

@test "sub: the envelope of mosquitto_sub -F %J, field by field, tst in UTC" {
	start_sub "$OUT" "$ERR" -t 'ESP32CAM/#'
	before=$(date -u +%s)
	msg='{"device_id":"AABBCCDDEEFF","status":"Alive","pendingImg":3}'
	mpub -q 1 -t ESP32CAM/AABBCCDDEEFF/status -m "$msg"
	wait_until 10 has_lines "$OUT" 1
	after=$(date -u +%s)
	line=$(head -1 "$OUT")
	# exactly these keys, in the order mosquitto_sub writes them
	[ "$(jq -c 'keys_unsorted' <<<"$line")" = '["tst","topic","qos","retain","payloadlen","mid","payload"]' ]
	[ "$(jq -r .topic <<<"$line")" = ESP32CAM/AABBCCDDEEFF/status ]
	[ "$(jq -r .qos <<<"$line")" = 1 ]
	[ "$(jq -r .retain <<<"$line")" = 0 ]
	[ "$(jq -r .payloadlen <<<"$line")" = "${#msg}" ]
	[ "$(jq -c .payload <<<"$line")" = '{"device_id":"AABBCCDDEEFF","status":"Alive","pendingImg":3}' ]
	tst=$(jq -r .tst <<<"$line")
	[[ $tst =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$ ]]
	t=$(date -u -d "${tst%.*}Z" +%s)
	[ "$t" -ge "$before" ] && [ "$t" -le "$after" ]
	stop_pid "$SUB_PID"
	[ "$STOP_RC" = 0 ]
}

@test "sub: QoS 0 and retained messages say so; no mid without QoS" {
	mpub -r -q 0 -t ESP32CAM/X1/status -m '{"status":"Alive"}'
	start_sub "$OUT" "$ERR" -t 'ESP32CAM/#'
	wait_until 10 has_lines "$OUT" 1
	line=$(head -1 "$OUT")
	[ "$(jq -r .retain <<<"$line")" = 1 ]
	[ "$(jq -r .qos <<<"$line")" = 0 ]
	[ "$(jq 'has("mid")' <<<"$line")" = false ]
}

@test "sub: JSON payloads are kept byte for byte (big numbers, unicode), pretty ones on one line" {
	start_sub "$OUT" "$ERR" -t 't/#'
	mpub -q 1 -t t/a -m '{"n":12345678901234567890,"f":1.10,"s":"caf\u00e9 é"}'
	mpub -q 1 -t t/b -m $'{\n  "a": [1, 2],\n  "b": "x y"\n}'
	mpub -q 1 -t t/c -m '42'
	wait_until 10 has_lines "$OUT" 3
	grep -qF '"payload":{"n":12345678901234567890,"f":1.10,"s":"caf\u00e9 é"}}' "$OUT"
	grep -qF '"topic":"t/b","qos":1,"retain":0,"payloadlen":31,"mid":2,"payload":{"a":[1,2],"b":"x y"}}' "$OUT"
	[ "$(sed -n 3p "$OUT" | jq -c .payload)" = 42 ]
	# every line is one JSON object
	jq -e . "$OUT" > /dev/null
	[ "$(lines_in "$OUT")" = 3 ]
}

@test "sub: non-JSON text is kept as a string marked utf8" {
	start_sub "$OUT" "$ERR" -t 't/#'
	mpub -q 1 -t t/a -m 'hello "world"'
	mpub -q 1 -t t/b -m '{"broken": '
	mpub -q 1 -t t/c -n
	wait_until 10 has_lines "$OUT" 3
	[ "$(sed -n 1p "$OUT" | jq -r .payload_encoding)" = utf8 ]
	[ "$(sed -n 1p "$OUT" | jq -r .payload)" = 'hello "world"' ]
	[ "$(sed -n 2p "$OUT" | jq -r .payload)" = '{"broken": ' ]
	[ "$(sed -n 3p "$OUT" | jq -c '[.payloadlen, .payload, .payload_encoding]')" = '[0,"","utf8"]' ]
}

@test "sub: binary payloads are kept losslessly in base64" {
	start_sub "$OUT" "$ERR" -t 't/#'
	head -c 3000 /dev/urandom > "$BATS_TEST_TMPDIR/bin"
	printf '\xff\xd8\x00\x01' > "$BATS_TEST_TMPDIR/nul"
	mpub -q 1 -t t/bin -f "$BATS_TEST_TMPDIR/bin"
	mpub -q 1 -t t/nul -f "$BATS_TEST_TMPDIR/nul"
	wait_until 10 has_lines "$OUT" 2
	[ "$(sed -n 1p "$OUT" | jq -r .payload_encoding)" = base64 ]
	sed -n 1p "$OUT" | jq -r .payload | base64 -d | cmp - "$BATS_TEST_TMPDIR/bin"
	sed -n 2p "$OUT" | jq -r .payload | base64 -d | cmp - "$BATS_TEST_TMPDIR/nul"
	[ "$(sed -n 2p "$OUT" | jq -r .payloadlen)" = 4 ]
}

@test "sub: prints the seed's banner and subscribes to the three topic patterns" {
	start_sub "$OUT" "$ERR"
	grep -qF "MQTT Broker: 127.0.0.1:$BROKER_PORT (TLS: False)" "$ERR"
	grep -qF "MQTT connected successfully" "$ERR"
	grep -qF -- "- ESP32CAM/+/status" "$ERR"
	grep -qF -- "- ESP32CAM/+/data" "$ERR"
	grep -qF -- "- ESP32CAM/+/ack" "$ERR"
	mpub -q 1 -t ESP32CAM/A1/data -m '{"a":1}'
	mpub -q 1 -t ESP32CAM/A1/ack -m '{"b":1}'
	mpub -q 1 -t other/topic -m '{"c":1}'
	mpub -q 1 -t ESP32CAM/A1/status -m '{"d":1}'
	wait_until 10 has_lines "$OUT" 3
	sleep 0.3
	[ "$(jq -r .topic "$OUT" | sort | tr '\n' ' ')" = "ESP32CAM/A1/ack ESP32CAM/A1/data ESP32CAM/A1/status " ]
}

@test "sub: TOPIC_PATTERN_* from a .env file; the environment wins over it; -t wins over both" {
	cat > "$BATS_TEST_TMPDIR/env" <<-EOT
	# a comment
	export TOPIC_PATTERN_DATA="fleet/+/data"   
	TOPIC_PATTERN_STATUS='fleet/+/status' # trailing comment
	TOPIC_PATTERN_ACK=fleet/+/ack
	EOT
	TOPIC_PATTERN_ACK=env/+/ack start_sub "$OUT" "$ERR" --env "$BATS_TEST_TMPDIR/env"
	grep -qF -- "- fleet/+/data" "$ERR"
	grep -qF -- "- fleet/+/status" "$ERR"
	grep -qF -- "- env/+/ack" "$ERR"
	kill "$SUB_PID"; wait "$SUB_PID" || true
	start_sub "$OUT" "$ERR" --env "$BATS_TEST_TMPDIR/env" -t only/this
	grep -qF -- "- only/this" "$ERR"
	! grep -qF -- "fleet/" "$ERR" || false
}

@test "sub: SIGTERM flushes and exits 0" {
	start_sub "$OUT" "$ERR" -t 't/#'
	for i in $(seq 1 200); do echo "{\"i\":$i}"; done | mpub -q 1 -t t/x -l
	wait_until 10 has_lines "$OUT" 200
	stop_pid "$SUB_PID"
	[ "$STOP_RC" = 0 ]
	[ "$(jq -c '.payload.i' "$OUT" | sort -n | uniq | wc -l)" = 200 ]
}

@test "sub: a closed stdout ends it cleanly with status 0" {
	( gxp-sub -t 't/#' 2> "$ERR"; echo "rc=$?" > "$BATS_TEST_TMPDIR/rc" ) | head -n 1 > "$OUT" &
	wait_until 10 file_has "$ERR" "Subscribed to topics"
	for i in 1 2 3 4 5; do mpub -q 1 -t t/x -m "{\"i\":$i}"; sleep 0.1; done
	wait_until 10 file_has "$BATS_TEST_TMPDIR/rc" "rc="
	[ "$(cat "$BATS_TEST_TMPDIR/rc")" = rc=0 ]
	[ "$(jq -c .payload "$OUT")" = '{"i":1}' ]
	! grep -q error "$ERR" || false
}

# bats test_tags=slow
@test "sub: a slow reader does not lose the broker; a full buffer drops and says so" {
	# the reader sleeps while 2 MB arrive into a 64 KiB buffer
	mkfifo "$BATS_TEST_TMPDIR/fifo"
	SUB_BUFFER_BYTES=65536 MQTT_KEEPALIVE=5 gxp-sub -t 't/#' > "$BATS_TEST_TMPDIR/fifo" 2> "$ERR" &
	SUB_PID=$!
	exec 4< "$BATS_TEST_TMPDIR/fifo"	# opened, but not read yet
	wait_until 10 file_has "$ERR" "Subscribed to topics"
	head -c 1000 /dev/zero | tr '\0' x > "$BATS_TEST_TMPDIR/kb"
	for i in $(seq 1 2000); do echo "\"$i $(cat "$BATS_TEST_TMPDIR/kb")\""; done > "$BATS_TEST_TMPDIR/msgs"
	mpub -q 1 -t t/x -l < "$BATS_TEST_TMPDIR/msgs"
	wait_until 20 file_has "$ERR" "output buffer full"
	sleep 8	# longer than the keepalive: the connection must stay up
	mpub -q 1 -t t/x -m '"after the stall"'
	cat <&4 > "$OUT" &
	wait_until 20 file_has "$OUT" "after the stall"
	exec 4<&-
	! grep -q "lost the connection" "$ERR" || false
	kill -TERM "$SUB_PID"; wait "$SUB_PID" || true
	grep -q "messages were dropped while the output buffer was full" "$ERR"
	n=$(lines_in "$OUT")
	[ "$n" -gt 10 ] && [ "$n" -lt 2001 ]
}

@test "sub: broker restart mid-stream with a persistent session loses no QoS 1 message" {
	start_sub "$OUT" "$ERR" -c -i gxp-test-sub -t 't/#'
	for i in $(seq 1 100); do echo "{\"i\":$i}"; done | mpub -q 1 -t t/x -l
	wait_until 10 has_lines "$OUT" 100
	restart_broker
	# published while gxp-sub is still away: the broker keeps them for its session
	for i in $(seq 101 200); do echo "{\"i\":$i}"; done | mpub -q 1 -t t/x -l
	wait_until 30 file_has "$ERR" "reconnected"
	for i in $(seq 201 300); do echo "{\"i\":$i}"; done | mpub -q 1 -t t/x -l
	wait_until 20 has_lines "$OUT" 300
	grep -q "lost the connection" "$ERR"
	[ "$(jq '.payload.i' "$OUT" | sort -n | uniq | wc -l)" = 300 ]
	[ "$(jq '.payload.i' "$OUT" | sort -n | uniq | tail -1)" = 300 ]
}

@test "sub: a persistent session needs a client id" {
	run gxp-sub -c -t t/x
	[ "$status" = 100 ]
	[[ $output == *"persistent session needs a client id"* ]]
}

@test "sub: usage errors exit 100 before any I/O; --help exits 0" {
	run gxp-sub -Z
	[ "$status" = 100 ]
	[[ $output == *"usage: gxp-sub"* ]]
	run gxp-sub extra-arg
	[ "$status" = 100 ]
	run gxp-sub --help
	[ "$status" = 0 ]
	[[ $output == "usage: gxp-sub"* ]]
	run gxp-sub --env "$BATS_TEST_TMPDIR/no-such-file"
	[ "$status" = 100 ]
	[[ $output == *"no-such-file"* ]]
	MQTT_PORT=99999 run gxp-sub
	[ "$status" = 100 ]
	[[ $output == *"MQTT_PORT=99999 (environment): expected an integer from 1 to 65535"* ]]
	MQTT_TLS=maybe run gxp-sub
	[ "$status" = 100 ]
	[[ $output == *"MQTT_TLS=maybe"* ]]
}

@test "sub: retries an absent broker with backoff and says so" {
	stop_broker
	MQTT_RECONNECT_MAX_S=1 gxp-sub -t 't/#' > "$OUT" 2> "$ERR" &
	SUB_PID=$!
	wait_until 10 file_has "$ERR" "retrying in"
	grep -q "cannot reach 127.0.0.1:$BROKER_PORT: Connection refused" "$ERR"
	run_broker
	wait_until 15 file_has "$ERR" "Subscribed to topics"
	mpub -q 1 -t t/x -m '{"late":true}'
	wait_until 10 has_lines "$OUT" 1
}

# bats test_tags=slow
@test "sub: each tst is later than the one before, even when the clock stands still" {
	# the wall clock frozen (libfaketime), the monotonic one left alone
	FROZEN=1
	FAKETIME_DONT_FAKE_MONOTONIC=1 start_sub "$OUT" "$ERR" -t 't/#' --faketime
	for i in $(seq 1 50); do echo "{\"n\":$i}"; done > "$BATS_TEST_TMPDIR/msgs"
	mpub -q 1 -t t/a -l < "$BATS_TEST_TMPDIR/msgs"
	wait_until 10 has_lines "$OUT" 50
	[ "$(jq -r .tst "$OUT" | head -1)" = 2025-10-04T12:00:00.000000Z ]
	# strictly increasing: no two messages share a time
	jq -r .tst "$OUT" | sort -c -u
	[ "$(jq -r .tst "$OUT" | tail -1)" = 2025-10-04T12:00:00.000049Z ]
}
