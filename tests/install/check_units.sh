#!/usr/bin/env bash
# `cmake --install` of the build into a temporary prefix: every binary, unit and config lands
# where cmake/install.cmake says, the units name that prefix's paths, and `systemd-analyze verify`
# passes on them. Usage: check_units.sh BUILD_DIR. Exit 77 (ctest: skipped) without systemd-analyze.
set -euo pipefail
build=$(cd "$1" && pwd)
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "SKIPPED: systemd-analyze is not installed (scripts/install-deps.sh installs systemd)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" > "$tmp/install.log"

fail() { echo "FAILED: $*"; exit 1; }
for path in bin/eep-coordinator bin/eep-worker bin/eepctl bin/eep-bench bin/eep-keygen \
            bin/eep-mkmodel bin/eep-generate bin/eep-eplb \
            lib/systemd/system/eep-coordinator.service lib/systemd/system/eep-worker@.service \
            etc/elastic-ep/coordinator.toml etc/elastic-ep/worker.toml etc/elastic-ep/worker.env \
            share/polkit-1/rules.d/50-elastic-ep.rules share/doc/elastic-ep/deployment.md; do
  [ -e "$prefix/$path" ] || fail "cmake --install put no $path under the prefix"
done
[ -x "$prefix/bin/eep-coordinator" ] || fail "bin/eep-coordinator is not executable"

units=$prefix/lib/systemd/system
# The units run the installed binaries with the installed configs.
grep -qx "ExecStart=$prefix/bin/eep-coordinator --config $prefix/etc/elastic-ep/coordinator.toml" \
  "$units/eep-coordinator.service" || fail "eep-coordinator.service: ExecStart names other paths"
grep -q "^ExecStart=$prefix/bin/eep-worker --config $prefix/etc/elastic-ep/worker.toml " \
  "$units/eep-worker@.service" || fail "eep-worker@.service: ExecStart names other paths"
grep -q "^EnvironmentFile=-$prefix/etc/elastic-ep/worker.env$" "$units/eep-worker@.service" ||
  fail "eep-worker@.service: EnvironmentFile names another path"
grep -q "^keys_dir = \"$prefix/etc/elastic-ep/keys\"" "$prefix/etc/elastic-ep/coordinator.toml" ||
  fail "coordinator.toml: keys_dir names another path"
for unit in eep-coordinator.service eep-worker@.service; do
  for line in Type=notify WatchdogSec= User=elastic-ep NoNewPrivileges=yes ProtectSystem=strict \
              PrivateTmp=yes ProtectHome=yes StateDirectory=elastic-ep LogsDirectory=elastic-ep; do
    grep -q "^$line" "$units/$unit" || fail "$unit has no $line"
  done
done
grep -q '^DeviceAllow=char-nvidia\* rw$' "$units/eep-worker@.service" ||
  fail "eep-worker@.service does not allow the GPUs"

# systemd-analyze verify: unknown keys, bad values, missing executables, unit dependencies. A
# template is verified through an instance (eep-worker@0 from eep-worker@.service beside it).
echo "== systemd-analyze verify ($(systemd-analyze --version | head -1))"
if ! systemd-analyze verify --man=no --generators=no "$units/eep-coordinator.service" \
       "$units/eep-worker@0.service" > "$tmp/verify.log" 2>&1; then
  cat "$tmp/verify.log"
  fail "systemd-analyze verify"
fi
# Warnings (an unknown key, a deprecated setting) do not change its exit code: none is expected.
if grep -v -e '^$' "$tmp/verify.log"; then
  fail "systemd-analyze verify printed the lines above"
fi
echo "systemd-analyze verify: both units pass"

# The exposure systemd computes from the hardening settings: printed, not asserted.
for unit in eep-coordinator.service eep-worker@0.service; do
  systemd-analyze security --offline=true --no-pager "$units/$unit" 2>/dev/null |
    grep -i "overall exposure" | sed "s/^/$unit: /" || true
done
echo "PASSED"
