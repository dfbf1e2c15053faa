#!/usr/bin/env bash
# Installs what the tests need beyond Go: Debian's redis-server and
# redis-sentinel, whose binaries the Redis engine tests start on loopback
# ports. It does nothing when both are on PATH already.
set -euo pipefail

if command -v redis-server >/dev/null && command -v redis-sentinel >/dev/null; then
	exit 0
fi

if ! command -v apt-get >/dev/null; then
	echo "install-deps: redis-server and redis-sentinel are missing and apt-get is not available; install Redis 7 with your package manager" >&2
	exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	sudo="sudo"
fi
echo "install-deps: installing redis-server and redis-sentinel from Debian's packages"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-sentinel >/dev/null
