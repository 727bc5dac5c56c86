#!/usr/bin/env bash
# Rebuild vendor/ from the pristine crates.io releases listed in
# patches/crates plus the patches in patches/NAME/*.patch (applied in name
# order with `patch -p1`). Cargo.toml points [patch.crates-io] at vendor/.
#
#   scripts/vendor.sh          rebuild vendor/
#   scripts/vendor.sh --check  rebuild into a temporary directory and fail
#                              unless vendor/ is exactly that (CI runs this)
#
# A crate's .crate file is taken from cargo's download cache when it is
# there, else from static.crates.io; its sha256 must match patches/crates.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-build}"
out="vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ "$mode" = "--check" ]; then
  out="$work/vendor"
fi
mkdir -p "$out"

fetch() { # name version sha256 -> path of the verified .crate
  local name=$1 version=$2 sha=$3 file
  file="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$name-$version.crate" 2>/dev/null | head -1 || true)"
  if [ -z "$file" ]; then
    file="$work/$name-$version.crate"
    curl -sSfL -o "$file" "https://static.crates.io/crates/$name/$name-$version.crate"
  fi
  if [ "$(sha256sum "$file" | cut -d' ' -f1)" != "$sha" ]; then
    echo "vendor: $name-$version.crate does not have the sha256 in patches/crates" >&2
    exit 1
  fi
  echo "$file"
}

grep -v '^#' patches/crates | while read -r name version sha; do
  [ -n "$name" ] || continue
  crate="$(fetch "$name" "$version" "$sha")"
  rm -rf "${out:?}/$name" "$work/$name-$version"
  tar xzf "$crate" -C "$work"
  mv "$work/$name-$version" "$out/$name"
  for p in patches/"$name"/*.patch; do
    [ -e "$p" ] || continue
    patch -s -p1 --no-backup-if-mismatch -d "$out/$name" < "$p"
  done
done

if [ "$mode" = "--check" ]; then
  if ! diff -r vendor "$out" >"$work/diff"; then
    echo "vendor: vendor/ differs from patches/ applied to the pristine crates:" >&2
    head -50 "$work/diff" >&2
    echo "vendor: run scripts/vendor.sh and commit the result" >&2
    exit 1
  fi
  echo "vendor: vendor/ matches the pristine crates plus patches/"
fi
