#!/bin/sh
# `make bench-scale`: the broker with many tenants (issue 16). One run:
#
#   1. 10,000 tenants of 20-200 members each, installed through the real
#      path (create_auth signed and encrypted as WeCom does, the AuthCode
#      exchanged, the directory synced) until all are active; install
#      time in total and per tenant; Redis bytes per member
#   2. one tenant of 100,000 members in 5,000 departments, the same way
#   3. user/get and user/list p99 on the big tenant through a service
#      token (wrk)
#   4. broker RSS with half the tenants, then all, touched once through
#      the service API (gettoken + user/get each)
#   5. `brokerctl tenant purge` of the big tenant: wall time, keys removed,
#      nothing of it left, the longest Redis command meanwhile (SLOWLOG)
#
# and, to say where the RSS goes, build/bench/bench_tenant_mem: the heap
# one entry of the broker's tenants cache takes, by directory size.
#
# Prints one row per figure with its target and PASS/MISSED (or info) and
# exits 1 when a target is missed. Not part of `make test`. Knobs
# (environment): SCALE_PORT_BASE (21500; three ports from there),
# SCALE_TENANTS (10000), SCALE_MEMBERS (20:200), SCALE_BIG (100000:5000),
# SCALE_LATENCY (0: ms the simulator adds to every call), SCALE_SECONDS
# (10, each wrk run), SCALE_WINDOW (48 tenants outstanding), SCALE_KEEP
# (non-empty: keep the temporary directory).
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)

BASE=${SCALE_PORT_BASE:-21500}
CB=$BASE
INT=$((BASE + 1))
MOCK=$((BASE + 2))
N=${SCALE_TENANTS:-10000}
SPREAD=${SCALE_MEMBERS:-20:200}
BIG=${SCALE_BIG:-100000:5000}
LAT=${SCALE_LATENCY:-0}
SECS=${SCALE_SECONDS:-10}
WINDOW=${SCALE_WINDOW:-48}
SUITE=wwdemo0000suite01
BIGN=$((N + 1))
BIGCORP=$(printf 'wwmockcorp%04d' "$BIGN")
BIGUSER=$(printf 'u%05d' $((${BIG%%:*} / 2)))
HALF=$((N / 2))
T_START=$(date +%s)

