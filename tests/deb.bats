#!/usr/bin/env bats
# The Debian package: make deb builds it clean under lintian, dpkg installs
# it on this machine, the installed tools run a fleet as the gxp user (with
# the units' restrictions: imitated with setpriv and a mount namespace, and
# for real under a systemd booted in a PID namespace, since PID 1 here is
# not systemd), and remove and purge leave behind only what they should.

load helpers
load e2e

# The package's own paths on this machine, found before it is installed
# and after it is purged.  Not man's cache of formatted pages (systemd-analyze
# verify reads the units' Documentation= pages): man-db's daily job expires it.
own_paths() {
	find /etc /lib /usr /var -xdev -path /var/cache/man -prune -o -name '*gxp*' -print 2>/dev/null | sort
}

# why this machine cannot take the test, or nothing
deb_skip_reason() {
	if [ "$(id -u)" != 0 ]; then
		echo "installs a package: needs root"
	elif ! command -v dpkg-buildpackage > /dev/null; then
		echo "no dpkg-buildpackage (make deps)"
	elif [ -n "${SANITIZE:-}" ]; then
		# the SANITIZE=1 pass of .ci/run: the package was tested in the plain one
		echo "SANITIZE=$SANITIZE: the package is tested without sanitizers"
	elif dpkg-query -W -f '${Status}' gxp 2> /dev/null | grep -qv 'not-installed'; then
		echo "gxp is installed on this machine; the test would replace and purge it"
	elif [ -e /var/lib/gxp ] || [ -e /etc/gxp ]; then
		echo "/var/lib/gxp or /etc/gxp exists (installed by hand?); purge would remove it"
	fi
}

# (bats 1.8 cannot skip in setup_file: each test skips in setup)
setup_file() {
	DEB_SKIP=$(deb_skip_reason)
	export DEB_SKIP
	[ -z "$DEB_SKIP" ] || return 0
	own_paths > "$BATS_FILE_TMPDIR/before"
	make -s -C "$GXP_TOP" deb > "$BATS_FILE_TMPDIR/make-deb.log" 2>&1 || {
		cat "$BATS_FILE_TMPDIR/make-deb.log" >&2
		return 1
	}
	DEB=$GXP_TOP/build/deb/gxp_$(deb_version)_$(dpkg --print-architecture).deb
	export DEB
	dpkg_do -i "$DEB"
}

teardown_file() {
	[ -z "$DEB_SKIP" ] || return 0
	if dpkg-query -W gxp > /dev/null 2>&1; then
		dpkg_do --purge gxp
	fi
	# the tests' own settings file (/etc/gxp did not exist before them)
	rm -f /etc/gxp/w1.env
	[ ! -d /etc/gxp ] || rmdir /etc/gxp
	return 0
}

setup() {
	[ -z "$DEB_SKIP" ] || skip "$DEB_SKIP"
	T=/var/lib/gxp/deb-test
}

teardown() {
	stop_worker
	sd_shutdown
	teardown_broker
}

# deb_version: the version debian/changelog gives.
deb_version() {
	dpkg-parsechangelog -l "$GXP_TOP/debian/changelog" -S Version
}

# dpkg_do ARGS...: dpkg, waiting up to a minute for the lock while another
# package manager runs on this shared machine.
dpkg_do() {
	lock_wait dpkg "$@"
}

# lock_wait COMMAND...: COMMAND (a dpkg), again while dpkg's lock is taken.
lock_wait() {
	local try out
	for try in $(seq 60); do
		if out=$("$@" 2>&1); then
			return 0
		fi
		case $out in
		*"dpkg frontend lock"*|*"dpkg status database is locked"*) sleep 1 ;;
		*) echo "$*: $out" >&2; return 1 ;;
		esac
	done
	echo "$*: $out" >&2
	return 1
}

