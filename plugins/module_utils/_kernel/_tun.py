# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tun driver's ioctls on /dev/net/tun: create a device (held, then persistent), set owner/group.

Done by hand rather than through pyroute2 because TUNSETIFF copies the name the
kernel settled on back into the ifreq, and that is the name we must record.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import resource
import struct
from typing import NamedTuple

TUN_DEVICE = "/dev/net/tun"

IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_MULTI_QUEUE = 0x0100
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_TUN_EXCL = 0x8000

# struct ifreq: the name (IFNAMSIZ 16), then a union whose first member, ifr_flags, is a short.
# The union is 24 bytes on 64-bit (struct ifmap holds two unsigned longs), so ifreq is 40; on
# 32-bit (and for 32-bit processes on a 64-bit kernel, through its compat path) it is 32. The
# kernel copies exactly sizeof(struct ifreq) in and out, at the start of the buffer, so 40 bytes
# are right on 64-bit and harmless on 32-bit: the last 8 bytes are zeros that it never reads or
# writes, and the name and flags sit at the same offsets. "H" is native byte order, as the kernel
# reads it.
_IFREQ = struct.Struct("16sH22x")


class IocLayout(NamedTuple):
    """How an architecture encodes ioctl numbers: the _IOC_NONE/_IOC_READ/_IOC_WRITE values and
    the widths of the size and direction fields (number and type are 8 bits everywhere)."""

    none: int
    read: int
    write: int
    size_bits: int
    dir_bits: int


# From the kernel's UAPI headers:
# - include/uapi/asm-generic/ioctl.h: _IOC_SIZEBITS 14, _IOC_DIRBITS 2, _IOC_NONE 0U,
#   _IOC_WRITE 1U, _IOC_READ 2U. Used by every architecture without an asm/ioctl.h of its own
#   (x86, arm, arm64, riscv, s390, loongarch, m68k, sh, xtensa, ...).
# - arch/{alpha,mips,powerpc,sparc}/include/uapi/asm/ioctl.h: _IOC_SIZEBITS 13, _IOC_DIRBITS 3,
#   _IOC_NONE 1U, _IOC_READ 2U, _IOC_WRITE 4U. (sparc lets the size run into the NONE bit, "Actually
#   14", which matters only for sizes of 8 KiB and more.)
# - arch/parisc/include/uapi/asm/ioctl.h: the generic widths, but _IOC_WRITE 2U and _IOC_READ 1U.
IOC_LAYOUTS = {
    "generic": IocLayout(none=0, read=2, write=1, size_bits=14, dir_bits=2),
    "alpha": IocLayout(none=1, read=2, write=4, size_bits=13, dir_bits=3),
    "mips": IocLayout(none=1, read=2, write=4, size_bits=13, dir_bits=3),
    "powerpc": IocLayout(none=1, read=2, write=4, size_bits=13, dir_bits=3),
    "sparc": IocLayout(none=1, read=2, write=4, size_bits=13, dir_bits=3),
    "parisc": IocLayout(none=0, read=1, write=2, size_bits=14, dir_bits=2),
}

# platform.machine() (uname -m) prefixes of the architectures with a layout of their own:
# parisc/parisc64, alpha, mips/mips64 (either byte order), ppc/ppc64/ppc64le/ppcle, sparc/sparc64.
# Anything else (x86_64, i686, aarch64, armv7l, s390x, riscv64, loongarch64, ...) is generic:
# architectures added to Linux since these use asm-generic.
_MACHINE_PREFIXES = (
    ("parisc", "parisc"),
    ("alpha", "alpha"),
    ("mips", "mips"),
    ("ppc", "powerpc"),
    ("powerpc", "powerpc"),
    ("sparc", "sparc"),
)

# include/uapi/linux/if_tun.h: _IOW('T', nr, int) or _IOR('T', nr, unsigned int).
_TUN_IOCTLS = (
    ("TUNSETIFF", "write", 202),
    ("TUNSETPERSIST", "write", 203),
    ("TUNSETOWNER", "write", 204),
    ("TUNSETGROUP", "write", 206),
    ("TUNGETFEATURES", "read", 207),
    ("TUNGETIFF", "read", 210),
    ("TUNSETQUEUE", "write", 217),
)
_ARG_SIZE = 4  # sizeof(int) == sizeof(unsigned int) on every Linux ABI, 32- and 64-bit


def arch_family(machine: str) -> str:
    """The key in IOC_LAYOUTS for a platform.machine() string."""
    machine = machine.strip().lower()
    for prefix, family in _MACHINE_PREFIXES:
        if machine.startswith(prefix):
            return family
    return "generic"


def ioc(layout: IocLayout, direction: int, type_: int, number: int, size: int) -> int:
    """The kernel's _IOC(dir, type, nr, size) for ``layout``."""
    if not 0 <= size < 1 << layout.size_bits or not 0 <= direction < 1 << layout.dir_bits:
        raise ValueError("size %d or direction %d does not fit the layout %r" % (size, direction, layout))
    return (direction << (16 + layout.size_bits)) | (size << 16) | (type_ << 8) | number


def tun_ioctls(machine: str) -> dict[str, int]:
    """The tun driver's ioctl numbers on the architecture ``machine`` (a platform.machine() string)."""
    layout = IOC_LAYOUTS[arch_family(machine)]
    return {name: ioc(layout, getattr(layout, direction), ord("T"), number, _ARG_SIZE)
            for name, direction, number in _TUN_IOCTLS}


_HERE = tun_ioctls(platform.machine())
TUNSETIFF = _HERE["TUNSETIFF"]
TUNSETPERSIST = _HERE["TUNSETPERSIST"]
TUNSETOWNER = _HERE["TUNSETOWNER"]
TUNSETGROUP = _HERE["TUNSETGROUP"]
TUNGETFEATURES = _HERE["TUNGETFEATURES"]
TUNGETIFF = _HERE["TUNGETIFF"]
TUNSETQUEUE = _HERE["TUNSETQUEUE"]


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


def open_new(name: str, flags: int, owner: int | None, group: int | None) -> tuple[int, str]:
    """Create a device named exactly ``name``, bound to a new descriptor: (descriptor, the name the
    kernel confirmed). Fails with NameTaken if the name exists.

    The device lives only as long as the descriptor until ``persist``: if anything fails before,
    or the process is killed, closing the descriptor makes the kernel destroy it, so no device
    survives half-made or without its mark. Close it with ``close`` (also after ``persist``).
    """
    fd = _open_tun()
    try:
        confirmed = _attach(fd, name, flags | IFF_TUN_EXCL)
        _set_owner_group(fd, confirmed, owner, group)
    except BaseException:
        os.close(fd)
        raise
    return fd, confirmed


def persist(fd: int, name: str) -> None:
    """Make the device bound to ``fd`` outlive it (TUNSETPERSIST)."""
    try:
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    except OSError as exc:
        raise TunError("making %r persistent failed: %s" % (name, exc.strerror))


def close(fd: int) -> None:
    """Let go of a device: one not yet persistent is destroyed by the kernel."""
    os.close(fd)


def descriptors_available(margin: int = 64) -> int:
    """How many devices may be held open at once: the soft RLIMIT_NOFILE, raised to the hard one
    (a batch holds one descriptor per device until it is configured), less ``margin`` for the
    descriptors the process uses otherwise."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (OSError, ValueError):
            pass  # keep the soft limit
    return max(1, soft - margin)


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
