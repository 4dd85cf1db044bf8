#!/usr/bin/env bash
# Make libvirt available for the libvirt test tier (tests/libvirt), on Debian, without running it.
#
# Installs libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients and
# libvirt-daemon-system-sysv when libvirtd or virsh is missing. The tests start their own
# libvirtd inside a throwaway network and mount namespace; a daemon the packages' scripts may
# have started in the host's namespaces is not wanted: this script stops any such daemon (by
# PID) and fails if one is still running afterwards.

set -euo pipefail

PACKAGES=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-daemon-system-sysv)
LOG="${NTT_OUTPUT:-/tmp}/apt-libvirt.log"

# PIDs of libvirt daemons running in this (the host's) network namespace.
host_libvirt_pids() {
    local dir pid comm host_ns
    host_ns="$(readlink /proc/self/ns/net)"
    for dir in /proc/[0-9]*; do
        pid="${dir#/proc/}"
        comm="$(cat "$dir/comm" 2>/dev/null || true)"
        case "$comm" in
            libvirtd | virtlogd | virtlockd | virtqemud | virtnetworkd | virtnodedevd | virtstoraged) ;;
            *) continue ;;
        esac
        [ "$(readlink "$dir/ns/net" 2>/dev/null)" = "$host_ns" ] && echo "$pid"
    done
    return 0
}

missing=0
command -v libvirtd >/dev/null 2>&1 || [ -x /usr/sbin/libvirtd ] || missing=1
command -v virsh >/dev/null 2>&1 || missing=1
[ -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ] ||
    compgen -G '/usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so' >/dev/null || missing=1

before="$(host_libvirt_pids)"
if [ "$missing" -eq 1 ]; then
    [ "$(id -u)" -eq 0 ] || { echo "libvirt is missing: install ${PACKAGES[*]} (run as root)" >&2; exit 1; }
    command -v apt-get >/dev/null 2>&1 || { echo "libvirt is missing and there is no apt-get" >&2; exit 1; }
    echo "installing Debian packages: ${PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$LOG" 2>&1 || {
        tail -n 30 "$LOG" >&2
        echo "apt-get install ${PACKAGES[*]} failed (log: $LOG)" >&2
        exit 1
    }
fi

# A postinst that started a daemon despite policy-rc.d: stop what was not running before.
for pid in $(host_libvirt_pids); do
    if ! grep -qx "$pid" <<<"$before"; then
        echo "stopping libvirt daemon PID $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) started by the package install"
        kill -TERM "$pid" 2>/dev/null || true
    fi
done
for _ in 1 2 3 4 5 6 7 8 9 10; do
    left=""
    for pid in $(host_libvirt_pids); do grep -qx "$pid" <<<"$before" || left+=" $pid"; done
    [ -z "$left" ] && break
    sleep 0.5
done
[ -z "${left:-}" ] || { echo "libvirt daemons still running in the host namespace:$left" >&2; exit 1; }
echo "libvirt: $(libvirtd --version 2>/dev/null || /usr/sbin/libvirtd --version); virsh $(virsh --version)"
