#!/usr/bin/env bats
# gxp-upload's rows on the local store: what a photo waits for goes at once,
# the event rows gather into batches; the quick path for inbound events
# writes what the parse writes.

load helpers
load upload-fixtures

DEV=AABBCCDDEEFF

setup() {
	upload_env
}

teardown() {
	teardown_upload
}

acked() { file_has "$OUT" '"kind":"ack_ok"'; }

@test "upload/flush: the ACK_OK does not wait for ROW_FLUSH_MS; event rows do, until the end" {
	make_entry "$GXP_SPOOL" $DEV image_1.jpg 3000
	ROW_FLUSH_MS=60000 start_upload
	{
		ev_inbound_meta $DEV image_1.jpg
		ev_capture_started $DEV image_1.jpg 3000
		ev_photo_complete $DEV image_1.jpg
	} >&7
	wait_until 10 acked
	# stored, with its captures row, long before the 60 s flush
	[ "$(jq -r 'select(.ingest_status == "stored") | .device_capture_id' \
		"$GXP_STORE/captures.ndjson")" = image_1.jpg ]
	[ "$(jq -r .device_hw_id "$GXP_STORE/devices.ndjson" | sort -u)" = $DEV ]
	# the publish log row, which nobody waits for, still gathers
	n=$(count "$GXP_STORE/device_publish_log.ndjson" '"direction":"in"')
	[ "${n:-0}" = 0 ]
	stop_upload
	[ "$RC" = 0 ]
	[ "$(count "$GXP_STORE/device_publish_log.ndjson" '"direction":"in"')" = 1 ]
	[ "$(count "$GXP_STORE/device_publish_log.ndjson" '"direction":"out"')" = 1 ]
}

@test "upload/flush: inbound events as gxp-assemble writes them and in another order make the same rows" {
	# gxp-assemble's layout ("event" first) takes the quick path, the
	# other the parse; a chunk that still holds its bytes always the parse
	{
		ev_inbound_meta $DEV image_1.jpg
		ev_inbound_meta $DEV image_1.jpg | jq -c '{payload, kind, received_at,
			topic, device, ts, v, event}'
		ev_inbound_chunk $DEV image_1.jpg 7
		ev_inbound_chunk $DEV image_1.jpg 7 | jq -c '. + {event: "inbound"} |
			del(.v) | {topic} + .'
		ev_inbound_chunk $DEV image_1.jpg 8 | jq -c '.payload.payload = "AAAA" |
			del(.payload.payload_bytes)'
		printf '%s\n' '{"event":"inbound","v":1,"device":"'$DEV'","topic":"ESP32CAM/'$DEV'/data","received_at":"2025-10-04T14:34:58+02:00","kind":"status","payload":{"s":"caf\u00e9 \"q\""}}'
		# an escaped kind is still a chunk: its bytes are left out
		ev_inbound_chunk $DEV image_1.jpg 9 | jq -c '.payload.payload = "AAAA" |
			del(.payload.payload_bytes)' | sed 's/"kind":"chunk"/"kind":"\\u0063hunk"/'
	} > "$IN"
	PUBLISH_LOG=all run_upload
	[ "$RC" = 0 ]
	[ "$(jq -r .event "$OUT" | sort -u)" = "" ]
	log=$GXP_STORE/device_publish_log.ndjson
	[ "$(wc -l < "$log")" = 7 ]
	[ "$(jq -sc 'map(keys) | unique' "$log")" = \
		'[["device_id","direction","event_id","payload","received_at","topic"]]' ]
	# the two of a pair: the same row
	[ "$(sed -n 1p "$log" | jq -c 'del(.event_id)')" = "$(sed -n 2p "$log" | jq -c 'del(.event_id)')" ]
	[ "$(sed -n 3p "$log" | jq -c 'del(.event_id)')" = "$(sed -n 4p "$log" | jq -c 'del(.event_id)')" ]
	# the same content, the same key: a replay is recognisable
	[ "$(sed -n 1p "$log" | jq -r .event_id)" = "$(sed -n 2p "$log" | jq -r .event_id)" ]
	# bytes left out, their count kept
	[ "$(sed -n 5p "$log" | jq -c .payload)" = \
		'{"device_id":"AABBCCDDEEFF","image_name":"image_1.jpg","chunk_id":8,"max_chunk_size":1024,"payload_bytes":3}' ]
	# times in UTC, escapes kept
	[ "$(sed -n 6p "$log" | jq -r .received_at)" = 2025-10-04T12:34:58.000000Z ]
	[ "$(sed -n 6p "$log" | jq -r .payload.s)" = 'café "q"' ]
	[ "$(sed -n 7p "$log" | jq -c '[.payload.chunk_id, .payload.payload_bytes, .payload.payload]')" = '[9,3,null]' ]
	dev_id=$(jq -r .device_id "$GXP_STORE/devices.ndjson" | sort -u)
	[ "$(jq -r .device_id "$log" | sort -u)" = "$dev_id" ]
}
