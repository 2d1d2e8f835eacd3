#!/usr/bin/env bats
# What a new operator trips over (issue 16): misspelt settings, a client id
# used twice, MQTT 5 and brokers that only speak 3.1.1, a second worker,
# what gxp-supervise says and when, a filter between two stages, exit codes.

load helpers
load e2e

setup() {
	cd "$BATS_TEST_TMPDIR"
}

teardown() {
	[ -n "${FAKE_PID:-}" ] && kill "$FAKE_PID" 2>/dev/null
	[ -n "${OTHER_PID:-}" ] && kill "$OTHER_PID" 2>/dev/null
	if [ -n "${OTHER_WORKER:-}" ]; then
		kill -TERM "$OTHER_WORKER" 2>/dev/null
		wait "$OTHER_WORKER" 2>/dev/null
	fi
	e2e_teardown
}

# start_fake MODE: tests/fake-mqtt on a free port; sets FAKE_PORT, FAKE_LOG.
start_fake() {
	FAKE_LOG=$BATS_TEST_TMPDIR/fake.log
	"$GXP_TOP/tests/fake-mqtt" --port-file "$BATS_TEST_TMPDIR/fake.port" "$1" \
		> "$FAKE_LOG" 2>&1 3>&- &
	FAKE_PID=$!
	wait_until 10 test -f "$BATS_TEST_TMPDIR/fake.port"
	FAKE_PORT=$(cat "$BATS_TEST_TMPDIR/fake.port")
}

@test "settings: a misspelt or lower-case name in .env is an error naming the closest setting" {
	cat > .env <<-'EOT'
	MQTT_TSL=true
	GXP_SPOLL=/tmp/x
	LOG_LEVL=DEBUG
	mqtt_host=broker.example
	MQTT_USERNAME=u
	MQTT_PASWORD=not-shown
	EOT
	run gxp-sub --check
	echo "$output"
	[ "$status" = 100 ]
	[[ $output == *"configuration: MQTT_TSL (.env line 1) is not a gxp setting; did you mean MQTT_TLS?"* ]]
	[[ $output == *"configuration: GXP_SPOLL (.env line 2) is not a gxp setting; did you mean GXP_SPOOL?"* ]]
	[[ $output == *"configuration: LOG_LEVL (.env line 3) is not a gxp setting; did you mean LOG_LEVEL?"* ]]
	[[ $output == *"configuration: mqtt_host (.env line 4) is not a gxp setting; did you mean MQTT_HOST? (names are upper case)"* ]]
	[[ $output == *"configuration: MQTT_PASWORD (.env line 6) is not a gxp setting; did you mean MQTT_PASSWORD?"* ]]
	[[ $output != *not-shown* ]]
	echo 'SOMETHING_ELSE=1' > other.env
	run gxp-pub --env other.env --check
	[ "$status" = 100 ]
	[[ $output == *"configuration: SOMETHING_ELSE (other.env line 1) is not a gxp setting (gxp(7) lists the settings)"* ]]
}

@test "settings: a setting an earlier version read and this one does not is a warning, not an error" {
	printf 'ASSEMBLE_OPEN_FILES=512\n' > .env
	chmod 600 .env
	run gxp-assemble --check --spool "$BATS_TEST_TMPDIR/spool"
	echo "$output"
	[ "$status" = 0 ]
	[[ $output == *"warning: configuration: ASSEMBLE_OPEN_FILES (.env line 1) is no longer used; remove it"* ]]
}

@test "settings: a gxp-looking unknown name in the environment is a warning, its value never shown" {
	start_broker plain
	MQTT_TSL=true LOGLEVEL=debug mqtt_port=1 MQTT_PASWORD=not-shown HOME=/nowhere \
		run gxp-pub -h 127.0.0.1 -p "$BROKER_PORT" --check
	echo "$output"
	[ "$status" = 0 ]
	[[ $output == *"warning: configuration: MQTT_TSL (environment) is not a gxp setting; did you mean MQTT_TLS?"* ]]
	[[ $output == *"warning: configuration: LOGLEVEL (environment) is not a gxp setting; did you mean LOG_LEVEL?"* ]]
	[[ $output == *"warning: configuration: mqtt_port (environment) is not a gxp setting; did you mean MQTT_PORT? (names are upper case)"* ]]
	[[ $output == *"warning: configuration: MQTT_PASWORD (environment) is not a gxp setting; did you mean MQTT_PASSWORD?"* ]]
	[[ $output != *not-shown* ]]
	[[ $output != *HOME* ]]
}

