#!/usr/bin/env bats
# Several workers on one fleet (GXP_CLUSTER, README "Running several
# workers"): three gxp-supervise, each in a process group of its own with
# its own spool, client id and worker id, on one real mosquitto and the
# Supabase endpoint in front of a real PostgreSQL.

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
	W_PIDS=()
}

teardown() {
	local i
	for i in 1 2 3; do
		[ -n "${W_PIDS[$i]:-}" ] && kill -TERM "${W_PIDS[$i]}" 2>/dev/null
	done
	for i in 1 2 3; do
		[ -n "${W_PIDS[$i]:-}" ] && wait "${W_PIDS[$i]}" 2>/dev/null
	done
	[ -n "${SIM_PID:-}" ] && kill "$SIM_PID" 2>/dev/null
	SIM_PID=
	teardown_broker
}

# cl_env N: worker N's env file: its spool, client id and worker id.
cl_env() {
	worker_env "$BATS_TEST_TMPDIR/w$1.env" "SUPABASE_URL=$EP_URL" \
		"SUPABASE_SECRET_KEY=$EP_SECRET_KEY" "GXP_CLUSTER=presence" "MQTT_KEEPALIVE=5"
	sed -i -e "s|^MQTT_CLIENT_ID=.*|MQTT_CLIENT_ID=gxp-cl-$$-w$1|" \
		-e "s|^GXP_SPOOL=.*|GXP_SPOOL=$BATS_TEST_TMPDIR/spool$1|" "$BATS_TEST_TMPDIR/w$1.env"
	# what gxp-assemble wrote, cluster lines and completed photos in their
	# order, kept by a filter after it (gxp-upload takes the photos' events)
	cat > "$BATS_TEST_TMPDIR/tap.sh" <<-'EOF'
	exec awk -v f="$1" '/"event":"(cluster|photo_complete)"/ { print >> f; fflush(f) } { print; fflush() }'
	EOF
	echo "SUPERVISE_FILTER_AFTER_ASSEMBLE='sh $BATS_TEST_TMPDIR/tap.sh $BATS_TEST_TMPDIR/w$1.tap'" \
		>> "$BATS_TEST_TMPDIR/w$1.env"
}

# cl_start N: worker N in a process group of its own, waited for until
# its pipeline runs; its log and events files are appended to.
cl_start() {
	local n=$1 log=$BATS_TEST_TMPDIR/w$1.log before
	before=$(grep -c "gxp-control: info: answering hellos" "$log" 2>/dev/null || true)
	setsid gxp-supervise --env "$BATS_TEST_TMPDIR/w$n.env" \
		--events "$BATS_TEST_TMPDIR/w$n.events" 2>> "$log" 3>&- &
	W_PIDS[$n]=$!
	wait_until 30 eval '[ "$(grep -c "gxp-control: info: answering hellos" "$log")" -gt "${before:-0}" ]' ||
		{ tail -20 "$log" >&2; return 1; }
}

# cl_kill N: SIGKILL to worker N's whole process group; waits for its stages.
cl_kill() {
	local stages
	stages=$(pgrep -P "${W_PIDS[$1]}" | tr '\n' ' ')
	kill -KILL -- "-${W_PIDS[$1]}"
	wait "${W_PIDS[$1]}" 2>/dev/null || true
	W_PIDS[$1]=
	wait_until 10 all_gone $stages
}

# cl_stop N: SIGTERM to worker N (a clean stop); its status must be 0.
cl_stop() {
	local rc=0
	kill -TERM "${W_PIDS[$1]}"
	wait "${W_PIDS[$1]}" || rc=$?
	W_PIDS[$1]=
	[ "$rc" = 0 ]
}

# sees N K: worker N's gxp-sub has said K workers live, at least COUNT times.
sees() {
	[ "$(grep -c "gxp-sub: info: cluster: $2 workers\? live" "$BATS_TEST_TMPDIR/w$1.log")" -ge "${3:-1}" ]
}

stored() {
	psql_q "select count(*) from captures where ingest_status = 'stored'"
}

