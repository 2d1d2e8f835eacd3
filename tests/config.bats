#!/usr/bin/env bats
# Settings: the .env file, precedence, validation that names the setting,
# its value and where it came from, and documentation of every setting.

load helpers

setup() {
	cd "$BATS_TEST_TMPDIR"
}

@test "config: every problem is reported at once, each with its source; exit 100" {
	cat > .env <<-'EOT'
	MQTT_PORT=eighty
	SUPABASE_URL=ftp://example.com
	TOPIC_PATTERN_DATA=ESP32CAM/#
	PUBLISH_LOG=some
	EOT
	MQTT_KEEPALIVE=2 run gxp-sub
	[ "$status" = 100 ]
	[[ $output == *"configuration: MQTT_PORT=eighty (.env line 1): expected an integer from 1 to 65535"* ]]
	[[ $output == *"configuration: MQTT_KEEPALIVE=2 (environment): expected an integer from 5 to 3600"* ]]
	[[ $output == *"configuration: SUPABASE_URL=ftp://example.com (.env line 2): expected an http:// or https:// URL"* ]]
	[[ $output == *"configuration: TOPIC_PATTERN_DATA=ESP32CAM/# (.env line 3): expected a topic with one + level for the device id"* ]]
	[[ $output == *"configuration: PUBLISH_LOG=some (.env line 4): expected all, no-chunks or off"* ]]
	[[ $output == *"configuration: SUPABASE_URL is set (.env line 2) but SUPABASE_SECRET_KEY is missing (or the legacy SUPABASE_SERVICE_ROLE)"* ]]
}

@test "config: a username without a password is a missing password" {
	MQTT_USERNAME=BrainlyTesting run gxp-pub -t a -m b
	[ "$status" = 100 ]
	[[ $output == *"MQTT_USERNAME is set (environment) but MQTT_PASSWORD is missing"* ]]
}

@test "config: flags beat the environment, which beats .env, which beats defaults" {
	start_broker plain
	echo "MQTT_PORT=1" > .env
	echo "MQTT_HOST=127.0.0.1" >> .env
	run gxp-pub --check
	[ "$status" = 111 ]
	[[ $output == *"broker 127.0.0.1:1:"* ]]
	MQTT_PORT=$BROKER_PORT run gxp-pub --check
	[ "$status" = 0 ]
	MQTT_PORT=2 run gxp-pub -p "$BROKER_PORT" --check
	[ "$status" = 0 ]
	[[ $output == *"ok: broker 127.0.0.1:$BROKER_PORT (TLS off) accepted the connection"* ]]
	stop_broker
}

@test "config: .env quoting, export, comments and empty values" {
	cat > my.env <<-'EOT'
	# comment line
	   export TOPIC_PATTERN_DATA = "a/+/d\"q"
	TOPIC_PATTERN_STATUS='s/+/x\n' # single quotes are literal
	TOPIC_PATTERN_ACK=k/+/ack   # a comment
	MQTT_HOST=
	EOT
	start_broker plain
	start_sub out err --env my.env -p "$BROKER_PORT"
	grep -qF "MQTT Broker: localhost:$BROKER_PORT" err
	grep -qF -- '- a/+/d"q' err
	grep -qF -- '- s/+/x\n' err
	grep -qF -- '- k/+/ack' err
	kill "$SUB_PID"
	stop_broker
	echo 'TOPIC_PATTERN_DATA="unterminated' > bad.env
	run gxp-sub --env bad.env
	[ "$status" = 100 ]
	[[ $output == *"bad.env:1: TOPIC_PATTERN_DATA: unterminated quote"* ]]
	echo 'JUSTANAME' > bad2.env
	run gxp-sub --env bad2.env
	[ "$status" = 100 ]
	[[ $output == *"bad2.env:1: expected NAME=value"* ]]
}

@test "config: a secret's value is never printed, even when it is wrong" {
	MQTT_USERNAME=u MQTT_PASSWORD='pa$$-top-secret' MQTT_PORT=0 run gxp-sub
	[ "$status" = 100 ]
	[[ $output != *top-secret* ]]
	SUPABASE_URL=http://127.0.0.1:1 SUPABASE_SERVICE_ROLE='eyJ-very-secret' MQTT_PORT=0 run gxp-sub
	[[ $output != *very-secret* ]]
	SUPABASE_URL=http://127.0.0.1:1 SUPABASE_SECRET_KEY='sb_publishable_very-secret' MQTT_PORT=0 run gxp-sub
	[ "$status" = 100 ]
	[[ $output == *"holds a publishable key"* && $output != *very-secret* ]]
}

@test "config: every setting is documented in README.md and in a man page" {
	names=$(sed -n 's/^[[:space:]]*\(STR\|INT\|SECRET\)("\([A-Z0-9_]*\)".*/\2/p' "$GXP_TOP/src/lib/settings.c")
	[ "$(echo "$names" | wc -l)" -gt 40 ]
	missing=
	for n in $names; do
		grep -q "\`$n\`" "$GXP_TOP/README.md" || missing="$missing README:$n"
		grep -h 'Ev ' "$GXP_TOP"/man/*.[157] | grep -qw "$n" || missing="$missing man:$n"
	done
	echo "undocumented:$missing"
	[ -z "$missing" ]
}

@test "config: .env.example carries the seed's production broker and no secret" {
	grep -qx 'MQTT_HOST=1305ceddedc94b9fa7fba9428fe4624e.s1.eu.hivemq.cloud' "$GXP_TOP/.env.example"
	grep -qx 'MQTT_PORT=8883' "$GXP_TOP/.env.example"
	grep -qx 'MQTT_TLS=true' "$GXP_TOP/.env.example"
	grep -qx 'MQTT_PASSWORD=' "$GXP_TOP/.env.example"
	grep -qx 'SUPABASE_SECRET_KEY=' "$GXP_TOP/.env.example"
	grep -qx '#SUPABASE_SERVICE_ROLE=' "$GXP_TOP/.env.example"
}

@test "config: man pages are clean under mandoc -T lint" {
	run mandoc -T lint -W warning "$GXP_TOP"/man/*
	echo "$output"
	[ -z "$output" ]
}
