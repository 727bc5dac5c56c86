#!/usr/bin/env bash
# Load benchmark, one command:  benches/load/run.sh [bench.py options]
# e.g.  benches/load/run.sh --duration 2 --rounds 1 --workers 1
#
# 1. installs wrk, h2load (nghttp2-client), openssl, nginx and haproxy from
#    Debian packages when missing (apt; sudo when not root),
# 2. builds target/release/portcullis, target/release/examples/bare_pingora (patched) and
#    benches/bare-unpatched/target/release/bare_pingora_unpatched (Pingora as released)
#    (skip with SKIP_BUILD=1),
# 3. runs bench.py with the given options. See README.md beside this file.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "load bench: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "load bench: no apt-get; please install: ${missing[*]}" >&2
    exit 1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  # On a machine with systemd, Debian starts the packages' own nginx (port 80)
  # and haproxy services: the bench runs its own instances, so stop and
  # disable the ones this install just brought up.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    for svc in nginx haproxy; do
      if [[ " ${missing[*]} " == *" $svc "* ]]; then
        $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
      fi
    done
  fi
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  [ -x "$repo/scripts/install-deps.sh" ] && "$repo/scripts/install-deps.sh"
  (cd "$repo" && cargo build --release --bin portcullis --example bare_pingora)
  # The same bare proxy against Pingora as released (no patches/): the
  # pingora-bare baseline. Its own workspace and target directory.
  (cd "$repo" && cargo build --release --manifest-path benches/bare-unpatched/Cargo.toml)
fi

cd "$repo"
exec python3 "$here/bench.py" "$@"
