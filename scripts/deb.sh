#!/usr/bin/env bash
# Build the Debian package with cargo-deb: target/debian/portcullis_*.deb.
#   scripts/deb.sh                  build it (installs cargo-deb when missing)
#   scripts/deb.sh --install-check  then, as root: dpkg -i it, check the
#                                   installed config, unit, user and files,
#                                   run the service (under systemd when it
#                                   is PID 1, else as the service user with
#                                   the unit's directories), send a request,
#                                   find it in the access log, and purge it
# Contents: /usr/bin/portcullis, /lib/systemd/system/portcullis.service
# (the shipped unit with /usr/bin paths; enable it yourself once the config
# is yours), /etc/portcullis/portcullis.toml (the example config, its access
# log in /var/log/portcullis/access.log, the file the logrotate snippet
# rotates) and /etc/logrotate.d/portcullis (conffiles), the README and
# `--help` output under /usr/share/doc/portcullis; postinst makes the
# `portcullis` system user and /var/log/portcullis.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked
cargo build --release --bin portcullis
mkdir -p target/deb-assets
sed 's#/usr/local/bin/portcullis#/usr/bin/portcullis#g' systemd/portcullis.service \
    > target/deb-assets/portcullis.service
# The packaged config logs to the file the logrotate snippet rotates.
log=$(sed -n 's#^/\(.*\) {$#/\1#p' conf/logrotate/portcullis)
sed "s#^path = \"-\"\$#path = \"$log\"#" conf/portcullis.toml > target/deb-assets/portcullis.toml
grep -q "^path = \"$log\"$" target/deb-assets/portcullis.toml
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
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    if [ -d /run/systemd/system ]; then systemctl stop portcullis 2>/dev/null || true; fi
    dpkg --purge portcullis >/dev/null
}
trap cleanup EXIT
unit=/lib/systemd/system/portcullis.service
conf=/etc/portcullis/portcullis.toml
/usr/bin/portcullis check -c "$conf"
systemd-analyze verify "$unit"
score=$(systemd-analyze security --offline=true --no-pager "$unit" | sed -n 's/.*exposure level for portcullis.service: \([0-9.]*\).*/\1/p')
echo "exposure $score"
awk -v s="$score" 'BEGIN { exit !(s <= 1.6) }'
getent passwd portcullis
test -d /var/log/portcullis
dpkg -L portcullis
grep -q "^path = \"$log\"$" "$conf"

# End to end: the service writes the access log the package set up.
if [ -d /run/systemd/system ]; then
    systemctl start portcullis
else
    # No systemd here: make the directories the unit's LogsDirectory=,
    # StateDirectory= and RuntimeDirectory= make, owned by its User=, and
    # run the unit's ExecStart as that user from its WorkingDirectory=.
    user=$(sed -n 's/^User=//p' "$unit")
    for kind in Logs:/var/log State:/var/lib Runtime:/run; do
        name=$(sed -n "s/^${kind%%:*}Directory=//p" "$unit")
        [ -n "$name" ] || { echo "the unit has no ${kind%%:*}Directory=" >&2; exit 1; }
        install -d -o "$user" -g "$user" -m 0750 "${kind#*:}/$name"
    done
    exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
    workdir=$(sed -n 's/^WorkingDirectory=//p' "$unit")
    (cd "$workdir" && RUNTIME_DIRECTORY=/run/portcullis \
        exec setpriv --reuid="$user" --regid="$user" --clear-groups $exec_start) &
    pid=$!
fi
admin=$(sed -n '/^\[admin\]/,/^\[/s/^address = "\(.*\)"$/\1/p' "$conf")
proxy=$(sed -n '/^\[\[listeners\]\]/,/^\[/s/^address = "0.0.0.0:\([0-9]*\)"$/127.0.0.1:\1/p' "$conf" | head -1)
for _ in $(seq 100); do
    curl -fsS "http://$admin/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://$admin/readyz" >/dev/null
curl -sS -o /dev/null "http://$proxy/install-check" -H 'Host: api.example.com'
for _ in $(seq 100); do
    grep -q '"path":"/install-check"' "$log" 2>/dev/null && break
    sleep 0.1
done
grep '"path":"/install-check"' "$log"
test "$(stat -c %U "$log")" = portcullis
echo "install check passed: the service wrote $log"