# owner_check: every photo a worker completed was of a device it owned,
# by its own gxp-sub's live set at that point of its stream (the cluster
# lines and the photo_complete events gxp-assemble wrote, in order), and
# by the library's rendezvous function (build/cluster-test).  Prints the
# photos each worker completed.
owner_check() {
	local n f=$BATS_TEST_TMPDIR/owners
	: > "$f"
	for n in 1 2 3; do
		jq -r --arg w "gxp-cl-$$-w$n" 'select(.event == "cluster" or .event == "photo_complete") |
			if .event == "cluster" then "set " + (.workers | join(","))
			else "photo " + .device + " " + $w end' "$BATS_TEST_TMPDIR/w$n.tap" |
		awk '$1 == "set" { set = $2; next } { print set, $2, $3 }' >> "$f"
	done
	for n in 1 2 3; do
		echo "worker $n completed $(grep -c " gxp-cl-$$-w$n\$" "$f") photos"
		[ "$(grep -c " gxp-cl-$$-w$n\$" "$f")" -gt 0 ]
	done
	[ "$(awk 'NF != 3' "$f" | wc -l)" = 0 ]
	# for each live set: the owner the function gives, against who did it
	cut -d' ' -f1 "$f" | sort -u | while read -r set; do
		awk -v s="$set" '$1 == s { print $2, $3 }' "$f" | sort -u > "$f.did"
		cut -d' ' -f1 "$f.did" | sort -u | "$GXP_TOP/build/cluster-test" owner "$set" | sort > "$f.own"
		join "$f.did" "$f.own" | awk '$2 != $3 { print "photo of " $1 " completed by " $2 \
			" but owned by " $3 " (set " s ")"; bad = 1 } END { exit bad }' s="$set"
	done
}

# the database: every photo once, stored, one object; no failure row
db_check() {
	psql_q "select ingest_status, count(*) from captures group by 1"
	psql_q "select count(*) from storage.objects where bucket_id = 'gxp-captures'"
	psql_q "select error_code, count(*) from device_errors group by 1"
	[ "$(psql_q "select count(*), count(distinct device_id) from captures where ingest_status = 'stored'")" = "$1|50" ]
	[ "$(psql_q "select count(*) from captures")" = "$1" ]
	[ "$(psql_q "select count(*) from storage.objects where bucket_id = 'gxp-captures'")" = "$1" ]
	[ "$(psql_q "select count(*) from device_errors")" = 0 ]
}

# fleet_done N: gxp-sim ended well with N photos acknowledged, N stored;
# the workers stopped; one object and one stored row each, each photo
# assembled by its device's owner.
fleet_done() {
	local rc=0 want=$1
	wait "$SIM_PID" || rc=$?
	SIM_PID=
	tail -1 "$BATS_TEST_TMPDIR/sim.out"
	[ "$rc" = 0 ]
	[ "$(tail -1 "$BATS_TEST_TMPDIR/sim.out" | jq -r .acknowledged)" = "$want" ]
	wait_until 30 eval '[ "$(stored)" = "$want" ]'
	for n in 1 2 3; do cl_stop "$n"; done
	db_check "$want"
	owner_check
}

@test "cluster: three workers, one SIGKILLed mid-run (its whole process group) and started again: every photo acknowledged and stored once, each device assembled by its owner" {
	for n in 1 2 3; do cl_env "$n"; done
	for n in 1 2 3; do cl_start "$n"; done
	wait_until 10 sees 1 3
	gxp-sim --env "$BATS_TEST_TMPDIR/w1.env" -i "sim-$$" -d 50 -n 4 -r 600 -R 4000 \
		-t 110000 -s 11 -j > "$BATS_TEST_TMPDIR/sim.out" 2> "$BATS_TEST_TMPDIR/sim.err" 3>&- &
	SIM_PID=$!
	wait_until 60 eval '[ "$(stored)" -ge 40 ]'
	cl_kill 2
	killed_at=$(stored)
	# the survivors take its devices at once: the broker published its Will
	# when the kernel closed its connection
	wait_until 10 sees 1 2
	wait_until 10 sees 3 2
	wait_until 60 eval '[ "$(stored)" -ge $((killed_at + 40)) ]'
	cl_start 2
	wait_until 10 sees 1 3 2
	fleet_done 200
	# the survivors dropped what was in flight for the devices that came back
	grep -h "now belongs to worker" "$BATS_TEST_TMPDIR"/w[13].log | head -3
}

