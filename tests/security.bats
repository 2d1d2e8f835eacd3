#!/usr/bin/env bats
# Hostile devices and other local users (issue 15): what a device can put
# into a log line, what other users can read, settings that would send a
# secret in clear, gxp-sub's limit per message, and the broker ACLs of
# examples/mosquitto-acl.conf against a real mosquitto.

load helpers
load e2e

setup() {
	cd "$BATS_TEST_TMPDIR"
	export GXP_SPOOL=$BATS_TEST_TMPDIR/spool GXP_STORE=$BATS_TEST_TMPDIR/store
}

teardown() {
	e2e_teardown
}

# envelope TOPIC PAYLOAD: a line as gxp-sub writes it.
envelope() {
	printf '{"tst":"2026-01-01T00:00:00.000000Z","topic":"%s","qos":1,"retain":0,"payloadlen":%d,"payload":%s}\n' \
		"$1" "${#2}" "$2"
}

@test "security: terminal control characters from a device never reach the log raw" {
	start_broker plain
	broker_env
	# a device name with CSI as a C1 control in UTF-8 (U+009B)
	envelope ESP32CAM/AA/data '{"image_name":"c\u009b2J.jpg","image_size":100,"total_chunk_count":1,"max_chunks_size":100}' > in
	gxp-assemble < in > out 2> err
	# a topic with ESC and BEL (C0), DEL and CSI, in a line for gxp-pub
	echo '{"topic":"ESP32CAM/\u001b]0;owned\u0007\u007f\u009b2J/ack","payload":"x"}' | gxp-pub > /dev/null 2>> err
	cat -v err
	# no byte below 0x20 but the line ends, no DEL, no C1 control, in any form
	! LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f]' err || false
	! grep -qP '\xc2[\x80-\x9f]' err || false
	grep -qF 'image c\xc2\x9b2J.jpg' err
	grep -qF 'cannot publish to ESP32CAM/\x1b]0;owned\x07\x7f\xc2\x9b2J/ack' err
}

# vm KEY PID: a /proc/PID/status figure (VmRSS, VmHWM) in kB.
vm() {
	awk -v k="$1:" '$1 == k { print $2 }' "/proc/$2/status"
}

@test "security: gxp-sub drops a message over SUB_MAX_MESSAGE_BYTES, counts it, says so once a minute, and gives the memory back" {
	# AddressSanitizer keeps freed memory in quarantine: RSS says nothing then
	[ -z "${SANITIZE:-}" ] || skip "the binaries are built with AddressSanitizer"
	start_broker plain
	broker_env
	export GXP_METRICS_DIR=$BATS_TEST_TMPDIR/metrics METRICS_INTERVAL_S=1
	start_sub out err -t 'big/#'
	base=$(vm VmRSS "$SUB_PID")
	head -c 30000000 /dev/urandom > big
	mpub -q 1 -t big/a -f big
	head -c 262145 /dev/urandom > over
	mpub -q 1 -t big/b -f over
	mpub -q 1 -t big/c -f over
	mpub -q 1 -t big/small -m '{"ok":true}'
	wait_until 20 has_lines out 1
	wait_until 10 sh -c "grep -q '^gxp_sub_too_big_total 3' '$GXP_METRICS_DIR/gxp-sub.prom'"
	[ "$(lines_in out)" = 1 ]
	[ "$(jq -r .topic out)" = big/small ]
	# one line for the three, naming the first
	[ "$(grep -c 'over SUB_MAX_MESSAGE_BYTES' err)" = 1 ]
	grep -q "dropped 1 message over SUB_MAX_MESSAGE_BYTES (262144) since the last report; the last: 30000000 bytes on big/a" err
	# a message under the limit after the spike: the 30 MB are not kept
	rss=$(vm VmRSS "$SUB_PID") hwm=$(vm VmHWM "$SUB_PID")
	echo "RSS before $base kB, after $rss kB, peak $hwm kB"
	[ "$rss" -lt $((base + 8000)) ]
	# libmosquitto holds the payload twice (29 300 kB each) while it hands
	# it over; an envelope in base64 and its copy would add 80 000 kB
	[ "$hwm" -lt $((base + 75000)) ]
	stop_pid "$SUB_PID"
	grep -q '^gxp_sub_too_big_total 3' "$GXP_METRICS_DIR/gxp-sub.prom"
}