say() { printf 'bench-scale: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

missing=""
for t in curl:curl jq:jq wrk:wrk redis-server:redis-server \
    redis-cli:redis-tools; do
    command -v "${t%%:*}" >/dev/null 2>&1 || missing="$missing ${t#*:}"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        die "missing packages:$missing; install them with: apt-get" \
            "install$missing"
    fi
    say "installing:$missing"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends $missing >/dev/null ||
        die "could not install:$missing"
fi
for p in bin/wecom-broker bin/brokerctl bin/mock-wecom \
    build/bench/bench_scale build/bench/bench_tenant_mem; do
    [ -x "$p" ] || die "$p is missing: run make bench-scale"
done

d=$(mktemp -d /tmp/wecom-broker-scale.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    if [ -n "${SCALE_KEEP:-}" ]; then say "kept $d"; else rm -rf "$d"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# a copy of the programs, so a rebuild during the run cannot disturb it
mkdir -p "$d/bin"
cp bin/wecom-broker bin/brokerctl bin/mock-wecom build/bench/bench_scale \
    build/bench/bench_tenant_mem "$d/bin/"
B=$d/bin

for p in $CB $INT $MOCK; do
    rc=0
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/" || rc=$?
    [ "$rc" -eq 7 ] ||
        die "port $p is in use: set SCALE_PORT_BASE to a free range"
done

calc() { # calc FORMAT EXPR
    awk "BEGIN { printf \"$1\", $2 }"
}
verdict() { # verdict CONDITION (awk): PASS / MISSED
    if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISSED; fi
}
field() { sed -n "/^BENCH /s/.* $2=\\([^ ]*\\).*/\\1/p" "$1"; }

# ---- The heap of one cached tenant ---------------------------------------

"$B/bench_tenant_mem" 20:3 110:7 200:13 "$BIG" >"$d/tmem.txt" ||
    die "bench_tenant_mem failed"
tmem() { # tmem MEMBERS FIELD
    sed -n "s/^BENCH members=$1 .* $2=\([^ ]*\).*/\1/p" "$d/tmem.txt"
}
TM_110=$(tmem 110 heap_bytes)
TM_BIG=$(tmem "${BIG%%:*}" heap_bytes)
TM_BIGMS=$(tmem "${BIG%%:*}" decode_ms)

# ---- Servers --------------------------------------------------------------

# The defaults of broker.conf.example except the ports, the paths, and
# the upstream budgets raised to their maximum: the defaults allow 36,000
# calls a minute per API over all tenants (a sync takes at most half),
# which would make 10,000 installs a budget measurement.
sed -e "s/^callback_listen = .*/callback_listen = 127.0.0.1:$CB/" \
    -e "s/^internal_listen = .*/internal_listen = 127.0.0.1:$INT/" \
    -e "s|^wecom_api_base = .*|wecom_api_base = http://127.0.0.1:$MOCK|" \
    -e "s|^scopes_dir = .*|scopes_dir = $ROOT/scopes|" \
    -e "s|^state_dir = .*|state_dir = $d/var|" \
    -e "s|^master_key_file = .*|master_key_file = $d/var/master.key|" \
    -e "s|^index_key_file = .*|index_key_file = $d/var/index.key|" \
    -e "s/^upstream_rate_per_corp = .*/upstream_rate_per_corp = 1000000/" \
    -e "s/^upstream_rate_per_corp_hour = .*/upstream_rate_per_corp_hour = 100000000/" \
    -e "s/^upstream_rate_per_api = .*/upstream_rate_per_api = 10000000/" \
    -e "s/^upstream_rate_per_api_hour = .*/upstream_rate_per_api_hour = 1000000000/" \
    -e "s/^log_level = .*/log_level = warn/" \
    -e "s/^log_format = .*/log_format = text/" \
    broker.conf.example >"$d/broker.conf"

say "generating $N tenants of $SPREAD members and one of $BIG" \
    "(members:departments), simulator latency $LAT ms"
"$B/mock-wecom" serve -c "$d/broker.conf" --listen "127.0.0.1:$MOCK" \
    --corps "$N" --members-spread "$SPREAD" --big-corp "$BIG" --range-all \
    --tags 1 --customers 0 --chats 0 --latency "$LAT" --quiet \
    >"$d/mock.log" 2>&1 &
MOCKPID=$!
pids="$pids $MOCKPID"
"$B/wecom-broker" -c "$d/broker.conf" 2>"$d/broker.log" &
BROKER=$!
pids="$pids $BROKER"

wait_for() { # wait_for DESCRIPTION COMMAND...
    what=$1
    shift
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 600 ]; then
            say "timed out waiting for $what; broker log:"
            tail -20 "$d/broker.log" >&2
            exit 1
        fi
        sleep 0.2
    done
}
wait_for "the simulator" curl -sf "http://127.0.0.1:$MOCK/__mock/corps"
wait_for "the broker" curl -sf "http://127.0.0.1:$INT/readyz"
SOCK=$(find "$d/var" -name '*.sock' | head -1)
[ -S "$SOCK" ] || die "no embedded Redis socket under $d/var"
rcli() { redis-cli -s "$SOCK" "$@"; }
used() { rcli INFO memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
rss_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$2/status"; }
# Members in the stored directories of every tenant (the tenant records'
# dir_users), counted in Redis.
members_stored() {
    rcli EVAL "local n = 0
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local s, c = string.match(m, '^(%S+) (%S+)$')
  if c and (ARGV[2] == '' or c == ARGV[2]) then
    n = n + (tonumber(redis.call('HGET', ARGV[1] .. '{' .. c .. '}:' .. s ..
      ':tenant', 'dir_users')) or 0)
  end
end
return n" 1 wb:tenants wb: "${1:-}"
}

"$B/mock-wecom" callback -c "$d/broker.conf" --suite "$SUITE" \
    --from-mock "http://127.0.0.1:$MOCK" \
    --url "http://127.0.0.1:$CB/wecom/suite/$SUITE/callback" suite_ticket \
    >/dev/null || die "the suite_ticket was not accepted"

install() { # install OUT FIRST LAST WINDOW
    "$B/bench_scale" install -c "$d/broker.conf" --suite "$SUITE" \
        --mock "http://127.0.0.1:$MOCK" --cb "http://127.0.0.1:$CB" \
        --redis "$SOCK" --first "$2" --last "$3" --window "$4" >"$1" \
        2>"$1.err" || {
        say "install of $2..$3 failed:"
        tail -5 "$1.err" >&2
        tail -20 "$d/broker.log" >&2
        exit 1
    }
}

# ---- 1. The small tenants -------------------------------------------------

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
M0=$(used)
say "installing $N tenants ($WINDOW outstanding at most)"
install "$d/small.txt" 1 "$N" "$WINDOW"
M1=$(used)
S_N=$(field "$d/small.txt" tenants)
S_SECS=$(field "$d/small.txt" seconds)
S_P50=$(field "$d/small.txt" p50_ms)
S_P99=$(field "$d/small.txt" p99_ms)
S_MEMBERS=$(members_stored)
S_BPM=$(calc %.0f "($M1 - $M0) / $S_MEMBERS")

# ---- 2. The big tenant ----------------------------------------------------

say "installing the big tenant $BIGCORP ($BIG)"
install "$d/big.txt" "$BIGN" "$BIGN" 1
M2=$(used)
G_SECS=$(field "$d/big.txt" seconds)
G_MEMBERS=$(members_stored "$BIGCORP")
G_BPM=$(calc %.0f "($M2 - $M1) / $G_MEMBERS")
# what the big tenant's directory hashes take, exactly (SAMPLES 0)
G_KEYS=""
for k in dir:users dir:parents dir:tags tenant; do
    key="wb:{$BIGCORP}:$SUITE:$k"
    if [ "$(rcli EXISTS "$key")" = 1 ]; then
        G_KEYS="$G_KEYS $k=$(rcli MEMORY USAGE "$key" SAMPLES 0)/$(rcli \
            OBJECT ENCODING "$key")"
    else
        G_KEYS="$G_KEYS $k=none"
    fi
done

# ---- 3. user/get and user/list on the big tenant --------------------------

secret=$("$B/brokerctl" -c "$d/broker.conf" service add scale \
    --scopes contacts.read --json | jq -r .secret)
TOKEN=$(curl -sf "http://127.0.0.1:$INT/cgi-bin/gettoken?corpid=$BIGCORP&\
corpsecret=$secret" | jq -r .access_token)
[ -n "$TOKEN" ] && [ "$TOKEN" != null ] || die "no token for $BIGCORP"
GET_URL="http://127.0.0.1:$INT/cgi-bin/user/get?userid=$BIGUSER&access_token=\
$TOKEN"
LIST_URL="http://127.0.0.1:$INT/cgi-bin/user/list?department_id=2&\
fetch_child=1&access_token=$TOKEN"
curl -sf "$GET_URL" | grep -q '"errcode":0,' ||
    die "user/get on $BIGCORP fails: $(curl -s "$GET_URL" | head -c 300)"
L_N=$(curl -sf "$LIST_URL" | jq '.userlist | length')
[ "${L_N:-0}" -gt 0 ] ||
    die "user/list on $BIGCORP fails: $(curl -s "$LIST_URL" | head -c 300)"
run_wrk() { # run_wrk OUT URL
    wrk -t2 -c16 -d"$SECS"s -s tests/bench/wrk_check.lua "$2" \
        -- '"errcode":0,' >"$1" 2>&1 || die "wrk failed: $(cat "$1")"
    [ "$(field "$1" bad)" = 0 ] && [ "$(field "$1" errors)" = 0 ] ||
        say "WARNING: $1: $(field "$1" bad) bad replies," \
            "$(field "$1" errors) socket errors"
}
say "user/get and user/list on $BIGCORP, ${SECS}s each"
run_wrk "$d/get.txt" "$GET_URL"
run_wrk "$d/list.txt" "$LIST_URL"
W_GET99=$(calc %.2f "$(field "$d/get.txt" p99_us) / 1000")
W_GETRPS=$(calc %.0f "$(field "$d/get.txt" requests) / \
    $(field "$d/get.txt" seconds)")
W_LIST99=$(calc %.2f "$(field "$d/list.txt" p99_us) / 1000")
W_LISTRPS=$(calc %.0f "$(field "$d/list.txt" requests) / \
    $(field "$d/list.txt" seconds)")
W_BAD=$(($(field "$d/get.txt" bad) + $(field "$d/list.txt" bad)))
W_ALL=$(($(field "$d/get.txt" requests) + $(field "$d/list.txt" requests)))
grep -o 'errcode -1: [a-z ]*' "$d/broker.log" | sort | uniq -c |
    sort -rn | head -3 | tr -s ' \n' ' ' >"$d/whyfailed.txt" || true
# One request after the tenants cache entry has expired (cache_max_age,
# 5 s): it pays the reload of the whole directory. The sleep is pacing:
# the entry has to age.
rcli CONFIG SET slowlog-log-slower-than 1000 >/dev/null
sleep 6
rcli SLOWLOG RESET >/dev/null
C_MS=$(curl -s -o /dev/null -w '%{time_total}' "$GET_URL" |
    awk '{ printf "%.0f", $1 * 1000 }')
C_REDIS=$(rcli --json SLOWLOG GET 100 | jq '[.[] | .[2]] | max // 0')
C_REDISMS=$(calc %.1f "$C_REDIS / 1000")

# ---- 4. Broker RSS, half the tenants warm, then all -----------------------

R0=$(rss_kb VmRSS "$BROKER")
touch_range() { # touch_range OUT FIRST LAST; a failed touch is counted
    "$B/bench_scale" touch --int "http://127.0.0.1:$INT" --secret "$secret" \
        --first "$2" --last "$3" >"$1" 2>"$1.err" ||
        say "touching $2..$3: $(grep -c . "$1.err") failed, e.g.:" \
            "$(head -1 "$1.err")"
    [ -n "$(field "$1" touched)" ] || die "touching $2..$3: $(cat "$1.err")"
}
say "touching tenants 1..$HALF through the service API"
touch_range "$d/touch1.txt" 1 "$HALF"
R1=$(rss_kb VmRSS "$BROKER")
H1=$(rss_kb VmHWM "$BROKER")
say "touching tenants $((HALF + 1))..$BIGN"
touch_range "$d/touch2.txt" $((HALF + 1)) "$BIGN"
R2=$(rss_kb VmRSS "$BROKER")
H2=$(rss_kb VmHWM "$BROKER")
T_SECS=$(calc %.1f "$(field "$d/touch1.txt" seconds) + \
    $(field "$d/touch2.txt" seconds)")
# the touch within cache_max_age of the end is what is warm: all tenants
# are touched again, quickly, and the RSS read right after
say "touching all $BIGN again"
touch_range "$d/touch3.txt" 1 "$BIGN"
R3=$(rss_kb VmRSS "$BROKER")
H3=$(rss_kb VmHWM "$BROKER")
GROW=$(calc %.1f "($R2 - $R1) / 1024")
GROW_KB=$(calc %.1f "($R2 - $R1) / ($BIGN - $HALF)")
T_ALL=0
T_BAD=0
for f in touch1 touch2 touch3; do
    T_ALL=$((T_ALL + $(field "$d/$f.txt" touched)))
    T_BAD=$((T_BAD + $(field "$d/$f.txt" touched) - $(field "$d/$f.txt" ok)))
done

# ---- 5. Purge of the big tenant -------------------------------------------

KEYS_BEFORE=$(rcli DBSIZE)
rcli CONFIG SET slowlog-log-slower-than 1000 >/dev/null
rcli CONFIG SET slowlog-max-len 10000 >/dev/null
rcli SLOWLOG RESET >/dev/null
say "purging $BIGCORP"
t0=$(date +%s.%N)
"$B/brokerctl" -c "$d/broker.conf" --json tenant purge "$BIGCORP" --yes \
    >"$d/purge.json" || die "the purge failed: $(cat "$d/purge.json")"
t1=$(date +%s.%N)
P_SECS=$(calc %.2f "$t1 - $t0")
P_KEYS=$(jq -r '.deletion_report | to_entries | map("\(.key)=\(.value)") |
    join(",")' "$d/purge.json")
P_TOTAL=$(jq '[.deletion_report[]] | add' "$d/purge.json")
# anything of the tenant left, in any key name
P_LEFT=$(rcli --scan --pattern "*$BIGCORP*" | grep -vc ':gone$' || true)
# The longest command the slow log holds, and what it was; the purge's
# own (brokerctl sends EVAL, SCAN, UNLINK...; the broker's scripts run as
# EVALSHA) apart from everything the broker did meanwhile.
rcli --json SLOWLOG GET 10000 >"$d/slowlog.json"
P_SLOW=$(jq '[.[] | select(.[3][0] != "EVALSHA") | .[2]] | max // 0' \
    "$d/slowlog.json")
P_SLOWCMD=$(jq -r '[.[] | select(.[3][0] != "EVALSHA")] |
    max_by(.[2]) // [0, 0, 0, ["none"]] | .[3][0]' "$d/slowlog.json")
P_ANY=$(jq '[.[] | .[2]] | max // 0' "$d/slowlog.json")
P_ANYCMD=$(jq -r 'max_by(.[2]) // [0, 0, 0, ["none"]] | .[3][0]' \
    "$d/slowlog.json")
P_SLOWN=$(jq length "$d/slowlog.json")
rcli CONFIG SET slowlog-log-slower-than 10000 >/dev/null
P_SLOWMS=$(calc %.1f "$P_SLOW / 1000")
FORK_US=$(rcli INFO stats | sed -n 's/^latest_fork_usec:\([0-9]*\).*/\1/p')

# ---- Table ----------------------------------------------------------------

LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
{
row() { printf '%-40s %-22s %-20s %s\n' "$@"; }
echo
echo "wecom-broker scale benchmark: $(nproc) CPUs, $(uname -sr)," \
    "$(date -u '+%Y-%m-%d %H:%M UTC'), $(($(date +%s) - T_START)) s in all;" \
    "load average $LOAD0 at the start, $LOAD1 at the end"
row "measure" "value" "target" "verdict"
row "Redis per member, $S_N small tenants" "$S_BPM bytes" "<= 300 bytes" \
    "$(verdict "$S_BPM <= 300")"
row "Redis per member, big tenant" "$G_BPM bytes" "<= 300 bytes" \
    "$(verdict "$G_BPM <= 300")"
row "install+sync $S_N tenants, total" "$S_SECS s" "-" info
row "install+sync per tenant p50 / p99" "$S_P50 / $S_P99 ms" "-" info
row "install+sync big tenant" "$G_SECS s" "-" info
row "user/get p99, big tenant" "$W_GET99 ms" "-" info
row "user/list p99, big tenant (dept 2)" "$W_LIST99 ms" "-" info
row "failed replies, big tenant (wrk)" "$W_BAD of $W_ALL" "0" \
    "$(verdict "$W_BAD == 0")"
row "user/get after cache expiry, big" "$C_MS ms" "-" info
row "  Redis time of that directory load" "$C_REDISMS ms" "-" info
row "broker RSS, $HALF tenants touched" "$(calc %.1f "$R1 / 1024") MB" \
    "-" info
row "broker RSS, all $BIGN touched" "$(calc %.1f "$R2 / 1024") MB" \
    "-" info
row "RSS growth, second half of tenants" "$GROW MB" "<= 16 MB" \
    "$(verdict "$GROW <= 16")"
row "  per tenant touched" "$GROW_KB KB" "-" info
row "failed touches (gettoken + user/get)" "$T_BAD of $T_ALL" "0" \
    "$(verdict "$T_BAD == 0")"
row "heap of one cached tenant, 110 members" \
    "$(calc %.1f "$TM_110 / 1024") KB" "-" info
row "heap of one cached tenant, big" "$(calc %.1f "$TM_BIG / 1048576") MB" \
    "-" info
row "broker RSS, all touched again" "$(calc %.1f "$R3 / 1024") MB" \
    "-" info
row "purge of the big tenant" "$P_SECS s" "<= 60 s" \
    "$(verdict "$P_SECS <= 60")"
row "keys of the big tenant left" "$P_LEFT" "0" "$(verdict "$P_LEFT == 0")"
row "longest Redis command of the purge" "$P_SLOWMS ms" "<= 100 ms" \
    "$(verdict "$P_SLOWMS <= 100")"
row "longest Redis command during purge" \
    "$(calc %.1f "$P_ANY / 1000") ms" "-" info
echo
echo "small tenants: $S_N of $SPREAD members (one department per 15" \
    "members), $S_MEMBERS members stored; used_memory $M0 -> $M1 bytes" \
    "(directories, tenant records, wrapped keys, tokens, audit entries," \
    "event stream: everything the installs left); per-tenant time is" \
    "from the POST of create_auth to status active with at most $WINDOW" \
    "outstanding (event_concurrency 32)."
echo "big tenant: $BIGCORP, $G_MEMBERS members stored; used_memory $M1 ->" \
    "$M2 bytes; MEMORY USAGE/encoding:$G_KEYS."
echo "simulator: $LAT ms added per call; the upstream_rate_* budgets" \
    "raised to their maximum; wrk -t2 -c16 -d${SECS}s: user/get $BIGUSER" \
    "$W_GETRPS req/s, user/list of department 2 ($L_N members, fetch_child" \
    "is ignored for third-party apps) $W_LISTRPS req/s; failed replies" \
    "as the broker logged them: $(cat "$d/whyfailed.txt")."
echo "cache expiry: one user/get of $BIGUSER 6 s after the last request" \
    "reads the tenant's record and whole directory again (four pipelined" \
    "HGETALLs, the longest command in the slow log) and decodes it" \
    "(bench_tenant_mem: $TM_BIGMS ms alone); every request of the" \
    "tenant waits for it, every cache_max_age."
echo "RSS: VmRSS before touching $(calc %.1f "$R0 / 1024") MB; VmHWM" \
    "$(calc %.1f "$H1 / 1024") / $(calc %.1f "$H2 / 1024") /" \
    "$(calc %.1f "$H3 / 1024") MB after each round; each touch is" \
    "gettoken + user/get u00001 per tenant ($T_SECS s for the first" \
    "$BIGN, then $(field "$d/touch3.txt" seconds) s again). The tenants" \
    "cache (10,000 entries within cache_max_bytes, expired ones dropped" \
    "each second) holds each tenant's decoded range:" \
    "bench_tenant_mem measures $(calc %.1f "$TM_110 / 1024") KB for 110" \
    "members, $(calc %.1f "$TM_BIG / 1048576") MB for $BIG."
echo "purge: brokerctl tenant purge --yes, wall time; $P_TOTAL keys removed" \
    "($P_KEYS); the SCAN walked a keyspace of $KEYS_BEFORE keys; longest" \
    "command from" \
    "SLOWLOG (threshold 1 ms, $P_SLOWN entries): $P_SLOWCMD of the" \
    "purge, $P_ANYCMD of the broker's; the AOF" \
    "rewrite's fork took $FORK_US us."
} >"$d/table.txt"
cat "$d/table.txt"
! grep -q ' MISSED$' "$d/table.txt"
