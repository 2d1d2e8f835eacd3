#!/usr/bin/env bats
# gxp-report on the local store: the report of a known fleet played through
# the whole worker (tests/report.bash), bad photos and bad rows, the
# incremental runs, the files, and the pages in headless Chromium.

load helpers
load e2e
load report

# The fleet is played once, into $FLEET/store; tests that change the store
# work on a copy.
setup_file() {
	export FLEET=$BATS_FILE_TMPDIR/fleet
	local BATS_TEST_TMPDIR=$FLEET
	mkdir -p "$FLEET"
	start_broker plain "$FLEET/broker"
	worker_env "$FLEET/w.env"
	start_worker "$FLEET/w.env"
	fleet_play "$FLEET/w.env"
	wait_until 30 has_lines "$FLEET/store/device_errors.ndjson" 2
	wait_until 30 file_has "$FLEET/store/devices.ndjson" QUIET1
	stop_worker
	stop_broker
}

setup() {
	OUT=$BATS_TEST_TMPDIR/report
	export GXP_STORE=$FLEET/store
}

# copy_store: a store of this test's own, $BATS_TEST_TMPDIR/store.
copy_store() {
	cp -a "$FLEET/store" "$BATS_TEST_TMPDIR/store"
	export GXP_STORE=$BATS_TEST_TMPDIR/store
}

# error_code ID: the error_code of device ID's device_errors row.
error_code() {
	local uuid
	uuid=$(jq -r --arg id "$1" 'select(.device_hw_id == $id) | .device_id' "$GXP_STORE/devices.ndjson" | head -1)
	jq -r --arg u "$uuid" 'select(.device_id == $u) | .error_code' "$GXP_STORE/device_errors.ndjson" | tail -1
}

