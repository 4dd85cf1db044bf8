#!/usr/bin/env bash
# One emulated hypervisor of the fleet test. scripts/fleet.sh starts it as
#   ip netns exec HOSTNS unshare --mount --uts -- bash host_init.sh HOSTDIR NAME USER DEBDIR
# so it already runs in the host's network namespace and in a fresh, private mount and UTS
# namespace. It gives the host a file system view of its own and then becomes (exec) its sshd,
# so the PID scripts/fleet.sh started is the host: when it and its sessions end, every mount made
# here vanishes with the namespace.
#
#   HOSTDIR  the host's files made by scripts/fleet.sh (sshd_config, host key, authorized_keys)
#   NAME     host name (UTS)
#   USER     "" or a non-root login user that reaches root through sudo
#   DEBDIR   "" or a directory of .deb files put in the host's apt cache (its "mirror"); without
#            it apt on this host has to download, which fails: no route leaves the test's namespaces
set -euo pipefail

hostdir="$1" name="$2" user="$3" debdir="$4"

hostname "$name"

# /run first: it holds the overlays' upper layers, the sshd's files and /run/sshd, and its
# tmpfs belongs to this mount namespace only.
mount -t tmpfs -o mode=0755 ntt-fleet-run /run
mkdir -p /run/sshd /run/lock /run/ntt/ssh
chmod 0755 /run/sshd
install -m 0600 "$hostdir/ssh_host_ed25519_key" /run/ntt/ssh/
install -m 0644 "$hostdir/ssh_host_ed25519_key.pub" "$hostdir/sshd_config" "$hostdir/authorized_keys" /run/ntt/ssh/
if [ -n "$debdir" ]; then
    mkdir -p /run/ntt/debs
    cp "$debdir"/*.deb /run/ntt/debs/
fi

# Everything package installation writes (dpkg database, apt cache and logs, /usr, /etc) lands in
# this host's own upper layers; the machine's directories are only the lower layers.
for dir in /usr /etc /var/lib /var/cache /var/log; do
    layer="/run/ntt/overlay/${dir//\//_}"
    mkdir -p "$layer/upper" "$layer/work"
    mount -t overlay -o "lowerdir=$dir,upperdir=$layer/upper,workdir=$layer/work" ntt-fleet "$dir"
done

# Private /tmp, /root and /home. /root gets Debian's stock dotfiles, not the machine's (whose
# .bashrc may run slow tools on every SSH command).
mount -t tmpfs -o mode=1777 ntt-fleet-tmp /tmp
mount -t tmpfs -o mode=0700 ntt-fleet-root /root
cp /etc/skel/.bashrc /etc/skel/.profile /root/
mount -t tmpfs -o mode=0755 ntt-fleet-home /home

# A fresh hypervisor: no registry of the machine's, and no pyroute2 for the system Python, even
# if the machine has them (the removal only writes whiteouts into this host's upper layers).
rm -rf /var/lib/netdev_tuntap
if /usr/bin/python3 -c 'import pyroute2' >/dev/null 2>&1; then
    if dpkg-query -W -f='${Status}' python3-pyroute2 2>/dev/null | grep -q 'ok installed'; then
        dpkg --purge --force-depends python3-pyroute2 >/dev/null
    fi
    rm -rf /usr/local/lib/python3*/dist-packages/pyroute2* /usr/lib/python3/dist-packages/pyroute2*
fi

if [ -n "$debdir" ]; then
    cp /run/ntt/debs/*.deb /var/cache/apt/archives/
fi

printf '127.0.1.1\t%s\n' "$name" >>/etc/hosts
# The host's own dpkg log starts empty (the fleet check reads when each host ran dpkg).
: >/var/log/dpkg.log

if [ -n "$user" ]; then
    useradd --create-home --home-dir "/home/$user" --shell /bin/bash "$user"
    # Not locked: with UsePAM no, sshd refuses any login (even by key) to a locked account.
    usermod --password '*' "$user"
    printf '%s ALL=(ALL:ALL) NOPASSWD: ALL\n' "$user" >/etc/sudoers.d/ntt-fleet
    chmod 0440 /etc/sudoers.d/ntt-fleet
fi

exec /usr/sbin/sshd -D -f /run/ntt/ssh/sshd_config -E /run/ntt/sshd.log
