# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which processes hold a tun/tap device, found in /proc rather than guessed from carrier.

A single-queue tap's carrier follows its attached file descriptor, but root can force it
off (`ip link set X carrier off`) while QEMU keeps the fd: a removal that trusted carrier
would delete the tap from under the guest. The kernel names the device of every attached
tun fd in that fd's /proc/PID/fdinfo (an ``iff:`` line), so the holders are read there.

Device names are per network namespace, so only processes in the device's namespace count
(a process that opened /dev/net/tun in one namespace and then moved to another is missed;
no common consumer does that). PIDs are as this process sees them: a guest in a container's
PID namespace is reported with its PID in ours. One pass over /proc serves every device asked
about; it costs about a readlink per open file of each process in those namespaces.
"""

from __future__ import annotations

import os

PROC = "/proc"
TUN_DEVICE = "/dev/net/tun"


def namespace_key(path: str) -> tuple | None:
    """(st_dev, st_ino) of a namespace handle (``/proc/PID/ns/net``, ``/run/netns/NAME``)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _attached_device(pid: str, fd: str) -> str | None:
    """The device named by the ``iff:`` line of a tun fd (None while it is not attached)."""
    try:
        with open("%s/%s/fdinfo/%s" % (PROC, pid, fd), "rb") as info:
            for line in info:
                if line.startswith(b"iff:"):
                    return line[4:].strip().decode("utf-8", "surrogateescape")
    except OSError:
        pass  # the process or the fd went away meanwhile
    return None


def tun_fds(namespaces: set) -> list:
    """(pid, namespace key, device name) of every attached tun fd of the processes whose network
    namespace key is in ``namespaces``."""
    found = []
    try:
        pids = [entry for entry in os.listdir(PROC) if entry.isdigit()]
    except OSError:
        return found
    for pid in pids:
        key = namespace_key("%s/%s/ns/net" % (PROC, pid))
        if key is None or key not in namespaces:
            continue
        fd_dir = "%s/%s/fd" % (PROC, pid)
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # exited, or a kernel thread
        for fd in fds:
            try:
                if os.readlink("%s/%s" % (fd_dir, fd)) != TUN_DEVICE:
                    continue
            except OSError:
                continue
            name = _attached_device(pid, fd)
            if name is not None:
                found.append((int(pid), key, name))
    return found


def holders(wanted: dict) -> dict:
    """PIDs holding each device: ``wanted`` maps a namespace key to device names; the answer maps
    (namespace key, name) to the sorted PIDs that hold it (empty for a device nobody holds)."""
    answer = {(key, name): set() for key, names in wanted.items() for name in names}
    for pid, key, name in tun_fds(set(wanted)):
        pids = answer.get((key, name))
        if pids is not None:
            pids.add(pid)
    return {where: sorted(pids) for where, pids in answer.items()}