@test "cluster: a rolling upgrade: one worker stopped cleanly, its devices move, then back; every photo stored once" {
	for n in 1 2 3; do cl_env "$n"; done
	for n in 1 2 3; do cl_start "$n"; done
	wait_until 10 sees 1 3
	gxp-sim --env "$BATS_TEST_TMPDIR/w1.env" -i "sim-$$" -d 50 -n 2 -r 600 -R 4000 \
		-t 110000 -s 12 -j > "$BATS_TEST_TMPDIR/sim.out" 2> "$BATS_TEST_TMPDIR/sim.err" 3>&- &
	SIM_PID=$!
	wait_until 60 eval '[ "$(stored)" -ge 20 ]'
	cl_stop 3
	wait_until 10 sees 1 2
	wait_until 10 sees 2 2
	# it cleared its record on the way out: nothing is left at its topic
	[ -z "$(mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t "gxp/workers/gxp-cl-$$-w3" -W 1 2>/dev/null || true)" ]
	cl_start 3
	wait_until 10 sees 1 3 2
	fleet_done 100
}

@test "cluster: the ownership function: a third each, losing a worker moves only its share, the cache follows the set" {
	run "$GXP_TOP/build/cluster-test" check
	echo "$output"
	[ "$status" = 0 ]
	[ "$(grep -c '^ok' <<<"$output")" = 7 ]
}

@test "cluster: a stored capture never goes backwards: another worker's failure of it, or any later write, leaves it stored with its object" {
	cl_env 1
	cl_start 1
	run gxp-sim --env "$BATS_TEST_TMPDIR/w1.env" -i "sim-$$" -d 1 -n 1 -t 30000 -s 3 -j
	[ "$status" = 0 ]
	wait_until 30 eval '[ "$(stored)" = 1 ]'
	cl_stop 1
	before=$(psql_q "select device_capture_id, ingest_status, storage_path, image_sha256 from captures")
	cap=$(cut -d'|' -f1 <<<"$before")
	[ -n "$(cut -d'|' -f3 <<<"$before")" ]
	# another worker, whose spool never saw the photo complete, fails it
	# (its leftovers timed out): the row stays stored
	printf '{"event":"capture_failed","v":1,"ts":"2026-01-01T00:00:00Z","device":"SIM000001","capture_name":"%s","code":2201,"reason":"timed out"}\n' "$cap" |
		GXP_SPOOL=$BATS_TEST_TMPDIR/elsewhere gxp-upload --env "$BATS_TEST_TMPDIR/w1.env" > /dev/null
	[ "$(psql_q "select device_capture_id, ingest_status, storage_path, image_sha256 from captures")" = "$before" ]
	[ "$(psql_q "select count(*) from device_errors where error_code = 2201")" = 1 ]
	# any later write, in SQL, the same
	psql_q "update captures set ingest_status = 'assembling', storage_path = null, image_sha256 = null" > /dev/null
	[ "$(psql_q "select device_capture_id, ingest_status, storage_path, image_sha256 from captures")" = "$before" ]
	# a row not stored yet still moves on
	psql_q "insert into captures (device_id, device_capture_id) select device_id, 'other.jpg' from devices" > /dev/null
	psql_q "update captures set ingest_status = 'failed' where device_capture_id = 'other.jpg'" > /dev/null
	[ "$(psql_q "select ingest_status from captures where device_capture_id = 'other.jpg'")" = failed ]
}

# metric N STAGE NAME: worker N's last value of gxp_STAGE_NAME.
metric() {
	awk -v m="gxp_$2_$3" '$1 == m { print $2 }' "$BATS_TEST_TMPDIR/spool$1/metrics/gxp-$2.prom"
}

@test "cluster: each hello is answered by exactly one worker, the device's owner" {
	for n in 1 2 3; do cl_env "$n"; done
	for n in 1 2 3; do cl_start "$n"; done
	wait_until 10 sees 1 3
	run gxp-sim --env "$BATS_TEST_TMPDIR/w1.env" -i "sim-$$" -d 30 -n 0 -W 2 -T 100000 -A 5000 -s 5 -j
	echo "$output" | tail -5
	[ "$status" = 0 ]
	summary=$(tail -1 <<<"$output")
	hellos=$(jq -r .wake.hellos <<<"$summary")
	echo "$summary" | jq -c .wake
	[ "$hellos" -ge 60 ]
	[ "$(jq -r .wake.answered <<<"$summary")" = "$hellos" ]
	for n in 1 2 3; do cl_stop "$n"; done
	taken=0
	for n in 1 2 3; do
		t=$(metric "$n" control hellos_total)
		e=$(metric "$n" control elsewhere_total)
		echo "worker $n: took $t hellos, left $e to the others"
		# each heard every hello, and took some
		[ "$t" -gt 0 ] && [ $((t + e)) = "$hellos" ]
		taken=$((taken + t))
	done
	# each hello taken by one worker: none twice, none left
	[ "$taken" = "$hellos" ]
	[ "$(jq -r .wake.repeats <<<"$summary")" = 0 ]
}