@test "security: a limit raised for big messages still gives the memory back after a spike" {
	# AddressSanitizer keeps freed memory in quarantine: RSS says nothing then
	[ -z "${SANITIZE:-}" ] || skip "the binaries are built with AddressSanitizer"
	start_broker plain
	broker_env
	export SUB_MAX_MESSAGE_BYTES=67108864
	start_sub out err -t 'big/#'
	base=$(vm VmRSS "$SUB_PID")
	head -c 30000000 /dev/urandom > big
	mpub -q 1 -t big/a -f big
	wait_until 30 has_lines out 1
	mpub -q 1 -t big/small -m '{"ok":true}'
	wait_until 10 has_lines out 2
	rss=$(vm VmRSS "$SUB_PID")
	echo "RSS before $base kB, after $rss kB"
	[ "$rss" -lt $((base + 8000)) ]
	stop_pid "$SUB_PID"
}

@test "security: MQTT_CAFILE or MQTT_CAPATH without MQTT_TLS is refused: the login would go in clear" {
	start_broker password
	broker_env
	make_certs "$BATS_TEST_TMPDIR/certs"
	MQTT_CAFILE=$BATS_TEST_TMPDIR/certs/ca.pem run timeout 20 gxp-sub -t 'x/#'
	[ "$status" = 100 ]
	[[ $output == *"configuration: MQTT_CAFILE is set (environment) but MQTT_TLS is not: the login would go in clear; set MQTT_TLS=true"* ]]
	MQTT_CAPATH=$BATS_TEST_TMPDIR/certs run timeout 20 gxp-pub --check
	[ "$status" = 100 ]
	[[ $output == *"MQTT_CAPATH is set (environment) but MQTT_TLS is not"* ]]
	# nothing reached the broker
	! grep -q "New client connected" "$BROKER_DIR/mosquitto.log" || false
}

@test "security: --check warns about plain http to another host and about an .env others can read" {
	start_broker plain
	printf 'MQTT_HOST=127.0.0.1\nMQTT_PORT=%s\n' "$BROKER_PORT" > w.env
	chmod 644 w.env
	SUPABASE_URL=http://db.example.com SUPABASE_SERVICE_ROLE=k run gxp-pub --env w.env --check
	echo "$output"
	[ "$status" = 0 ]
	[[ $output == *"gxp-pub: warning: SUPABASE_URL=http://db.example.com (environment): plain http to another host: the service key would cross the network in clear; use https://"* ]]
	[[ $output == *"gxp-pub: warning: w.env is readable by every user (mode 0644) and may hold secrets; chmod 600 w.env"* ]]
	# every stage's --check says it (gxp-assemble: no network needed to)
	SUPABASE_URL=http://db.example.com SUPABASE_SERVICE_ROLE=k run gxp-assemble --env w.env --check
	[[ $output == *"gxp-assemble: warning: SUPABASE_URL=http://db.example.com (environment): plain http to another host"* ]]
	chmod 640 w.env
	for url in http://127.0.0.1:54321 http://localhost/x https://db.example.com http://[::1]:8000; do
		SUPABASE_URL=$url SUPABASE_SERVICE_ROLE=k run gxp-pub --env w.env --check
		[ "$status" = 0 ]
		[[ $output != *warning* ]]
	done
}

@test "security: what the worker stores, other users cannot read, whatever the umask it starts with" {
	start_broker plain
	worker_env w.env METRICS_INTERVAL_S=1
	umask 022
	start_worker w.env
	run gxp-sim --env w.env -d 2 -n 2 -t 30000 -s 5
	[ "$status" = 0 ]
	wait_until 10 test -f spool/metrics/gxp-upload.prom
	stop_worker
	[ "$(find store -name '*.jpg' | wc -l)" = 4 ]
	find spool store -printf '%m %p\n' | sort > modes
	head -20 modes
	# nothing for others; nothing writable by the group
	! find spool store -perm /o=rwx,g=w | grep . || false
	[ "$(stat -c %a spool)" = 750 ]
	[ "$(stat -c %a "$(find store -name '*.jpg' | head -1)")" = 640 ]
	# a stricter umask stays stricter
	umask 077
	GXP_SPOOL=$BATS_TEST_TMPDIR/strict gxp-assemble < /dev/null
	[ "$(stat -c %a strict/ready)" = 700 ]
}

