#!/usr/bin/env bash
# A fresh-looking hypervisor for the documentation's examples, private to one mount namespace.
#
#   unshare --mount --propagation private -- bash sandbox.sh NETNS SCRATCH NSNAME...
#
# Inside the new mount namespace (nothing here is seen by the rest of the machine, and all of it
# goes away when this script's last process exits):
#   - /etc and /var/lib are overlays whose changes land in a tmpfs, so that the directories the
#     examples use can exist without being made on the machine;
#   - /var/lib/netdev_tuntap (the module's default registry directory), /run/netdev_tuntap (its
#     macvtap device nodes), /etc/libvirt and /etc/qemu are empty tmpfs;
#   - /etc/passwd and /etc/group are private copies that also hold the user and group
#     libvirt-qemu, which the examples name as the taps' owner;
#   - /run/netns is a tmpfs holding each NSNAME as a bind mount of the network namespace NETNS
#     (an ntt-* namespace the test made): `ip netns exec NETNS` keeps working, and an example's
#     `netns=lab` finds a namespace called lab that exists only in here.
# Then it prints "ready" and waits until its standard input closes; commands run inside with
# `nsenter --target PID --mount`.
set -euo pipefail

netns="$1"
scratch="$2"
shift 2

mount -t tmpfs -o mode=0700 ntt-sandbox "$scratch"

overlay() {
    local dir="$1" key="$2"
    mkdir "$scratch/$key.upper" "$scratch/$key.work"
    mount -t overlay "ntt-$key" -o "lowerdir=$dir,upperdir=$scratch/$key.upper,workdir=$scratch/$key.work" "$dir"
}

empty_dir() {
    local dir="$1" mode="$2"
    mkdir -p "$dir"
    mount -t tmpfs -o "mode=$mode" ntt-sandbox "$dir"
}

# The namespace file first: /run/netns is covered below.
touch "$scratch/netns"
mount --bind "/run/netns/$netns" "$scratch/netns"

overlay /etc etc
overlay /var/lib varlib
empty_dir /var/lib/netdev_tuntap 0700
empty_dir /etc/libvirt 0755
empty_dir /etc/qemu 0755
# tap_device's macvtap device nodes (/run/netdev_tuntap/host/NAME), private like the registry.
empty_dir /run/netdev_tuntap 0755

cp /etc/passwd "$scratch/passwd"
cp /etc/group "$scratch/group"
# Debian's ids for libvirt-qemu; any id no other entry uses will do.
getent passwd libvirt-qemu >/dev/null ||
    echo 'libvirt-qemu:x:64055:64055:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin' >>"$scratch/passwd"
getent group libvirt-qemu >/dev/null || echo 'libvirt-qemu:x:64055:' >>"$scratch/group"
mount --bind "$scratch/passwd" /etc/passwd
mount --bind "$scratch/group" /etc/group

mount -t tmpfs -o mode=0755 ntt-sandbox /run/netns
for name in "$netns" "$@"; do
    touch "/run/netns/$name"
    mount --bind "$scratch/netns" "/run/netns/$name"
done

echo ready
exec cat >/dev/null
