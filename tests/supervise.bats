#!/usr/bin/env bats
# gxp-supervise: checks before starting, restarts, permanent failures, the
# ordered drain and its bound, stderr prefixes, counters, and the systemd
# units.

load helpers
load e2e

setup() {
	start_broker plain
	worker_env "$BATS_TEST_TMPDIR/w.env"
	STORE=$BATS_TEST_TMPDIR/store
	SPOOL=$BATS_TEST_TMPDIR/spool
}

teardown() {
	[ -n "${OTHER_PID:-}" ] && kill "$OTHER_PID" 2>/dev/null
	e2e_teardown
}

@test "supervise: --check prints one line per check and exits 0 when all is well" {
	run gxp-supervise --env "$BATS_TEST_TMPDIR/w.env" --check
	echo "$output"
	[ "$status" = 0 ]
	[[ $output == *"gxp-sub: ok: broker 127.0.0.1:$BROKER_PORT (TLS off) accepted the connection"* ]]
	[[ $output == *"gxp-assemble: ok: spool $SPOOL writable"* ]]
	[[ $output == *"gxp-upload: ok: local store $STORE writable (bucket gxp-captures)"* ]]
	[[ $output == *"gxp-pub: ok: broker 127.0.0.1:$BROKER_PORT"* ]]
	[[ $output == *"gxp-sub: ok: journal $SPOOL/journal writable; committed up to seq 0"* ]]
	[[ $output == *"gxp-upload: ok: spool $SPOOL: no photo waiting"* ]]
	[[ $output == *"gxp-control: ok: broker 127.0.0.1:$BROKER_PORT"* ]]
	[[ $output == *"gxp-control: ok: local store $STORE/control writable"* ]]
	[ "$(grep -c ': ok: ' <<<"$output")" = 8 ]
}

@test "supervise: --check says what is wrong: a broker away is 111, a bad setting 100" {
	stop_broker
	run gxp-supervise --env "$BATS_TEST_TMPDIR/w.env" --check
	[ "$status" = 111 ]
	[[ $output == *"gxp-sub: FAIL: broker 127.0.0.1:$BROKER_PORT: Connection refused"* ]]
	[[ $output == *"gxp-assemble: ok: spool"* ]]
	worker_env "$BATS_TEST_TMPDIR/bad.env" "MQTT_USERNAME=someone" "MQTT_TLS=true" \
		"MQTT_CAFILE=$BATS_TEST_TMPDIR/nope.pem" "SUPABASE_URL=not a url"
	run gxp-supervise --env "$BATS_TEST_TMPDIR/bad.env" --check
	[ "$status" = 100 ]
	[[ $output == *"MQTT_USERNAME is set ($BATS_TEST_TMPDIR/bad.env line 8) but MQTT_PASSWORD is missing"* ]]
	[[ $output == *"MQTT_CAFILE=$BATS_TEST_TMPDIR/nope.pem ($BATS_TEST_TMPDIR/bad.env line 10): No such file or directory"* ]]
	[[ $output == *"SUPABASE_URL=not a url ($BATS_TEST_TMPDIR/bad.env line 11): expected an http:// or https:// URL"* ]]
}

@test "supervise: a bad setting stops it before anything starts" {
	worker_env "$BATS_TEST_TMPDIR/bad.env" "MQTT_USERNAME=someone"
	run timeout 30 gxp-supervise --env "$BATS_TEST_TMPDIR/bad.env"
	[ "$status" = 100 ]
	[[ $output == *"GXP MQTT Worker"* ]]
	[[ $output == *"MQTT_PASSWORD is missing"* ]]
	[[ $output == *"the configuration is not usable (above); nothing started"* ]]
	[[ $output != *"Worker started"* ]]
	[ ! -d "$SPOOL/partial" ] || [ -z "$(ls "$SPOOL/partial")" ]
}

@test "supervise: prints the seed's banner; every stderr line names its stage" {
	start_worker "$BATS_TEST_TMPDIR/w.env"
	grep -qx "GXP MQTT Worker - ESP32S3-CAM Fleet Ingestion" "$WORKER_LOG"
	grep -qx "MQTT Broker: 127.0.0.1:$BROKER_PORT (TLS: False)" "$WORKER_LOG"
	grep -qx "Storage Bucket: gxp-captures" "$WORKER_LOG"
	grep -q "Worker started - processing messages" "$WORKER_LOG"
	stop_worker
	# past the banner, each line begins with the name of who wrote it
	sed '1,/^=*$/d' "$WORKER_LOG" | sed '1,/^=*$/d' > "$BATS_TEST_TMPDIR/lines"
	[ -s "$BATS_TEST_TMPDIR/lines" ]
	! grep -vE '^gxp-(sub|control|assemble|upload|pub|supervise): ' "$BATS_TEST_TMPDIR/lines" || false
}

