# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tun driver's ioctls on /dev/net/tun: create a device, and set owner/group.

Done by hand rather than through pyroute2 because TUNSETIFF copies the name the
kernel settled on back into the ifreq, and that is the name we must record.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import struct

TUN_DEVICE = "/dev/net/tun"

IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_MULTI_QUEUE = 0x0100
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_TUN_EXCL = 0x8000

_IFREQ = struct.Struct("16sH22x")  # 40 bytes: the size of struct ifreq on 64-bit


def _ioc_layout() -> tuple[int, int, int]:
    """(write bit, read bit, size bits) of the _IOC encoding on this architecture."""
    machine = platform.machine().lower()
    if machine.startswith(("ppc", "powerpc", "mips", "sparc", "alpha")):
        return 4, 2, 13
    return 1, 2, 14


def _ioc(direction: int, number: int, size: int) -> int:
    size_bits = _ioc_layout()[2]
    return (direction << (16 + size_bits)) | (size << 16) | (ord("T") << 8) | number


_WRITE, _READ = _ioc_layout()[:2]
_INT = struct.calcsize("i")
TUNSETIFF = _ioc(_WRITE, 202, _INT)
TUNSETPERSIST = _ioc(_WRITE, 203, _INT)
TUNSETOWNER = _ioc(_WRITE, 204, _INT)
TUNSETGROUP = _ioc(_WRITE, 206, _INT)


class TunError(Exception):
    """A tun operation failed (message is user-facing)."""


class NameTaken(TunError):
    """IFF_TUN_EXCL: a device with that name already exists."""


class DeviceBusy(TunError):
    """A process holds the (single-queue) device, so it cannot be attached to."""


def tun_flags(mode: str, multi_queue: bool, vnet_hdr: bool, packet_info: bool) -> int:
    flags = IFF_TAP if mode == "tap" else IFF_TUN
    if multi_queue:
        flags |= IFF_MULTI_QUEUE
    if vnet_hdr:
        flags |= IFF_VNET_HDR
    if not packet_info:
        flags |= IFF_NO_PI
    return flags


def _open_tun() -> int:
    try:
        return os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
            raise TunError("%s is not available (%s): load the tun module (modprobe tun)"
                           % (TUN_DEVICE, exc.strerror))
        raise TunError("cannot open %s: %s (creating tun/tap devices needs root or CAP_NET_ADMIN)"
                       % (TUN_DEVICE, exc.strerror))


def _attach(fd: int, name: str, flags: int) -> str:
    request = _IFREQ.pack(name.encode("utf-8", "surrogateescape"), flags)
    try:
        answer = fcntl.ioctl(fd, TUNSETIFF, request)
    except OSError as exc:
        if exc.errno == errno.EBUSY and flags & IFF_TUN_EXCL:
            raise NameTaken("a device named %r already exists" % name)
        if exc.errno == errno.EBUSY:
            raise DeviceBusy("device %r is held by a process" % name)
        if exc.errno == errno.EPERM:
            raise TunError("TUNSETIFF on %r was refused: creating or changing tun/tap devices needs "
                           "root or CAP_NET_ADMIN" % name)
        if exc.errno == errno.EINVAL:
            raise TunError("the kernel refused TUNSETIFF on %r: its existing kind (tun/tap, multi_queue) "
                           "differs from the one requested, or the name is taken by another kind of "
                           "device" % name)
        raise TunError("TUNSETIFF on %r failed: %s" % (name, exc.strerror))
    raw = _IFREQ.unpack(answer)[0]
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _as_c_int(value: int) -> int:
    """uid/gid as the C int fcntl.ioctl passes (it refuses values above 2**31-1; the kernel
    reads the argument back as an unsigned id)."""
    return ctypes.c_int(value & 0xFFFFFFFF).value


def _set_owner_group(fd: int, name: str, owner: int | None, group: int | None) -> None:
    try:
        if owner is not None:
            fcntl.ioctl(fd, TUNSETOWNER, _as_c_int(owner))
        if group is not None:
            fcntl.ioctl(fd, TUNSETGROUP, _as_c_int(group))
    except OSError as exc:
        raise TunError("setting owner/group of %r failed: %s" % (name, exc.strerror))


def create(name: str, flags: int, owner: int | None, group: int | None, configure=None) -> str:
    """Create a persistent device named exactly ``name``; return the name the kernel confirmed.

    Fails with NameTaken if the name exists. ``configure(name)``, when given, runs while
    the device is still bound to our descriptor. Persistence is set last: if anything
    before it fails, or the process is killed, closing the descriptor makes the kernel
    destroy the device, so no device survives half-made or without its mark.
    """
    fd = _open_tun()
    try:
        confirmed = _attach(fd, name, flags | IFF_TUN_EXCL)
        _set_owner_group(fd, confirmed, owner, group)
        if configure is not None:
            configure(confirmed)
        try:
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
        except OSError as exc:
            raise TunError("making %r persistent failed: %s" % (confirmed, exc.strerror))
        return confirmed
    finally:
        os.close(fd)


def set_owner_group(name: str, flags: int, owner: int | None, group: int | None) -> None:
    """Change owner/group of an existing persistent device by attaching to it briefly.

    ``flags`` must be the device's current flags: attaching rewrites vnet_hdr and
    packet-info, and a mismatched tun/tap or multi_queue flag is refused.
    """
    fd = _open_tun()
    try:
        _attach(fd, name, flags)
        _set_owner_group(fd, name, owner, group)
    finally:
        os.close(fd)
