#!/bin/sh
# The whole flow on this machine: embedded Redis, the WeCom simulator and
# the broker; an install through real signed callbacks, a narrowed grant,
# and a cancellation that purges the tenant. Everything runs in a temporary
# directory and stops at the end.
set -eu
cd "$(dirname "$0")/.."

SUITE=wwdemo0000suite01
CORP=wwmockcorp0001
CB=18080
INT=18081
MOCK=19000
d=$(mktemp -d /tmp/wecom-broker-demo.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
    rm -rf "$d"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ctl() { bin/brokerctl -c "$d/broker.conf" "$@"; }
send() { bin/mock-wecom callback -c "$d/broker.conf" --suite "$SUITE" \
    --from-mock "http://127.0.0.1:$MOCK" \
    --url "http://127.0.0.1:$CB/wecom/suite/$SUITE/callback" "$@" >/dev/null; }
wait_for() { # wait_for DESCRIPTION COMMAND...
    what=$1; shift
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 150 ]; then
            echo "demo: timed out waiting for $what; broker log:" >&2
            tail -20 "$d/broker.log" >&2
            exit 1
        fi
        sleep 0.2
    done
}

sed -e "s/^callback_listen = .*/callback_listen = 127.0.0.1:$CB/" \
    -e "s/^internal_listen = .*/internal_listen = 127.0.0.1:$INT/" \
    -e "s|^wecom_api_base = .*|wecom_api_base = http://127.0.0.1:$MOCK|" \
    -e "s/^log_format = .*/log_format = text/" \
    -e "s|^scopes_dir = .*|scopes_dir = $(pwd)/scopes|" \
    broker.conf.example >"$d/broker.conf"

step "Starting the WeCom simulator, then the broker (embedded Redis)"
bin/mock-wecom serve -c "$d/broker.conf" --listen "127.0.0.1:$MOCK" \
    --quiet 2>"$d/mock.log" &
pids="$pids $!"
bin/wecom-broker -c "$d/broker.conf" 2>"$d/broker.log" &
pids="$pids $!"
wait_for "the broker" curl -sf "http://127.0.0.1:$INT/readyz"
curl -s "http://127.0.0.1:$INT/readyz"; echo

step "WeCom pushes a suite_ticket (signed, AES-encrypted callback)"
send suite_ticket
ctl suite

step "An enterprise installs the app: WeCom pushes create_auth"
send create_auth --corp "$CORP"
wait_for "the install" sh -c \
    "bin/brokerctl -c '$d/broker.conf' --json tenant show $CORP | grep -q '\"status\":\"active\"'"
ctl tenants
echo
ctl tenant show "$CORP"

step "Ops create a service allowed contacts.read only"
SECRET=$(ctl --json service add crm --scopes contacts.read |
    sed 's/.*"secret":"\([^"]*\)".*/\1/')
ctl service list
TOKEN=$(curl -s "http://127.0.0.1:$INT/cgi-bin/gettoken?corpid=$CORP&corpsecret=$SECRET" |
    sed 's/.*"access_token":"\([^"]*\)".*/\1/')
echo "the service's gettoken returned a broker token (${#TOKEN} chars)"
RAW=$(curl -s "http://127.0.0.1:$MOCK/__mock/corp_token?suite_id=$SUITE&corpid=$CORP" |
    sed 's/.*"access_token":"\([^"]*\)".*/\1/')

fields() { sed -e 's/^{//' -e 's/}$//' -e 's/,"/\n"/g' | cut -c1-60; }
step "user/get u00003: what WeCom returned (left) and what the service received (right)"
curl -s "http://127.0.0.1:$MOCK/cgi-bin/user/get?access_token=$RAW&userid=u00003" | fields >"$d/raw.txt"
curl -s -D "$d/hdr.txt" "http://127.0.0.1:$INT/cgi-bin/user/get?access_token=$TOKEN&userid=u00003" |
    fields >"$d/got.txt"
pr -m -t -w 130 "$d/raw.txt" "$d/got.txt"
grep -i '^X-Broker' "$d/hdr.txt"

step "user/list of department 2 and its subtree"
n_raw=$(curl -s "http://127.0.0.1:$MOCK/cgi-bin/user/list?access_token=$RAW&department_id=2&fetch_child=1" |
    grep -o '"userid"' | wc -l)
n_got=$(curl -s -D "$d/hdr.txt" "http://127.0.0.1:$INT/cgi-bin/user/list?access_token=$TOKEN&department_id=2&fetch_child=1" |
    grep -o '"userid"' | wc -l)
echo "WeCom returned $n_raw member(s), the service received $n_got; records outside the visible range"
echo "would be counted in X-Broker-Dropped, removed fields in X-Broker-Stripped:"
grep -i '^X-Broker' "$d/hdr.txt"
echo "and outside the range, the broker refuses before asking WeCom:"
curl -s "http://127.0.0.1:$INT/cgi-bin/user/list?access_token=$TOKEN&department_id=1"; echo

step "The admin narrows the visible range to department 3: change_auth"
curl -s -X POST "http://127.0.0.1:$MOCK/__mock/privilege" \
    -d "{\"corpid\":\"$CORP\",\"allow_party\":[3],\"allow_user\":[],\"allow_tag\":[]}" >/dev/null
send change_auth --corp "$CORP"
wait_for "the new grant" sh -c \
    "bin/brokerctl -c '$d/broker.conf' --json tenant show $CORP | grep -q '\"parties\":\\[3\\]'"
ctl --json tenant show "$CORP" | sed 's/.*"visible":\({[^}]*}\).*/visible range now: \1/'
echo "the service now asks for u00001 (department 2, no longer visible):"
sleep 1
curl -s "http://127.0.0.1:$INT/cgi-bin/user/get?access_token=$TOKEN&userid=u00001"; echo

step "The enterprise removes the app: cancel_auth purges the tenant"
send cancel_auth --corp "$CORP"
wait_for "the purge" sh -c \
    "bin/brokerctl -c '$d/broker.conf' --json tenant show $CORP | grep -q cancelled"
ctl tenant show "$CORP"

step "The audit trail: which service saw what, never a value"
ctl audit --since 10m | cut -c1-160
echo "one request entry in full (names of fields, never their values):"
ctl --json audit --since 10m --service crm | grep '"returned"' | head -1 | cut -c1-400

echo
echo "Done: everything ran in a temporary directory and stops now."
