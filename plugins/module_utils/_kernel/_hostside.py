# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host side of a device beyond its link settings: IPv6 and how its MAC was assigned.

``disable_ipv6`` exists only in /proc/sys (netlink has no attribute for it), and /proc/sys/net
shows the namespace of the thread that opens it: call these inside ``_netns.entered``.
Written before the link first comes up, no link-local address and no router advertisement
ever reach the device.

/sys/class/net shows the namespace that mounted sysfs, not the thread's: ``addr_assign_type``
is read only when the entry there is the device asked about (same ifindex), and the caller
asks only in the namespace the module started in.
"""

from __future__ import annotations

import errno
import os

NET_ADDR_SET = 3   # include/uapi/linux/netdevice.h: the address was set by userspace (udev leaves it)


def _ipv6_path(name: str) -> str:
    return os.path.join("/proc/sys/net/ipv6/conf", name, "disable_ipv6")


def ipv6_enabled(name: str) -> bool | None:
    """Whether IPv6 is on for ``name``; None when the kernel or namespace has no IPv6 at all."""
    try:
        with open(_ipv6_path(name), encoding="ascii") as handle:
            return handle.read().strip() == "0"
    except FileNotFoundError:
        return None


def set_ipv6(name: str, enabled: bool) -> bool:
    """Switch IPv6 on or off for ``name``; False when there is no IPv6 to switch (nothing to do)."""
    try:
        with open(_ipv6_path(name), "w", encoding="ascii") as handle:
            handle.write("0\n" if enabled else "1\n")
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def addr_assign_type(name: str, index: int) -> int | None:
    """The kernel's addr_assign_type of ``name``, or None when sysfs does not show that device."""
    base = os.path.join("/sys/class/net", name)
    try:
        with open(os.path.join(base, "ifindex"), encoding="ascii") as handle:
            if int(handle.read().strip()) != index:
                return None
        with open(os.path.join(base, "addr_assign_type"), encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None