@test "supervise: a stage killed with SIGKILL: the pipeline restarts after a pause and works" {
	start_worker "$BATS_TEST_TMPDIR/w.env"
	pid=$(stage_pid gxp-assemble)
	[ -n "$pid" ]
	kill -KILL "$pid"
	wait_until 20 file_has "$WORKER_LOG" "gxp-assemble was killed by SIGKILL (status 137: the kernel's out-of-memory killer, or kill -9); restarting the pipeline"
	wait_until 20 file_has "$WORKER_LOG" "restart 1 in 1s"
	wait_until 20 sh -c "[ \$(grep -c 'Worker started' '$WORKER_LOG') -ge 2 ]"
	wait_until 10 sh -c "[ \$(grep -c 'Subscribed to topics' '$WORKER_LOG') -ge 2 ]"
	[ "$(stage_pid gxp-assemble)" != "$pid" ]
	run gxp-sim --env "$BATS_TEST_TMPDIR/w.env" -d 2 -n 2 -t 30000 -s 2
	[ "$status" = 0 ]
	[ "$(find "$STORE" -name '*.jpg' | wc -l)" = 4 ]
	grep -q "gxp_supervise_restarts_total 1" "$SPOOL/metrics/gxp-supervise.prom"
}

@test "supervise: a permanent failure (exit 100) stops it for good, saying which stage" {
	# another gxp-upload holds this spool: ours exits 100 at start
	mkdir -p "$SPOOL"
	GXP_SPOOL=$SPOOL GXP_STORE=$STORE gxp-upload < /dev/zero > /dev/null 2>&1 3>&- &
	OTHER_PID=$!
	wait_until 10 test -f "$SPOOL/upload.lock"
	run timeout 60 gxp-supervise --env "$BATS_TEST_TMPDIR/w.env"
	[ "$status" = 100 ]
	[[ $output == *"another gxp-upload is using this spool"* ]]
	[[ $output == *"gxp-upload failed permanently (exit 100); stopping the pipeline"* ]]
	[[ $output == *"not restarting"* ]]
	[[ $output != *"restart 1"* ]]
	[ -z "$(pgrep -f "gxp-sub --env $BATS_TEST_TMPDIR/w.env")" ]
}

@test "supervise: a SIGKILL of gxp-supervise takes its stages with it; a new one starts clean and replays the journal" {
	start_worker "$BATS_TEST_TMPDIR/w.env" --own-group
	stages=$(pgrep -P "$WORKER_PID" -x 'gxp-(sub|control|assemble|upload|pub)' | tr '\n' ' ')
	[ "$(wc -w <<<"$stages")" = 5 ]
	kill -KILL "$WORKER_PID"
	wait "$WORKER_PID" 2>/dev/null || true
	WORKER_PID=
	wait_until 10 all_gone $stages
	# its stages no longer hold the spool or the journal
	start_worker "$BATS_TEST_TMPDIR/w.env"
	mpub -q 1 -t ESP32CAM/DEV9/status -m '{"device_id":"DEV9","status":"Alive","pendingImg":0}'
	wait_until 20 file_has "$STORE/device_status.ndjson" DEV9
	stop_worker
	[ "$WORKER_RC" = 0 ]
	[ "$(jq .seq "$SPOOL/journal/committed")" -ge 1 ]
	! grep -q "failed permanently" "$WORKER_LOG" || false
}

# bats test_tags=slow
@test "supervise: SIGTERM drains within SUPERVISE_DRAIN_TIMEOUT_S even when a stage hangs" {
	worker_env "$BATS_TEST_TMPDIR/w.env" SUPERVISE_DRAIN_TIMEOUT_S=2
	start_worker "$BATS_TEST_TMPDIR/w.env"
	kill -STOP "$(stage_pid gxp-upload)"
	start=$SECONDS
	stop_worker
	[ "$WORKER_RC" = 0 ]
	[ $((SECONDS - start)) -le 12 ]
	grep -q "drain took longer than 2s; stopping gxp-upload" "$WORKER_LOG"
	[ -z "$(pgrep -f "gxp-upload --env $BATS_TEST_TMPDIR/w.env")" ]
}

@test "supervise: stages run in their own process groups, so a terminal's ^C reaches only the supervisor" {
	# a shell cannot trap a signal it was started with ignored, and SIG_IGN
	# is inherited: run from a background job, SIGINT cannot reach it
	(( 0x$(awk '/^SigIgn:/ { print $2 }' /proc/$BASHPID/status) & 2 )) &&
		skip "the test runs with SIGINT ignored (started in the background)"
	# as from a terminal: a job of its own, SIGINT not ignored
	set -m
	start_worker "$BATS_TEST_TMPDIR/w.env"
	set +m
	own=$(ps -o pgid= -p "$WORKER_PID" | tr -d ' ')
	for s in gxp-sub gxp-control gxp-assemble gxp-upload gxp-pub; do
		pg=$(ps -o pgid= -p "$(stage_pid $s)" | tr -d ' ')
		[ "$pg" != "$own" ]
	done
	# SIGINT drains like SIGTERM
	kill -INT "$WORKER_PID"
	wait_until 40 eval '! kill -0 "$WORKER_PID" 2>/dev/null' || {
		cat "$WORKER_LOG"
		false
	}
	rc=0; wait "$WORKER_PID" || rc=$?
	WORKER_PID=
	[ "$rc" = 0 ]
	grep -q "stopping: draining the pipeline" "$WORKER_LOG"
}