# as_gxp COMMAND...: COMMAND as the units run it, as far as this machine
# allows without systemd: user gxp, umask 0027, no new privileges and no
# capabilities, an empty environment, a PATH without the source tree, and,
# where mount namespaces are allowed, the whole file system read-only but
# /var/lib/gxp, with a private /tmp and no /home or /root.  It replaces
# the shell it runs in: call it with run, or in the background (then $! is
# COMMAND's pid).
as_gxp() {
	local drop=(setpriv --reuid=gxp --regid=gxp --init-groups --no-new-privs
		--inh-caps=-all --bounding-set=-all
		env -i PATH=/usr/bin:/bin LOG_LEVEL=INFO)
	if unshare --mount true 2> /dev/null; then
		exec unshare --mount --propagation private /bin/sh -c '
			umask 0027
			mount --bind /var/lib/gxp /var/lib/gxp
			mount -t tmpfs -o mode=1777 tmpfs /tmp
			for d in /home /root; do
				[ -d "$d" ] && mount -t tmpfs -o ro,mode=0755 tmpfs "$d"
			done
			awk "{ print \$2 }" /proc/self/mounts | while read -r m; do
				case $m in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/tmp|/var/lib/gxp) continue ;; esac
				mount -o remount,bind,ro "$m" 2> /dev/null
			done
			exec "$@"' as_gxp "${drop[@]}" "$@"
	fi
	umask 0027
	exec "${drop[@]}" "$@"
}

# gxp_env FILE [KEY=VALUE...]: worker_env's settings, in $T, readable by
# gxp only.
gxp_env() {
	local f=$1
	shift
	BATS_TEST_TMPDIR=$T worker_env "$f" "MQTT_CLIENT_ID=gxp-deb-$$" "$@"
	chown root:gxp "$f"
	chmod 0640 "$f"
}

# sd_boot: boots systemd as PID 1 of a new PID, mount and UTS namespace,
# the way systemd runs in a container: /run, /tmp, /var/tmp (and the
# journal) on tmpfs there, nothing of the machine's boot started (a target
# that wants the journal only; the gxp units made independent of
# sysinit.target by a drop-in that changes nothing else), and policy-rc.d,
# which on container images forbids starting services, let through.  Sets
# SD_PID, or SD_SKIP saying why it cannot.
sd_boot() {
	local d
	unshare --pid --fork --mount --uts true 2> /dev/null ||
		{ SD_SKIP="no PID and mount namespaces here"; return 1; }
	find /sys/fs/cgroup -mindepth 1 -maxdepth 4 -type d 2> /dev/null | sort > "$BATS_TEST_TMPDIR/cgroups"
	# shellcheck disable=SC2016
	unshare --pid --fork --mount --uts --propagation private --mount-proc /bin/sh -c '
		set -e
		mount -t tmpfs -o mode=0755 tmpfs /run
		mount -t tmpfs -o mode=1777 tmpfs /tmp
		mount -t tmpfs -o mode=1777 tmpfs /var/tmp
		[ ! -d /var/log/journal ] || mount -t tmpfs tmpfs /var/log/journal
		u=/run/systemd/system
		mkdir -p $u/gxp.service.d $u/gxp@.service.d
		printf "[Unit]\nDefaultDependencies=no\n" | tee $u/gxp.service.d/test.conf > $u/gxp@.service.d/test.conf
		printf "[Unit]\nDefaultDependencies=no\nWants=systemd-journald.socket\nAfter=systemd-journald.socket\n" > $u/gxp-test.target
		if [ -e /usr/sbin/policy-rc.d ]; then
			printf "#!/bin/sh\nexit 0\n" > /run/policy-rc.d
			chmod 755 /run/policy-rc.d
			mount --bind /run/policy-rc.d /usr/sbin/policy-rc.d
		fi
		container=gxp-test exec /lib/systemd/systemd --system --unit=gxp-test.target' \
		> "$BATS_TEST_TMPDIR/boot.log" 2>&1 < /dev/null 3>&- &
	SD_UNSHARE=$!
	if ! wait_until 30 sd_up; then
		SD_SKIP="systemd would not boot in a namespace: $(tail -2 "$BATS_TEST_TMPDIR/boot.log" | tr '\n' ' ')"
		sd_shutdown
		return 1
	fi
}

sd_up() {
	SD_PID=$(pgrep -P "$SD_UNSHARE" -x systemd) &&
		sd systemctl is-system-running 2> /dev/null | grep -qxE 'running|degraded'
}

# sd COMMAND...: COMMAND inside the namespaces of sd_boot's systemd.
sd() {
	nsenter -t "$SD_PID" -m -p -u -- "$@"
}

# sd_prop UNIT PROPERTY: a property of UNIT, from that systemd.
sd_prop() {
	sd systemctl show -P "$2" "$1"
}

# sd_journal_has UNIT TEXT
sd_journal_has() {
	sd journalctl --no-pager -q -u "$1" | grep -qF -- "$2"
}

# sd_shutdown: powers that systemd off (it stops the units), kills it if
# that fails, and removes the empty cgroups it left.
sd_shutdown() {
	[ -n "${SD_UNSHARE:-}" ] || return 0
	[ -z "${SD_PID:-}" ] || sd systemctl poweroff > /dev/null 2>&1
	wait_until 60 eval '! kill -0 "$SD_UNSHARE" 2> /dev/null' || kill -KILL "$SD_UNSHARE" ${SD_PID:+"$SD_PID"}
	wait "$SD_UNSHARE" 2> /dev/null || true
	find /sys/fs/cgroup -mindepth 1 -maxdepth 4 -type d 2> /dev/null | sort |
		comm -13 "$BATS_TEST_TMPDIR/cgroups" - | sort -r | xargs -r rmdir 2> /dev/null || true
	SD_UNSHARE= SD_PID=
	return 0
}

@test "deb: make deb builds gxp_VERSION_ARCH.deb, lintian clean, the version from debian/changelog" {
	[ -f "$DEB" ]
	[[ $DEB == "$GXP_TOP/build/deb/"* ]]
	[ "$(dpkg-deb -f "$DEB" Version)" = "$(deb_version)" ]
	[ "$(make -s -C "$GXP_TOP" --eval 'print-version: ; @echo $(VERSION)' print-version)" = "$(deb_version)" ]
	run lintian --fail-on error,warning "${DEB%.deb}.changes"
	echo "$output"
	[ "$status" = 0 ]
	! grep -E '^[EW]: ' <<<"$output" || false
	# built in a copy: no build products in the tree's debian/
	if git -C "$GXP_TOP" rev-parse 2> /dev/null; then
		[ -z "$(git -C "$GXP_TOP" status --porcelain --ignored -- debian | grep '^!!')" ]
	fi
}

@test "deb: install: tools, man pages, units, the gxp user, /var/lib/gxp, /etc/gxp/gxp.env" {
	for t in gxp-sub gxp-control gxp-assemble gxp-upload gxp-pub gxp-supervise gxp-sim gxp-cmd gxp-report; do
		[ -x "/usr/bin/$t" ]
		[ -f "/usr/share/man/man1/$t.1.gz" ]
	done
	[ -f /usr/share/man/man5/gxp-spool.5.gz ]
	[ -f /usr/share/man/man7/gxp.7.gz ]
	[ -f /usr/share/gxp/sql/schema.sql ]
	[ -f /usr/share/gxp/sql/report.sql ]
	[ "$(ls /usr/share/gxp/examples/*.jpg | wc -l)" = 5 ]
	# a system user with no login
	IFS=: read -r _ _ uid _ _ home shell < <(getent passwd gxp)
	[ "$uid" -lt 1000 ]
	[ "$home" = /var/lib/gxp ]
	[ "$shell" = /usr/sbin/nologin ]
	[ "$(stat -c '%U:%G %a' /var/lib/gxp)" = "gxp:gxp 750" ]
	# the settings: a conffile, readable by gxp and nobody else
	[ "$(stat -c '%U:%G %a' /etc/gxp/gxp.env)" = "root:gxp 640" ]
	dpkg-query -W -f '${Conffiles}\n' gxp | grep -q '^ /etc/gxp/gxp.env '
	grep -qx 'GXP_SPOOL=/var/lib/gxp/spool' /etc/gxp/gxp.env
	grep -qx 'GXP_STORE=/var/lib/gxp/store' /etc/gxp/gxp.env
	grep -qx 'MQTT_PASSWORD=' /etc/gxp/gxp.env
	# both units pass systemd's own check, the template as an instance
	cp /lib/systemd/system/gxp@.service "$BATS_TEST_TMPDIR/gxp@w1.service"
	for u in /lib/systemd/system/gxp.service "$BATS_TEST_TMPDIR/gxp@w1.service"; do
		run systemd-analyze verify "$u"
		echo "$output"
		[ "$status" = 0 ]
		[ -z "$output" ]
		grep -qx 'RestartPreventExitStatus=100' "$u"
		grep -qx 'KillMode=mixed' "$u"
		grep -qx 'ProtectSystem=strict' "$u"
		grep -qx 'NoNewPrivileges=yes' "$u"
		grep -qx 'UMask=0027' "$u"
	done
	# the template has the same restrictions, line for line
	diff <(sed -n '/^UMask=/,/^\[Install\]/p' /lib/systemd/system/gxp.service) \
		<(sed -n '/^UMask=/,/^\[Install\]/p' /lib/systemd/system/gxp@.service)
	grep -qx 'ExecStart=/usr/bin/gxp-supervise --env /etc/gxp/%i.env' "$BATS_TEST_TMPDIR/gxp@w1.service"
	grep -qx 'StateDirectory=gxp/%i' "$BATS_TEST_TMPDIR/gxp@w1.service"
	# systemd's own rating of the sandbox: 0 (safe) to 10 (exposed)
	run systemd-analyze security --offline=yes /lib/systemd/system/gxp.service
	echo "$output" | tail -1
	[[ $(tail -1 <<<"$output") =~ exposure\ level\ for\ gxp.service:\ ([0-9.]+) ]]
	awk -v e="${BASH_REMATCH[1]}" 'BEGIN { exit !(e < 2.5) }'
}

