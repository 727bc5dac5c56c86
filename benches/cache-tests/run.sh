#!/usr/bin/env bash
# Run the public HTTP cache conformance suite (http-tests/cache-tests,
# https://cache-tests.fyi) against portcullis on loopback, and score it
# beside the results the suite publishes for other caches. Not part of CI:
# it needs Node.js and npm, and a checkout of the suite.
#
#   benches/cache-tests/run.sh [SUITE_CHECKOUT]
#
# Without SUITE_CHECKOUT (or $CACHE_TESTS_DIR) the suite is cloned from
# GitHub. Writes bench-results/cache-tests/portcullis.json (the raw
# results) and prints the score table (score.mjs).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
suite="${1:-${CACHE_TESTS_DIR:-}}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "$suite" ]; then
  git clone --quiet --depth 1 https://github.com/http-tests/cache-tests "$work/cache-tests"
  suite="$work/cache-tests"
fi
suite="$(cd "$suite" && pwd)"
(cd "$suite" && [ -d node_modules ] || npm install --no-audit --no-fund --silent)

(cd "$root" && cargo build --release --quiet)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
origin_port="$(free_port)"
gw_port="$(free_port)"
admin_port="$(free_port)"

# The suite's origin server.
(cd "$suite" && npm_config_protocol=http npm_config_port="$origin_port" \
  npm_config_pidfile="$work/origin.pid" node test-engine/server/server.mjs \
  >"$work/origin.log" 2>&1) &
pids+=($!)

# portcullis in front of it: one caching route, no default freshness
# (the suite's first test checks that nothing is stored without it).
cat >"$work/portcullis.toml" <<TOML
[server]
watch_config = false

[[listeners]]
address = "127.0.0.1:$gw_port"

[admin]
address = "127.0.0.1:$admin_port"

[access_log]
enabled = false

[cache]
max_size = "256MiB"

[pools.origin]
backends = [{ address = "127.0.0.1:$origin_port" }]

[[routes]]
id = "suite"
path = "/"
pool = "origin"

[routes.cache]
TOML
"$root/target/release/portcullis" run -c "$work/portcullis.toml" >"$work/gateway.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null &&
     curl -s -o /dev/null "http://127.0.0.1:$origin_port/"; then
    break
  fi
  sleep 0.1
done

out="$root/bench-results/cache-tests"
mkdir -p "$out"
(cd "$suite" && npm_config_base="http://127.0.0.1:$gw_port" npm_package_config_id="" \
  node --no-warnings test-engine/cli.mjs >"$out/portcullis.json")
node "$root/benches/cache-tests/score.mjs" "$suite" "$out/portcullis.json" | tee "$out/score.txt"
