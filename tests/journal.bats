#!/usr/bin/env bats
# The journal: what gxp-sub received is on disk before it goes down the
# pipe, so that a SIGKILL of any stage loses no row and writes none twice.

load helpers
load e2e

setup() {
	start_broker plain
	worker_env "$BATS_TEST_TMPDIR/w.env" SUPERVISE_BACKOFF_MAX_S=1
	STORE=$BATS_TEST_TMPDIR/store
	SPOOL=$BATS_TEST_TMPDIR/spool
}

teardown() {
	e2e_teardown
}

# The issue's numbers: before the journal, 269 of these 400 were lost.
@test "journal: 400 heartbeats from 20 devices at 500/s, gxp-upload SIGKILLed 4 times: every one a row, once" {
	start_worker "$BATS_TEST_TMPDIR/w.env"
	numbered_pub "$BATS_TEST_TMPDIR/pub" --count 400 --devices 20 --rate 500
	for i in 1 2 3 4; do
		kill_when_up gxp-upload 0.2
	done
	wait_pub "$BATS_TEST_TMPDIR/pub"
	acked_seqs "$BATS_TEST_TMPDIR/pub" status > "$BATS_TEST_TMPDIR/acked"
	[ "$(wc -l < "$BATS_TEST_TMPDIR/acked")" = 400 ]
	# the rows come after the last restart; give them time, then drain
	wait_until 30 eval '[ "$(local_status_seqs "$STORE" | sort -u | wc -l)" -ge 400 ]' || true
	stop_worker
	[ "$WORKER_RC" = 0 ]
	[ "$(grep -c 'restarting the pipeline' "$WORKER_LOG")" -ge 4 ]
	local_status_seqs "$STORE" > "$BATS_TEST_TMPDIR/rows"
	compare_seqs device_status "$BATS_TEST_TMPDIR/acked" "$BATS_TEST_TMPDIR/rows"
}
