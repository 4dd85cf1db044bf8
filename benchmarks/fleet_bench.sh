#!/usr/bin/env bash
# Wall time of the guest_taps role on a fleet of emulated hosts over SSH (scripts/fleet.sh --bench):
# the first run (installs python3-pyroute2 with apt, creates every tap) and a run with no change,
# for 10, 30 and 50 hosts x 20 guests x 2 NICs, forks = hosts, interpreter discovery "auto".
#
#   sudo bash benchmarks/fleet_bench.sh              # 10 30 50
#   sudo bash benchmarks/fleet_bench.sh 10 20        # other fleet sizes
#
# Prints a Markdown table: whole ansible-playbook wall times, the cost per host (time / hosts),
# and how the per-host cost compares with the smallest fleet's. No timing is asserted: the
# figures depend on the machine (every emulated host shares its cores).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
need_root "benchmarks/fleet_bench.sh"

sizes=("$@")
[ "${#sizes[@]}" -gt 0 ] || sizes=(10 30 50)
guests="${NTT_FLEET_GUESTS:-20}"
out="$(mktemp /tmp/ntt-fleet-bench.XXXXXX)"
ntt_on_exit "rm -f '$out'"

for n in "${sizes[@]}"; do
    echo "---- $n hosts x $guests guests x 2 NICs ----"
    bash "$NTT_ROOT/scripts/fleet.sh" --hosts "$n" --guests "$guests" --bench --bench-out "$out" </dev/null
done

echo
echo "Fleet benchmark: guest_taps role, $guests guests x 2 NICs per host, forks = hosts ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
python3 "$NTT_ROOT/benchmarks/fleet_table.py" "$out"
