#!/usr/bin/env bash
# Benchmark of the guest_taps role, as root:
#
#   bash benchmarks/guest_taps_bench.sh                  # 500 guests x 2 NICs (the README's figures)
#   bash benchmarks/guest_taps_bench.sh --guests 50      # a quick check
#   bash benchmarks/guest_taps_bench.sh --no-baseline    # the role only (seconds, not minutes)
#   bash benchmarks/guest_taps_bench.sh --baseline-rerun # also time the baseline's no-change run
#
# 1. In a throwaway namespace ntt-bench-<random> with bridges br0 and br1 (a Linux bridge holds
#    at most 1023 ports: NIC 0 of every guest goes to br0, NIC 1 to br1) and a throwaway registry,
#    runs benchmarks/role.yml (the guest_taps role, one batch call) and then runs it again with
#    no change (it must report changed=0).
# 2. The baseline, in a second fresh namespace and registry: benchmarks/baseline.yml, a loop of
#    one netdev.tuntap.tap_device call per NIC with the same names, leases, bridges and MACs.
# 3. Prints the wall times (each a whole ansible-playbook run, start-up included) and the ratios
#    baseline / role. Targets on a 2-core machine: role first run < 3 s, second run < 2 s (about
#    0.8 s of each is ansible-playbook's own start-up, parsing and result handling). On a machine
#    shared with other work, compare two trees by interleaved runs rather than single wall times.
#
# Every check is real: the number of taps, their bridges, changed=0 on the second run. The
# namespaces and registries are deleted on exit, also on failure or Ctrl-C. Logs of the runs are
# kept in tests/output/bench/.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

guests=500
baseline=1
baseline_rerun=0
while [ "$#" -gt 0 ]; do
    case "$1" in
    --guests)
        [ "$#" -ge 2 ] || ntt_die "--guests needs a number"
        guests="$2"
        shift 2
        ;;
    --guests=*)
        guests="${1#--guests=}"
        shift
        ;;
    --no-baseline)
        baseline=0
        shift
        ;;
    --baseline-rerun)
        baseline_rerun=1
        shift
        ;;
    -h | --help)
        sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) ntt_die "unknown argument '$1' (try --help)" ;;
    esac
