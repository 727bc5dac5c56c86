#!/usr/bin/env bash
# Install what building portcullis needs and a fresh machine may lack:
# cmake (Pingora's zlib-ng build) and a C compiler. With --test, also what
# the tests use: prometheus and promtool (Debian package prometheus; the
# tests start their own server on a free loopback port), logrotate (the
# shipped snippet is run for real), openssl and systemd-analyze (the unit
# file is verified and its exposure score checked offline), redis-server
# (the shared limit store's tests start their own on free loopback ports),
# haproxy (in front of the gateway, sending the PROXY protocol), and
# kubernetes-validate from PyPI (deploy/kubernetes/ checked offline).
# Idempotent and quiet when everything is there.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${1:-}" = "--test" ]; then
  { command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing+=(prometheus)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v logrotate >/dev/null 2>&1 || missing+=(logrotate)
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
fi

if [ "${1:-}" = "--test" ] && ! python3 -c "import kubernetes_validate" >/dev/null 2>&1; then
  echo "install-deps: installing kubernetes-validate (PyPI)" >&2
  python3 -m pip install --quiet kubernetes-validate
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 && SUDO="sudo"
fi
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  # The prometheus package's own service is not used: tests start theirs.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
elif command -v dnf >/dev/null 2>&1; then
  $SUDO dnf install -y "${missing[@]}"
elif command -v brew >/dev/null 2>&1; then
  brew install "${missing[@]}"
else
  echo "install-deps: please install: ${missing[*]}" >&2
  exit 1
fi
