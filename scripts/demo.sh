#!/usr/bin/env bash
# The main job of the netdev.tuntap collection: on a fresh Debian machine, as root,
#
#   bash scripts/demo.sh
#
# 1. sets up .venv from the pinned versions (scripts/bootstrap.sh) and makes the working tree
#    usable as the collection netdev.tuntap (ANSIBLE_COLLECTIONS_PATH);
# 2. makes a throwaway network namespace ntt-demo-<random> with two bridges (br0, br1) and a
#    throwaway registry in a mktemp directory;
# 3. runs examples/demo.yml (the guest_taps role): three guests, five taps, leases, a table;
# 4. runs it again: changed=0 in the recap, the same devices (same ifindexes);
# 5. removes guest db1 and adds guest app1: app1's taps get numbers above every earlier one,
#    db1's freed name is not handed out again (the kernel's own "vmtap%d" would have);
# 6. deletes the namespace and the registry directory, also when something fails.
#
# It never creates or changes anything in the machine's own network namespace and never uses
# the default registry in /var/lib. Exit status 0 and a last line "demo OK" when every
# expectation held; non-zero otherwise.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
-h | --help)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
"") ;;
*) ntt_die "scripts/demo.sh takes no arguments (try --help)" ;;
esac

need_root "scripts/demo.sh"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
[ -t 1 ] || step() { printf '\n==> %s\n' "$*"; }

# --- 1. tools and virtual environment ---------------------------------------------------------

# What a minimal Debian may lack: ip (iproute2) and the venv module of the system Python.
need_pkgs=()
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
"$NTT_PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || ntt_die "missing: ${need_pkgs[*]} (install them; there is no apt-get here)"
    step "installing Debian packages: ${need_pkgs[*]}"
    mkdir -p "$NTT_OUTPUT"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"; } \
        >"$NTT_OUTPUT/demo-apt.log" 2>&1 || {
        tail -n 20 "$NTT_OUTPUT/demo-apt.log" >&2
        ntt_die "apt-get install ${need_pkgs[*]} failed (log: $NTT_OUTPUT/demo-apt.log)"
    }
fi
[ -c /dev/net/tun ] || modprobe tun 2>/dev/null || true
[ -c /dev/net/tun ] || ntt_die "/dev/net/tun is missing: this kernel has no tun driver"

step "virtual environment (.venv, pinned versions) and collection path"
ntt_env
python - <<'EOF'
from importlib.metadata import version
import platform
print("python %s, ansible-core %s, pyroute2 %s; netdev.tuntap from %s" % (
    platform.python_version(), version("ansible-core"), version("pyroute2"), __import__("os").environ["NTT_ROOT"]))
EOF

export ANSIBLE_NOCOLOR="${ANSIBLE_NOCOLOR:-$([ -t 1 ] && echo 0 || echo 1)}"
export ANSIBLE_CALLBACK_RESULT_FORMAT=yaml   # the table prints one row per line
export ANSIBLE_DISPLAY_SKIPPED_HOSTS=false   # and skipped tasks do not clutter the run
export ANSIBLE_RETRY_FILES_ENABLED=false

# --- 2. throwaway namespace, bridges, registry ---------------------------------------------------

ns="" work="" demo_ok=0
# shellcheck disable=SC2317  # called from the EXIT trap
demo_exit_note() {
    [ "$demo_ok" = 1 ] || echo "demo FAILED; cleaned up: namespace ${ns:-(none)} deleted, ${work:-(none)} removed" >&2
}
ntt_on_exit demo_exit_note
ntt_netns_new ns demo
ntt_tmpdir work demo
registry="$work/registry/registry.json"
step "throwaway namespace $ns with bridges br0 and br1; registry $registry"
for br in br0 br1; do
    ip -n "$ns" link add "$br" up type bridge
done

# --- helpers ---------------------------------------------------------------------------------

# play STEP FACT_FILE LOG: run examples/demo.yml, show its output, keep it in LOG.
play() {
    local rc=0
    echo "\$ ansible-playbook examples/demo.yml -e demo_netns=$ns -e demo_registry=$registry -e demo_step=$1"
    ansible-playbook "$NTT_ROOT/examples/demo.yml" \
        -e "demo_netns=$ns" -e "demo_registry=$registry" -e "demo_step=$1" -e "demo_fact_file=$2" \
        </dev/null 2>&1 | tee "$3" || rc=$?
    [ "$rc" -eq 0 ] || ntt_die "ansible-playbook failed (exit $rc, step $1)"
}

# recap LOG FIELD: the number after FIELD= on the localhost line of the PLAY RECAP.
recap() {
    sed 's/\x1b\[[0-9;]*m//g' "$1" | awk -v f="$2" '
        /^PLAY RECAP/ { in_recap = 1; next }
        in_recap && $1 == "localhost" { for (i = 1; i <= NF; i++) if (index($i, f "=") == 1) print substr($i, length(f) + 2) }'
}

# The taps of the namespace as "name ifindex master" lines, sorted by name.
taps() {
    ip -n "$ns" -j -d link show type tun |
        python -c 'import json, sys
for link in sorted(json.load(sys.stdin), key=lambda l: l["ifname"]):
    print(link["ifname"], link["ifindex"], link.get("master", "-"))'
}

# --- 3. first run ----------------------------------------------------------------------------