@test "client id: two processes with one id both say so, and --check finds the one in use" {
	start_broker plain
	broker_env
	GXP_SPOOL=$BATS_TEST_TMPDIR/a start_sub a.out a.err -c -i twin-sub
	GXP_SPOOL=$BATS_TEST_TMPDIR/b gxp-sub -c -i twin-sub > b.out 2> b.err 3>&- &
	OTHER_PID=$!
	# the broker hands the session back and forth; each sees the other's record
	wait_until 30 file_has a.err "another client is using the id twin-sub: gxp-sub pid $OTHER_PID on host $(hostname), spool $BATS_TEST_TMPDIR/b"
	wait_until 30 file_has b.err "another client is using the id twin-sub: gxp-sub pid $SUB_PID on host $(hostname), spool $BATS_TEST_TMPDIR/a"
	grep -q "Client twin-sub already connected, closing old connection" "$BROKER_DIR/mosquitto.log"
	# a third, about to start on another spool, is told before it connects as twin-sub
	GXP_SPOOL=$BATS_TEST_TMPDIR/c run gxp-sub --check -c -i twin-sub
	echo "$output"
	[ "$status" = 100 ]
	[[ $output == *"gxp-sub: FAIL: another client is using the id twin-sub: gxp-sub pid "*"give each worker its own MQTT_CLIENT_ID"* ]]
	# it looked with an id of its own
	grep -q "New client connected from .* as gxp-check-" "$BROKER_DIR/mosquitto.log"
	cat a.err b.err
}

@test "client id: a clean exit clears the record; one on the same spool is the worker itself" {
	start_broker plain
	broker_env
	export GXP_SPOOL=$BATS_TEST_TMPDIR/a
	start_sub a.out a.err -c -i solo-sub
	run gxp-sub --check -c -i solo-sub
	echo "$output"
	[ "$status" = 0 ]
	[[ $output == *"the id solo-sub is in use by the worker on this spool (gxp-sub pid $SUB_PID"* ]]
	stop_pid "$SUB_PID"
	[ "$(timeout 5 mosquitto_sub -p "$BROKER_PORT" -t gxp/clients/solo-sub -W 1 -C 1 2>/dev/null)" = "" ]
	GXP_SPOOL=$BATS_TEST_TMPDIR/b run gxp-sub --check -c -i solo-sub
	[ "$status" = 0 ]
	[[ $output != *"in use"* ]]
	# a SIGKILL leaves the record to the broker's Last Will, which clears it too
	start_sub a.out a.err -c -i solo-sub
	kill -KILL "$SUB_PID"
	wait_until 10 eval '[ -z "$(timeout 2 mosquitto_sub -p "$BROKER_PORT" -t gxp/clients/solo-sub -W 1 -C 1 2>/dev/null)" ]'
}

@test "client id: an MQTT 5 broker that hands the session over (0x8E) is heard" {
	start_fake takeover
	MQTT_PRESENCE_TOPIC=off gxp-sub -h 127.0.0.1 -p "$FAKE_PORT" -c -i taken-sub > out 2> err 3>&- &
	OTHER_PID=$!
	wait_until 20 file_has err "another client is using the id taken-sub: the broker handed our session to it (session taken over)"
	grep -q "CONNECT protocol=5 client=taken-sub" "$FAKE_LOG"
}

@test "mqtt: a broker that only speaks 3.1.1 gets 3.1.1" {
	start_fake v311only
	MQTT_PRESENCE_TOPIC=off start_sub out err -h 127.0.0.1 -p "$FAKE_PORT" -c -i old-sub
	grep -q "does not speak MQTT 5; using 3.1.1" err
	grep -q "CONNECT protocol=5 client=old-sub" "$FAKE_LOG"
	grep -q "CONNECT protocol=4 client=old-sub" "$FAKE_LOG"
}

