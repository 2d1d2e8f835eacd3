#!/usr/bin/env bats
# The worker under attack (issue 15): an adversarial mix published at line
# rate (made-up device ids, chunk ids at the limit, chunks and metadata
# that never complete, one id filling its share, oversized, malformed and
# poisoned payloads) beside a normal gxp-sim fleet, through the real
# pipeline (gxp-supervise, mosquitto, the local store).  Every photo of
# the fleet is acknowledged and stored, gxp-assemble's memory stays under
# 32 MB throughout and after a restart, and the flood makes no flood of
# device_errors rows.  The longest test here: about a minute.

load helpers
load e2e

BOUND_KB=32768	# gxp-assemble's peak RSS (the defaults' budgets and the program)

setup() {
	start_broker plain
	worker_env "$BATS_TEST_TMPDIR/w.env" "GXP_METRICS_DIR=$BATS_TEST_TMPDIR/metrics" \
		METRICS_INTERVAL_S=1
	STORE=$BATS_TEST_TMPDIR/store
}

teardown() {
	[ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null
	[ -n "${FLOOD:-}" ] && kill "$FLOOD" 2>/dev/null
	e2e_teardown
}

# attack FILE: the adversarial mix as publish requests for gxp-pub.
attack() {
	python3 - > "$1" <<-'EOF'
	import base64, json, random
	rng = random.Random(15)
	out = []
	def pub(dev, kind, payload):
	    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
	    out.append('{"topic":"ESP32CAM/%s/%s","qos":1,"retain":false,"payload":%s}'
	               % (dev, kind, json.dumps(text)))
	# chunks without metadata, chunk_id at the limit, 1 250 made-up ids
	for i in range(16000):
	    pub("F%04d" % (i % 1250), "data", {"image_name": "f%d.jpg" % (i // 1250),
	        "chunk_id": 8191, "payload": "AA=="})
	# metadata that claims the most, never followed by its chunks
	for i in range(1250):
	    pub("M%04d" % i, "data", {"image_name": "m.jpg", "image_size": 4194304,
	        "max_chunks_size": 512, "total_chunk_count": 8192, "error": 0})
	# one id: 16 captures of 64 chunks of 16 KiB, none complete
	for k in range(63):
	    for c in range(16):
	        pub("HOG0001", "data" if k else "data", {"image_name": "h%d.jpg" % c,
	            "chunk_id": k, "max_chunk_size": 16384,
	            "payload": base64.b64encode(rng.randbytes(16384)).decode()}
	            if k else {"image_name": "h%d.jpg" % c, "image_size": 1048576,
	            "max_chunks_size": 16384, "total_chunk_count": 64, "error": 0})
	# oversized: chunks past MAX_CHUNK_BYTES, messages past MAX_LINE_BYTES
	for i in range(100):
	    pub("BIG%03d" % i, "data", {"image_name": "b.jpg", "chunk_id": 0,
	        "payload": base64.b64encode(b"\xff" * 100000).decode()})
	for i in range(10):
	    pub("BIG%03d" % i, "data", {"image_name": "b.jpg", "chunk_id": 1,
	        "payload": base64.b64encode(b"\xff" * 300000).decode()})
	# malformed and poisoned
	for i in range(500):
	    d = "P%03d" % (i % 50)
	    pub(d, "status", '{"status":"Alive","pendingImg":1e999999,"t":-1e999999}')
	    pub(d, "data", {"image_name": "p.jpg", "chunk_id": i, "payload": "@@@@"})
	    pub(d, "data", "not json {")
	    pub(d, "data", {"image_name": "../../x\u001b[31m.jpg", "chunk_id": 0, "payload": "AA=="})
	    pub(d, "data", {"image_name": "p.jpg", "chunk_id": -1, "payload": "AA=="})
	rng.shuffle(out)
	print("\n".join(out))
	EOF
}

# assemble_pid: the gxp-assemble the worker runs now.
assemble_pid() {
	pgrep -P "$WORKER_PID" -x gxp-assemble
}

# sample PID FILE: the largest VmRSS of PID, every 100 ms, into FILE.
sample() {
	local max=0 rss
	while rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null) && [ -n "$rss" ]; do
		[ "$rss" -gt "$max" ] && max=$rss && echo "$max" > "$2"
		sleep 0.1
	done
}

# cause CAUSE: gxp_assemble_refused_total{cause="CAUSE"} as last written.
cause() {
	awk -v m="gxp_assemble_refused_total{cause=\"$1\"}" '$1 == m { print $2 }' \
		"$BATS_TEST_TMPDIR/metrics/gxp-assemble.prom"
}

# sanitized: built with the sanitizers (make check SANITIZE=1), whose shadow
# memory the RSS counts.
sanitized() {
	ldd "$(command -v gxp-assemble)" | grep -q libasan
}

hwm() {
	awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# bats test_tags=slow
@test "stress: an adversarial mix at line rate beside a normal fleet: every photo acknowledged, memory bounded before and after a restart" {
	attack "$BATS_TEST_TMPDIR/attack"
	start_worker "$BATS_TEST_TMPDIR/w.env"
	asm=$(assemble_pid)
	sample "$asm" "$BATS_TEST_TMPDIR/rss1" &
	SAMPLER=$!
	gxp-sim --env "$BATS_TEST_TMPDIR/w.env" -d 40 -n 4 -l 0.05 -R 15000 -t 90000 -s 15 -j \
		> "$BATS_TEST_TMPDIR/sim" 2>&1 3>&- &
	sim=$!
	gxp-pub --env "$BATS_TEST_TMPDIR/w.env" < "$BATS_TEST_TMPDIR/attack" > /dev/null \
		2> "$BATS_TEST_TMPDIR/pub.err" 3>&- &
	FLOOD=$!
	rc=0; wait "$FLOOD" || rc=$?
	FLOOD=
	[ "$rc" = 0 ]
	rc=0; wait "$sim" || rc=$?
	tail -3 "$BATS_TEST_TMPDIR/sim"
	[ "$rc" = 0 ]
	[ "$(tail -1 "$BATS_TEST_TMPDIR/sim" | jq .acknowledged)" = 160 ]
	wait_until 30 sh -c "[ \$(awk '/^gxp_assemble_messages_total/ { print \$2 }' '$BATS_TEST_TMPDIR/metrics/gxp-assemble.prom') -ge 21000 ]"
	peak=$(hwm "$asm")
	echo "gxp-assemble: peak RSS $peak kB under the flood (sampled: $(cat "$BATS_TEST_TMPDIR/rss1") kB)" >&3
	sanitized || [ "$peak" -lt "$BOUND_KB" ]
	# refused by cause, counted; the made-up ids hold what the budgets allow
	grep '^gxp_assemble_refused_total' "$BATS_TEST_TMPDIR/metrics/gxp-assemble.prom" >&3
	prom=$BATS_TEST_TMPDIR/metrics/gxp-assemble.prom
	[ $(($(cause orphans) + $(cause evicted))) -gt 15000 ]
	[ "$(cause device_bytes)" -gt 0 ] && [ "$(cause limit)" = 100 ] && [ "$(cause payload)" = 500 ]
	[ "$(awk '$1 == "gxp_assemble_partial_bytes" { print $2 }' "$prom")" -lt 16000000 ]
	# a restart: the partial captures come back within the same budgets
	kill -9 "$asm"
	wait_until 30 sh -c "pgrep -P $WORKER_PID -x gxp-assemble | grep -vx $asm"
	asm2=$(assemble_pid)
	wait_until 30 file_has "$WORKER_LOG" "carrying on with"
	sleep 2
	peak2=$(hwm "$asm2")
	echo "gxp-assemble after the restart: peak RSS $peak2 kB" >&3
	sanitized || [ "$peak2" -lt "$BOUND_KB" ]
	# the fleet still gets through
	gxp-sim --env "$BATS_TEST_TMPDIR/w.env" -d 10 -n 2 -t 60000 -s 16 -j > "$BATS_TEST_TMPDIR/sim2" 2>&1 3>&-
	[ "$(tail -1 "$BATS_TEST_TMPDIR/sim2" | jq .acknowledged)" = 20 ]
	stop_worker
	[ "$WORKER_RC" = 0 ]
	# every photo stored once; no device_errors flood (one row per sender
	# and cause a minute, not one per message)
	[ "$(jq -r 'select(.ingest_status == "stored") | .storage_path' "$STORE/captures.ndjson" | sort -u | wc -l)" = 180 ]
	errors=$(wc -l < "$STORE/device_errors.ndjson")
	echo "device_errors rows: $errors for $(wc -l < "$BATS_TEST_TMPDIR/attack") adversarial messages" >&3
	[ "$errors" -lt 6000 ]
}
