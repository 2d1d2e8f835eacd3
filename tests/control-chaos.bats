#!/usr/bin/env bats
# The command queue under SIGKILLs: a cycling fleet (gxp-sim -W) through the
# whole worker while commands are queued with gxp-cmd and random stages,
# gxp-control among them, are killed.  No queued command is lost, each is
# sent and taken by its device exactly once.

load helpers
load e2e
load control

setup() {
	start_broker plain
	control_env
	worker_env "$BATS_TEST_TMPDIR/w.env" SCHEDULE_CAPTURES_PER_DAY=24 CONTROL_POLL_MS=200 \
		SUPERVISE_BACKOFF_MAX_S=2
}

teardown() {
	[ -n "${SIM_PID:-}" ] && kill "$SIM_PID" 2>/dev/null
	e2e_teardown
	teardown_control
}

# bats test_tags=slow
@test "control-chaos: local store: SIGKILLs of random stages lose no queued command and send none twice" {
	control_chaos "$BATS_TEST_TMPDIR/w.env" "${CHAOS_KILLS:-12}"
}
