#!/usr/bin/env bats
# Hostile devices and other local users (issue 15): what a device can put
# into a log line, what other users can read, settings that would send a
# secret in clear, gxp-sub's limit per message, and the broker ACLs of
# examples/mosquitto-acl.conf against a real mosquitto.

load helpers

setup() {
	cd "$BATS_TEST_TMPDIR"
	export GXP_SPOOL=$BATS_TEST_TMPDIR/spool GXP_STORE=$BATS_TEST_TMPDIR/store
}

teardown() {
	teardown_broker
}

# envelope TOPIC PAYLOAD: a line as gxp-sub writes it.
envelope() {
	printf '{"tst":"2026-01-01T00:00:00.000000Z","topic":"%s","qos":1,"retain":0,"payloadlen":%d,"payload":%s}\n' \
		"$1" "${#2}" "$2"
}

@test "security: terminal control characters from a device never reach the log raw" {
	{
		# ESC and BEL (C0), then CSI as a C1 control in UTF-8 (U+009B), then a byte that is not UTF-8
		envelope ESP32CAM/AA/data '{"image_name":"b.jpg","image_size":100,"total_chunk_count":1,"max_chunks_size":100,"error":"\u001b]0;owned\u0007\u001b[2J"}'
		envelope ESP32CAM/AA/data '{"image_name":"c\u009b2J.jpg","image_size":100,"total_chunk_count":1,"max_chunks_size":100}'
	} > in
	gxp-assemble < in > out 2> err
	cat -v err
	# no byte below 0x20 but the line ends, no DEL, no C1 control, in any form
	! LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f]' err
	! grep -qP '\xc2[\x80-\x9f]' err
	grep -qF 'device reported error \x1b]0;owned\x07\x1b[2J' err
	grep -qF 'image c\xc2\x9b2J.jpg' err
}
