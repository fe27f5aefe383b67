#!/bin/sh
# Build the libFuzzer targets into build-fuzz/ and run each for a while.
#
# Usage: sh tests/fuzz/run.sh [TARGET...]    (feed config moodle; all by default)
# Environment: FUZZ_SECONDS (per target, default 60), CLANG (default clang),
# PKG_CONFIG.  Each target runs on build-fuzz/corpus-TARGET, which gets the
# seeds of tests/fuzz/corpus/TARGET and tests/fuzz/regress/TARGET copied in
# and keeps what earlier runs found (rm -rf build-fuzz to start over).
# Exits non-zero, naming the input, when a target crashed.
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 2
out=build-fuzz
seconds=${FUZZ_SECONDS:-60}
clang=${CLANG:-clang}
pkgconfig=${PKG_CONFIG:-pkg-config}
pkgs="libcurl jansson libevent libsystemd sqlite3 inih"
targets=${*:-feed config moodle}

# The quotes in -D...=\"...\" stay in the words: they make C strings.
flags="-std=gnu11 -g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE -Iinclude
	-DSYSCONFDIR=\"/etc\" -DWEBCOURSED_VERSION=\"fuzz\"
	-fno-sanitize-recover=undefined $($pkgconfig --cflags $pkgs)" || exit 2
libs="$($pkgconfig --libs $pkgs) -lm" || exit 2

# Compile src/*.c (but the two mains) when the object is older than its
# source or any header.
mkdir -p "$out/obj" || exit 2
objs=
for src in src/*.c; do
	case $src in src/daemon.c | src/ctl.c) continue ;; esac
	obj=$out/obj/$(basename "$src" .c).o
	objs="$objs $obj"
	stale=0
	[ -e "$obj" ] && [ ! "$src" -nt "$obj" ] || stale=1
	for h in include/*.h; do
		[ "$h" -nt "$obj" ] && stale=1
	done
	[ $stale = 0 ] && continue
	echo "CC $src"
	$clang $flags -fsanitize=fuzzer-no-link,address,undefined \
	    -c -o "$obj" "$src" || exit 2
done
for t in $targets; do
	echo "LINK $out/fuzz_$t"
	$clang $flags -fsanitize=fuzzer,address,undefined -Itests/fuzz \
	    -o "$out/fuzz_$t" "tests/fuzz/fuzz_$t.c" $objs $libs || exit 2
done

# Bigger inputs only slow the search down: the feed's deep-nesting seeds
# still fit, cut, in 64 KiB.
max_len() {
	case $1 in feed) echo 65536 ;; *) echo 16384 ;; esac
}

status=0
for t in $targets; do
	corpus=$out/corpus-$t
	mkdir -p "$corpus"
	cp tests/fuzz/corpus/"$t"/* "$corpus"/ || exit 2
	if [ -d tests/fuzz/regress/"$t" ]; then
		cp tests/fuzz/regress/"$t"/* "$corpus"/ 2>/dev/null
	fi
	mkdir -p "$out/crashes-$t"
	echo "FUZZ $t for $seconds s"
	"./$out/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
	    -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
	    -print_final_stats=1 -artifact_prefix="$out/crashes-$t/" \
	    "$corpus" </dev/null >"$out/fuzz_$t.log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' \
	    "$out/fuzz_$t.log")
	files=$(find "$corpus" -type f | wc -l)
	units=$(sed -n 's/.*DONE .* corp: \([^ ]*\) .*/\1/p' \
	    "$out/fuzz_$t.log" | tail -n 1)
	crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' \
	    "$out/fuzz_$t.log" | head -n 1)
	if [ $rc -ne 0 ] || [ -n "$crash" ]; then
		status=1
		printf '%-7s %10s executions, corpus %s files, CRASH: %s (log %s)\n' \
		    "$t" "${execs:-?}" "$files" "${crash:-none written}" \
		    "$out/fuzz_$t.log"
	else
		printf '%-7s %10s executions, corpus %s files (in use: %s), no crash\n' \
		    "$t" "${execs:-?}" "$files" "${units:-?}"
	fi
done
exit $status