@test "deb: started with the settings as shipped, the worker says which secret is missing and stops (100)" {
	# the shipped broker and Supabase project moved to loopback: nothing
	# may leave this machine, whatever the check tries
	run as_gxp MQTT_HOST=127.0.0.1 MQTT_PORT=9 SUPABASE_URL=http://127.0.0.1:9 \
		/usr/bin/gxp-supervise --env /etc/gxp/gxp.env
	echo "$output"
	[ "$status" = 100 ]
	[[ $output == *"MQTT_USERNAME is set (/etc/gxp/gxp.env line "*") but MQTT_PASSWORD is missing"* ]]
	[[ $output == *"but SUPABASE_SECRET_KEY is missing"* ]]
	[[ $output == *"the configuration is not usable (above); nothing started"* ]]
	[[ $output == *"Spool: /var/lib/gxp/spool"* ]]
}

@test "deb: the installed gxp-supervise --check and a fleet through the installed tools, as gxp" {
	start_broker plain
	mkdir -p "$T"
	chown gxp:gxp "$T"
	gxp_env "$T/w.env"
	run as_gxp /usr/bin/gxp-supervise --env "$T/w.env" --check
	echo "$output"
	[ "$status" = 0 ]
	[[ $output == *"gxp-sub: ok: broker 127.0.0.1:$BROKER_PORT"* ]]
	[[ $output == *"gxp-assemble: ok: spool $T/spool writable"* ]]
	[[ $output == *"gxp-upload: ok: local store $T/store writable"* ]]
	[[ $output == *"gxp-sub: ok: journal $T/spool/journal writable"* ]]
	[[ $output == *"gxp-upload: ok: spool $T/spool: no photo waiting"* ]]
	[[ $output == *"gxp-control: ok: local store $T/store/control writable"* ]]
	[ "$(grep -c ': ok: ' <<<"$output")" = 8 ]

	WORKER_LOG=$BATS_TEST_TMPDIR/worker.log
	as_gxp /usr/bin/gxp-supervise --env "$T/w.env" --events "$T/events.ndjson" \
		2> "$WORKER_LOG" 3>&- &
	WORKER_PID=$!
	wait_until 30 file_has "$WORKER_LOG" "Worker started"
	wait_until 10 file_has "$WORKER_LOG" "Subscribed to topics"
	# the stages that run are the installed programs, as user gxp
	for s in gxp-sub gxp-control gxp-assemble gxp-upload gxp-pub; do
		pid=$(pgrep -u gxp -x "$s" | head -1)
		[ "$(readlink "/proc/$pid/exe")" = "/usr/bin/$s" ]
	done
	[ "$(stat -c %U "/proc/$WORKER_PID")" = gxp ]
	# the installed gxp-sim sends the installed example photos
	run as_gxp /usr/bin/gxp-sim --env "$T/w.env" -d 3 -n 2 -t 30000 -s 7
	echo "$output"
	[ "$status" = 0 ]
	stop_worker
	[ "$WORKER_RC" = 0 ]
	[ "$(find "$T/store" -name '*.jpg' | wc -l)" = 6 ]
	photo_shas "$T/store" | sort -u > "$BATS_TEST_TMPDIR/stored"
	photo_shas /usr/share/gxp/examples | sort -u > "$BATS_TEST_TMPDIR/examples"
	[ -s "$BATS_TEST_TMPDIR/stored" ]
	[ -z "$(comm -23 "$BATS_TEST_TMPDIR/stored" "$BATS_TEST_TMPDIR/examples")" ]
	[ "$(grep -c '"ingest_status":"stored"' "$T/store/captures.ndjson")" = 6 ]
	# the installed gxp-report (libturbojpeg, a dependency of the package)
	# makes the report of that store
	run as_gxp /usr/bin/gxp-report --env "$T/w.env" -o "$T/report"
	echo "$output"
	[ "$status" = 0 ]
	[ "$(find "$T/report/thumbs" -name '*.jpg' | wc -l)" = 6 ]
	# written by gxp under the units' umask: nothing readable by others
	[ -z "$(find "$T/store" "$T/spool" ! -user gxp)" ]
	[ -z "$(find "$T/store" "$T/spool" -type f -perm /o=rwx)" ]
}

