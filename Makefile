# gxp: see README.md.  make; make check; make install PREFIX=/usr
PREFIX = /usr/local
MANPREFIX = $(PREFIX)/share/man
CC = cc
CFLAGS = -O2 -g
CPPFLAGS =
LDFLAGS =
SANITIZE =
# e.g. BATS_FLAGS="--filter-tags !slow": the suite without its long runs
BATS_FLAGS =

WARN = -std=c11 -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wvla \
	-Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wundef
GXP_CPPFLAGS = -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DGXP_VERSION='"$(VERSION)"' -Isrc
LIBS = -Wl,--as-needed -lmosquitto -lcurl -lcjson -lcrypto -lpthread -lm
SAN_1 = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
ALL_CFLAGS = $(WARN) $(GXP_CPPFLAGS) $(CPPFLAGS) $(CFLAGS) $(SAN_$(SANITIZE))

TOOLS = gxp-sub gxp-assemble gxp-control gxp-upload gxp-pub gxp-sim gxp-cmd gxp-report
SCRIPTS = gxp-supervise
LIB_SRC = $(wildcard src/lib/*.c)
LIB_OBJ = $(LIB_SRC:src/%.c=build/%.o)
BINS = $(TOOLS:%=bin/%) $(SCRIPTS:%=bin/%)
MANS = $(wildcard man/*.[157])
# A tool that outgrew one file is a folder src/TOOL/ with a private header;
# gxp-assemble's fuzzers link all its objects but main.o.
ASM_SRC = $(wildcard src/assemble/*.c)
ASM_OBJ = $(ASM_SRC:src/%.c=build/%.o)
CONTROL_OBJ = $(patsubst src/%.c,build/%.o,$(wildcard src/control/*.c))
UPLOAD_OBJ = $(patsubst src/%.c,build/%.o,$(wildcard src/upload/*.c))
SIM_OBJ = $(patsubst src/%.c,build/%.o,$(wildcard src/sim/*.c))
SUB_OBJ = $(patsubst src/%.c,build/%.o,$(wildcard src/sub/*.c))
# Unit tests of library code, run by the bats suite.
TESTPROGS = build/schedule-test build/cluster-test
PHOTOS = $(wildcard examples/*.jpg)
SQL = $(wildcard sql/*.sql)
# The version: the top entry of debian/changelog, its one source.
VERSION = ${shell sed -n '1s/^gxp (\([^)]*\)).*/\1/p' debian/changelog}

# Debian packages for building, testing, the demo and the benchmarks.
DEPS = gcc make pkg-config libmosquitto-dev libcurl4-openssl-dev \
	libcjson-dev libssl-dev bats mosquitto mosquitto-clients openssl \
	postgresql python3 python3-psycopg2 python3-paho-mqtt jq curl mandoc valgrind \
	clang libclang-rt-14-dev systemd procps faketime strace \
	dpkg-dev debhelper fakeroot lintian adduser tzdata libturbojpeg0-dev chromium

all: $(BINS) $(TESTPROGS)

# Rebuild everything when the compiler flags change (make SANITIZE=1).
build/flags: FORCE
	@mkdir -p build/lib
	@echo '$(CC) $(ALL_CFLAGS) $(LDFLAGS)' | cmp -s - $@ || \
		echo '$(CC) $(ALL_CFLAGS) $(LDFLAGS)' > $@

build/%.o: src/%.c src/lib/gxp.h build/flags
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# the stores' header, and the control plane's
build/lib/http.o build/lib/rows.o build/lib/store.o build/lib/store_dir.o build/lib/store_supabase.o: src/lib/store.h
build/lib/store_sync.o build/lib/marks.o build/lib/ctl_dir.o build/lib/ctl_supabase.o: src/lib/store.h
build/lib/config.o build/lib/schedule.o build/lib/ctl.o build/lib/ctl_dir.o build/lib/ctl_supabase.o build/gxp-cmd.o: src/lib/control.h

$(ASM_OBJ): src/assemble/assemble.h
$(CONTROL_OBJ): src/control/ctl.h src/lib/control.h src/lib/store.h
$(UPLOAD_OBJ): src/upload/upload.h src/lib/store.h
$(SIM_OBJ): src/sim/sim.h
$(SUB_OBJ): src/sub/sub.h

bin/gxp-assemble: $(ASM_OBJ) build/libgxp.a
bin/gxp-control: $(CONTROL_OBJ) build/libgxp.a
bin/gxp-sim: $(SIM_OBJ) build/libgxp.a
bin/gxp-sub: $(SUB_OBJ) build/libgxp.a
bin/gxp-upload: $(UPLOAD_OBJ) build/libgxp.a
bin/gxp-assemble bin/gxp-control bin/gxp-sim bin/gxp-sub bin/gxp-upload:
	@mkdir -p bin
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(filter %.o,$^) build/libgxp.a $(LIBS)

build/schedule-test: tests/schedule.c build/libgxp.a src/lib/control.h
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ tests/schedule.c build/libgxp.a $(LIBS)

build/cluster-test: tests/cluster.c build/libgxp.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ tests/cluster.c build/libgxp.a $(LIBS)

build/libgxp.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $(LIB_OBJ)

bin/gxp-%: build/gxp-%.o build/libgxp.a
	@mkdir -p bin
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< build/libgxp.a $(LIBS)

# gxp-report: a folder of its own (src/report/), and the only tool that
# links libjpeg-turbo (Debian's libturbojpeg0-dev).
REPORT_OBJ = $(patsubst src/%.c,build/%.o,$(wildcard src/report/*.c))
$(REPORT_OBJ): src/report/report.h src/lib/store.h

bin/gxp-report: $(REPORT_OBJ) build/libgxp.a
	@mkdir -p bin
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(REPORT_OBJ) build/libgxp.a $(LIBS) -lturbojpeg

bin/gxp-supervise: src/gxp-supervise
	@mkdir -p bin
	cp src/gxp-supervise $@
	chmod 755 $@

# The README's two commands.  Both install missing Debian packages first.
check: deps all
	bats $(BATS_FLAGS) tests

demo: deps all
	examples/demo

deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	missing=$$(for p in $(DEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing" $$missing; \
		$$SUDO apt-get update && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends $$missing; \
	fi

# A line "! cmd" inside a bats test cannot fail it (errexit ignores "!"):
# such a check must read "! cmd || false" or "run ! cmd".
lint:
	mandoc -T lint -W warning $(MANS)
	@if grep -nE '^[[:space:]]*! [^|]*$$' tests/*.bats; then \
		echo 'lint: a "! cmd" line in a bats test cannot fail it; add "|| false"' >&2; exit 1; fi

# share/gxp: the photos gxp-sim sends by default, and the SQL for Supabase.
install: all
	mkdir -p $(DESTDIR)$(PREFIX)/bin
	cp $(BINS) $(DESTDIR)$(PREFIX)/bin/
	for m in $(MANS); do s=$${m##*.}; mkdir -p $(DESTDIR)$(MANPREFIX)/man$$s; \
		cp $$m $(DESTDIR)$(MANPREFIX)/man$$s/; done
	mkdir -p $(DESTDIR)$(PREFIX)/share/gxp/examples $(DESTDIR)$(PREFIX)/share/gxp/sql
	cp $(PHOTOS) $(DESTDIR)$(PREFIX)/share/gxp/examples/
	cp $(SQL) $(DESTDIR)$(PREFIX)/share/gxp/sql/

uninstall:
	for b in $(TOOLS) $(SCRIPTS); do rm -f $(DESTDIR)$(PREFIX)/bin/$$b; done
	for m in $(MANS); do s=$${m##*.}; rm -f $(DESTDIR)$(MANPREFIX)/man$$s/$${m##*/}; done
	rm -rf $(DESTDIR)$(PREFIX)/share/gxp

clean:
	rm -rf build bin

# The Debian package, built from a copy of the tree in build/deb/gxp (so
# that neither this tree nor its bin/ is touched) and checked by lintian;
# dpkg-buildpackage leaves it beside the copy: build/deb/gxp_VERSION_ARCH.deb.
DEB = build/deb/gxp_$(VERSION)_$(shell dpkg --print-architecture 2>/dev/null).deb
DEB_SRC = Makefile .env.example README.md $(PHOTOS) $(SQL) $(wildcard src/* src/*/* man/* debian/* debian/*/*)

deb: $(DEB)

$(DEB): $(DEB_SRC)
	rm -rf build/deb
	mkdir -p build/deb/gxp
	tar -cf - --exclude=./.git --exclude=./build --exclude=./bin --exclude=./var \
		--exclude=./.env --exclude=./fuzz/out . | tar -xf - -C build/deb/gxp
	cd build/deb/gxp && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u SANITIZE \
		dpkg-buildpackage -us -uc -b
	lintian --fail-on error,warning --info build/deb/gxp_$(VERSION)_*.changes || { rm -f $@; exit 1; }

# Fuzzing with clang's libFuzzer (fuzz/run): make fuzz runs each harness for
# FUZZ_SECONDS, make fuzz-smoke briefly (CI); findings go to fuzz/out/.
FUZZ_SECONDS = 60
FUZZ_CC = clang
FUZZ_CFLAGS = $(WARN) $(GXP_CPPFLAGS) -g -O1 -fno-omit-frame-pointer \
	-Wno-format-nonliteral -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_LIB = $(LIB_SRC:src/%.c=build/fuzz/%.o)
FUZZ_ASM = $(filter-out build/fuzz/assemble/main.o,$(ASM_SRC:src/%.c=build/fuzz/%.o))
FUZZERS = build/fuzz/line build/fuzz/sequence

build/fuzz/lib/%.o: src/lib/%.c src/lib/gxp.h src/lib/store.h src/lib/control.h
	@mkdir -p build/fuzz/lib
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/assemble/%.o: src/assemble/%.c src/assemble/assemble.h src/lib/gxp.h
	@mkdir -p build/fuzz/assemble
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/%: fuzz/%.c fuzz/driver.c fuzz/driver.h src/assemble/assemble.h $(FUZZ_ASM) $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer \
		-Wl,--wrap=gxp_write_all,--wrap=renameat -o $@ \
		$< fuzz/driver.c $(FUZZ_ASM) $(FUZZ_LIB) $(LIBS)

fuzz: $(FUZZERS)
	fuzz/run $(FUZZ_SECONDS) $(FUZZERS)

fuzz-smoke: $(FUZZERS)
	fuzz/run 12 $(FUZZERS)

FORCE:
.PHONY: all check demo deps lint install uninstall clean deb fuzz fuzz-smoke FORCE
.SECONDARY:
