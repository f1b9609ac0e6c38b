#!/bin/sh
# A real browser through the broker's browser flows (SPEC §4b): headless
# Chromium installs the app from the provider's site and logs a member in
# with snsapi_privateinfo, through the broker and the WeCom simulator, to a
# page served by build/tests/browser_echo whose DOM shows the query it
# received. Then curl redeems the code as a service would, and checks what
# two services (with and without member.sensitive) receive.
#
# Needs bin/* and build/tests/browser_echo (make test-browser builds
# them). Installs Debian's chromium when it is missing and we are root;
# otherwise says why it cannot run and exits 0 (REQUIRE_BROWSER=1: 1).
set -eu
cd "$(dirname "$0")/../.."

SUITE=wwbrowsersuite01
CORP=wwmockcorp0001
ECHO=build/tests/browser_echo
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

skip() {
    echo "test-browser: SKIPPED: $*"
    [ "${REQUIRE_BROWSER:-0}" = 1 ] && exit 1
    exit 0
}

if [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "test-browser: installing chromium (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y \
            --no-install-recommends chromium >/dev/null 2>&1 ||
            skip "apt-get install chromium failed (no network or no" \
                "package source?)"
    else
        skip "$CHROMIUM is missing and we are not root to install it"
    fi
fi
for f in bin/wecom-broker bin/brokerctl bin/mock-wecom "$ECHO"; do
    [ -x "$f" ] || { echo "test-browser: $f missing (make test-browser)" >&2; exit 1; }
done

d=$(mktemp -d /tmp/wecom-broker-browser.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    if [ "${KEEP_TEST_DIR:-}" = "" ]; then rm -rf "$d"; else echo "kept $d"; fi
}
trap cleanup EXIT INT TERM

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok $((pass + fail)) - $*"; }
no() { fail=$((fail + 1)); echo "not ok $((pass + fail)) - $*"; }
check() { # check DESCRIPTION COMMAND...
    what=$1; shift
    if "$@" >/dev/null 2>&1; then ok "$what"; else no "$what"; fi
}
wait_for() { # wait_for DESCRIPTION COMMAND...
    what=$1; shift
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 150 ]; then
            echo "test-browser: timed out waiting for $what; broker log:" >&2
            tail -20 "$d/broker.log" >&2
            exit 1
        fi
        sleep 0.2
    done
}
# the value of parameter $2 in the query string $1
qparam() { printf '%s\n' "$1" | tr '&' '\n' | sed -n "s/^$2=//p" | head -1; }
# the text of <pre id=$2> in the DOM dump $1 (one line)
dom_pre() {
    sed -n "s|.*<pre id=\"$2\">\([^<]*\)</pre>.*|\1|p" "$1" | head -1 |
        sed -e 's/&lt;/</g' -e 's/&gt;/>/g' -e 's/&quot;/"/g' -e "s/&#39;/'/g" \
            -e 's/&amp;/\&/g'
}
browse() { # browse URL OUT: the final DOM after redirects
    timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu \
        --disable-background-networking --disable-component-update \
        --disable-sync --no-first-run --user-data-dir="$(mktemp -d "$d/chr.XXXXXX")" \
        --dump-dom "$1" >"$2" 2>>"$d/chromium.log"
}
json_str() { sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p" "$1"; }
ctl() { bin/brokerctl -c "$d/broker.conf" "$@"; }

# shellcheck disable=SC2046 # four words: the ports
set -- $("$ECHO" --free-ports 4)
CB=$1 INT=$2 MOCK=$3 PAGE=$4

cat >"$d/broker.conf" <<EOF
[broker]
callback_listen = 127.0.0.1:$CB
internal_listen = 127.0.0.1:$INT
redis =
state_dir = ./var
scopes_dir = $(pwd)/scopes
wecom_api_base = http://127.0.0.1:$MOCK
public_base_url = http://127.0.0.1:$CB
wecom_install_url = http://127.0.0.1:$MOCK/3rdapp/install
wecom_oauth_url = http://127.0.0.1:$MOCK/connect/oauth2/authorize
log_level = debug
log_format = text

[suite $SUITE]
token = browsertoken
encoding_aes_key = BrowserEncodingAesKey0123456789abcdefghijkl
secret = browser-suite-secret
auth_type = 1
redirect_allow = http://127.0.0.1:$PAGE/
EOF

bin/mock-wecom serve -c "$d/broker.conf" --listen "127.0.0.1:$MOCK" \
    --corps 2 >"$d/mock.log" 2>&1 &
pids="$pids $!"
"$ECHO" --listen "$PAGE" --seconds 300 2>"$d/page.log" &
pids="$pids $!"
bin/wecom-broker -c "$d/broker.conf" 2>"$d/broker.log" &
pids="$pids $!"
wait_for "the broker" curl -sf "http://127.0.0.1:$INT/readyz"
wait_for "the simulator" curl -sf "http://127.0.0.1:$MOCK/__mock/corps"
bin/mock-wecom callback -c "$d/broker.conf" --suite "$SUITE" \
    --from-mock "http://127.0.0.1:$MOCK" \
    --url "http://127.0.0.1:$CB/wecom/suite/$SUITE/callback" \
    suite_ticket >/dev/null
# the sensitive fields a member may consent to, granted at install
curl -sf -X POST "http://127.0.0.1:$MOCK/__mock/permissions" -d \
    "{\"corpid\":\"$CORP\",\"app_permissions\":[\"contact:base:base\",\"contact:sensitive:gender\",\"contact:sensitive:avatar\",\"contact:sensitive:qrcode\"]}" \
    >/dev/null

echo "# install from the provider's site, in Chromium"
ret=$(printf 'http%%3A%%2F%%2F127.0.0.1%%3A%s%%2Finstalled' "$PAGE")
browse "http://127.0.0.1:$CB/wecom/suite/$SUITE/install?return=$ret" "$d/install.html" ||
    skip "Chromium did not run: $(tail -3 "$d/chromium.log" | tr '\n' ' ')"
check "install: the browser ended at the return page" \
    test "$(dom_pre "$d/install.html" path)" = /installed
echo "# the browser ended at $(dom_pre "$d/install.html" href)"
check "install: the return page got installed=1" \
    test "$(dom_pre "$d/install.html" query)" = installed=1
check "install: the browser went through the simulator's install page" \
    grep -q "GET /3rdapp/install" "$d/mock.log"
wait_for "the tenant to become active" sh -c \
    "bin/brokerctl -c '$d/broker.conf' --json tenant show $CORP | grep -q '\"status\":\"active\"'"
ok "install: the tenant is active"

echo "# a member logs in with snsapi_privateinfo, in Chromium"
ret=$(printf 'http%%3A%%2F%%2F127.0.0.1%%3A%s%%2Fcb' "$PAGE")
browse "http://127.0.0.1:$CB/wecom/suite/$SUITE/oauth/authorize?scope=snsapi_privateinfo&return=$ret&state=xyz" \
    "$d/login.html" || no "login: Chromium failed"
q=$(dom_pre "$d/login.html" query)
code=$(qparam "$q" code)
check "login: the browser ended at the return page" \
    test "$(dom_pre "$d/login.html" path)" = /cb
check "login: a broker code (64 characters)" test "${#code}" = 64
check "login: the corpid" test "$(qparam "$q" corpid)" = "$CORP"
check "login: the caller's state" test "$(qparam "$q" state)" = xyz
echo "# the browser ended at $(dom_pre "$d/login.html" href | sed 's/code=[^&#]*/code=.../')"
check "login: nothing else in the query" test "$(printf '%s' "$q" | tr '&' '\n' | wc -l)" = 2

echo "# the services redeem the code and the ticket, with curl"
ctl --json service add sens --scopes contacts.read,member.sensitive >"$d/a.json"
ctl --json service add plain --scopes contacts.read >"$d/b.json"
tok() {
    curl -s "http://127.0.0.1:$INT/cgi-bin/gettoken?corpid=$CORP&corpsecret=$(json_str "$1" secret)" >"$d/tok.json"
    json_str "$d/tok.json" access_token
}
ta=$(tok "$d/a.json")
tb=$(tok "$d/b.json")
curl -s "http://127.0.0.1:$INT/cgi-bin/auth/getuserinfo?access_token=$ta&code=$code" >"$d/ui.json"
user=$(json_str "$d/ui.json" userid)
ticket=$(json_str "$d/ui.json" user_ticket)
check "getuserinfo: errcode 0" grep -q '"errcode":0' "$d/ui.json"
check "getuserinfo: a userid" test -n "$user"
check "getuserinfo: a user_ticket" test "${#ticket}" = 64
check "getuserinfo: expires_in" grep -q '"expires_in":' "$d/ui.json"
curl -s "http://127.0.0.1:$INT/cgi-bin/auth/getuserinfo?access_token=$ta&code=$code" >"$d/ui2.json"
check "getuserinfo: the same code again is 40029" grep -q '"errcode":40029' "$d/ui2.json"
curl -s -X POST -d "{\"user_ticket\":\"$ticket\"}" \
    "http://127.0.0.1:$INT/cgi-bin/auth/getuserdetail?access_token=$ta" >"$d/da.json"
curl -s -X POST -d "{\"user_ticket\":\"$ticket\"}" \
    "http://127.0.0.1:$INT/cgi-bin/auth/getuserdetail?access_token=$tb" >"$d/db.json"
raw=$(curl -s "http://127.0.0.1:$MOCK/__mock/corp_token?suite_id=$SUITE&corpid=$CORP")
raw=$(printf '%s' "$raw" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
curl -s "http://127.0.0.1:$MOCK/cgi-bin/user/get?access_token=$raw&userid=$user" >"$d/truth.json"
avatar=$(json_str "$d/truth.json" avatar)
check "getuserdetail: errcode 0 for both services" \
    sh -c "grep -q '\"errcode\":0' '$d/da.json' && grep -q '\"errcode\":0' '$d/db.json'"
check "getuserdetail: the userid for both" \
    sh -c "test \"\$(sed -n 's/.*\"userid\":\"\([^\"]*\)\".*/\1/p' '$d/da.json')\" = '$user' &&
           test \"\$(sed -n 's/.*\"userid\":\"\([^\"]*\)\".*/\1/p' '$d/db.json')\" = '$user'"
check "getuserdetail: member.sensitive sees WeCom's avatar" \
    test -n "$avatar" -a "$(json_str "$d/da.json" avatar)" = "$avatar"
for f in gender avatar qr_code; do
    check "getuserdetail: member.sensitive sees $f" grep -q "\"$f\":" "$d/da.json"
    check "getuserdetail: contacts.read does not see $f" \
        sh -c "! grep -q '\"$f\":' '$d/db.json'"
done
for f in name mock_internal_note; do
    check "getuserdetail: no $f for either" \
        sh -c "! grep -q '\"$f\":' '$d/da.json' '$d/db.json'"
done

echo "1..$((pass + fail))"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
