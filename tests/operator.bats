#!/usr/bin/env bats
# What a new operator trips over (issue 16): misspelt settings, a client id
# used twice, MQTT 5 and brokers that only speak 3.1.1, exit codes.

load helpers

setup() {
	cd "$BATS_TEST_TMPDIR"
}

teardown() {
	[ -n "${FAKE_PID:-}" ] && kill "$FAKE_PID" 2>/dev/null
	[ -n "${OTHER_PID:-}" ] && kill "$OTHER_PID" 2>/dev/null
	teardown_broker
}

# start_fake MODE: tests/fake-mqtt on a free port; sets FAKE_PORT, FAKE_LOG.
start_fake() {
	FAKE_LOG=$BATS_TEST_TMPDIR/fake.log
	"$GXP_TOP/tests/fake-mqtt" --port-file "$BATS_TEST_TMPDIR/fake.port" "$1" \
		> "$FAKE_LOG" 2>&1 3>&- &
	FAKE_PID=$!
	wait_until 10 test -f "$BATS_TEST_TMPDIR/fake.port"
	FAKE_PORT=$(cat "$BATS_TEST_TMPDIR/fake.port")
}

@test "settings: a misspelt or lower-case name in .env is an error naming the closest setting" {
	cat > .env <<-'EOT'
	MQTT_TSL=true
	GXP_SPOLL=/tmp/x
	LOG_LEVL=DEBUG
	mqtt_host=broker.example
	MQTT_USERNAME=u
	MQTT_PASWORD=not-shown
	EOT
	run gxp-sub --check
	echo "$output"
	[ "$status" = 100 ]
	[[ $output == *"configuration: MQTT_TSL (.env line 1) is not a gxp setting; did you mean MQTT_TLS?"* ]]
	[[ $output == *"configuration: GXP_SPOLL (.env line 2) is not a gxp setting; did you mean GXP_SPOOL?"* ]]
	[[ $output == *"configuration: LOG_LEVL (.env line 3) is not a gxp setting; did you mean LOG_LEVEL?"* ]]
	[[ $output == *"configuration: mqtt_host (.env line 4) is not a gxp setting; did you mean MQTT_HOST? (names are upper case)"* ]]
	[[ $output == *"configuration: MQTT_PASWORD (.env line 6) is not a gxp setting; did you mean MQTT_PASSWORD?"* ]]
	[[ $output != *not-shown* ]]
	echo 'SOMETHING_ELSE=1' > other.env
	run gxp-pub --env other.env --check
	[ "$status" = 100 ]
	[[ $output == *"configuration: SOMETHING_ELSE (other.env line 1) is not a gxp setting (gxp(7) lists the settings)"* ]]
}

@test "settings: a gxp-looking unknown name in the environment is a warning, its value never shown" {
	start_broker plain
	MQTT_TSL=true LOGLEVEL=debug mqtt_port=1 MQTT_PASWORD=not-shown HOME=/nowhere \
		run gxp-pub -h 127.0.0.1 -p "$BROKER_PORT" --check
	echo "$output"
	[ "$status" = 0 ]
	[[ $output == *"warning: configuration: MQTT_TSL (environment) is not a gxp setting; did you mean MQTT_TLS?"* ]]
	[[ $output == *"warning: configuration: LOGLEVEL (environment) is not a gxp setting; did you mean LOG_LEVEL?"* ]]
	[[ $output == *"warning: configuration: mqtt_port (environment) is not a gxp setting; did you mean MQTT_PORT? (names are upper case)"* ]]
	[[ $output == *"warning: configuration: MQTT_PASWORD (environment) is not a gxp setting; did you mean MQTT_PASSWORD?"* ]]
	[[ $output != *not-shown* ]]
	[[ $output != *HOME* ]]
}

@test "client id: two processes with one id both say so, and --check finds the one in use" {
	start_broker plain
	broker_env
	GXP_SPOOL=$BATS_TEST_TMPDIR/a start_sub a.out a.err -c -i twin-sub
	GXP_SPOOL=$BATS_TEST_TMPDIR/b gxp-sub -c -i twin-sub > b.out 2> b.err 3>&- &
	OTHER_PID=$!
	# the broker hands the session back and forth; each sees the other's record
	wait_until 30 file_has a.err "another client is using the id twin-sub: gxp-sub pid $OTHER_PID on host $(hostname), spool $BATS_TEST_TMPDIR/b"
	wait_until 30 file_has b.err "another client is using the id twin-sub: gxp-sub pid $SUB_PID on host $(hostname), spool $BATS_TEST_TMPDIR/a"
	grep -q "Client twin-sub already connected, closing old connection" "$BROKER_DIR/mosquitto.log"
	# a third, about to start on another spool, is told before it connects as twin-sub
	GXP_SPOOL=$BATS_TEST_TMPDIR/c run gxp-sub --check -c -i twin-sub
	echo "$output"
	[ "$status" = 100 ]
	[[ $output == *"gxp-sub: FAIL: another client is using the id twin-sub: gxp-sub pid "*"give each worker its own MQTT_CLIENT_ID"* ]]
	# it looked with an id of its own
	grep -q "New client connected from .* as gxp-check-" "$BROKER_DIR/mosquitto.log"
	cat a.err b.err
}

@test "client id: a clean exit clears the record; one on the same spool is the worker itself" {
	start_broker plain
	broker_env
	export GXP_SPOOL=$BATS_TEST_TMPDIR/a
	start_sub a.out a.err -c -i solo-sub
	run gxp-sub --check -c -i solo-sub
	echo "$output"
	[ "$status" = 0 ]
	[[ $output == *"the id solo-sub is in use by the worker on this spool (gxp-sub pid $SUB_PID"* ]]
	stop_pid "$SUB_PID"
	[ "$(timeout 5 mosquitto_sub -p "$BROKER_PORT" -t gxp/clients/solo-sub -W 1 -C 1 2>/dev/null)" = "" ]
	GXP_SPOOL=$BATS_TEST_TMPDIR/b run gxp-sub --check -c -i solo-sub
	[ "$status" = 0 ]
	[[ $output != *"in use"* ]]
	# a SIGKILL leaves the record to the broker's Last Will, which clears it too
	start_sub a.out a.err -c -i solo-sub
	kill -KILL "$SUB_PID"
	wait_until 10 eval '[ -z "$(timeout 2 mosquitto_sub -p "$BROKER_PORT" -t gxp/clients/solo-sub -W 1 -C 1 2>/dev/null)" ]'
}

@test "client id: an MQTT 5 broker that hands the session over (0x8E) is heard" {
	start_fake takeover
	MQTT_PRESENCE_TOPIC=off gxp-sub -h 127.0.0.1 -p "$FAKE_PORT" -c -i taken-sub > out 2> err 3>&- &
	OTHER_PID=$!
	wait_until 20 file_has err "another client is using the id taken-sub: the broker handed our session to it (session taken over)"
	grep -q "CONNECT protocol=5 client=taken-sub" "$FAKE_LOG"
}

@test "mqtt: a broker that only speaks 3.1.1 gets 3.1.1" {
	start_fake v311only
	MQTT_PRESENCE_TOPIC=off start_sub out err -h 127.0.0.1 -p "$FAKE_PORT" -c -i old-sub
	grep -q "does not speak MQTT 5; using 3.1.1" err
	grep -q "CONNECT protocol=5 client=old-sub" "$FAKE_LOG"
	grep -q "CONNECT protocol=4 client=old-sub" "$FAKE_LOG"
}