@test "report: every device of a known fleet, with its counts, last error and thumbnail" {
	run_report
	[ "$RC" = 0 ]
	[ "$(cat "$BATS_TEST_TMPDIR/stdout")" = "$(cd "$OUT" && pwd)/index.html" ]
	fleet_tiles_ok "$OUT" "$(error_code BADJPEG1)" "$(error_code DEVERR1)"
	grep -q '<svg' "$OUT/index.html"
	# a device page: its photos, each a thumbnail linked to the stored file
	grep -c '<figure>' "$OUT/devices/SIM000002.html" | grep -qx 2
	for href in $(grep -o 'href="[^"]*\.jpg"' "$OUT/devices/SIM000002.html" | cut -d'"' -f2); do
		cmp "$OUT/devices/$href" "$GXP_STORE/gxp-captures/${href#*gxp-captures/}"
	done
	[ "$(grep -o 'href="[^"]*\.jpg"' "$OUT/devices/SIM000002.html" | sort -u | wc -l)" = 2 ]
}

@test "report: the links to the local store's photos open from a store whose path has a space, # or %" {
	export GXP_STORE="$BATS_TEST_TMPDIR/my store #1 %41"
	cp -a "$FLEET/store" "$GXP_STORE"
	run_report
	[ "$RC" = 0 ]
	# each link resolved as a browser does, against the page's file:// URL
	python3 - "$OUT/devices/SIM000002.html" > "$BATS_TEST_TMPDIR/targets" <<-'EOF'
	import html, pathlib, re, sys, urllib.parse
	page = pathlib.Path(sys.argv[1]).resolve()
	for href in re.findall(r'href="([^"]*[.]jpg)"', page.read_text()):
	    url = urllib.parse.urljoin(page.as_uri(), html.unescape(href))
	    print(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
	EOF
	[ "$(sort -u "$BATS_TEST_TMPDIR/targets" | wc -l)" = 2 ]
	while IFS= read -r target; do
		[[ $target == "$GXP_STORE"/gxp-captures/* ]]
		cmp "$target" "$GXP_STORE/gxp-captures/${target#*gxp-captures/}"
	done < "$BATS_TEST_TMPDIR/targets"
}

@test "report: a photo that does not decode, or is missing, gets a placeholder and a log line" {
	copy_store
	# SIM000003's latest photo is gone from the store
	path=$(jq -r 'select(.ingest_status == "stored" and (.storage_path | test("SIM000003"))) | .storage_path' \
		"$GXP_STORE/captures.ndjson" | sort | tail -1)
	rm "$GXP_STORE/gxp-captures/$path"
	run_report
	[ "$RC" = 0 ]
	IFS=$'\t' read -r page label stored failed err thumb badges <<<"$(tile "$OUT" CORRUPT000001)"
	[ "$stored" = 1 ]
	[ "$thumb" = "ph:photo unreadable" ]
	grep -q 'warning: device "CORRUPT000001", photo image_1.jpg (captures/CORRUPT000001/.*): not a JPEG we can read: .*; shown as a placeholder' "$BATS_TEST_TMPDIR/stderr"
	grep -q "warning: device \"SIM000003\", photo .*($path): .*No such file or directory; shown as a placeholder" "$BATS_TEST_TMPDIR/stderr"
	grep -q 'photo unreadable' "$OUT/devices/SIM000003.html"
	# the next run knows them: no second attempt, no second log line
	run_report
	[ "$RC" = 0 ]
	refute grep -q 'placeholder' "$BATS_TEST_TMPDIR/stderr"
	grep -q '0 made, .* 2 unreadable' "$BATS_TEST_TMPDIR/stderr"
	[ "$(tile "$OUT" CORRUPT000001 | cut -f6)" = "ph:photo unreadable" ]
	# -f tries them again
	run_report -f
	grep -q 'device "CORRUPT000001", photo image_1.jpg .*; shown as a placeholder' "$BATS_TEST_TMPDIR/stderr"
}

@test "report: a progressive JPEG of more than 500 scans is not decoded: a placeholder and a log line" {
	copy_store
	# SIM000001's and SIM000002's latest photos become progressive JPEGs of
	# 501 and 500 scans (their rows' image_sha256 too)
	for dev in SIM000001:501 SIM000002:500; do
		path=$(jq -r --arg d "${dev%:*}" 'select(.ingest_status == "stored" and
			(.storage_path | contains($d))) | .storage_path' "$GXP_STORE/captures.ndjson" | sort | tail -1)
		old=$(sha256sum "$GXP_STORE/gxp-captures/$path" | cut -d' ' -f1)
		many_scans_jpeg "$GXP_STORE/gxp-captures/$path" "${dev#*:}"
		new=$(sha256sum "$GXP_STORE/gxp-captures/$path" | cut -d' ' -f1)
		sed -i "s/$old/$new/g" "$GXP_STORE/captures.ndjson"
	done
	run_report
	[ "$RC" = 0 ]
	[ "$(tile "$OUT" SIM000001 | cut -f6)" = "ph:photo unreadable" ]
	grep -q 'warning: device "SIM000001", photo .*: damaged JPEG: Progressive JPEG image has more than 500 scans; shown as a placeholder' "$BATS_TEST_TMPDIR/stderr"
	[[ $(tile "$OUT" SIM000002 | cut -f6) == thumbs/*.jpg ]]
}

@test "report: the local store's errors are told apart by their event_id: two at one time both listed, a repeated line once" {
	copy_store
	uuid=$(jq -r 'select(.device_hw_id == "SIM000002") | .device_id' "$GXP_STORE/devices.ndjson" | head -1)
	now=$(date -u +%FT%T.000000Z)
	for e in 1:first 2:second 1:first; do
		jq -cn --arg d "$uuid" --arg t "$now" --arg m "${e#*:}" --arg id "${e%:*}" '{error_code:2102,
			severity:"warn",message:$m,details:{},occurred_at:$t,
			event_id:("00000000-0000-8000-8000-00000000000" + $id),device_id:$d,capture_id:null}'
	done >> "$GXP_STORE/device_errors.ndjson"
	for run in 1 2; do
		run_report
		[ "$RC" = 0 ]
		[ "$(grep -c '<td><b>2102</b> Chunk missing payload field: first</td>' "$OUT/devices/SIM000002.html")" = 1 ]
		[ "$(grep -c '<td><b>2102</b> Chunk missing payload field: second</td>' "$OUT/devices/SIM000002.html")" = 1 ]
	done
}

@test "report: text and ids from the store are escaped; rows that are not rows are skipped and logged" {
	copy_store
	now=$(date -u +%FT%TZ)
	{
		echo "{\"device_id\":\"11111111-2222-8333-8444-555555555555\",\"device_hw_id\":\"<script>alert(1)</script>\\\"x'\",\"last_seen_at\":\"$now\",\"last_ip\":\"<i>ip</i>\"}"
		echo 'this is not JSON'
		echo '{"device_hw_id":"NOUUID"}'
	} >> "$GXP_STORE/devices.ndjson"
	echo '{"device_id":"11111111-2222-8333-8444-555555555555","error_code":2102,"severity":"warn","message":"<img src=x onerror=alert(2)>","occurred_at":"'"$now"'","id":"e1"}' \
		>> "$GXP_STORE/device_errors.ndjson"
	# an error of no device (a message on no device's topic): not a bad row
	echo '{"error_code":2101,"severity":"error","message":"bad topic","occurred_at":"'"$now"'","id":"e2"}' \
		>> "$GXP_STORE/device_errors.ndjson"
	run_report
	[ "$RC" = 0 ]
	# no tag from the store survives as a tag, anywhere
	refute grep -rq '<script>\|<img src=x\|<b>Alive\|<i>ip' "$OUT"/*.html "$OUT"/devices/
	grep -q '&lt;script&gt;alert(1)&lt;/script&gt;&quot;x&#39;' "$OUT/index.html"
	grep -q '&lt;img src=x onerror=alert(2)&gt;' "$OUT/index.html"
	grep -q '&lt;b&gt;Alive&lt;/b&gt; &amp; &quot;well&quot;' "$OUT/index.html"
	# the browser shows the text as it was
	[ "$(tile "$OUT" QUIET1 | cut -f1)" = QUIET1 ]
	python3 -c 'import html,sys; print(html.unescape(open(sys.argv[1]).read()))' \
		"$OUT/index.html" | grep -qF "$QUIET_STATUS"
	# the strange id gets a page of a name no valid id has, and a log line
	IFS=$'\t' read -r page label rest <<<"$(tile "$OUT" "<script>alert(1)</script>\"x'")"
	[[ $page == x.[0-9a-f]* ]]
	[ -f "$OUT/devices/$page.html" ]
	grep -q "not a valid device id; its page is devices/$page.html" "$BATS_TEST_TMPDIR/stderr"
	[ "$(find "$OUT/devices" -type f | wc -l)" = 8 ]
	grep -q 'devices.ndjson: 2 lines skipped (not a row' "$BATS_TEST_TMPDIR/stderr"
	refute grep -q 'device_errors.ndjson: .* skipped' "$BATS_TEST_TMPDIR/stderr"
}

@test "report: a second run fetches and decodes nothing; a new photo is the only one made" {
	copy_store
	run_report
	[ "$RC" = 0 ]
	grep -q 'full read: .*thumbnails: 6 made, 0 kept, 1 unreadable.* 7 photos fetched' "$BATS_TEST_TMPDIR/stderr"
	ls -li --time-style=full-iso "$OUT/thumbs" "$OUT/devices" > "$BATS_TEST_TMPDIR/before"
	run_report
	[ "$RC" = 0 ]
	grep -q 'incremental read: 0 rows .*thumbnails: 0 made, 6 kept, 1 unreadable, 0 for later; 0 photos fetched' "$BATS_TEST_TMPDIR/stderr"
	# nothing made again, and no device page written again (same inode, time)
	ls -li --time-style=full-iso "$OUT/thumbs" "$OUT/devices" | diff -u "$BATS_TEST_TMPDIR/before" -
	grep -q 'URLs signed; [01] pages written, [89] unchanged' "$BATS_TEST_TMPDIR/stderr"
	# SIM000001 stores a third photo: one row read, one photo fetched
	uuid=$(jq -r 'select(.device_hw_id == "SIM000001") | .device_id' "$GXP_STORE/devices.ndjson" | head -1)
	day=$(date -u +%Y/%m/%d)
	mkdir -p "$GXP_STORE/gxp-captures/captures/SIM000001/$day"
	cp "$GXP_TOP/examples/rocket.jpg" "$GXP_STORE/gxp-captures/captures/SIM000001/$day/image_9.jpg"
	jq -cn --arg d "$uuid" --arg p "captures/SIM000001/$day/image_9.jpg" --arg t "$(date -u +%FT%TZ)" \
		--arg sha "$(sha256sum < "$GXP_TOP/examples/rocket.jpg" | cut -d' ' -f1)" \
		'{device_id:$d, capture_id:"99999999-0000-8000-8000-000000000009", device_capture_id:"image_9.jpg",
		  captured_at:$t, ingest_status:"stored", storage_path:$p, image_sha256:$sha, image_bytes:31063}' \
		>> "$GXP_STORE/captures.ndjson"
	run_report
	[ "$RC" = 0 ]
	grep -q 'incremental read: 1 rows .*thumbnails: 1 made, 6 kept, 1 unreadable, 0 for later; 1 photos fetched' "$BATS_TEST_TMPDIR/stderr"
	[ "$(tile "$OUT" SIM000001 | cut -f3)" = 3 ]
	grep -q 'image_9.jpg' "$OUT/devices/SIM000001.html"
	[ "$(find "$OUT/thumbs" -name '*.jpg' | wc -l)" = 7 ]
	# a store replaced by another: everything is read again
	mv "$GXP_STORE/captures.ndjson" "$GXP_STORE/c" && cp "$GXP_STORE/c" "$GXP_STORE/captures.ndjson"
	run_report
	grep -q 'captures.ndjson was replaced or cut: reading every table again' "$BATS_TEST_TMPDIR/stderr"
	[ "$(tile "$OUT" SIM000001 | cut -f3)" = 3 ]
}

@test "report: pages of REPORT_PAGE_TILES tiles; stale pages and temporary files go; one writer at a time" {
	store=$BATS_TEST_TMPDIR/big
	mkdir -p "$store"
	for i in $(seq 1 25); do
		printf '{"device_id":"00000000-0000-8000-8000-%012d","device_hw_id":"DEV%03d","last_seen_at":"%s"}\n' \
			"$i" "$i" "$(date -u +%FT%TZ)"
	done > "$store/devices.ndjson"
	export GXP_STORE=$store
	REPORT_PAGE_TILES=10 run_report
	[ "$RC" = 0 ]
	[ -f "$OUT/page-2.html" ]
	[ -f "$OUT/page-3.html" ]
	[ ! -f "$OUT/page-4.html" ]
	[ "$(tiles_of "$OUT" | wc -l)" = 25 ]
	grep -q '<a href="page-3.html">3</a>' "$OUT/index.html"
	touch "$OUT/devices/GONE.html" "$OUT/index.html.tmp.99999"
	REPORT_PAGE_TILES=20 run_report
	[ "$RC" = 0 ]
	[ -f "$OUT/page-2.html" ]
	[ ! -f "$OUT/page-3.html" ]
	[ ! -e "$OUT/devices/GONE.html" ]
	[ ! -e "$OUT/index.html.tmp.99999" ]
	[ -z "$(find "$OUT" -name '*.tmp.*')" ]
	# while another gxp-report writes the directory: exit 111, nothing touched
	exec 8> "$OUT/.lock"
	flock 8
	run_report
	exec 8>&-
	[ "$RC" = 111 ]
	grep -q 'another gxp-report is writing this report' "$BATS_TEST_TMPDIR/stderr"
}

# wakes_shown: the report in OUT shows SIM000002 two hours late, SIM000003
# due in three, SIM000001 without a next wake.
wakes_shown() {
	[ "$RC" = 0 ]
	[[ $(tile "$OUT" SIM000002 | cut -f7) == *late* ]]
	[[ $(tile "$OUT" SIM000003 | cut -f7) != *late* ]]
	grep 'id="d-SIM000003"' "$OUT/index.html" | grep -q '<dt>next wake</dt><dd>in 2 h'
	grep 'id="d-SIM000002"' "$OUT/index.html" | grep -q '<dt>next wake</dt><dd>2 h ago'
	grep -q "<dt>next wake</dt><dd>$(date -u -d '+3 hours' +%F)" "$OUT/devices/SIM000003.html"
	refute grep -q 'next wake' "$OUT/devices/SIM000001.html"
}

@test "report: the devices' next wake: shown when the store has it, late when past" {
	copy_store
	# devices rows that carry it, without gxp-control's file
	rm -f "$GXP_STORE/control/next_wake.ndjson"
	uuid=$(jq -r 'select(.device_hw_id == "SIM000002") | .device_id' "$GXP_STORE/devices.ndjson" | head -1)
	echo "{\"device_id\":\"$uuid\",\"next_wake_at\":\"$(date -u -d '-2 hours' +%FT%TZ)\"}" >> "$GXP_STORE/devices.ndjson"
	uuid=$(jq -r 'select(.device_hw_id == "SIM000003") | .device_id' "$GXP_STORE/devices.ndjson" | head -1)
	echo "{\"device_id\":\"$uuid\",\"next_wake_at\":\"$(date -u -d '+3 hours' +%FT%TZ)\"}" >> "$GXP_STORE/devices.ndjson"
	run_report
	wakes_shown
}

@test "report: the local store's next wakes come from gxp-control's control/next_wake.ndjson, the latest line a device" {
	copy_store
	mkdir -p "$GXP_STORE/control"
	{
		echo "{\"device_hw_id\":\"SIM000002\",\"next_wake_at\":\"$(date -u -d '+1 hours' +%FT%T.000000Z)\"}"
		echo "{\"device_hw_id\":\"SIM000002\",\"next_wake_at\":\"$(date -u -d '-2 hours' +%FT%T.000000Z)\"}"
		echo "{\"device_hw_id\":\"SIM000003\",\"next_wake_at\":\"$(date -u -d '+3 hours' +%FT%T.000000Z)\"}"
		echo '{"device_hw_id":"NOT-IN-DEVICES","next_wake_at":"2026-12-01T17:30:00.000000Z"}'
	} > "$GXP_STORE/control/next_wake.ndjson"
	run_report
	wakes_shown
	[ -z "$(tile "$OUT" NOT-IN-DEVICES)" ]
	# the next run, incremental, sees a line added since
	echo "{\"device_hw_id\":\"SIM000002\",\"next_wake_at\":\"$(date -u -d '+5 hours' +%FT%T.000000Z)\"}" >> "$GXP_STORE/control/next_wake.ndjson"
	run_report
	[ "$RC" = 0 ]
	[[ $(tile "$OUT" SIM000002 | cut -f7) != *late* ]]
	grep 'id="d-SIM000002"' "$OUT/index.html" | grep -q '<dt>next wake</dt><dd>in 4 h'
}

# bats test_tags=slow
@test "report: headless Chromium shows every device, and the thumbnails load" {
	run_report
	[ "$RC" = 0 ]
	chromium_run "$BATS_TEST_TMPDIR/dom.html" --dump-dom "file://$OUT/index.html"
	for id in $FLEET_IDS; do
		grep -qF ">$id<" "$BATS_TEST_TMPDIR/dom.html"
	done
	[ "$("$GXP_TOP/tests/report-tiles" "$BATS_TEST_TMPDIR/dom.html" | wc -l)" = 7 ]
	screenshot "$BATS_TEST_TMPDIR/shot.png" "file://$OUT/index.html"
	read -r w h colors <<<"$("$GXP_TOP/tests/png-colors" "$BATS_TEST_TMPDIR/shot.png")"
	echo "screenshot: $w x $h, $colors colours"
	[ "$w" = 1280 ]
	[ "$h" = 1000 ]
	# photos bring tens of thousands of colours; the page without them, a few
	# thousand (the text's antialiasing)
	[ "$colors" -gt 20000 ]
	mv "$OUT/thumbs" "$OUT/thumbs.away"
	screenshot "$BATS_TEST_TMPDIR/bare.png" "file://$OUT/index.html"
	read -r w h bare <<<"$("$GXP_TOP/tests/png-colors" "$BATS_TEST_TMPDIR/bare.png")"
	echo "without thumbnails: $bare colours"
	[ "$bare" -lt 10000 ]
	mv "$OUT/thumbs.away" "$OUT/thumbs"
	# a device page too: its photos' thumbnails load
	screenshot "$BATS_TEST_TMPDIR/dev.png" "file://$OUT/devices/SIM000001.html"
	read -r w h colors <<<"$("$GXP_TOP/tests/png-colors" "$BATS_TEST_TMPDIR/dev.png")"
	[ "$colors" -gt 20000 ]
}

@test "report: usage, --check, bad settings, an unreadable store" {
	run gxp-report --help
	[ "$status" = 0 ]
	[ "${lines[0]}" = "usage: gxp-report [-f] [--check] [--env file] [-o dir]" ]
	[ "${lines[-1]}" = "see gxp-report(1)" ]
	run gxp-report extra
	[ "$status" = 100 ]
	run gxp-report --check -f
	[ "$status" = 100 ]
	run gxp-report --check -o "$OUT"
	[ "$status" = 0 ]
	[[ $output == *"ok: local store $FLEET/store readable (bucket gxp-captures)"* ]]
	[[ $output == *"ok: report directory $OUT writable"* ]]
	REPORT_THUMB_PX=5 run gxp-report -o "$OUT"
	[ "$status" = 100 ]
	[[ $output == *"REPORT_THUMB_PX=5 (environment): expected an integer from 32 to 2048"* ]]
	GXP_STORE=$BATS_TEST_TMPDIR/nowhere run gxp-report -o "$OUT"
	[ "$status" = 100 ]
	[[ $output == *"local store $BATS_TEST_TMPDIR/nowhere: No such file or directory (GXP_STORE)"* ]]
	[ ! -e "$OUT/index.html" ]
}

@test "report: a directory that holds other files and no report is refused, and nothing in it removed" {
	mkdir -p "$OUT/devices"
	echo mine > "$OUT/page-notes.txt"
	echo mine > "$OUT/devices/keep.me"
	run gxp-report -o "$OUT"
	[ "$status" = 100 ]
	[[ $output == *"$OUT: not empty and not a report gxp-report made; give -o a new or empty directory"* ]]
	[ "$(cat "$OUT/page-notes.txt" "$OUT/devices/keep.me")" = "mine
mine" ]
	[ ! -e "$OUT/index.html" ]
	# an empty directory, and a report's own, are fine
	rm -rf "$OUT"; mkdir "$OUT"
	gxp-report -o "$OUT"
	gxp-report -o "$OUT"
	[ -s "$OUT/index.html" ]
}

# bats test_tags=slow
@test "report: a SIGKILL at any moment leaves the last report whole; the next run finishes it" {
	store=$BATS_TEST_TMPDIR/big
	"$GXP_TOP/bench/genstore" --dir "$store" --devices 300 --photos 2 --seed 3
	export GXP_STORE=$store
	for kill_at in 5 150 400; do
		gxp-report -o "$OUT" > /dev/null 2> "$BATS_TEST_TMPDIR/killed" &
		pid=$!
		wait_until 60 sh -c "[ \$(find '$OUT/thumbs' -name '*.jpg' 2>/dev/null | wc -l) -ge $kill_at ] || ! kill -0 $pid 2>/dev/null"
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" || true
		# every page there is whole: it ends as a page ends
		for f in "$OUT"/index.html "$OUT"/devices/*.html; do
			[ -e "$f" ] || continue
			[ "$(tail -c 8 "$f")" = "</html>" ] || { echo "torn: $f"; false; }
		done
	done
	run_report
	[ "$RC" = 0 ]
	[ -z "$(find "$OUT" -name '*.tmp.*')" ]
	[ "$(tiles_of "$OUT" | wc -l)" = 300 ]
	# the same report as a run that was never killed
	OUT=$BATS_TEST_TMPDIR/clean run_report
	diff <(tiles_of "$OUT") <(tiles_of "$BATS_TEST_TMPDIR/clean")
	[ "$(ls "$OUT/thumbs" | wc -l)" = "$(ls "$BATS_TEST_TMPDIR/clean/thumbs" | wc -l)" ]
}
