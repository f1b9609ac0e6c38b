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
RCV=19001
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
    -e "s|^public_base_url = .*|public_base_url = http://127.0.0.1:$CB|" \
    -e "s|^wecom_install_url = .*|wecom_install_url = http://127.0.0.1:$MOCK/3rdapp/install|" \
    -e "s|^wecom_oauth_url = .*|wecom_oauth_url = http://127.0.0.1:$MOCK/connect/oauth2/authorize|" \
    -e "s|^redirect_allow = .*|redirect_allow = https://app.example/|" \
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

# this enterprise also grants member-sensitive fields (used further down)
curl -s -X POST "http://127.0.0.1:$MOCK/__mock/permissions" -d "{\"corpid\":\"$CORP\",\"app_permissions\":[\"contact:base:base\",\"externalcontact:base:base\",\"contact:sensitive:gender\",\"contact:sensitive:avatar\",\"contact:sensitive:qrcode\"]}" >/dev/null

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

step "A member logs in and consents (OAuth snsapi_privateinfo)"
loc() { curl -s -o /dev/null -w '%{redirect_url}' "$1" | sed 's/#.*//'; }
L1=$(loc "http://127.0.0.1:$CB/wecom/suite/$SUITE/oauth/authorize?scope=snsapi_privateinfo&return=https://app.example/login&state=demo42")
echo "broker -> WeCom's consent page: ${L1%%\?*}?…"
L2=$(loc "$L1")
echo "WeCom -> the broker's callback: ${L2%%\?*}?code=…&state=…"
L3=$(loc "$L2")
echo "broker -> the vendor's app: $(echo "$L3" | sed 's/code=[^&]*/code=…/')"
CODE=$(echo "$L3" | sed 's/.*[?&]code=\([^&]*\).*/\1/')
SEC2=$(ctl --json service add profile --scopes contacts.read,member.sensitive |
    sed 's/.*"secret":"\([^"]*\)".*/\1/')
TOK2=$(curl -s "http://127.0.0.1:$INT/cgi-bin/gettoken?corpid=$CORP&corpsecret=$SEC2" |
    sed 's/.*"access_token":"\([^"]*\)".*/\1/')
INFO=$(curl -s "http://127.0.0.1:$INT/cgi-bin/auth/getuserinfo?access_token=$TOK2&code=$CODE")
echo "getuserinfo: $(echo "$INFO" | sed 's/"user_ticket":"[^"]*"/"user_ticket":"…"/')"
TICKET=$(echo "$INFO" | sed 's/.*"user_ticket":"\([^"]*\)".*/\1/')
echo "getuserdetail for a service with member.sensitive:"
curl -s -X POST "http://127.0.0.1:$INT/cgi-bin/auth/getuserdetail?access_token=$TOK2" -d "{\"user_ticket\":\"$TICKET\"}" | cut -c1-200; echo
echo "the same ticket for the contacts.read-only service:"
curl -s -X POST "http://127.0.0.1:$INT/cgi-bin/auth/getuserdetail?access_token=$TOKEN" -d "{\"user_ticket\":\"$TICKET\"}"; echo

step "The service receives events: a receiver, as a service runs one with WeCom's callback code"
# the token and EncodingAESKey are printed once; the receiver verifies the
# signature, decrypts with the key, checks the receiveid (the suite id)
DLV=$(ctl --json service deliver crm --url "http://127.0.0.1:$RCV/wecom/events")
echo "brokerctl service deliver crm --url http://127.0.0.1:$RCV/wecom/events"
echo "$DLV" | sed -e 's/"token":"[^"]*"/"token":"…"/' -e 's/"encoding_aes_key":"[^"]*"/"encoding_aes_key":"…"/'
DTOKEN=$(echo "$DLV" | sed 's/.*"token":"\([^"]*\)".*/\1/')
DKEY=$(echo "$DLV" | sed 's/.*"encoding_aes_key":"\([^"]*\)".*/\1/')
bin/mock-wecom receive --token "$DTOKEN" --aes-key "$DKEY" --suite "$SUITE" \
    --port "$RCV" >"$d/received.txt" 2>"$d/receive.log" &
pids="$pids $!"
wait_for "the receiver" grep -q receiving "$d/received.txt"

step "The admin narrows the visible range to department 3: change_auth"
curl -s -X POST "http://127.0.0.1:$MOCK/__mock/privilege" \
    -d "{\"corpid\":\"$CORP\",\"allow_party\":[3],\"allow_user\":[],\"allow_tag\":[]}" >/dev/null
send change_auth --corp "$CORP"
wait_for "the new grant" sh -c \
    "bin/brokerctl -c '$d/broker.conf' --json tenant show $CORP | grep -q '\"parties\":\\[3\\]'"
ctl --json tenant show "$CORP" | sed 's/.*"visible":\({[^}]*}\).*/visible range now: \1/'
wait_for "the change_auth delivery" grep -q "<InfoType><!\\[CDATA\\[change_auth" "$d/received.txt"
echo "the service's receiver verified, decrypted and answered success:"
grep -A1 '^event ' "$d/received.txt" | sed 's/^/    /'
echo "the service now asks for u00001 (department 2, no longer visible):"
sleep 1
curl -s "http://127.0.0.1:$INT/cgi-bin/user/get?access_token=$TOKEN&userid=u00001"; echo

step "A member's details change: change_contact reaches the service filtered"
UID3=$(curl -s "http://127.0.0.1:$INT/cgi-bin/user/simplelist?access_token=$TOKEN&department_id=3" |
    sed -n 's/.*"userid":"\([^"]*\)".*/\1/p' | head -1)
send change_contact --corp "$CORP" ChangeType=update_user UserID="$UID3" \
    Mobile=13800000000 Gender=2 Position=manager
wait_for "the change_contact delivery" grep -q "update_user" "$d/received.txt"
echo "WeCom sent UserID $UID3 with Mobile, Gender and Position; the crm service"
echo "(contacts.read) received, after verifying and decrypting:"
grep -A1 '^event ' "$d/received.txt" | grep update_user | tail -1 | sed 's/^/    /'

step "The enterprise removes the app: cancel_auth purges the tenant"
send cancel_auth --corp "$CORP"
wait_for "the purge" sh -c \
    "bin/brokerctl -c '$d/broker.conf' --json tenant show $CORP | grep -q cancelled"
ctl tenant show "$CORP"
wait_for "the cancel_auth delivery" grep -q "cancel_auth" "$d/received.txt"
echo "and the service was told (no AuthCode, nothing personal):"
grep -A1 '^event ' "$d/received.txt" | tail -1 | sed 's/^/    /'
ctl deliveries crm

step "The audit trail: which service saw what, never a value"
ctl audit --since 10m | cut -c1-160
echo "one request entry in full (names of fields, never their values):"
ctl --json audit --since 10m --service crm | grep '"returned"' | head -1 | cut -c1-400

echo
echo "Done: everything ran in a temporary directory and stops now."
