#!/usr/bin/env bash
# Builds the .deb with cargo-deb, installs it with dpkg -i, runs `sigstamp check` from the
# installed binary on the installed config (as the service's user, from its working
# directory, as the unit's ExecStartPre does), verifies the installed unit with
# `systemd-analyze verify` when that exists, then purges the package. Called by .ci/run
# (root, a fresh Debian box); also runnable by hand from the repository root (as root, on a
# machine where no sigstamp package is installed: the end purges it).
set -euo pipefail
cd "$(dirname "$0")/.."

step_start=$(date +%s)
step() {
  local now
  now=$(date +%s)
  echo "packaging: $1 ($((now - step_start)) s)"
  step_start=$now
}
fail() {
  echo "packaging: FAILED: $*" >&2
  exit 1
}

# cargo-deb: pinned, installed only when missing (building it takes minutes). cargo finds
# subcommands in $CARGO_HOME/bin even when that is not on PATH, so ask cargo.
if ! cargo deb --version >/dev/null 2>&1; then
  cargo install cargo-deb --locked --version 3.8.0 --quiet
  step "cargo-deb installed"
fi

# The build and the package (target/debian/sigstamp_<version>_<arch>.deb, and the -dbgsym
# .ddeb). SIGSTAMP_DEB_PROFILE: the Cargo profile, `release` by default (what `cargo deb`
# ships). .ci/run passes `dev` after the tests: the binary the tests built is packaged as
# is, instead of a second, optimised build of every dependency (tens of minutes on CI's two
# cores); cargo-deb warns that it is meant for releases. The packaging is the same.
profile=${SIGSTAMP_DEB_PROFILE:-release}
cargo deb --locked --quiet --profile "$profile"
deb=$(ls -t target/debian/sigstamp_*.deb | head -n1)
step "built $deb ($(du -h "$deb" | cut -f1), profile $profile)"
dpkg-deb --info "$deb" | sed -n 's/^ *\(Package\|Version\|Depends\|Installed-Size\):/  &/p'
# Every file the package must carry.
contents=$(dpkg-deb --contents "$deb")
for f in ./usr/bin/sigstamp ./etc/sigstamp/sigstamp.toml ./etc/sigstamp/templates/default.html.hbs \
  ./etc/sigstamp/templates/default.txt.hbs ./usr/share/doc/sigstamp/sigstamp.example.toml; do
  grep -qF " $f" <<<"$contents" || fail "$f is not in the package"
done
grep -qE ' \./(usr/)?lib/systemd/system/sigstamp\.service' <<<"$contents" ||
  fail "the unit is not in the package"

# dpkg -i installs no dependencies: .ci/run installs adduser (the postinst's) beforehand.
dpkg -i "$deb"
step "installed with dpkg -i"

getent passwd sigstamp >/dev/null || fail "the postinst did not create the user sigstamp"
unit=$(ls /lib/systemd/system/sigstamp.service /usr/lib/systemd/system/sigstamp.service 2>/dev/null | head -n1)
[ -n "$unit" ] || fail "no sigstamp.service installed"
[ "$(stat -c '%U:%G %a' /etc/sigstamp/sigstamp.toml)" = "root:sigstamp 640" ] ||
  fail "/etc/sigstamp/sigstamp.toml is $(stat -c '%U:%G %a' /etc/sigstamp/sigstamp.toml), not root:sigstamp 640"
/usr/bin/sigstamp --version

# The packaged config passes its own check, run as the unit runs it: as the service's user
# in its working directory (the postinst made it).
[ "$(stat -c '%U:%G %a' /var/lib/sigstamp)" = "sigstamp:sigstamp 700" ] ||
  fail "/var/lib/sigstamp is $(stat -c '%U:%G %a' /var/lib/sigstamp), not sigstamp:sigstamp 700"
out=$(cd /var/lib/sigstamp && setpriv --reuid=sigstamp --regid=sigstamp --init-groups \
  /usr/bin/sigstamp check --config /etc/sigstamp/sigstamp.toml 2>&1) ||
  fail "sigstamp check on the installed config: $out"
echo "  sigstamp check: $out"
# And it does find errors from the installed binary: a config naming a missing template.
broken=$(mktemp)
sed 's/^default = "default"/default = "missing"/' /etc/sigstamp/sigstamp.toml >"$broken"
if out=$(/usr/bin/sigstamp check --config "$broken" 2>&1); then
  rm -f "$broken"
  fail "sigstamp check passed a config whose default template is missing: $out"
fi
rm -f "$broken"
grep -q '^error: templates.default' <<<"$out" || fail "unexpected check output: $out"
step "sigstamp check ran from the package"

if command -v systemd-analyze >/dev/null 2>&1; then
  # Exit status and every line about our unit count (other units on the machine may warn
  # about themselves). Without systemd as PID 1 it still loads and checks the unit file,
  # the User= it names (made by the postinst) and the Exec binaries.
  status=0
  out=$(systemd-analyze verify "$unit" 2>&1) || status=$?
  ours=$(grep -E "sigstamp" <<<"$out" || true)
  if [ "$status" -ne 0 ] || [ -n "$ours" ]; then
    printf '%s\n' "$out" >&2
    fail "systemd-analyze verify $unit (exit $status)"
  fi
  step "systemd-analyze verify passed on $unit"
else
  echo "packaging: SKIPPED: systemd-analyze verify (no systemd-analyze; .ci/run installs systemd)"
fi

dpkg --purge sigstamp >/dev/null
[ ! -e /usr/bin/sigstamp ] || fail "/usr/bin/sigstamp left after purge"
[ ! -e /var/lib/sigstamp ] || fail "/var/lib/sigstamp left after purge"
step "purged"
echo "packaging: deb built, installed, checked, verified and purged"