@test "cluster: shared subscriptions on mosquitto, which picks a member per message: each worker says loudly that the broker scatters a device" {
	broker_env
	export GXP_CLUSTER=shared GXP_CLUSTER_DIGEST_S=1 GXP_SPOOL=$BATS_TEST_TMPDIR/s
	for n in 1 2; do
		GXP_WORKER_ID=w$n gxp-sub -i "sh-$$-$n" > "$BATS_TEST_TMPDIR/sub$n.out" \
			2> "$BATS_TEST_TMPDIR/sub$n.err" 3>&- &
		eval "SUB$n=\$!"
		wait_until 10 file_has "$BATS_TEST_TMPDIR/sub$n.err" "Subscribed to topics"
	done
	grep -q '\$share/gxp/ESP32CAM/+/data' "$BATS_TEST_TMPDIR/sub1.err"
	for i in $(seq 1 20); do
		mpub -q 1 -t ESP32CAM/SIM000001/data -m "{\"device_id\":\"SIM000001\",\"image_name\":\"a.jpg\",\"chunk_id\":$i,\"payload\":\"AAAA\"}"
	done
	# the group shared them out: each message to one worker
	[ $(($(grep -c SIM000001/data "$BATS_TEST_TMPDIR/sub1.out") + $(grep -c SIM000001/data "$BATS_TEST_TMPDIR/sub2.out"))) = 20 ]
	wait_until 10 file_has "$BATS_TEST_TMPDIR/sub1.err" "scatters one device's messages"
	wait_until 10 file_has "$BATS_TEST_TMPDIR/sub2.err" "scatters one device's messages"
	grep "scatters" "$BATS_TEST_TMPDIR/sub1.err"
	grep -q "device SIM000001 to this worker and to worker w2" "$BATS_TEST_TMPDIR/sub1.err"
	stop_pid "$SUB1"
	stop_pid "$SUB2"
}

@test "cluster: shared subscriptions, one device's messages on one worker only (as a broker routing by topic gives them): no warning" {
	broker_env
	export GXP_CLUSTER=shared GXP_CLUSTER_DIGEST_S=1 GXP_SPOOL=$BATS_TEST_TMPDIR/s
	for n in 1 2; do
		GXP_WORKER_ID=w$n gxp-sub -i "sh-$$-$n" > "$BATS_TEST_TMPDIR/sub$n.out" \
			2> "$BATS_TEST_TMPDIR/sub$n.err" 3>&- &
		eval "SUB$n=\$!"
		wait_until 10 file_has "$BATS_TEST_TMPDIR/sub$n.err" "Subscribed to topics"
	done
	# mosquitto gives one member each message; a device sending one
	# message a period cannot be seen scattered: the digests still go out
	mpub -q 1 -t ESP32CAM/SIM000001/data -m '{"device_id":"SIM000001"}'
	mpub -q 1 -t ESP32CAM/SIM000002/data -m '{"device_id":"SIM000002"}'
	sleep 2.5
	! grep -q scatters "$BATS_TEST_TMPDIR/sub1.err" "$BATS_TEST_TMPDIR/sub2.err" || false
	stop_pid "$SUB1"
	stop_pid "$SUB2"
}

@test "cluster: GXP_CLUSTER that is no mode, or a worker id that cannot be a topic level, stops gxp-sub with 100 and the reason" {
	broker_env
	GXP_CLUSTER=round-robin run gxp-sub
	[ "$status" = 100 ]
	[[ $output == *"GXP_CLUSTER=round-robin: expected off, presence or shared"* ]]
	GXP_CLUSTER=presence GXP_WORKER_ID='w/1' run gxp-sub
	[ "$status" = 100 ]
	[[ $output == *"GXP_WORKER_ID w/1"* ]]
}

