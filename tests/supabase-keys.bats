#!/usr/bin/env bats
# Supabase's API keys: the secret key (sb_secret_..., apikey only) beside
# the legacy service_role JWT (apikey and bearer), the gateway's rules as
# the endpoint plays them, --check naming the kind of key and refusing a
# publishable one, and the key kept out of every message, even one cut in
# the middle of it.

load helpers
load pg
load upload-fixtures

DEV=AABBCCDDEEFF

setup_file() {
	upload_db_setup_file
}

teardown_file() {
	upload_db_teardown_file
}

setup() {
	upload_db_setup
	unset SUPABASE_SERVICE_ROLE
	export SUPABASE_SECRET_KEY=$EP_SECRET_KEY
	VERSION=$(sed -n '1s/^gxp (\([^)]*\)).*/\1/p' "$GXP_TOP/debian/changelog")
}

teardown() {
	teardown_upload
}

# http_code [CURL ARGS...]: the status of a GET of the captures table.
http_code() {
	curl -s -o /dev/null -w '%{http_code}' "$@" "$EP_URL/rest/v1/captures?select=capture_id"
}

@test "keys: a secret key stores photos and rows, in apikey only, with User-Agent gxp/VERSION" {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	{
		ev_status $DEV Alive 1
		ev_capture_started $DEV image_1.jpg 3000
		ev_inbound_meta $DEV image_1.jpg
		ev_photo_complete $DEV image_1.jpg
	} > "$IN"
	run_upload
	[ "$RC" = 0 ]
	[ "$(psql_q "select ingest_status from captures")" = stored ]
	[ "$(psql_q "select count(*) from storage.objects")" = 1 ]
	for t in device_status sensor_readings device_publish_log; do
		[ "$(psql_q "select count(*) from $t")" -ge 1 ]
	done
	grep -q 'Supabase key: a secret key (sb_secret_...) from SUPABASE_SECRET_KEY' "$ERR"
	# every request: the key in apikey alone, gxp's own User-Agent
	[ "$(ep_log | jq -r '[.bearer, .ua] | @tsv' | sort -u)" = "false	gxp/$VERSION" ]
	! grep -qF -- "${EP_SECRET_KEY#sb_secret_}" "$ERR" "$OUT" || false
}

@test "keys: the legacy service_role JWT goes as apikey and as bearer token" {
	unset SUPABASE_SECRET_KEY
	export SUPABASE_SERVICE_ROLE=$EP_SERVICE_KEY
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	run_upload --once
	[ "$RC" = 0 ]
	[ "$(psql_q "select ingest_status from captures")" = stored ]
	[ "$(ep_log | jq -r .bearer | sort -u)" = true ]
}

@test "keys: the gateway: a secret key in apikey is service_role; a non-JWT bearer and a browser get 401" {
	[ "$(http_code -H "apikey: $EP_SECRET_KEY")" = 200 ]
	[ "$(http_code -H "apikey: $EP_SECRET_KEY" -H "Authorization: Bearer $EP_SECRET_KEY")" = 401 ]
	[ "$(http_code -H "apikey: $EP_SECRET_KEY" -A 'Mozilla/5.0 (X11; Linux x86_64)')" = 401 ]
	# the publishable key is anon: row level security lets it read nothing
	[ "$(http_code -H "apikey: $EP_PUBLISHABLE_KEY")" = 401 ]
	[ "$(http_code -H "apikey: $EP_SERVICE_KEY" -H "Authorization: Bearer $EP_SERVICE_KEY")" = 200 ]
	[ "$(http_code -H "apikey: sb_secret_not-a-key")" = 401 ]
}

