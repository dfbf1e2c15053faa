#!/usr/bin/env bash
# Installs what the tests need beyond Go, from Debian's packages:
#   redis-server, redis-sentinel  the Redis engine tests and the suite start them on loopback ports
#   chromium                      a test renders the suite's HTML report in it, headless
# It installs only what is missing, and does nothing when all are on PATH.
set -euo pipefail

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if ! command -v apt-get >/dev/null; then
	echo "install-deps: ${missing[*]} missing and apt-get is not available; install them with your package manager" >&2
	exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	sudo="sudo"
fi
echo "install-deps: installing ${missing[*]} from Debian's packages"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
