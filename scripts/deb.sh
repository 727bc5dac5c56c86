#!/usr/bin/env bash
# Build the Debian package with cargo-deb: target/debian/portcullis_*.deb.
#   scripts/deb.sh                  build it (installs cargo-deb when missing)
#   scripts/deb.sh --install-check  then, as root: dpkg -i it, check the
#                                   installed config, unit, user and files,
#                                   and purge it again
# Contents: /usr/bin/portcullis, /lib/systemd/system/portcullis.service
# (the shipped unit with /usr/bin paths; enable it yourself once the config
# is yours), /etc/portcullis/portcullis.toml and
# /etc/logrotate.d/portcullis (conffiles), the README and `--help` output
# under /usr/share/doc/portcullis; postinst makes the `portcullis` system
# user and /var/log/portcullis.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked
cargo build --release --bin portcullis
mkdir -p target/deb-assets
sed 's#/usr/local/bin/portcullis#/usr/bin/portcullis#g' systemd/portcullis.service \
    > target/deb-assets/portcullis.service
{
    target/release/portcullis --help
    for verb in run check diff explain keys demo; do
        echo
        echo "----- portcullis $verb --help"
        target/release/portcullis "$verb" --help 2>/dev/null || true
    done
} > target/deb-assets/portcullis.txt
deb=$(cargo deb --no-build --no-strip 2>/dev/null | tail -1)
echo "built $deb"

[ "${1:-}" = "--install-check" ] || exit 0
[ "$(id -u)" -eq 0 ] || { echo "--install-check needs root (dpkg -i)" >&2; exit 1; }
dpkg -i "$deb"
trap 'dpkg --purge portcullis >/dev/null' EXIT
/usr/bin/portcullis check -c /etc/portcullis/portcullis.toml
systemd-analyze verify /lib/systemd/system/portcullis.service
systemd-analyze security --offline=true --no-pager /lib/systemd/system/portcullis.service | tail -1
getent passwd portcullis
test -d /var/log/portcullis
dpkg -L portcullis
echo "install check passed"
