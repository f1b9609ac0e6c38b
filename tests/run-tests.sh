#!/bin/sh
# Run test executables with cmocka's TAP output, show failures, and end with
# one line "N passed, M failed". Exit non-zero on any failure. A binary that
# exits non-zero without reporting a failed test counts as one failure.
passed=0
failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in "$@"; do
    name=$(basename "$t")
    CMOCKA_MESSAGE_OUTPUT=TAP "$t" >"$out" 2>&1
    rc=$?
    p=$(grep -c '^ok ' "$out")
    f=$(grep -c '^not ok ' "$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -ne 0 ]; then
        echo "FAIL $name ($p passed, $f failed, exit $rc)"
        sed 's/^/    /' "$out" | tail -n 60
    else
        echo "ok   $name ($p passed)"
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
