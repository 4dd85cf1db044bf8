#!/usr/bin/env bash
# The benchmark of netdev.tuntap (README: "Benchmarks"), as root:
#
#   bash scripts/bench.sh                 # full run (40 min on a loaded 2-core VM): docs/benchmarks.md + .png
#   bash scripts/bench.sh --tiny          # the CI size (1-3 min): tests/output/bench/benchmarks.md + .png
#   bash scripts/bench.sh --note 'TEXT'   # a sentence at the top of the doc (e.g. the machine was shared)
#   bash scripts/bench.sh --help          # every option of benchmarks/bench.py
#
# Batch create (tap_device against a raw ioctl loop, ip -batch, pyroute2, a playbook loop),
# one more device with up to 30 000 present (against the kernel's own %d), peak RSS at 5000 and
# 30 000 leases, the guest_taps role at 500 guests x 2 NICs. Everything runs in throwaway network
# namespaces ntt-bench-<random> with throwaway registries, deleted on exit (also on failure or
# Ctrl-C); the root namespace is never touched. Builds .venv (scripts/bootstrap.sh) and installs
# requirements/bench.txt (matplotlib, for the chart only) into it when missing.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case " $* " in
*" -h "* | *" --help "*) ;;
*) need_root "scripts/bench.sh" ;;
esac
if ! command -v ip >/dev/null 2>&1; then
    need_root "installing iproute2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2; }
fi
[ -c /dev/net/tun ] || modprobe tun 2>/dev/null || true
ntt_env

# matplotlib and its pins, into .venv, once per change of requirements/bench.txt (and again after
# bootstrap rebuilt .venv, which removes the stamp with everything else).
stamp="$NTT_VENV/.ntt-bench-stamp"
want="$(cat "$NTT_ROOT/requirements/bench.txt" "$NTT_ROOT/requirements/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! python -c 'import matplotlib' >/dev/null 2>&1; then
    echo "installing requirements/bench.txt (matplotlib, for the chart) into .venv"
    mkdir -p "$NTT_OUTPUT"
    PIP_DISABLE_PIP_VERSION_CHECK=1 python -m pip install -q --no-input -r "$NTT_ROOT/requirements/bench.txt" \
        -c "$NTT_ROOT/requirements/constraints.txt" >"$NTT_OUTPUT/bench-pip.log" 2>&1 || {
        grep -v "^WARNING: Location '" "$NTT_OUTPUT/bench-pip.log" | tail -n 30 >&2
        ntt_die "pip install of requirements/bench.txt failed (log: $NTT_OUTPUT/bench-pip.log)"
    }
    echo "$want" >"$stamp"
fi

export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
exec python "$NTT_ROOT/benchmarks/bench.py" "$@"