@test "supervise: counters: a .prom file per stage, and on SIGUSR1" {
	worker_env "$BATS_TEST_TMPDIR/w.env" METRICS_INTERVAL_S=1
	start_worker "$BATS_TEST_TMPDIR/w.env"
	run gxp-sim --env "$BATS_TEST_TMPDIR/w.env" -d 3 -n 1 -t 30000 -s 4
	[ "$status" = 0 ]
	wait_until 10 sh -c "grep -q '^gxp_assemble_photos_completed_total 3' '$SPOOL/metrics/gxp-assemble.prom'"
	for s in gxp_sub gxp_control gxp_assemble gxp_upload gxp_pub; do
		grep -q "^# TYPE ${s}_" "$SPOOL/metrics/${s//_/-}.prom"
	done
	wait_until 10 sh -c "grep -q '^gxp_control_answered_total 3' '$SPOOL/metrics/gxp-control.prom'"
	grep -q '^gxp_sub_messages_total [1-9]' "$SPOOL/metrics/gxp-sub.prom"
	# written every METRICS_INTERVAL_S: the last ACK_OK may be a second behind
	wait_until 10 sh -c "grep -q '^gxp_pub_published_total 3' '$SPOOL/metrics/gxp-pub.prom'"
	kill -USR1 "$WORKER_PID"
	wait_until 10 file_has "$WORKER_LOG" "gxp-assemble: info: counters:"
	wait_until 10 file_has "$WORKER_LOG" "gxp-sub: info: counters:"
	wait_until 10 file_has "$WORKER_LOG" "gxp-pub: info: counters:"
	wait_until 10 file_has "$WORKER_LOG" "gxp-upload: info: counters:"
	wait_until 10 file_has "$WORKER_LOG" "gxp-control: info: counters:"
	# the signal ended the supervisor's wait; it goes on, and drains as usual
	sleep 0.5
	kill -0 "$WORKER_PID"
	! grep -q "unbound variable" "$WORKER_LOG" || false
	! grep -q "restarting the pipeline" "$WORKER_LOG" || false
	stop_worker
	[ "$WORKER_RC" = 0 ]
	grep -q "gxp-supervise: stopped" "$WORKER_LOG"
}

# bats test_tags=slow
@test "supervise: the package's units pass systemd-analyze verify; make install lays out bin, man and share" {
	make -s -C "$GXP_TOP" install DESTDIR="$BATS_TEST_TMPDIR/root" PREFIX=/usr > /dev/null
	for t in gxp-sub gxp-control gxp-assemble gxp-upload gxp-pub gxp-supervise gxp-sim gxp-cmd; do
		[ -x "$BATS_TEST_TMPDIR/root/usr/bin/$t" ]
	done
	[ -f "$BATS_TEST_TMPDIR/root/usr/share/man/man7/gxp.7" ]
	[ -f "$BATS_TEST_TMPDIR/root/usr/share/man/man5/gxp-spool.5" ]
	[ -f "$BATS_TEST_TMPDIR/root/usr/share/gxp/examples/coffee.jpg" ]
	[ -f "$BATS_TEST_TMPDIR/root/usr/share/gxp/sql/schema.sql" ]
	# as installed by hand (README, "Under systemd"): the tools elsewhere
	for u in gxp.service gxp@.service; do
		sed "s|/usr/bin/gxp-supervise|$BATS_TEST_TMPDIR/root/usr/bin/gxp-supervise|" \
			"$GXP_TOP/debian/$u" > "$BATS_TEST_TMPDIR/${u/@/@w1}"
		id gxp > /dev/null 2>&1 ||
			sed -i 's/^User=gxp/User=root/; s/^Group=gxp/Group=root/' "$BATS_TEST_TMPDIR/${u/@/@w1}"
		MANPATH=$BATS_TEST_TMPDIR/root/usr/share/man run systemd-analyze verify "$BATS_TEST_TMPDIR/${u/@/@w1}"
		echo "$output"
		[ "$status" = 0 ]
		[ -z "$output" ]
		grep -qx 'KillMode=mixed' "$GXP_TOP/debian/$u"
		grep -qx 'RestartPreventExitStatus=100' "$GXP_TOP/debian/$u"
	done
}
