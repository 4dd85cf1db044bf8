#!/usr/bin/env bash
# Run the guest_taps role's molecule scenario (molecule/default) against this machine, as root.
#
#   bash scripts/molecule.sh                 # molecule test (the full sequence)
#   bash scripts/molecule.sh converge        # any other molecule subcommand, e.g. verify, destroy
#
# Sets up .venv (scripts/lib.sh) and the collections path, chooses the throwaway namespace name
# (ntt-mol-<random>) and passes it to molecule in NTT_MOL_NETNS. The scenario's cleanup and destroy
# remove the namespace and its registry; if molecule fails or is interrupted before they run, this
# script removes them (and the QEMU the scenario may have started) itself.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root "scripts/molecule.sh"
ntt_env

subcommand="${1:-test}"
shift || true

# `molecule test` gets a fresh name here, so that this script knows what to remove. Step by step
# (converge, verify, ..., destroy) the scenario keeps the name prepare.yml chose in its ephemeral
# directory, unless NTT_MOL_NETNS is set.
if [ "$subcommand" = test ] && [ -z "${NTT_MOL_NETNS:-}" ]; then
    NTT_MOL_NETNS="ntt-mol-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
fi
if [ -n "${NTT_MOL_NETNS:-}" ]; then
    case "$NTT_MOL_NETNS" in
    ntt-mol-*[!a-z0-9]* | ntt-mol-) ntt_die "NTT_MOL_NETNS must be ntt-mol-<lower-case letters/digits>, got '$NTT_MOL_NETNS'" ;;
    ntt-mol-*) ;;
    *) ntt_die "NTT_MOL_NETNS must start with ntt-mol-, got '$NTT_MOL_NETNS'" ;;
    esac
    export NTT_MOL_NETNS
fi
scratch="/tmp/${NTT_MOL_NETNS:-}.d"

# What the scenario's teardown does, for when molecule did not get that far (only with a known
# name; after `converge` or `verify` alone the namespace is meant to stay for the next step).
# shellcheck disable=SC2317  # called from the EXIT trap
_ntt_mol_teardown() {
    local pid
    if [ -f "$scratch/qemu.pid" ]; then
        pid="$(tr -dc 0-9 <"$scratch/qemu.pid")"
        # Only the QEMU the scenario started: its command line names this pid file.
        if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$scratch/qemu.pid"; then
            kill "$pid" 2>/dev/null || true
        fi
    fi
    if ip netns list | awk '{print $1}' | grep -qxF "$NTT_MOL_NETNS"; then
        ntt_warn "molecule left namespace $NTT_MOL_NETNS behind; removing it"
        ntt_netns_del "$NTT_MOL_NETNS"
    fi
    rm -rf -- "$scratch"
}

if [ "$subcommand" = test ] || { [ "$subcommand" = destroy ] && [ -n "${NTT_MOL_NETNS:-}" ]; }; then
    ntt_on_exit _ntt_mol_teardown
fi

cd "$NTT_ROOT"
ntt_info "molecule $subcommand: namespace ${NTT_MOL_NETNS:-(chosen by the scenario)}"
start=$SECONDS
status=0
molecule "$subcommand" "$@" || status=$?
ntt_info "molecule $subcommand: exit status $status after $((SECONDS - start)) s"
exit "$status"
