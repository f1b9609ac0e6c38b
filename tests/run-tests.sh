#!/bin/sh
# Run test executables with cmocka's TAP output, show failures, and end with
# one line "N passed, M failed", followed by ", K skipped" when a test was
# skipped (cmocka's skip(): TAP "not ok N # SKIP"), which counts neither as
# passed nor as failed. Exit non-zero on any failure. A binary that exits
# non-zero without reporting a failed test counts as one failure.
passed=0
failed=0
skipped=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in "$@"; do
    name=$(basename "$t")
    CMOCKA_MESSAGE_OUTPUT=TAP "$t" >"$out" 2>&1
    rc=$?
    p=$(grep -c '^ok ' "$out")
    s=$(grep -ci '^not ok [0-9]* *# *SKIP' "$out")
    f=$(($(grep -c '^not ok ' "$out") - s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))
    if [ "$s" -ne 0 ]; then
        sk=", $s skipped"
    else
        sk=
    fi
    if [ "$f" -ne 0 ]; then
        echo "FAIL $name ($p passed, $f failed$sk, exit $rc)"
        sed 's/^/    /' "$out" | tail -n 60
    else
        echo "ok   $name ($p passed$sk)"
        grep -i '^not ok [0-9]* *# *SKIP' "$out" | sed 's/^/    /'
    fi
done
if [ "$skipped" -ne 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