@test "exit codes: a spool path that is a file is permanent (100) for every stage and the worker" {
	touch afile
	export GXP_SPOOL=$BATS_TEST_TMPDIR/afile
	run gxp-assemble < /dev/null
	[ "$status" = 100 ]
	[[ $output == *"spool $GXP_SPOOL: Not a directory"* ]]
	run gxp-upload < /dev/null
	[ "$status" = 100 ]
	[[ $output == *"spool $GXP_SPOOL: Not a directory"* ]]
	run gxp-supervise
	[ "$status" = 100 ]
	[[ $output == *"spool $GXP_SPOOL: not a directory"* ]]
}

@test "worker: a second gxp-supervise on the same spool stops before it connects to anything" {
	start_broker plain
	worker_env w.env
	start_worker w.env
	before=$(grep -c "New client connected" "$BROKER_DIR/mosquitto.log")
	run timeout 30 gxp-supervise --env w.env
	echo "$output"
	[ "$status" = 100 ]
	[[ $output == *"another gxp-supervise (pid $WORKER_PID) is running on the spool $BATS_TEST_TMPDIR/spool; nothing started"* ]]
	[[ $output != *"Worker started"* ]]
	[ "$(grep -c "New client connected" "$BROKER_DIR/mosquitto.log")" = "$before" ]
	! grep -q "already connected" "$BROKER_DIR/mosquitto.log" || false
	# and its --check says so
	run gxp-supervise --env w.env --check
	[ "$status" = 100 ]
	[[ $output == *"gxp-supervise: FAIL: spool $BATS_TEST_TMPDIR/spool is in use by another gxp-supervise (pid $WORKER_PID); one worker per spool"* ]]
	# the first one never noticed
	! grep -q "another client" "$WORKER_LOG" || false
	run gxp-sim --env w.env -d 2 -n 1 -t 30000 -s 3
	[ "$status" = 0 ]
}

# bats test_tags=slow
@test "worker: without MQTT_CLIENT_ID, workers on two spools get ids of their own" {
	start_broker plain
	for w in a b; do
		printf 'MQTT_HOST=127.0.0.1\nMQTT_PORT=%s\nGXP_SPOOL=%s\nGXP_STORE=%s\n' \
			"$BROKER_PORT" "$BATS_TEST_TMPDIR/$w/spool" "$BATS_TEST_TMPDIR/$w/store" > $w.env
	done
	start_worker a.env
	OTHER_WORKER=$WORKER_PID
	mv "$WORKER_LOG" a.log
	start_worker b.env
	sleep 3
	ida=gxp-$(hostname -s)-$(cd a/spool && pwd -P | sha256sum | cut -c1-8)
	idb=gxp-$(hostname -s)-$(cd b/spool && pwd -P | sha256sum | cut -c1-8)
	[ "$ida" != "$idb" ]
	grep -q "as $ida-sub (p5, c0" "$BROKER_DIR/mosquitto.log"
	grep -q "as $idb-sub (p5, c0" "$BROKER_DIR/mosquitto.log"
	! grep -q "already connected" "$BROKER_DIR/mosquitto.log" || false
	! grep -q "another client" a.log "$WORKER_LOG" || false
	! grep -q '^MQTT_CLIENT_ID=' "$GXP_TOP/.env.example" || false
}

@test "worker: 'Worker started' only once it has; a stage's death is said plainly, without bash's job report" {
	start_broker plain
	worker_env w.env
	# gxp-upload cannot start: another holds the spool's upload lock
	mkdir -p spool
	GXP_SPOOL=$BATS_TEST_TMPDIR/spool GXP_STORE=$BATS_TEST_TMPDIR/store gxp-upload < /dev/zero > /dev/null 2>&1 3>&- &
	OTHER_PID=$!
	wait_until 10 test -f spool/upload.lock
	run timeout 60 gxp-supervise --env w.env
	[ "$status" = 100 ]
	[[ $output == *"gxp-upload failed permanently (exit 100)"* ]]
	[[ $output != *"Worker started"* ]]
	kill "$OTHER_PID"; wait "$OTHER_PID" 2>/dev/null; OTHER_PID=
	start_worker w.env
	kill -KILL "$(pgrep -P "$WORKER_PID" -x gxp-upload)"
	wait_until 20 file_has "$WORKER_LOG" "gxp-upload was killed by SIGKILL (status 137: the kernel's out-of-memory killer, or kill -9); restarting the pipeline"
	wait_until 20 sh -c "[ \$(grep -c 'Worker started' '$WORKER_LOG') -ge 2 ]"
	stop_worker
	cat "$WORKER_LOG"
	! grep -E "line [0-9]+: +[0-9]+ (Killed|Terminated)" "$WORKER_LOG" || false
	! grep -q "Killed  " "$WORKER_LOG" || false
}