done
case "$guests" in
'' | *[!0-9]*) ntt_die "--guests takes a positive number, got '$guests'" ;;
esac
guests=$((10#$guests))
[ "$guests" -ge 1 ] || ntt_die "--guests takes a positive number"
[ "$guests" -le 1023 ] || ntt_die "--guests is at most 1023: each of the two bridges holds one NIC per guest and a Linux bridge takes at most 1023 ports"
nics=$((guests * 2))

need_root "benchmarks/guest_taps_bench.sh"
ntt_env
export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=false

work="" ns_role="" ns_base=""
logs="$NTT_OUTPUT/bench"
rm -rf "$logs"
mkdir -p "$logs"
ntt_tmpdir work bench

# The input: guest gNNN has NIC 0 on br0 and NIC 1 on br1; MACs 52:54:00:xx:yy:0k.
# guest_taps_guests feeds the role as plain data, as host_vars would (a template such as
# guest_taps_guests: "{{ other_var }}" is re-rendered on every use and costs about 0.2 s per use
# at this size); bench_nics (the same NICs, flat, with the host MAC the role derives) feeds the
# baseline.
python - "$guests" >"$work/guests.json" <<'EOF'
import json
import sys

count = int(sys.argv[1])
width = max(3, len(str(count - 1)))
guests, nics = [], []
for g in range(count):
    name = "g%0*d" % (width, g)
    guest_nics = []
    for k in range(2):
        mac = "52:54:00:%02x:%02x:%02x" % (g >> 8, g & 0xFF, k)
        guest_nics.append({"id": "net%d" % k, "bridge": "br%d" % k, "mac": mac})
        nics.append({"lease": "guest_taps:%s/net%d" % (name, k), "bridge": "br%d" % k,
                     "host_mac": "fe" + mac[2:]})
    guests.append({"name": name, "nics": guest_nics})
json.dump({"guest_taps_guests": guests, "bench_nics": nics}, sys.stdout)
EOF

# make_ns VAR: a fresh namespace with the two bridges (deleted on exit).
make_ns() {
    local __name
    ntt_netns_new __name bench
    ip -n "$__name" link add br0 up type bridge
    ip -n "$__name" link add br1 up type bridge
    printf -v "$1" '%s' "$__name"
}

now() { date +%s.%N; }

# timed_play PLAYBOOK NS REGISTRY LOGNAME: run it, store the wall time in $elapsed, fail on failure.
elapsed=""
timed_play() {
    local start end rc=0
    start="$(now)"
    ansible-playbook "$NTT_ROOT/benchmarks/$1" -e "@$work/guests.json" \
        -e "bench_netns=$2" -e "bench_registry=$3" </dev/null >"$logs/$4.log" 2>&1 || rc=$?
    end="$(now)"
    elapsed="$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')"
    if [ "$rc" -ne 0 ]; then
        tail -n 30 "$logs/$4.log" >&2
        ntt_die "$4: ansible-playbook $1 failed (exit $rc; log $logs/$4.log)"
    fi
}

# recap LOGNAME FIELD: the number after FIELD= on the localhost line of the PLAY RECAP.
recap() {
    awk -v f="$2" '/^PLAY RECAP/ { r = 1; next }
        r && $1 == "localhost" { for (i = 1; i <= NF; i++) if (index($i, f "=") == 1) print substr($i, length(f) + 2) }' \
        "$logs/$1.log"
}

# check_taps NS WHAT: exactly $nics taps, $guests on each bridge.
check_taps() {
    local total on0 on1
    total="$(ip -n "$1" -o link show type tun | wc -l)"
    on0="$(ip -n "$1" -o link show master br0 type tun | wc -l)"
    on1="$(ip -n "$1" -o link show master br1 type tun | wc -l)"
    if [ "$total" -ne "$nics" ] || [ "$on0" -ne "$guests" ] || [ "$on1" -ne "$guests" ]; then
        ntt_die "$2: expected $nics taps ($guests on br0, $guests on br1), found $total ($on0 on br0, $on1 on br1)"
    fi
}

# check_changed LOGNAME WANT: WANT is "0" or "some".
check_changed() {
    local changed failed
    changed="$(recap "$1" changed)"
    failed="$(recap "$1" failed)"
    [ -n "$changed" ] || ntt_die "$1: no PLAY RECAP in $logs/$1.log"
    [ "$failed" = 0 ] || ntt_die "$1: failed=$failed in the recap"
    if [ "$2" = 0 ] && [ "$changed" != 0 ]; then
        ntt_die "$1: expected changed=0 in the recap, got changed=$changed"
    fi
    if [ "$2" = some ] && [ "$changed" = 0 ]; then
        ntt_die "$1: expected changes in the recap, got changed=0"
    fi
}

echo "guest_taps benchmark: $guests guests x 2 NICs = $nics taps over bridges br0 and br1; $(nproc) CPUs, kernel $(uname -r)"
echo "python $(python -c 'import platform; print(platform.python_version())'), ansible-core $(python -c 'from importlib.metadata import version; print(version("ansible-core"))')"

# --- the role ---------------------------------------------------------------------------------
make_ns ns_role
mkdir -m 0700 "$work/role"
echo "role:     namespace $ns_role, registry $work/role/registry.json"
timed_play role.yml "$ns_role" "$work/role/registry.json" role-first
t_first="$elapsed"
check_changed role-first some
check_taps "$ns_role" "role, first run"
printf '  first run  (creates %d taps):  %6s s\n' "$nics" "$t_first"

timed_play role.yml "$ns_role" "$work/role/registry.json" role-second
t_second="$elapsed"
check_changed role-second 0
check_taps "$ns_role" "role, second run"
printf '  second run (no change, changed=0): %6s s\n' "$t_second"
# Gone before the baseline starts (the kernel tears the taps down in the background).
ntt_netns_del "$ns_role"
sleep 3

# --- the baseline -----------------------------------------------------------------------------
t_base="" t_base2=""
if [ "$baseline" = 1 ]; then
    make_ns ns_base
    mkdir -m 0700 "$work/base"
    echo "baseline: namespace $ns_base, registry $work/base/registry.json (one module call per NIC: minutes)"
    timed_play baseline.yml "$ns_base" "$work/base/registry.json" baseline-first
    t_base="$elapsed"
    check_changed baseline-first some
    check_taps "$ns_base" "baseline"
    printf '  loop of %d tap_device calls:  %6s s\n' "$nics" "$t_base"
    if [ "$baseline_rerun" = 1 ]; then
        timed_play baseline.yml "$ns_base" "$work/base/registry.json" baseline-second
        t_base2="$elapsed"
        check_changed baseline-second 0
        printf '  the same loop again (no change): %6s s\n' "$t_base2"
    fi
    ntt_netns_del "$ns_base"
fi

# --- summary ----------------------------------------------------------------------------------
python - "$guests" "$nics" "$t_first" "$t_second" "$t_base" "$t_base2" <<'EOF' | tee "$logs/results.txt"
import sys

guests, nics = int(sys.argv[1]), int(sys.argv[2])
first, second = float(sys.argv[3]), float(sys.argv[4])
base = float(sys.argv[5]) if sys.argv[5] else None
base2 = float(sys.argv[6]) if sys.argv[6] else None


def times(x):
    return "%.1fx" % x if x < 10 else "%.0fx" % x


def ratio(t):
    return times(base / t) if base else "-"


print()
print("| %d guests x 2 NICs (%d taps), wall time | seconds | baseline / this |" % (guests, nics))
print("| --- | ---: | ---: |")
print("| guest_taps role, first run (creates every tap) | %.2f | %s |" % (first, ratio(first)))
print("| guest_taps role, second run (no change) | %.2f | %s |" % (second, ratio(second)))
if base:
    print("| baseline: loop of one tap_device call per NIC | %.2f | 1x |" % base)
if base2:
    print("| baseline again, no change | %.2f | - |" % base2)
print()
if base2:
    print("no-change runs compared: baseline again / role's second run = %s" % times(base2 / second))
if guests == 500:
    print("targets: first run < 3 s: %s; second run < 2 s: %s"
          % ("met" if first < 3 else "MISSED by %.2f s" % (first - 3),
             "met" if second < 2 else "MISSED by %.2f s" % (second - 2)))
EOF
echo "logs: $logs"
