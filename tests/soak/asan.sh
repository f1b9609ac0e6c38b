#!/bin/sh
# The integration suite and a short soak with every program built under
# AddressSanitizer and UndefinedBehaviorSanitizer, in a copy of the
# repository (the working tree is never rebuilt). Every sanitizer report
# of any process (the broker, brokerctl, the simulator, the tests) goes
# to a file under the copy; the run passes when there are none.
#
#   sh tests/soak/asan.sh            # integration suite + 60 s soak
#   ASAN_SOAK_SECONDS=0 sh ...       # integration suite only
#   ASAN_KEEP=1 sh ...               # keep the copy
set -u
cd "$(dirname "$0")/../.."
src=$(pwd)
work=$(mktemp -d /tmp/wb-asan.XXXXXX)
soak_s=${ASAN_SOAK_SECONDS:-60}

say() { printf 'asan: %s\n' "$*" >&2; }

say "copying the repository to $work"
(cd "$src" && tar --exclude=./build --exclude=./bin --exclude=./.git \
    -cf - .) | (cd "$work" && tar xf -) || exit 2
cd "$work" || exit 2
make clean >/dev/null 2>&1
say "building with SANITIZE=1"
if ! make -j"$(nproc 2>/dev/null || echo 2)" SANITIZE=1 all \
        $(ls tests/integ/test_*.c | sed 's|tests/integ/\(.*\)\.c|build/tests/integ_\1|') \
        build/soak/soak >build.log 2>&1; then
    tail -30 build.log >&2
    say "build failed"
    exit 2
fi
mkdir -p reports
# abort_on_error=0 and halt_on_error=1: a report ends the process with a
# non-zero status; the reports land in files, whoever's stderr it was
export ASAN_OPTIONS="log_path=$work/reports/asan:detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="log_path=$work/reports/ubsan:print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="log_path=$work/reports/lsan"
status=0
say "integration suite"
sh tests/run-tests.sh build/tests/integ_test_* || status=1
if [ "$soak_s" -gt 0 ]; then
    say "soak, $soak_s s (RSS is not judged under the sanitizers)"
    SOAK_SECONDS=$soak_s SOAK_RSS_CHECK=0 build/soak/soak || status=1
fi
n=$(find reports -type f | wc -l)
if [ "$n" -gt 0 ]; then
    say "$n sanitizer report(s):"
    for f in reports/*; do
        printf '==== %s\n' "$f" >&2
        head -40 "$f" >&2
    done
    status=1
else
    say "no sanitizer reports"
fi
cd /
if [ -z "${ASAN_KEEP:-}" ] && [ "$status" -eq 0 ]; then
    rm -rf "$work"
else
    say "kept $work"
fi
exit "$status"
