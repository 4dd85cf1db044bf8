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
# with `dpkg -x` into tests/output/oldest-python/root. The bullseye libraries its extension
# modules need and Debian 12 lacks (libffi7 for ctypes, libssl1.1 for ssl/hashlib, libmpdec3 for
# decimal) are unpacked beside it, and so is libsqlite3-0 (sqlite3 stores the registry; a host
# without libsqlite3 would otherwise lack it, and bullseye's 3.34 is the oldest SQLite to test);
# the extension modules get a RUNPATH to them (patchelf, from Debian 12, unpacked the same
# way): the interpreter then runs without LD_LIBRARY_PATH, so venvs made from it and tools
# that clean the environment (ansible-test) work too. Idempotent: an interpreter that already
# works is reused. Exits non-zero, with the reason, when the interpreter cannot be obtained.

set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OLDEST_VERSION=3.9
SUITE=bullseye
PACKAGES=(python3.9-minimal libpython3.9-minimal libpython3.9-stdlib libffi7 libssl1.1 libmpdec3 libsqlite3-0)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
TOOLS_SUITE=bookworm
TOOLS=(patchelf)

DEST="$NTT_OUTPUT/oldest-python"
INTERPRETER="$DEST/bin/python$OLDEST_VERSION"

works() {
    [ -x "$INTERPRETER" ] && env -u LD_LIBRARY_PATH "$INTERPRETER" - "$OLDEST_VERSION" <<'EOF' >/dev/null 2>&1
import ctypes, decimal, hashlib, sqlite3, ssl, sys
assert "%d.%d" % sys.version_info[:2] == sys.argv[1], sys.version
EOF
}

if works; then
    echo "$INTERPRETER"
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    echo "python$OLDEST_VERSION is not at $INTERPRETER (or does not run): bash scripts/oldest_python.sh obtains it" >&2
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
deb [signed-by=$KEYRING] http://deb.debian.org/debian $TOOLS_SUITE main
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
# pkg/suite pins each package to its suite; apt would otherwise prefer the newer one.
mkdir -p "$apt_dir/tools"
if ! (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" download "${PACKAGES[@]/%//$SUITE}" &&
    cd "$apt_dir/tools" && apt-get "${apt_opts[@]}" download "${TOOLS[@]/%//$TOOLS_SUITE}") >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    ntt_die "apt-get download ${PACKAGES[*]} ($SUITE) ${TOOLS[*]} ($TOOLS_SUITE) failed (log: $log)"
fi
for deb in "$apt_dir/debs"/*.deb; do
    dpkg -x "$deb" "$DEST/root"
done
for deb in "$apt_dir/tools"/*.deb; do
    dpkg -x "$deb" "$apt_dir/tools/root"
done
patchelf="$apt_dir/tools/root/usr/bin/patchelf"

libdir=""
for d in "$DEST"/root/usr/lib/*-linux-gnu*; do
    [ -f "$d/libffi.so.7" ] && libdir="$d"
done
[ -n "$libdir" ] || ntt_die "no libffi.so.7 in the unpacked packages"
dynload="$DEST/root/usr/lib/python$OLDEST_VERSION/lib-dynload"
for so in "$dynload"/*.so; do
    "$patchelf" --set-rpath "\$ORIGIN/../../$(basename "$libdir")" "$so"
done
for so in "$libdir"/*.so.*; do
    # shellcheck disable=SC2016 # $ORIGIN is for the dynamic linker
    [ -L "$so" ] || "$patchelf" --set-rpath '$ORIGIN' "$so"
done
ln -sfn "../root/usr/bin/python$OLDEST_VERSION" "$INTERPRETER"
rm -rf "$apt_dir/cache" "$apt_dir/lists" "$apt_dir/debs" "$apt_dir/tools"

if ! works; then
    env -u LD_LIBRARY_PATH "$INTERPRETER" -c 'import ctypes, decimal, hashlib, sqlite3, ssl' >&2 || true
    ntt_die "the unpacked python$OLDEST_VERSION does not run (see above)"
fi
echo "python $("$INTERPRETER" -c 'import platform; print(platform.python_version())') ready" >&2
echo "$INTERPRETER"
