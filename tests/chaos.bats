#!/usr/bin/env bats
# Chaos: 50 simulated devices send 500 photos through the whole worker into
# the Supabase endpoint on real PostgreSQL, while the test SIGKILLs a random
# stage at random moments (CHAOS_KILLS, at least 20), restarts the broker
# once and makes the endpoint answer 503 for 10 s.  Then every photo must be
# in storage exactly once and byte-identical, with exactly one captures row,
# stored, its sha256 matching; every photo ACKed; nothing left in the spool.

load helpers
load pg
load e2e

setup_file() {
	start_pg
	start_endpoint
}

teardown_file() {
	stop_endpoint
	stop_pg
}

setup() {
	reset_db
	ep_reset
	start_broker plain
	worker_env "$BATS_TEST_TMPDIR/w.env" "SUPABASE_URL=$EP_URL" \
		"SUPABASE_SERVICE_ROLE=$EP_SERVICE_KEY" SUPERVISE_BACKOFF_MAX_S=2 \
		RETRANSMIT_DELAY_MS=2000 CAPTURE_TIMEOUT_MS=60000 UPLOAD_RETRY_MAX_MS=2000
	OBJECTS=$EP_DIR/objects/gxp-captures
}

teardown() {
	[ -n "${SIM_PID:-}" ] && kill "$SIM_PID" 2>/dev/null
	e2e_teardown
}

# bats test_tags=slow
@test "chaos: 500 photos, >= 20 SIGKILLs, a broker restart and 10 s of 503: nothing lost, nothing twice" {
	kills=${CHAOS_KILLS:-20}
	start_worker "$BATS_TEST_TMPDIR/w.env"
	capture_acks "$BATS_TEST_TMPDIR/acks"
	# devices resend a photo after 8 s without ACK_OK, as real ones would
	gxp-sim --env "$BATS_TEST_TMPDIR/w.env" -d 50 -n 10 -l 0.05 -r 250 \
		-R 8000 -t 600000 -s 77 -j > "$BATS_TEST_TMPDIR/sim.out" \
		2> "$BATS_TEST_TMPDIR/sim.err" 3>&- &
	SIM_PID=$!
	RANDOM=4242
	: > "$BATS_TEST_TMPDIR/kills"
	for i in $(seq 1 "$kills"); do
		sleep "$((2 + RANDOM % 3)).$((RANDOM % 10))"
		kill_random_stage >> "$BATS_TEST_TMPDIR/kills"
		if [ "$i" = 5 ]; then
			restart_broker
			echo broker >> "$BATS_TEST_TMPDIR/kills"
		fi
		if [ "$i" = 10 ]; then
			ep_fault '{"status":503,"seconds":10}'
			echo 503 >> "$BATS_TEST_TMPDIR/kills"
		fi
	done
	rc=0; wait "$SIM_PID" || rc=$?
	SIM_PID=
	summary=$(tail -1 "$BATS_TEST_TMPDIR/sim.out")
	echo "gxp-sim: $summary"
	[ "$rc" = 0 ]
	stop_worker
	[ "$WORKER_RC" = 0 ]

	n_kills=$(grep -c '^gxp-' "$BATS_TEST_TMPDIR/kills")
	restarts=$(grep -c 'restarting the pipeline' "$WORKER_LOG")
	objects=$(psql_q "select count(*) from storage.objects where bucket_id = 'gxp-captures'")
	distinct=$(psql_q "select count(distinct name) from storage.objects where bucket_id = 'gxp-captures'")
	rows=$(psql_q "select count(*) from captures")
	stored=$(psql_q "select count(*) from captures where ingest_status = 'stored'")
	devices=$(psql_q "select count(*) from devices")
	acked=$(jq -r .acknowledged <<<"$summary")
	echo "checked: $n_kills SIGKILLs ($(sort "$BATS_TEST_TMPDIR/kills" | uniq -c | tr -s ' \n' ' ')), $restarts pipeline restarts, 1 broker restart, 10 s of 503"
	echo "checked: $acked/500 photos acknowledged, $objects objects ($distinct distinct), $rows captures rows ($stored stored), $devices devices"
	[ "$n_kills" -ge 20 ]
	[ "$acked" = 500 ]
	[ "$objects" = 500 ] && [ "$distinct" = 500 ]
	if [ "$stored" != "$rows" ]; then
		psql_q "select d.device_hw_id, c.device_capture_id, c.ingest_status, c.ingest_error
			from captures c join devices d using (device_id) where c.ingest_status <> 'stored'" |
		while IFS='|' read -r mac cap status err; do
			echo "not stored: $mac $cap ($status: $err); the worker's log about it:"
			grep -F -- "$mac" "$WORKER_LOG" | grep -F -- "$cap" | tail -30
		done
	fi
	[ "$rows" = 500 ] && [ "$stored" = 500 ]
	[ "$devices" = 50 ]
	[ "$(psql_q "select count(*) from (select device_id, device_capture_id from captures group by 1, 2 having count(*) > 1) d")" = 0 ]
	# byte-identical: each object hashes to its row's sha256 and is a photo gxp-sim sent
	psql_q "select storage_path, image_sha256, image_bytes from captures" > "$BATS_TEST_TMPDIR/rows"
	bad=0
	while IFS='|' read -r path sha bytes; do
		[ "$(sha256sum < "$OBJECTS/$path" | cut -d' ' -f1)" = "$sha" ] || bad=$((bad + 1))
	done < "$BATS_TEST_TMPDIR/rows"
	echo "checked: $(wc -l < "$BATS_TEST_TMPDIR/rows") objects against their rows' sha256, $bad mismatches"
	[ "$bad" = 0 ]
	sent=$(for f in "$GXP_TOP"/examples/*.jpg; do sha256sum < "$f" | cut -d' ' -f1; done | sort)
	[ "$(cut -d'|' -f2 "$BATS_TEST_TMPDIR/rows" | sort -u)" = "$sent" ]
	# every photo ACKed on the wire, at least once
	acked_wire=$(grep ACK_OK "$BATS_TEST_TMPDIR/acks" | sed 's/ .*"image_name":"\([^"]*\)".*/ \1/' | awk '{print $1, $2}' | sort -u | wc -l)
	echo "checked: $acked_wire distinct (device, photo) ACK_OKs seen on the broker"
	[ "$acked_wire" = 500 ]
	# no stray files in the spool
	spool=$BATS_TEST_TMPDIR/spool
	stray=$(find "$spool/tmp" "$spool/partial" "$spool/ready" "$spool/work" "$spool/failed" \
		"$spool/rows" -mindepth 1 ! -path "$spool/work/rows.at" | wc -l)
	echo "checked: $stray stray files in the spool; $(find "$spool/stored" -name '*.json' | wc -l) stored records"
	[ "$stray" = 0 ]
}