@test "deb: under systemd (booted in a namespace): the units run the fleet sandboxed, restart on upgrade, drain on stop, stop once on a missing secret" {
	sd_boot || skip "$SD_SKIP"
	start_broker plain
	cp -p /etc/gxp/gxp.env "$BATS_TEST_TMPDIR/shipped.env"
	sed -i -e "s/^MQTT_HOST=.*/MQTT_HOST=127.0.0.1/" -e "s/^MQTT_PORT=.*/MQTT_PORT=$BROKER_PORT/" \
		-e 's/^MQTT_TLS=.*/MQTT_TLS=false/' -e 's/^MQTT_USERNAME=.*/MQTT_USERNAME=/' \
		-e 's/^SUPABASE_URL=.*/SUPABASE_URL=/' -e "s/^MQTT_CLIENT_ID=.*/MQTT_CLIENT_ID=gxp-deb-$$/" \
		-e 's/^RETRANSMIT_DELAY_MS=.*/RETRANSMIT_DELAY_MS=1000/' /etc/gxp/gxp.env
	# a second worker, for another fleet
	sed 's|^TOPIC_PATTERN_\([A-Z]*\)=ESP32CAM/|TOPIC_PATTERN_\1=FLEETB/|' /etc/gxp/gxp.env > /etc/gxp/w1.env
	chgrp gxp /etc/gxp/w1.env
	chmod 0640 /etc/gxp/w1.env
	sd systemctl start gxp.service gxp@w1.service
	for u in gxp.service gxp@w1.service; do
		{ wait_until 30 sd_journal_has "$u" "Worker started" &&
			wait_until 10 sd_journal_has "$u" "Subscribed to topics"; } || {
			sd journalctl --no-pager -q -u "$u" | tail -30
			false
		}
	done
	sd_journal_has gxp@w1.service "Local store: /var/lib/gxp/w1/store"
	grep -q "as gxp-$(hostname -s)-w1-sub" "$BROKER_DIR/mosquitto.log"
	# the restrictions hold: gxp, no privileges, a read-only system
	pid=$(sd_prop gxp.service MainPID)
	sd grep -qE '^Uid:\s+'"$(id -u gxp)"'\s' "/proc/$pid/status"
	sd grep -qE '^NoNewPrivs:\s+1$' "/proc/$pid/status"
	sd grep -qE '^CapBnd:\s+0+$' "/proc/$pid/status"
	sd grep -qE '^Seccomp:\s+2$' "/proc/$pid/status"
	run sd nsenter -t "$pid" -m -- touch /usr/gxp-probe
	[[ $output == *"Read-only file system"* ]]
	sd nsenter -t "$pid" -m -- sh -c 'touch /var/lib/gxp/probe && rm /var/lib/gxp/probe'
	# and gxp@w1 may write its own directory only
	pid=$(sd_prop gxp@w1.service MainPID)
	run sd nsenter -t "$pid" -m -- touch /var/lib/gxp/probe
	[[ $output == *"Read-only file system"* ]]
	sd nsenter -t "$pid" -m -- sh -c 'touch /var/lib/gxp/w1/probe && rm /var/lib/gxp/w1/probe'
	run /usr/bin/gxp-sim -h 127.0.0.1 -p "$BROKER_PORT" -d 3 -n 2 -t 30000 -s 11
	echo "$output"
	[ "$status" = 0 ]
	[ "$(find /var/lib/gxp/store -name '*.jpg' | wc -l)" = 6 ]
	[ -z "$(find /var/lib/gxp/store /var/lib/gxp/spool -type f -perm /o=rwx)" ]
	[ -z "$(find /var/lib/gxp/w1/store -name '*.jpg')" ]
	# an upgrade restarts both, each after its drain
	main=$(sd_prop gxp.service MainPID) w1=$(sd_prop gxp@w1.service MainPID)
	# the namespace has /tmp of its own (the tree may be under /tmp)
	sd sh -c 'cat > /run/gxp-test.deb' < "$DEB"
	lock_wait sd dpkg -i /run/gxp-test.deb
	for u in gxp.service gxp@w1.service; do
		sd_journal_has "$u" "gxp-supervise: stopped"
		[ "$(sd_prop "$u" ActiveState)" = active ]
	done
	[ "$(sd_prop gxp.service MainPID)" != "$main" ]
	[ "$(sd_prop gxp@w1.service MainPID)" != "$w1" ]
	# stop drains and exits 0
	sd systemctl stop gxp@w1.service
	[ "$(sd_prop gxp@w1.service Result)" = success ]
	[ "$(sd_prop gxp@w1.service ExecMainStatus)" = 0 ]
	# a secret missing: stopped once, with the reason, no restart
	sed -i 's/^MQTT_USERNAME=.*/MQTT_USERNAME=someone/' /etc/gxp/gxp.env
	sd systemctl restart gxp.service
	wait_until 30 eval '[ "$(sd_prop gxp.service ActiveState)" = failed ]'
	[ "$(sd_prop gxp.service ExecMainStatus)" = 100 ]
	[ "$(sd_prop gxp.service NRestarts)" = 0 ]
	sd_journal_has gxp.service "but MQTT_PASSWORD is missing"
	sd_journal_has gxp.service "the configuration is not usable (above); nothing started"
	sd_shutdown
	cp -p "$BATS_TEST_TMPDIR/shipped.env" /etc/gxp/gxp.env
	rm -rf /etc/gxp/w1.env /var/lib/gxp/store /var/lib/gxp/spool /var/lib/gxp/w1
}