@test "worker: --check prints every failed check once" {
	start_broker plain
	worker_env w.env "MQTT_USERNAME=someone"
	run gxp-supervise --env w.env --check
	echo "$output"
	[ "$status" = 100 ]
	[ "$(grep -c "MQTT_PASSWORD is missing" <<<"$output")" = 1 ]
	[[ $output == *"gxp-supervise: error: configuration: MQTT_USERNAME is set"* ]]
	worker_env w.env "SUPABASE_URL=http://127.0.0.1:1"
	run gxp-supervise --env w.env --check
	[ "$status" = 100 ]
	[ "$(grep -c "SUPABASE_SECRET_KEY is missing" <<<"$output")" = 1 ]
	[[ $output != *"gxp-sub: error: configuration: SUPABASE_URL"* ]]
	worker_env w.env
	stop_broker
	run gxp-supervise --env w.env --check
	echo "$output"
	[ "$status" = 111 ]
	[ "$(grep -c "Connection refused" <<<"$output")" = 1 ]
	[[ $output != *"retrying"* ]]
}

@test "worker: no temporary file it creates can be planted in advance" {
	start_broker plain
	worker_env w.env
	mkdir tmp
	WORKER_LOG=$BATS_TEST_TMPDIR/worker.log
	TMPDIR=$BATS_TEST_TMPDIR/tmp strace -f -qq -e trace=openat,open,creat,mkdir -o trace \
		gxp-supervise --env w.env 2> "$WORKER_LOG" 3>&- &
	tracer=$!
	wait_until 30 file_has "$WORKER_LOG" "Worker started"
	WORKER_PID=$(pgrep -P "$tracer" -f gxp-supervise)
	stop_worker
	wait "$tracer" || true
	# in TMPDIR itself: files only with O_EXCL, directories only private
	t=$BATS_TEST_TMPDIR/tmp
	grep -E "\"$t/[^/\"]+\"" trace > here || true
	cat here
	[ -s here ]
	! grep -E "open.*O_CREAT" here | grep -v O_EXCL || false
	! grep -E "mkdir\(" here | grep -v ", 0700)" || false
}

# bats test_tags=slow
@test "worker: a filter between two stages (SUPERVISE_FILTER_AFTER_ASSEMBLE), plain grep, loses no acknowledgement" {
	start_broker plain
	# grep as the issue ran it, without --line-buffered: gxp-supervise
	# makes its output line-buffered
	worker_env w.env "SUPERVISE_FILTER_AFTER_ASSEMBLE=echo filter up >&2; grep -v '\"event\":\"inbound\"'"
	start_worker w.env
	grep -q "gxp-supervise: filter after gxp-assemble: filter up" "$WORKER_LOG"
	[ "$(pgrep -P "$WORKER_PID" -x sh | wc -l)" = 1 ]
	# one line goes through at once: block-buffered, it would wait for 4 KiB more
	mpub -q 1 -t ESP32CAM/LONELY1/status -m '{"status":"Alive","pendingImg":0}'
	wait_until 20 file_has store/devices.ndjson LONELY1
	run gxp-sim --env w.env -d 3 -n 2 -l 0.05 -t 60000 -s 16 -j
	echo "$output"
	[ "$status" = 0 ]
	json=$(tail -n 1 <<<"$output")
	[ "$(jq .acknowledged <<<"$json")" = 6 ]
	[ "$(jq .nacks_ignored <<<"$json")" = 0 ]
	stop_worker
	[ "$(find store -name '*.jpg' | wc -l)" = 6 ]
	# it ran: gxp-upload saw no inbound event, so it logged no inbound message
	grep -q '"direction":"out"' store/device_publish_log.ndjson
	! grep -q '"direction":"in"' store/device_publish_log.ndjson || false
}