@test "cluster: gxp-sub --check fails when a live worker elsewhere holds this worker id" {
	broker_env
	export GXP_CLUSTER=presence GXP_WORKER_ID=same
	GXP_SPOOL=$BATS_TEST_TMPDIR/a start_sub "$BATS_TEST_TMPDIR/a.out" "$BATS_TEST_TMPDIR/a.err" -i "chk-$$-a"
	GXP_SPOOL=$BATS_TEST_TMPDIR/b run gxp-sub --check -i "chk-$$-b"
	echo "$output"
	[ "$status" = 100 ]
	[[ $output == *"FAIL: another client is using the id same: gxp-sub pid "*"its own GXP_WORKER_ID"* ]]
	stop_pid "$SUB_PID"
	SUB_PID=
}

# cl_line SELF JOINED WORKER...: gxp-sub's cluster line.
cl_line() {
	local self=$1 joined=$2 ws
	shift 2
	ws=$(printf '"%s",' "$@")
	printf '{"event":"cluster","v":1,"mode":"presence"%s,"self":"%s","workers":[%s]}\n' \
		"$([ "$joined" = 1 ] && echo ',"joined":true')" "$self" "${ws%,}"
}

@test "cluster: gxp-assemble drops quietly the captures of a device that moved, and the rest of a photo that came without its metadata" {
	load assemble-lib
	setup_assemble
	# a device w2 owns once it is there, and one that stays w1's
	for i in $(seq 1 40); do printf 'SIM%06d\n' "$i"; done |
		"$GXP_TOP/build/cluster-test" owner w1,w2 > "$BATS_TEST_TMPDIR/owners"
	move=$(awk '$2 == "w2" { print $1; exit }' "$BATS_TEST_TMPDIR/owners")
	keep=$(awk '$2 == "w1" { print $1; exit }' "$BATS_TEST_TMPDIR/owners")
	make_jpeg "$BATS_TEST_TMPDIR/p.jpg" 2000
	{
		cl_line w1 1 w1
		photo 1000 "$move" a.jpg "$BATS_TEST_TMPDIR/p.jpg" 100 0 1 2
		photo 1100 "$keep" a.jpg "$BATS_TEST_TMPDIR/p.jpg" 100 0 1 2
		cl_line w1 0 w1 w2
		# w2 dies: "$move" comes back mid-photo, its metadata went to w2
		cl_line w1 0 w1
		for i in $(seq 5 16); do chunk $((2000 + i)) "$move" b.jpg "$i" "$BATS_TEST_TMPDIR/p.jpg" 100; done
		for i in $(seq 5 16); do chunk $((2100 + i)) "$keep" b.jpg "$i" "$BATS_TEST_TMPDIR/p.jpg" 100; done
	} > "$IN"
	assemble
	cat "$ERR"
	[ "$ASM_RC" = 0 ]
	grep -q "device $move now belongs to worker w2: 1 capture in flight dropped" "$ERR"
	# no NACK, no failure, no error for the device that moved
	! grep "\"$move\"" "$OUT" | grep -q '"event":"\(publish\|capture_failed\|error\)"' || false
	# the other's orphans past ASSEMBLE_ORPHAN_CHUNKS are refused as ever
	grep "\"$keep\"" "$OUT" | grep -q 'wait for their metadata'
	# its capture's memory, disk and pins went back: keep's a.jpg and b.jpg, move's b.jpg
	grep -q "3 captures left in flight" "$ERR"
}

@test "cluster: a device's payload that looks like a cluster line changes nothing" {
	cl_env 1
	cl_start 1
	wait_until 10 sees 1 1
	mpub -q 1 -t ESP32CAM/SIM000001/status -m '{"event":"cluster","v":1,"mode":"presence","self":"x","workers":["x"]}'
	run gxp-sim --env "$BATS_TEST_TMPDIR/w1.env" -i "sim-$$" -d 3 -n 1 -t 30000 -s 4 -j
	[ "$status" = 0 ]
	[ "$(tail -1 <<<"$output" | jq -r .acknowledged)" = 3 ]
	cl_stop 1
	! grep -q "cluster line that cannot be read\|gxp-control: info: cluster: worker x" "$BATS_TEST_TMPDIR/w1.log" || false
	[ "$(metric 1 control elsewhere_total)" = 0 ]
}