@test "keys: --check names the kind of key and which setting it came from" {
	run gxp-upload --check
	[ "$status" = 0 ]
	[[ $output == *"ok: key: a secret key (sb_secret_...) from SUPABASE_SECRET_KEY, sent as apikey only"* ]]
	[[ $output == *"ok: table device_publish_log readable with the key"* ]]
	SUPABASE_SERVICE_ROLE=$EP_SERVICE_KEY run gxp-upload --check
	[ "$status" = 0 ]
	[[ $output == *"key: a secret key (sb_secret_...) from SUPABASE_SECRET_KEY, sent as apikey only; SUPABASE_SERVICE_ROLE is set too and not used"* ]]
	SUPABASE_SECRET_KEY= SUPABASE_SERVICE_ROLE=$EP_SERVICE_KEY run gxp-upload --check
	[ "$status" = 0 ]
	[[ $output == *"key: a legacy service_role key (JWT) from SUPABASE_SERVICE_ROLE, sent as apikey and bearer token"* ]]
	[[ "$output" != *"$EP_SERVICE_KEY"* && "$output" != *"${EP_SECRET_KEY#sb_secret_}"* ]]
	# both set: the run says which one it uses
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	SUPABASE_SERVICE_ROLE=$EP_SERVICE_KEY run_upload --once
	[ "$RC" = 0 ]
	grep -q 'SUPABASE_SECRET_KEY and SUPABASE_SERVICE_ROLE are both set; using SUPABASE_SECRET_KEY' "$ERR"
}

@test "keys: gxp-supervise --check refuses a publishable or anon key where the secret key is needed" {
	export GXP_SPOOL MQTT_HOST=127.0.0.1 MQTT_PORT=$(free_port)
	SUPABASE_SECRET_KEY=$EP_PUBLISHABLE_KEY run gxp-supervise --check
	echo "$output"
	[ "$status" = 100 ]
	[[ $output == *"configuration: SUPABASE_SECRET_KEY (environment) holds a publishable key (sb_publishable_...): a publishable (anon) key only reaches what row level security lets the public see; gxp-upload needs the secret key"* ]]
	[ "$(grep -c 'holds a publishable key' <<<"$output")" = 1 ]
	[[ $output != *"${EP_PUBLISHABLE_KEY#sb_publishable_}"* ]]
	SUPABASE_SECRET_KEY= SUPABASE_SERVICE_ROLE=$EP_ANON_KEY run gxp-supervise --check
	[ "$status" = 100 ]
	[[ $output == *"configuration: SUPABASE_SERVICE_ROLE (environment) holds a legacy anon key (JWT, role anon)"* ]]
	[[ $output != *"$EP_ANON_KEY"* ]]
	# gxp-upload itself does not start with it either
	SUPABASE_SECRET_KEY=$EP_PUBLISHABLE_KEY run_upload --once
	[ "$RC" = 100 ]
}

# no_piece FILES...: no 8 characters of the secret part of the key in FILES,
# the error rows or the captures rows.
no_piece() {
	local piece=${EP_SECRET_KEY:10:8}
	if grep -F -- "$piece" "$@" || psql_q "select ingest_error from captures;
		select message, details::text from device_errors" | grep -F -- "$piece"; then
		return 1
	fi
}

@test "keys: a server message cut in the middle of the key, or that cut it itself, shows none of it" {
	# the key of either setting, whatever its form
	unset SUPABASE_SECRET_KEY
	export SUPABASE_SERVICE_ROLE=$EP_SECRET_KEY
	# "HTTP 400 Invalid Input: " + pad + "bad key " + key, cut at 400 bytes:
	# the cut falls in the middle of the key
	pad=$((400 - 24 - 8 - ${#EP_SECRET_KEY} / 2))
	make_entry "$GXP_SPOOL" $DEV p1.jpg 3000
	ep_fault "{\"match\":\"/object/\",\"status\":400,\"echo_key\":true,\"pad\":$pad,\"count\":1}"
	run_upload --once
	no_piece "$ERR" "$OUT" "$GXP_SPOOL"/failed/*/reason.json
	[ "$RC" = 0 ]
	grep -q 'device AABBCCDDEEFF image p1.jpg: storage upload failed: HTTP 400 Invalid Input: xxx' "$ERR"
	# a server that cut the key short itself
	make_entry "$GXP_SPOOL" $DEV p2.jpg 3000
	ep_fault "{\"match\":\"/object/\",\"status\":400,\"count\":1,\"body\":{\"message\":\"bad key ${EP_SECRET_KEY:0:30}...\"}}"
	run_upload --once
	no_piece "$ERR" "$OUT" "$GXP_SPOOL"/failed/*/reason.json
	[ "$RC" = 0 ]
	grep -q 'storage upload failed: HTTP 400 Invalid Input: bad key \*\*\*\.\.\.' "$ERR"
}