@test "help: --help lists every option, one line each, and names the manual; gxp-sub -h says -h is the host" {
	for t in gxp-sub gxp-pub gxp-supervise; do
		run "$t" --help
		[ "$status" = 0 ]
		[ "${lines[-1]}" = "see $t(1)" ]
		# every option of the synopsis has its line
		for o in $(sed -n '1,/^  -/p' <<<"$output" | sed 's/gxp-[a-z]*//g' | grep -oE '\[?(-[a-zA-Z]|--[a-z-]+)' | tr -d '[' | sort -u); do
			grep -qE "^  $o( |$)" <<<"$output" || { echo "$t: $o has no line"; false; }
		done
	done
	run gxp-sub -h
	[ "$status" = 100 ]
	[[ $output != *"option requires an argument"* ]]
	[[ $output == *"gxp-sub: error: option -h needs an argument"* ]]
	[[ $output == *"-h is the broker host, as for mosquitto_sub; for help: gxp-sub --help"* ]]
	[[ ${lines[-1]} == "gxp-sub --help lists the options; see gxp-sub(1)" ]]
	run gxp-pub -q 7 -t a -m b
	[ "$status" = 100 ]
	[[ $output == *"-q 7: expected 0, 1 or 2"* ]]
	run gxp-supervise --bogus
	[ "$status" = 100 ]
	[[ $output == *"unknown option --bogus (see --help)"* ]]
}

@test "pipeline: grep --line-buffered between two stages, as README shows: 3 devices x 2 photos at 5% loss, all acknowledged" {
	start_broker plain
	worker_env w.env
	mkfifo sub.out
	gxp-sub --env w.env -c -i pipe-sub < /dev/null > sub.out 2> sub.err 3>&- &
	SUB_PID=$!
	gxp-assemble --env w.env < sub.out 2> assemble.err 3>&- |
		grep --line-buffered -v '"event":"inbound"' |
		gxp-upload --env w.env 2> upload.err 3>&- |
		gxp-pub --env w.env -i pipe-pub > events.ndjson 2> pub.err 3>&- &
	OTHER_PID=$!
	wait_until 20 file_has sub.err "Subscribed to topics"
	wait_until 20 file_has pub.err "MQTT connected"
	# a single line goes through at once
	mpub -q 1 -t ESP32CAM/LONELY2/status -m '{"status":"Alive","pendingImg":0}'
	wait_until 20 file_has store/devices.ndjson LONELY2
	run gxp-sim --env w.env -d 3 -n 2 -l 0.05 -t 60000 -s 16 -j
	json=$(tail -n 1 <<<"$output")
	echo "$json"
	[ "$status" = 0 ]
	[ "$(jq .acknowledged <<<"$json")" = 6 ]
	[ "$(jq .nacks_ignored <<<"$json")" = 0 ]
	# SIGTERM to gxp-sub: the end of its output drains the rest
	stop_pid "$SUB_PID"
	SUB_PID=
	wait "$OTHER_PID" || true
	OTHER_PID=
	[ "$(find store -name '*.jpg' | wc -l)" = 6 ]
}

@test "worker: what a SIGKILLed gxp-supervise left running keeps the spool locked, and the message says whose it is" {
	start_broker plain
	# the gxp stages die with their supervisor (prctl); a filter is any
	# command, and this one outlives its input
	worker_env w.env 'SUPERVISE_FILTER_AFTER_UPLOAD=cat; exec sleep 60'
	start_worker w.env
	stages=$(pgrep -P "$WORKER_PID" | tr '\n' ' ')
	tools=$(for s in gxp-sub gxp-control gxp-assemble gxp-upload gxp-pub; do stage_pid "$s"; done)
	[ "$(wc -w <<<"$tools")" = 5 ]
	kill -KILL "$WORKER_PID"
	wait "$WORKER_PID" 2>/dev/null || true
	dead=$WORKER_PID
	WORKER_PID=
	wait_until 10 all_gone $tools
	run timeout 30 gxp-supervise --env w.env
	kill -TERM $stages 2>/dev/null || true
	echo "$output"
	[ "$status" = 100 ]
	[[ $output == *"another gxp-supervise (pid $dead, gone; its stages still run) is running on the spool"* ]]
}