# start_acl_broker: mosquitto with a login per device and
# examples/mosquitto-acl.conf; the worker is gxp-worker.
start_acl_broker() {
	BROKER_KIND=acl
	BROKER_DIR=$BATS_TEST_TMPDIR/broker
	mkdir -p "$BROKER_DIR"
	mosquitto_passwd -b -c "$BROKER_DIR/passwd" gxp-worker worker-PW 2>/dev/null
	for d in DEVA000001 DEVB000001; do
		mosquitto_passwd -b "$BROKER_DIR/passwd" "$d" "pw-$d" 2>/dev/null
	done
	BROKER_PORT=$(free_port)
	{
		echo "user $(id -un)"
		echo "listener $BROKER_PORT 127.0.0.1"
		echo "allow_anonymous false"
		echo "password_file $BROKER_DIR/passwd"
		echo "acl_file $GXP_TOP/examples/mosquitto-acl.conf"
		echo "log_dest file $BROKER_DIR/mosquitto.log"
		echo "log_type all"
	} > "$BROKER_DIR/mosquitto.conf"
	run_broker
}

# as USER ARGS...: mosquitto_pub/_sub ARGS as USER (a device or gxp-worker).
as() {
	local user=$1 cmd=$2 pw
	shift 2
	pw=pw-$user
	[ "$user" = gxp-worker ] && pw=worker-PW
	"$cmd" -h 127.0.0.1 -p "$BROKER_PORT" -u "$user" -P "$pw" "$@"
}

@test "security: examples/mosquitto-acl.conf: a device speaks for itself only, hears only its own ACKs; the worker gets the fleet" {
	start_acl_broker
	worker_env w.env MQTT_USERNAME=gxp-worker MQTT_PASSWORD=worker-PW
	start_worker w.env
	# the whole flow for two devices, each with its own login
	for d in DEVA DEVB; do
		MQTT_USERNAME=${d}000001 MQTT_PASSWORD=pw-${d}000001 \
			run gxp-sim --env w.env --prefix "$d" -d 1 -n 1 -t 30000 -s 7
		echo "$output"
		[ "$status" = 0 ]
	done
	[ "$(find store -name '*.jpg' | wc -l)" = 2 ]
	# eavesdroppers: B on A's ack and on every ack, A on its own
	as DEVB000001 mosquitto_sub -q 1 -t ESP32CAM/DEVA000001/ack -t 'ESP32CAM/+/ack' -t 'gxp/clients/#' -W 4 > b.heard 2>/dev/null &
	b=$!
	as DEVA000001 mosquitto_sub -q 1 -t ESP32CAM/DEVA000001/ack -C 1 -W 4 > a.heard 2>/dev/null &
	a=$!
	sleep 1
	as gxp-worker mosquitto_pub -q 1 -t ESP32CAM/DEVA000001/ack -m '{"image_name":"x.jpg","ACK_OK":{}}'
	wait "$a" || true
	wait "$b" || true
	[ "$(cat a.heard)" = '{"image_name":"x.jpg","ACK_OK":{}}' ]
	[ ! -s b.heard ]
	# a spoof: A's login publishing as B is dropped by the broker
	as DEVA000001 mosquitto_pub -q 1 -t ESP32CAM/DEVB000001/status -m '{"status":"SPOOFED","pendingImg":9}'
	as DEVA000001 mosquitto_pub -q 1 -t ESP32CAM/DEVA000001/status -m '{"status":"AFTER","pendingImg":0}'
	wait_until 20 file_has store/device_status.ndjson AFTER
	! grep -q SPOOFED store/device_status.ndjson || false
	grep -q "Denied PUBLISH from .*'ESP32CAM/DEVB000001/status'" "$BROKER_DIR/mosquitto.log"
	# the worker keeps its presence records; a device cannot read them
	[ -n "$(as gxp-worker mosquitto_sub -t 'gxp/clients/#' -C 1 -W 3 2>/dev/null)" ]
}
