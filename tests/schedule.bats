#!/usr/bin/env bats
# Wake schedules (src/lib/schedule.c): the unit tests of tests/schedule.c on
# a fixed clock (day boundaries, DST in several zones, test mode, a device
# away for days, the ACK_OK's clock time), and the SCHEDULE_* settings.

load helpers

@test "schedule: the unit tests on a fixed clock pass" {
	run "$GXP_TOP/build/schedule-test"
	echo "$output"
	[ "$status" = 0 ]
	[[ $output == *"checks, 0 failed"* ]]
	[ "$(grep -c '^ok ' <<<"$output")" -ge 60 ]
}

@test "schedule: a zone that does not exist, or bad wake times, stop a tool with the reason" {
	SCHEDULE_TZ=Europe/Atlantis run gxp-control --check
	[ "$status" = 100 ]
	[[ $output == *"SCHEDULE_TZ=Europe/Atlantis (environment): not a zone of the TZ database"* ]]
	SCHEDULE_WAKE_TIMES=7am run gxp-control --check
	[ "$status" = 100 ]
	[[ $output == *"SCHEDULE_WAKE_TIMES=7am (environment): expected HH:MM or HH:MM,HH:MM"* ]]
	SCHEDULE_TEST_MODE=maybe SCHEDULE_CAPTURES_PER_DAY=25 run gxp-control --check
	[ "$status" = 100 ]
	[[ $output == *"SCHEDULE_TEST_MODE=maybe (environment): expected true or false"* ]]
	[[ $output == *"SCHEDULE_CAPTURES_PER_DAY=25 (environment): expected an integer from 1 to 24"* ]]
}
