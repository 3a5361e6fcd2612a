#!/usr/bin/env bash
# Builds the .deb, installs it with dpkg -i, runs `sigstamp check` from it and verifies the
# unit. Called by .ci/run; also runnable by hand from the repository root (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --version 3.8.0 --locked --quiet
cargo deb --locked --quiet
deb=$(ls -t target/debian/sigstamp_*.deb | head -n1)
dpkg-deb --info "$deb" >/dev/null
dpkg -i "$deb"

getent passwd sigstamp >/dev/null || { echo "packaging: the sigstamp user was not created"; exit 1; }
test -f /lib/systemd/system/sigstamp.service || test -f /usr/lib/systemd/system/sigstamp.service
/usr/bin/sigstamp --version
# The packaged config must pass its own check, from the service's working directory, as the
# service's user. `sigstamp check` is newer than this script: skipped (said so) without it.
install -d -o sigstamp -g sigstamp -m 0700 /var/lib/sigstamp
if /usr/bin/sigstamp check --help >/dev/null 2>&1; then
  (cd /var/lib/sigstamp && setpriv --reuid=sigstamp --regid=sigstamp --init-groups \
    /usr/bin/sigstamp check --config /etc/sigstamp/sigstamp.toml)
else
  echo "packaging: this build has no \`sigstamp check\`; the packaged config was not checked"
fi

if command -v systemd-analyze >/dev/null 2>&1; then
  unit=$(ls /lib/systemd/system/sigstamp.service /usr/lib/systemd/system/sigstamp.service 2>/dev/null | head -n1)
  out=$(systemd-analyze verify "$unit" 2>&1 || true)
  # Only findings about our unit count: systemd prefixes them with the unit's path (and line)
  # or name. Other units on the machine may warn about themselves.
  if printf '%s\n' "$out" | grep -E '^(/[^:]*/)?sigstamp\.service(:[0-9]+)?: '; then
    echo "packaging: systemd-analyze verify reported problems with the unit"; exit 1
  fi
fi
dpkg -r sigstamp >/dev/null
echo "packaging: deb built, installed, checked and removed"
