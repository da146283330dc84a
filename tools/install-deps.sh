#!/bin/sh
# Installs the Debian packages hlpt builds and tests with (chromium and a font: the dashboard's browser
# test, tests/node/test_dashboard.mjs; postgresql: the server tests/pg.sh starts for the store's
# PostgreSQL backend), when any is missing. Safe to run often:
# it asks apt only when dpkg says something is absent.
set -e
PKGS="build-essential pkg-config clang libmicrohttpd-dev libuv1-dev libcjson-dev libopenblas-dev
      libsqlite3-dev libpq-dev check libpcre2-dev libcurl4-openssl-dev libdnnl-dev python3 curl wordnet-base
      chromium fonts-liberation postgresql"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node.js and npm run the OpenAI SDK tests (tests/node). Some installs ship npm inside the nodejs
# package (NodeSource's), where Debian's npm package would conflict: ask for them only when the
# commands are absent.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
[ -z "$missing" ] && exit 0
echo "installing:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
