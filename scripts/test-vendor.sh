#!/usr/bin/env bash
# Run the vendored Pingora crates' own unit tests (the tests each patch in
# patches/ adds beside the code it changes). vendor/ crates are not members
# of the portcullis package, so `cargo test -p` cannot reach them; this
# copies them into a temporary workspace that patches crates.io with them
# and runs their library tests there (debug build, about 10 minutes cold;
# CARGO_TARGET_DIR, default target/vendor-tests, keeps the build between
# runs). Not part of CI: portcullis's own tests cover what each patch does
# end to end. Pingora tests that connect to hosts on the internet (e.g.
# connectors::l4::tests::test_conn_timeout) fail where only loopback is
# reachable; they fail the same way on the pristine crates.
#
#   scripts/test-vendor.sh                 # every vendored crate's lib tests
#   scripts/test-vendor.sh -- FILTER       # only tests matching FILTER
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
crates=()
patch_lines=""
while read -r name _version _sha; do
  case "$name" in ''|'#'*) continue ;; esac
  cp -r "vendor/$name" "$work/$name"
  crates+=("$name")
  patch_lines+="$name = { path = \"$name\" }"$'\n'
done < patches/crates
members="$(printf '"%s", ' "${crates[@]}")"
cat > "$work/Cargo.toml" <<TOML
[workspace]
members = [${members%, }]
resolver = "2"

[patch.crates-io]
$patch_lines
TOML
cp Cargo.lock "$work/"
args=()
for c in "${crates[@]}"; do args+=(-p "$c"); done
cd "$work"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/vendor-tests}" cargo test --no-fail-fast "${args[@]}" --lib "$@"
