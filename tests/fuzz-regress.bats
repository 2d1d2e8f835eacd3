#!/usr/bin/env bats
# What fuzzing (fuzz/, make fuzz) found, each fed to the real gxp-assemble:
# the inputs are kept in fuzz/regress/ (the *.ndjson files for the tool, the
# fuzzer's own inputs in fuzz/regress/<harness>/, which make fuzz replays).

load assemble-lib

setup() {
	setup_assemble
	R=$GXP_TOP/fuzz/regress
	export REFUSED_REPORT_INTERVAL_S=0	# every error reported
}

# all_json FILE: every line of FILE is a JSON object.
all_json() {
	local l
	while IFS= read -r l; do
		jq -e 'type == "object"' <<<"$l" > /dev/null || return 1
	done < "$1"
}

@test "fuzz-regress: control characters and NULs in a status payload are refused, never copied into an event" {
	# cJSON took them (as white space, or inside strings); the events that
	# copy the payload as it came were then not JSON (line harness)
	IN=$R/status-control-chars.ndjson assemble
	[ "$ASM_RC" = 0 ]
	all_json "$OUT"
	[ "$(events error | jq -c '[.code,.device,.reason,.line]')" = '[2101,"AABBCCDDEEFF","status: payload is not a JSON object",1]
[2101,"AABBCCDDEEFF","status: payload is not a JSON object",2]
[2101,"AABBCCDDEEFF","status: payload is not a JSON object",3]' ]
	[ "$(count status)" = 0 ]
	[ "$(count inbound)" = 0 ]
	grep -q "error: line 2: device AABBCCDDEEFF image -: status: payload is not a JSON object" "$ERR"
}

@test "fuzz-regress: a last line longer than MAX_LINE_BYTES without its newline is reported, whatever its length" {
	# the reader dropped it in silence when its length was a multiple of
	# MAX_LINE_BYTES + 1 (line harness, the line reader)
	first=$(head -1 "$R/long-last-line.ndjson" | wc -c)
	for tail in 2050 1025 1500; do
		head -c $((first + tail)) "$R/long-last-line.ndjson" > "$IN"
		MAX_LINE_BYTES=1024 assemble
		[ "$ASM_RC" = 0 ]
		[ "$(count status)" = 1 ]
		[ "$(events error | jq -c '[.code,.reason,.line]')" = '[2101,"line longer than MAX_LINE_BYTES (1024)",2]' ]
	done
}

@test "fuzz-regress: a lone UTF-16 surrogate escape makes a line not JSON; a pair is fine" {
	# the JSON scanner took any \uXXXX, so a chunk with a broken pair in a
	# key was consumed and copied into an inbound event that cJSON, jq and
	# PostgreSQL cannot parse (line harness)
	IN=$R/lone-surrogate.ndjson assemble
	[ "$ASM_RC" = 0 ]
	all_json "$OUT"
	[ "$(events error | jq -c '[.code,.reason,.line]')" = '[2101,"not JSON",1]
[2101,"status: payload is not a JSON object",2]' ]
	[ "$(events status | jq -r .raw.status)" = "$(printf '\360\237\230\200 ok')" ]
	[ "$(count inbound)" = 1 ]
}

@test "fuzz-regress: a device whose last capture goes to make room for its next one is not freed under it" {
	# the budget, full, dropped the device's capture without metadata to
	# let its next one in, and the device went with it while still in use
	# (sequence harness; AddressSanitizer, make check SANITIZE=1)
	IN=$R/device-freed-while-making-room.ndjson MAX_ASSEMBLIES=1 assemble
	[ "$ASM_RC" = 0 ]
	[ "$(events error | jq -c '[.code,.device,.image_name]')" = '[2200,"D1","a.jpg"]' ]
	events error | jq -r .reason | grep -q "^dropped 1 chunks that came without metadata"
	[ "$(in_progress | jq -c '[.device,.image_name,.chunks]')" = '["D1","b.jpg",1]' ]
}
