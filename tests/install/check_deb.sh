#!/usr/bin/env bash
# The Debian package that `cpack -G DEB` makes from the build: the files and where they go, the
# control fields (dependencies from dpkg-shlibdeps), the maintainer scripts that create the
# service user, the conffiles. Usage: check_deb.sh BUILD_DIR EEP_SYSTEMD_ENABLED(ON|OFF).
set -euo pipefail
build=$(cd "$1" && pwd)
with_systemd=${2:-OFF}
for tool in cpack dpkg-deb dpkg-shlibdeps file; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "FAILED: $tool is missing (scripts/install-deps.sh installs dpkg-dev and file)"
    exit 1
  fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAILED: $*"; exit 1; }

start=$SECONDS
if ! cpack --config "$build/CPackConfig.cmake" -G DEB -B "$tmp/out" > "$tmp/cpack.log" 2>&1; then
  cat "$tmp/cpack.log"
  fail "cpack -G DEB"
fi
debs=("$tmp"/out/*.deb)
if [ ${#debs[@]} -ne 1 ] || [ ! -f "${debs[0]}" ]; then
  fail "cpack made no single .deb: ${debs[*]}"
fi
deb=${debs[0]}
echo "== $(basename "$deb"), $(du -h "$deb" | cut -f1), made in $((SECONDS - start)) s"
dpkg-deb -I "$deb" > "$tmp/info"
dpkg-deb -c "$deb" > "$tmp/contents"
dpkg-deb -e "$deb" "$tmp/control"
dpkg-deb -x "$deb" "$tmp/root"
cat "$tmp/info"

# Files, where Debian has them, owned by root.
for path in ./usr/bin/eep-coordinator ./usr/bin/eep-worker ./usr/bin/eepctl ./usr/bin/eep-bench \
            ./usr/bin/eep-keygen ./usr/bin/eep-mkmodel ./usr/bin/eep-generate ./usr/bin/eep-eplb \
            ./usr/lib/systemd/system/eep-coordinator.service \
            ./usr/lib/systemd/system/eep-worker@.service \
            ./etc/elastic-ep/coordinator.toml ./etc/elastic-ep/worker.toml \
            ./etc/elastic-ep/worker.env ./usr/share/polkit-1/rules.d/50-elastic-ep.rules \
            ./usr/share/doc/elastic-ep/deployment.md; do
  grep -q " $path\$" "$tmp/contents" || fail "the package has no $path"
done
if awk '{print $6}' "$tmp/contents" | grep -v -e '^\./$' -e '^\./usr/' -e '^\./etc/'; then
  fail "the package holds the files above outside /usr and /etc"
fi
if awk '{print $2}' "$tmp/contents" | grep -v '^root/root$'; then
  fail "files in the package not owned by root"
fi
grep -q -- "-rwxr-xr-x .* ./usr/bin/eep-coordinator$" "$tmp/contents" ||
  fail "eep-coordinator is not mode 0755"

# Control: the name, the dependencies (dpkg-shlibdeps found the libraries the binaries link).
field() { sed -n "s/^ $1: //p" "$tmp/info"; }
[ "$(field Package)" = elastic-ep ] || fail "Package is not elastic-ep"
depends=$(field Depends)
expected=(libzmq5 libgloo0 libicu72 libpcre2-8-0 libstdc++6 libc6 adduser procps)
if [ "$with_systemd" = ON ]; then expected+=(libsystemd0); fi
for dependency in "${expected[@]}"; do
  [[ ", $depends," == *", $dependency"[\ ,]* ]] || fail "Depends lacks $dependency: $depends"
done

# Maintainer scripts: postinst makes the system user and its directories; all are valid sh.
for script in postinst prerm postrm; do
  [ -x "$tmp/control/$script" ] || fail "no executable $script"
  sh -n "$tmp/control/$script" || fail "$script is not valid sh"
done
grep -q "adduser --system --group --home /var/lib/elastic-ep" "$tmp/control/postinst" ||
  fail "postinst does not create the system user elastic-ep"
grep -q "install -d -o elastic-ep -g elastic-ep -m 0700 /etc/elastic-ep/keys" \
  "$tmp/control/postinst" || fail "postinst does not make the keys directory"
for conffile in /etc/elastic-ep/coordinator.toml /etc/elastic-ep/worker.toml \
                /etc/elastic-ep/worker.env; do
  grep -qx "$conffile" "$tmp/control/conffiles" || fail "$conffile is not a conffile"
done

# The units in the package name the package's paths and run as the service user.
unit_dir=$tmp/root/usr/lib/systemd/system
grep -qx "ExecStart=/usr/bin/eep-coordinator --config /etc/elastic-ep/coordinator.toml" \
  "$unit_dir/eep-coordinator.service" || fail "eep-coordinator.service: wrong ExecStart"
grep -q "^ExecStart=/usr/bin/eep-worker --config /etc/elastic-ep/worker.toml " \
  "$unit_dir/eep-worker@.service" || fail "eep-worker@.service: wrong ExecStart"
grep -q '^keys_dir = "/etc/elastic-ep/keys"' "$tmp/root/etc/elastic-ep/coordinator.toml" ||
  fail "coordinator.toml: keys_dir is not /etc/elastic-ep/keys"
for unit in eep-coordinator.service eep-worker@.service; do
  grep -qx "User=elastic-ep" "$unit_dir/$unit" || fail "$unit does not run as elastic-ep"
done
# The binaries in the package run (stripped, their libraries found).
"$tmp/root/usr/bin/eep-coordinator" --help > /dev/null || fail "the packaged eep-coordinator"
"$tmp/root/usr/bin/eep-worker" --help > /dev/null || fail "the packaged eep-worker"
echo "PASSED"
