#!/usr/bin/env bats
# TLS with certificate verification and password logins, against a real
# mosquitto configured with a test CA and a password file.

load helpers

setup() {
	OUT=$BATS_TEST_TMPDIR/out
	ERR=$BATS_TEST_TMPDIR/err
}

teardown() {
	teardown_broker
}

@test "tls: round trip gxp-pub -> TLS broker -> gxp-sub with the CA from MQTT_CAFILE" {
	start_broker tls
	broker_env
	start_sub "$OUT" "$ERR" -t 'ESP32CAM/#'
	grep -qF "MQTT Broker: localhost:$BROKER_PORT (TLS: True)" "$ERR"
	gxp-pub -t ESP32CAM/T1/ack -m '{"image_name":"t.jpg","ACK_OK":{}}' 2> "$BATS_TEST_TMPDIR/puberr"
	wait_until 10 has_lines "$OUT" 1
	[ "$(jq -c .payload "$OUT")" = '{"image_name":"t.jpg","ACK_OK":{}}' ]
	grep -q "New connection from 127.0.0.1" "$BROKER_DIR/mosquitto.log"
}

@test "tls: MQTT_CAPATH, a directory of hashed CA certificates, works too" {
	start_broker tls
	broker_env
	mkdir "$BATS_TEST_TMPDIR/capath"
	cp "$MQTT_CAFILE" "$BATS_TEST_TMPDIR/capath/"
	openssl rehash "$BATS_TEST_TMPDIR/capath" 2>/dev/null || c_rehash "$BATS_TEST_TMPDIR/capath"
	unset MQTT_CAFILE
	export MQTT_CAPATH=$BATS_TEST_TMPDIR/capath
	start_sub "$OUT" "$ERR" -t 'x/#'
	gxp-pub -t x/y -m '{"ok":1}'
	wait_until 10 has_lines "$OUT" 1
}

@test "tls: a server certificate from the wrong CA is rejected; exit 100, reason given" {
	start_broker tls
	broker_env
	export MQTT_CAFILE=$BROKER_DIR/../certs/other-ca.pem
	run timeout 20 gxp-sub -t 'x/#'
	[ "$status" = 100 ]
	[[ $output == *"TLS connection to localhost:$BROKER_PORT failed"* ]]
	[[ $output == *"certificate verify failed"* ]]
	run timeout 20 gxp-pub -t x/y -m hello
	[ "$status" = 100 ]
	[[ $output == *"certificate verify failed"* ]]
}

@test "tls: verification is on by default: the system store does not trust the test CA" {
	start_broker tls
	broker_env
	unset MQTT_CAFILE
	run timeout 20 gxp-sub -t 'x/#'
	[ "$status" = 100 ]
	[[ $output == *"certificate verify failed"* ]]
}

@test "tls: an unreadable CA file is a configuration error before any connection" {
	export MQTT_TLS=true MQTT_CAFILE=$BATS_TEST_TMPDIR/missing.pem MQTT_PORT=1
	run gxp-sub
	[ "$status" = 100 ]
	[[ $output == *"configuration: MQTT_CAFILE=$BATS_TEST_TMPDIR/missing.pem (environment): No such file or directory"* ]]
}

@test "tls: with TLS on and no port the broker port is 8883" {
	MQTT_TLS=true MQTT_HOST=127.0.0.1 timeout 2 gxp-sub > "$OUT" 2> "$ERR" || true
	grep -qF "MQTT Broker: 127.0.0.1:8883 (TLS: True)" "$ERR"
}

@test "password: the right login works; the password never shows" {
	start_broker password
	broker_env
	start_sub "$OUT" "$ERR" -t 'p/#'
	gxp-pub -t p/q -m '{"in":true}' 2> "$BATS_TEST_TMPDIR/puberr"
	wait_until 10 has_lines "$OUT" 1
	! grep -qF 's3cret-PW!' "$ERR" "$BATS_TEST_TMPDIR/puberr" || false
}

@test "password: a wrong password is refused for good: exit 100, no password in the message" {
	start_broker password
	broker_env
	export MQTT_PASSWORD='wrong-PW-123'
	run timeout 20 gxp-sub -t 'p/#'
	[ "$status" = 100 ]
	[[ $output == *"refused the connection"* ]]
	[[ $output == *"(the login as user gxpuser was refused: check MQTT_USERNAME and MQTT_PASSWORD)"* ]]
	[[ $output != *wrong-PW-123* ]]
	run timeout 20 gxp-pub -t p/q -m x
	[ "$status" = 100 ]
	[[ $output != *wrong-PW-123* ]]
	unset MQTT_USERNAME MQTT_PASSWORD
	run timeout 20 gxp-sub -t 'p/#'
	[ "$status" = 100 ]
	[[ $output == *"Not authorized (no login was sent and the broker wants one: set MQTT_USERNAME and MQTT_PASSWORD)"* ]]
	run gxp-sub --check
	[ "$status" = 100 ]
	[[ $output == *"gxp-sub: FAIL: broker 127.0.0.1:$BROKER_PORT: refused the connection: Not authorized (no login was sent"* ]]
}

@test "tls: TLS off against a TLS port, and on against a plain one, say which to set" {
	start_broker tls
	run timeout 20 gxp-sub --check -h 127.0.0.1 -p "$BROKER_PORT"
	echo "$output"
	[ "$status" = 111 ]
	[[ $output == *"the broker closed the connection without answering the login: if this is a TLS port (8883?), set MQTT_TLS=true"* ]]
	stop_broker
	start_broker plain
	export MQTT_TLS=true MQTT_CAFILE=$BATS_TEST_TMPDIR/broker/../certs/ca.pem
	make_certs "$BATS_TEST_TMPDIR/certs"
	run timeout 20 gxp-sub -h 127.0.0.1 -p "$BROKER_PORT"
	echo "$output"
	[ "$status" = 100 ]
	[[ $output == *"TLS connection to 127.0.0.1:$BROKER_PORT failed"*"the broker does not speak TLS there: if this is a plain MQTT port (1883?), set MQTT_TLS=false"* ]]
}

@test "password: a password without a username is a configuration error" {
	MQTT_PASSWORD=hunter2 run gxp-sub
	[ "$status" = 100 ]
	[[ $output == *"MQTT_PASSWORD is set but MQTT_USERNAME is not"* ]]
	[[ $output != *hunter2* ]]
}