step "first run: provision web1, db1 and cache1"
play first "$work/fact-first.json" "$work/run1.log"
changed="$(recap "$work/run1.log" changed)"
failed="$(recap "$work/run1.log" failed)"
[ -n "$changed" ] || ntt_die "no PLAY RECAP line for localhost in the first run's output"
if [ "$failed" != 0 ] || [ "$changed" -eq 0 ]; then
    ntt_die "first run: expected changes and no failure, recap says changed=$changed failed=$failed"
fi
taps >"$work/taps-first.txt"
echo "first run: changed=$changed; $(wc -l <"$work/taps-first.txt") taps now exist in $ns"

# --- 4. second run: nothing changes ------------------------------------------------------------

step "second run, same input: nothing may change"
play first "$work/fact-first.json" "$work/run2.log"
changed="$(recap "$work/run2.log" changed)"
failed="$(recap "$work/run2.log" failed)"
if [ "$changed" != 0 ] || [ "$failed" != 0 ]; then
    ntt_die "second run: expected changed=0 failed=0, recap says changed=${changed:-?} failed=${failed:-?}"
fi
taps >"$work/taps-second.txt"
cmp -s "$work/taps-first.txt" "$work/taps-second.txt" ||
    ntt_die "second run: the taps differ from the first run's: $(diff "$work/taps-first.txt" "$work/taps-second.txt" | tr '\n' ' ')"
echo "second run: changed=0 in the recap - nothing changed (same $(wc -l <"$work/taps-second.txt") taps, same ifindexes, same leases)"

# --- 5. remove db1, add app1 -------------------------------------------------------------------

step "remove guest db1 (state: absent) and add guest app1"
play change "$work/fact-change.json" "$work/run3.log"
failed="$(recap "$work/run3.log" failed)"
[ "$failed" = 0 ] || ntt_die "third run: recap says failed=$failed"
taps >"$work/taps-change.txt"

python - "$work" "$registry" <<'EOF'
import json
import os
import re
import sys

work, registry = sys.argv[1:3]
first = json.load(open(work + "/fact-first.json"))
after = json.load(open(work + "/fact-change.json"))
present = {}
for line in open(work + "/taps-change.txt"):
    name, _ifindex, master = line.split()
    present[name] = master
# The registry is an SQLite database: read it as tap_device_info's export does (docs/registry.md).
sys.path.insert(0, os.environ["NTT_COLLECTIONS"])
from ansible_collections.netdev.tuntap.plugins.module_utils._info import read_registry  # noqa: E402
reg = read_registry(registry)[0]
problems = []


def number(device):
    match = re.fullmatch(r"vmtap(0|[1-9][0-9]*)", device)
    if not match:
        sys.exit("unexpected device name %r (the demo uses the template vmtap%%d)" % device)
    return int(match.group(1))


def devices(fact, guests=None):
    return [nic["device"] for guest, nics in fact.items() if guests is None or guest in guests for nic in nics]


earlier = devices(first)
highest = max(number(d) for d in earlier)
freed = devices(first, ["db1"])
new = devices(after, ["app1"])
kept = {g: [n["device"] for n in first[g]] for g in first if g != "db1"}

if "db1" in after:
    problems.append("db1 is still in guest_taps_devices")
for device in freed:
    if device in present:
        problems.append("db1's tap %s still exists" % device)
    if device not in reg.get("released", {}):
        problems.append("the registry does not record %s as released" % device)
    if device in new:
        problems.append("the freed name %s was handed to app1" % device)
for device in new:
    if number(device) <= highest:
        problems.append("app1's %s is not above the highest earlier number %d" % (device, highest))
for guest, names in kept.items():
    if [n["device"] for n in after.get(guest, [])] != names:
        problems.append("guest %s's taps changed: %s -> %s" % (guest, names, after.get(guest)))
for guest, nics in after.items():
    for nic in nics:
        if present.get(nic["device"]) != nic["bridge"]:
            problems.append("%s (%s) is not on bridge %s in the namespace" % (nic["device"], nic["lease"], nic["bridge"]))

# What the kernel itself would have given app1's first NIC for "vmtap%d": the lowest free number.
kernel = min(n for n in range(len(earlier) + 1) if "vmtap%d" % n not in set(earlier) - set(freed))

print("removed db1: its tap %s is gone; the registry holds the name back (released, reuse_delay 3600 s)"
      % ", ".join(freed))
print("added app1:  %s - all above the highest number handed out before (vmtap%d)"
      % (", ".join(new), highest))
print("freed name %s NOT reused (the kernel's own 'vmtap%%d' would have given app1 vmtap%d)"
      % (", ".join(freed), kernel))
print("web1 and cache1 kept their taps: %s" % "; ".join("%s %s" % (g, " ".join(kept[g])) for g in ("web1", "cache1")))
if problems:
    print("FAILED expectations:\n  " + "\n  ".join(problems))
    sys.exit(1)
EOF

# --- 6. clean up ------------------------------------------------------------------------------

step "clean up"
ntt_netns_del "$ns"
rm -rf -- "$work"
if ip netns list | awk '{print $1}' | grep -qxF "$ns"; then
    ntt_die "namespace $ns is still there after ip netns del"
fi
echo "deleted namespace $ns (with its bridges and taps) and $work (with the registry)"
demo_ok=1
echo "demo OK"