@test "deb: remove keeps the settings and the spool; purge removes them and leaves only the gxp user" {
	systemctl enable gxp.service gxp@w1.service > /dev/null 2>&1
	[ -L /etc/systemd/system/multi-user.target.wants/gxp.service ]
	[ -L /etc/systemd/system/multi-user.target.wants/gxp@w1.service ]
	install -m 0640 -g gxp /etc/gxp/gxp.env /etc/gxp/w1.env
	echo '# changed by the administrator' >> /etc/gxp/gxp.env
	mkdir -p /var/lib/gxp/spool

	dpkg_do -r gxp
	[ ! -e /usr/bin/gxp-supervise ]
	[ ! -e /lib/systemd/system/gxp.service ]
	[ "$(dpkg-query -W -f '${db:Status-Abbrev}' gxp)" = "rc " ]
	grep -qx '# changed by the administrator' /etc/gxp/gxp.env
	[ "$(stat -c '%U:%G %a' /etc/gxp/gxp.env)" = "root:gxp 640" ]
	[ -d /var/lib/gxp/spool ]

	dpkg_do --purge gxp
	! dpkg-query -W gxp 2> /dev/null || false
	# the administrator's own file stays, the package's goes
	[ "$(ls -A /etc/gxp)" = w1.env ]
	rm /etc/gxp/w1.env
	rmdir /etc/gxp
	[ ! -e /var/lib/gxp ]
	[ -z "$(dpkg-statoverride --list | grep gxp)" ]
	[ ! -e /etc/systemd/system/multi-user.target.wants/gxp.service ]
	[ ! -e /etc/systemd/system/multi-user.target.wants/gxp@w1.service ]
	own_paths > "$BATS_TEST_TMPDIR/after"
	diff -u "$BATS_FILE_TMPDIR/before" "$BATS_TEST_TMPDIR/after"
	# the user stays (Debian's practice: files it owned may remain)
	getent passwd gxp > /dev/null
}
