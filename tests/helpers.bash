# helpers.bash: the test rig.  Real servers on 127.0.0.1, on free ports,
# waited for by polling with a deadline and stopped by the test.

# No setting leaks in from the machine running the tests.
for v in $(env | sed -n 's/^\(MQTT_[A-Z_]*\|TOPIC_PATTERN_[A-Z]*\|SUPABASE_[A-Z_]*\|GXP_[A-Z_]*\)=.*/\1/p'); do
	unset "$v"
done

GXP_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PATH="$GXP_TOP/bin:$PATH"
export GXP_TOP PATH
export LOG_LEVEL=INFO

# wait_until SECONDS COMMAND...: polls COMMAND every 50 ms until it succeeds.
wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "wait_until: timed out: $*" >&2
			return 1
		fi
		sleep 0.05
	done
}

# port_open PORT: something listens on 127.0.0.1:PORT.
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

port_closed() {
	! port_open "$1"
}

# free_port: a port nothing listens on now.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		port_open "$p" || { echo "$p"; return; }
	done
}

# file_has FILE TEXT: FILE contains TEXT (fixed string).
file_has() {
	grep -qF -- "$2" "$1" 2>/dev/null
}

# make_certs DIR: a CA and a server certificate for localhost/127.0.0.1, and
# a second, unrelated CA for the negative tests.
make_certs() {
	local d=$1
	mkdir -p "$d"
	[ -f "$d/server.pem" ] && return 0
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=gxp test CA" \
		-keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=other CA" \
		-keyout "$d/other-ca.key" -out "$d/other-ca.pem" 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
		-keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$d/san.ext"
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
		-CAcreateserial -days 2 -extfile "$d/san.ext" -out "$d/server.pem" 2>/dev/null
	chmod 644 "$d"/*.key
}

# start_broker [plain|tls|password] [DIR]: starts mosquitto on a free port
# in DIR (default $BATS_TEST_TMPDIR/broker), with persistence so that a
# restart keeps persistent sessions.  Sets BROKER_PORT, BROKER_DIR, BROKER_PID.
start_broker() {
	local kind=${1:-plain} dir=${2:-$BATS_TEST_TMPDIR/broker} try
	BROKER_KIND=$kind
	BROKER_DIR=$dir
	mkdir -p "$dir"
	for try in 1 2 3 4 5; do
		BROKER_PORT=$(free_port)
		write_broker_conf
		if run_broker; then
			return 0
		fi
	done
	echo "start_broker: mosquitto would not start:" >&2
	cat "$dir/mosquitto.log" >&2
	return 1
}

write_broker_conf() {
	local c=$BROKER_DIR/mosquitto.conf
	{
		echo "user $(id -un)"
		echo "listener $BROKER_PORT 127.0.0.1"
		echo "persistence true"
		echo "persistence_location $BROKER_DIR/"
		echo "log_dest file $BROKER_DIR/mosquitto.log"
		echo "log_type all"
		echo "max_queued_messages 100000"
		# answers are single small messages: no Nagle wait for a delayed ACK
		echo "set_tcp_nodelay true"
		case $BROKER_KIND in
		plain)
			echo "allow_anonymous true" ;;
		password)
			mosquitto_passwd -b -c "$BROKER_DIR/passwd" gxpuser 's3cret-PW!' 2>/dev/null
			echo "allow_anonymous false"
			echo "password_file $BROKER_DIR/passwd" ;;
		tls)
			make_certs "$BROKER_DIR/../certs"
			echo "allow_anonymous true"
			echo "cafile $BROKER_DIR/../certs/ca.pem"
			echo "certfile $BROKER_DIR/../certs/server.pem"
			echo "keyfile $BROKER_DIR/../certs/server.key" ;;
		esac
	} > "$c"
}

run_broker() {
	# no inherited descriptors: bats' fd 3, or a test's fifo, must not stay open
	mosquitto -c "$BROKER_DIR/mosquitto.conf" > "$BROKER_DIR/stdout" 2>&1 \
		3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
	BROKER_PID=$!
	if wait_until 10 broker_ready; then
		return 0
	fi
	kill "$BROKER_PID" 2>/dev/null
	wait "$BROKER_PID" 2>/dev/null
	return 1
}

broker_ready() {
	kill -0 "$BROKER_PID" 2>/dev/null || return 2
	port_open "$BROKER_PORT"
}

stop_broker() {
	[ -n "${BROKER_PID:-}" ] || return 0
	kill "$BROKER_PID" 2>/dev/null
	wait "$BROKER_PID" 2>/dev/null
	BROKER_PID=
}

# restart_broker: stops and starts the same broker on the same port.
restart_broker() {
	stop_broker
	wait_until 10 port_closed "$BROKER_PORT"
	run_broker
}

# The environment the gxp tools need to reach the test broker.
broker_env() {
	export MQTT_HOST=127.0.0.1 MQTT_PORT=$BROKER_PORT
	case $BROKER_KIND in
	password) export MQTT_USERNAME=gxpuser MQTT_PASSWORD='s3cret-PW!' ;;
	tls) export MQTT_HOST=localhost MQTT_TLS=true MQTT_CAFILE=$BROKER_DIR/../certs/ca.pem ;;
	esac
}

# mpub ARGS...: mosquitto_pub against the test broker (plain or password).
mpub() {
	local auth=()
	[ "$BROKER_KIND" = password ] && auth=(-u gxpuser -P 's3cret-PW!')
	mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" "${auth[@]}" "$@"
}

# start_sub OUT ERR ARGS... [--faketime]: gxp-sub in the background, waited
# for until the broker has granted its subscriptions; --faketime (last)
# runs it with its wall clock frozen at 2025-10-04 12:00:00 UTC.  Sets SUB_PID.
start_sub() {
	local out=$1 err=$2 pre=()
	shift 2
	if [ "${*: -1}" = --faketime ]; then
		set -- "${@:1:$#-1}"
		# libfaketime itself (the faketime wrapper would fork): SUB_PID
		# stays gxp-sub's
		# (AddressSanitizer, under SANITIZE=1, wants to be the first
		# library loaded; the preloaded one comes before it)
		pre=(env TZ=UTC FAKETIME='2025-10-04 12:00:00'
			ASAN_OPTIONS=verify_asan_link_order=0
			LD_PRELOAD=$(dpkg -L libfaketime | grep '/libfaketime\.so\.1$'))
	fi
	"${pre[@]}" gxp-sub "$@" > "$out" 2> "$err" &
	SUB_PID=$!
	wait_until 10 file_has "$err" "Subscribed to topics"
}

# stop_pid PID: SIGTERM, then wait; the exit status is left in STOP_RC.
stop_pid() {
	kill -TERM "$1" 2>/dev/null
	STOP_RC=0
	wait "$1" 2>/dev/null || STOP_RC=$?
}

# lines_in FILE: the number of lines in FILE.
lines_in() {
	if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi
}

# has_lines FILE N: FILE has at least N lines.
has_lines() {
	[ "$(lines_in "$1")" -ge "$2" ]
}

teardown_broker() {
	stop_broker
	[ -n "${SUB_PID:-}" ] && kill "$SUB_PID" 2>/dev/null
	SUB_PID=
	return 0
}
