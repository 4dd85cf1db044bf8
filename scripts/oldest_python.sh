#!/usr/bin/env bash
# Obtain the oldest CPython the module claims to support on managed hosts (tests/config.yml:
# modules.python_requires), without installing anything into the system.
#
#   bash scripts/oldest_python.sh          # obtain it if needed; print its path on the last line
#   bash scripts/oldest_python.sh --check  # print its path if it is there and works, else exit 1
#                                          # (no network: what the tests call)
#
# Debian 11 (bullseye) ships CPython 3.9; no Debian suite still served ships 3.8. Its .debs are
# fetched with apt-get through a private apt configuration (own sources list, package lists and
# cache under tests/output/oldest-python/apt; the machine's apt state is not touched), unpacked
# with `dpkg -x` into tests/output/oldest-python/root, and run through a wrapper that points the
# dynamic linker at the unpacked bullseye libraries (libffi7 for ctypes, libssl1.1 for hashlib,
# libmpdec3 for decimal), which Debian 12 does not have. Idempotent: an interpreter that already
# works is reused. Exits non-zero, with the reason, when the interpreter cannot be obtained.

set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OLDEST_VERSION=3.9
SUITE=bullseye
PACKAGES=(python3.9-minimal libpython3.9-minimal libpython3.9-stdlib libffi7 libssl1.1 libmpdec3)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

DEST="$NTT_OUTPUT/oldest-python"
WRAPPER="$DEST/bin/python$OLDEST_VERSION"

works() {
    [ -x "$WRAPPER" ] && "$WRAPPER" - "$OLDEST_VERSION" <<'EOF' >/dev/null 2>&1
import ctypes, decimal, hashlib, ssl, sys
assert "%d.%d" % sys.version_info[:2] == sys.argv[1], sys.version
EOF
}

if works; then
    echo "$WRAPPER"
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    echo "python$OLDEST_VERSION is not at $WRAPPER (or does not run): bash scripts/oldest_python.sh obtains it" >&2
    exit 1
fi

command -v apt-get >/dev/null 2>&1 || ntt_die "apt-get is needed to fetch Debian $SUITE's python$OLDEST_VERSION"
command -v dpkg >/dev/null 2>&1 || ntt_die "dpkg is needed to unpack Debian $SUITE's python$OLDEST_VERSION"
[ -r "$KEYRING" ] || ntt_die "$KEYRING is missing (Debian package debian-archive-keyring)"

rm -rf "$DEST"
apt_dir="$DEST/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs" "$DEST/root" "$DEST/bin"
cat >"$apt_dir/sources.list" <<EOF
deb [signed-by=$KEYRING] http://deb.debian.org/debian $SUITE main
deb [signed-by=$KEYRING] http://deb.debian.org/debian-security $SUITE-security main
EOF
apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::State::Status=/dev/null"
    -o "Dir::Cache=$apt_dir/cache"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=$(id -un)"
)
log="$DEST/apt.log"
echo "fetching Debian $SUITE's python$OLDEST_VERSION (${PACKAGES[*]}) into $DEST" >&2
if ! apt-get "${apt_opts[@]}" update >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    ntt_die "apt-get update for Debian $SUITE failed (log: $log)"
fi
if ! (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" download "${PACKAGES[@]}") >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    ntt_die "apt-get download ${PACKAGES[*]} from Debian $SUITE failed (log: $log)"
fi
for deb in "$apt_dir/debs"/*.deb; do
    dpkg -x "$deb" "$DEST/root"
done

libdirs=()
for d in "$DEST"/root/usr/lib/*-linux-gnu*; do
    [ -d "$d" ] && libdirs+=("$d")
done
[ "${#libdirs[@]}" -gt 0 ] || ntt_die "no multiarch library directory in the unpacked packages"
libpath="$(IFS=:; echo "${libdirs[*]}")"
cat >"$WRAPPER" <<EOF
#!/bin/sh
# Debian $SUITE's CPython $OLDEST_VERSION, unpacked by scripts/oldest_python.sh.
LD_LIBRARY_PATH="$libpath\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$DEST/root/usr/bin/python$OLDEST_VERSION" "\$@"
EOF
chmod +x "$WRAPPER"
rm -rf "$apt_dir/cache" "$apt_dir/lists" "$apt_dir/debs"

if ! works; then
    "$WRAPPER" -c 'import ctypes, decimal, hashlib, ssl' >&2 || true
    ntt_die "the unpacked python$OLDEST_VERSION does not run (see above)"
fi
echo "python $("$WRAPPER" -c 'import platform; print(platform.python_version())') ready" >&2
echo "$WRAPPER"
