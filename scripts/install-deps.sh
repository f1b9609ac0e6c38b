#!/bin/sh
# Install the Debian packages wecom-broker builds and tests with, or say
# exactly which ones are missing when not running as root.
set -eu
PKGS="build-essential pkg-config libevent-dev libcurl4-openssl-dev \
libjansson-dev libhiredis-dev libssl-dev libexpat1-dev libyajl-dev \
libinih-dev libcmocka-dev redis-server curl"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages:$missing" >&2
    echo "install them with: sudo apt-get install$missing" >&2
    exit 1
fi
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
