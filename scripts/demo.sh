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

step "The admin narrows the visible range to department 3: change_auth"
curl -s -X POST "http://127.0.0.1:$MOCK/__mock/privilege" \
    -d "{\"corpid\":\"$CORP\",\"allow_party\":[3],\"allow_user\":[],\"allow_tag\":[]}" >/dev/null
send change_auth --corp "$CORP"
wait_for "the new grant" sh -c \
    "bin/brokerctl -c '$d/broker.conf' --json tenant show $CORP | grep -q '\"parties\":\\[3\\]'"
ctl --json tenant show "$CORP" | sed 's/.*"visible":\({[^}]*}\).*/visible range now: \1/'

step "The enterprise removes the app: cancel_auth purges the tenant"
send cancel_auth --corp "$CORP"
wait_for "the purge" sh -c \
    "bin/brokerctl -c '$d/broker.conf' --json tenant show $CORP | grep -q cancelled"
ctl tenant show "$CORP"

step "Next"
echo "The filtered service API (gettoken, user/get, user/list through the"
echo "filter) arrives with its issue; this demo will then show, side by side,"
echo "what WeCom returned and what a service received."
