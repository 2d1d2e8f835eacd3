#!/usr/bin/env bats
# The documentation against the tools: every option of each --help in its
# manual page, the sections every page has, quotes that render, the
# Troubleshooting messages still in the sources, the README's settings
# table and .env syntax as the tools read them.

load helpers
load upload-fixtures

TOOLS="gxp-sub gxp-control gxp-assemble gxp-upload gxp-pub gxp-supervise gxp-sim gxp-report gxp-cmd"

setup() {
	cd "$BATS_TEST_TMPDIR"
}

teardown() {
	teardown_broker
}

# usage_options TOOL: the options of TOOL's usage (the lines before the
# first option line of --help), one a line.
usage_options() {
	"$1" --help | sed -n '1,/^  -/p' | sed '$d' | sed 's/gxp-[a-z]*//g' |
		grep -oE '(^|[[ |])--?[a-zA-Z][a-zA-Z-]*' | grep -oE -- '--?[a-zA-Z-]+' |
		sed -E 's/^-([a-zA-Z]{2,})$/-\1/' | while read -r o; do
			# -jM: -j and -M
			if [[ $o =~ ^-[a-zA-Z]{2,}$ ]]; then
				for ((i = 1; i < ${#o}; i++)); do printf '%s\n' "-${o:i:1}"; done
			else
				printf '%s\n' "$o"	# echo would take -n for itself
			fi
		done | sort -u
}

# page_options PAGE SECTION: the options named by Fl in the section (Fl
# takes the flags after it: ".Op Fl -check | -once", ".Op Fl jM").
page_options() {
	sed -n "/^\\.Sh $2\$/,/^\\.Sh /p" "$1" | awk '
		{
			fl = 0
			for (i = 1; i <= NF; i++) {
				if ($i == "Fl" || $i == ".Fl") { fl = 1; continue }
				if ($i ~ /^\.?[A-Z][a-z]$/) { fl = 0; continue }	# another macro
				if (!fl || $i == "|") continue
				if ($i ~ /^-/) print "-" $i
				else if ($i ~ /^[a-zA-Z]+$/)
					for (j = 1; j <= length($i); j++) print "-" substr($i, j, 1)
				fl = 0
				if ($(i + 1) == "|") fl = 1
			}
		}' | sort -u
}

@test "docs: every option of each tool's usage is in its page's SYNOPSIS and OPTIONS, and the other way round" {
	bad=
	for t in $TOOLS; do
		page=$GXP_TOP/man/$t.1
		u=$(usage_options "$t")
		[ -n "$u" ]
		syn=$(page_options "$page" SYNOPSIS)
		opt=$(page_options "$page" OPTIONS)
		for o in $u; do
			grep -qx -- "$o" <<<"$syn" || bad="$bad $t:$o(not in SYNOPSIS)"
			grep -qx -- "$o" <<<"$opt" || bad="$bad $t:$o(not in OPTIONS)"
		done
		for o in $syn; do
			grep -qx -- "$o" <<<"$u" || bad="$bad $t:$o(in SYNOPSIS, not in usage)"
		done
		grep -qx -- --help <<<"$opt" || bad="$bad $t:--help(not in OPTIONS)"
	done
	echo "$bad"
	[ -z "$bad" ]
}

@test "docs: --help ends with the manual to read; every page has OPTIONS (tools) and EXAMPLES" {
	for t in $TOOLS; do
		[ "$("$t" --help | tail -n 1)" = "see $t(1)" ]
		grep -qx '.Sh OPTIONS' "$GXP_TOP/man/$t.1"
	done
	for p in "$GXP_TOP"/man/*.[157]; do
		grep -qx '.Sh EXAMPLES' "$p" || { echo "no EXAMPLES in $p"; false; }
	done
}

@test "docs: quotes render balanced in every page (gxp(7) had 'kind (‘nack or ‘ack_ok’’)')" {
	for p in "$GXP_TOP"/man/*.[157]; do
		# an opening quote before the one open is closed
		if mandoc -T utf8 "$p" | col -b | grep -n '‘[^’]*‘'; then
			echo "in $p"
			false
		fi
	done
	mandoc -T utf8 "$GXP_TOP/man/gxp.7" | col -b | grep -q "kind (‘nack’ or ‘ack_ok’)"
}

# quotes_in_sources README SOURCES...: each message README's Troubleshooting
# quotes (a code span with a space, not a command) is found in a C string
# or a line of the sources: "..." in a quote stands for what varies, and a
# printf conversion in the source for a value ("%s" right after a letter,
# the plural's s, may be there or not).  Prints the quotes not found.
quotes_in_sources() {
	python3 - "$@" <<-'PY'
	import re, sys
	readme, srcs = sys.argv[1], sys.argv[2:]
	text = open(readme).read()
	sec = text[text.index("## Troubleshooting\n"):]
	sec = sec[:sec.index("\n## ", 5)]
	sec = re.sub(r"\n *```.*?\n *```", "", sec, flags=re.S)
	quotes = [re.sub(r"\s+", " ", q) for q in re.findall(r"`([^`]+)`", sec)]
	quotes = [q for q in quotes if " " in q and not re.match(
	    r"(gxp-|grep|jq|sed|stdbuf|mosquitto|NOTIFY|SUPERVISE_|sql/)", q)]
	src = ""
	for f in srcs:
	    src += open(f, errors="replace").read() + "\n"
	src = re.sub(r'"\s*\n\s*"', "", src)            # "a " "b" is "a b"
	src = re.sub(r"(?<=[a-z])%s", "\x03", src)       # the plural's s
	src = re.sub(r"%[-+ #0]*[0-9*]*(\.[0-9*]+)?(hh|h|ll|l|z|j|t)?[diouxXeEfgGcsp]|\$\{?\w+\}?",
	    "\x02", src)
	print(len(quotes), file=sys.stderr)
	for q in quotes:
	    parts = [re.escape(p.strip()) for p in q.split("...")]
	    parts = [re.sub(r"([a-z])(s?)(?=\\ |$)", lambda m: m.group(1) +
	        ("(?:s\x03?|\x03)" if m.group(2) else "\x03?"), p) for p in parts]
	    rx = "[^\n]*?".join(parts)
	    if not re.search(rx, src):
	        print(q)
	PY
}

@test "docs: each message README's Troubleshooting quotes occurs in the sources" {
	run quotes_in_sources "$GXP_TOP/README.md" "$GXP_TOP"/src/*.c "$GXP_TOP"/src/*/*.c \
		"$GXP_TOP"/src/gxp-supervise
	echo "$output"
	[ "$status" = 0 ]
	# the count of quotes, then nothing: every one was found
	[ "${lines[0]}" -ge 15 ]
	[ "${#lines[@]}" = 1 ]
}

@test "docs: README's settings table has every setting, with the default settings.c gives (or gxp-supervise's, said so)" {
	bad=
	while IFS='|' read -r name def; do
		row=$(grep -F "| \`$name\` |" "$GXP_TOP/README.md") || { bad="$bad $name(no row)"; continue; }
		col=$(awk -F' \\| ' '{print $2}' <<<"$row")
		if [ "$def" = NULL ]; then
			[[ $col == "-"* ]] || bad="$bad $name($col)"
		else
			[[ $col == "\`$def\`"* ]] || bad="$bad $name($col)"
		fi
	done < <(sed -nE 's/^[[:space:]]*(STR|INT)\("([A-Z0-9_]+)", (NULL|"([^"]*)").*/\2|\4/p; s/^[[:space:]]*SECRET\("([A-Z0-9_]+)".*/\1|/p' \
		"$GXP_TOP/src/lib/settings.c" | sed 's/|$/|NULL/')
	echo "$bad"
	[ -z "$bad" ]
	grep -qF '| `MQTT_CLIENT_ID` | - (gxp-supervise: `gxp-<host>-<hash' "$GXP_TOP/README.md"
	grep -qF '| `GXP_METRICS_DIR` | - (gxp-supervise: `$GXP_SPOOL/metrics`)' "$GXP_TOP/README.md"
	# .env.example sends the reader where the table is
	grep -q 'README.md ("Configuration")' "$GXP_TOP/.env.example"
	! grep -q 'and gxp(7)' "$GXP_TOP/.env.example" || false
}

@test "docs: the .env syntax README describes: CRLF, ' #' comments, quotes, no expansion" {
	start_broker plain
	printf '%s\r\n' '# saved on Windows' 'MQTT_HOST=127.0.0.1' "export MQTT_PORT=$BROKER_PORT" \
		'MQTT_CLIENT_ID=id#1 #a comment' \
		'TOPIC_PATTERN_DATA = "d/+/x\"y" # spaces around =' 'TOPIC_PATTERN_ACK=$HOME/+/ack' > .env
	start_sub out err -c
	grep -qF 'MQTT Broker: 127.0.0.1:'"$BROKER_PORT" err
	grep -qxF 'gxp-sub: info:   - d/+/x"y' err
	grep -qxF 'gxp-sub: info:   - $HOME/+/ack' err
	grep -q "New client connected from .* as id#1-sub " "$BROKER_DIR/mosquitto.log"
	kill "$SUB_PID"
	# MQTT_PASSWORD=ab #cd is ab: the same with a value that shows, in an ACK_OK

	export GXP_SPOOL=$BATS_TEST_TMPDIR/spool GXP_STORE=$BATS_TEST_TMPDIR/store
	for v in "5:30PM #cd|5:30PM" "'5:30 #PM' # quoted|5:30 #PM" '"5\"30"|5"30'; do
		make_entry "$GXP_SPOOL" AABBCCDDEEFF "i$RANDOM.jpg" 2000
		printf 'ACK_NEXT_WAKE_TIME=%s\r\n' "${v%%|*}" > w.env
		gxp-upload --env w.env --once < /dev/null > out 2> err
		[ "$(jq -r 'select(.payload.ACK_OK) | .payload.ACK_OK.next_wake_time' out)" = "${v#*|}" ]
	done
}
