# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Creating a macvtap or macvlan device on a lower device: one RTM_NEWLINK request.

Sent by hand, like the link dump in _rtnl: the request is one message of five attributes,
the exact name the allocator chose goes in with NLM_F_EXCL (so an existing name fails with
EEXIST instead of being changed), and the kernel's errno comes back as it is, whatever
pyroute2 version is installed (0.7 and 0.9 name the macvlan attributes differently).
The alias (our mark) cannot ride along: the kernel ignores IFLA_IFALIAS when it creates a
link, so the caller sets it next, with the device still down, and deletes the device if
that fails.

The socket talks to the network namespace the calling thread is in.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from ansible_collections.netdev.tuntap.plugins.module_utils._device import MACVLAN_MODES
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._rtnl import (
    IFLA_ADDRESS, IFLA_IFNAME, IFLA_INFO_DATA, IFLA_INFO_KIND, IFLA_LINK, IFLA_LINKINFO, IFLA_MACVLAN_MODE,
    IFLA_MTU, NETLINK_ROUTE, NLMSG_ERROR, RTM_NEWLINK)

NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLA_F_NESTED = 0x8000

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")


class MacvError(Exception):
    """The kernel refused to create the device (message is user-facing)."""


class NameTaken(MacvError):
    """NLM_F_EXCL: a device with that name already exists."""


def _attr(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def new_link_request(seq: int, name: str, kind: str, link: int, mode: str, mtu: int | None,
                     mac_address: str | None) -> bytes:
    """The RTM_NEWLINK message that creates ``name`` (exactly that name, never a template)."""
    info = _attr(IFLA_INFO_KIND, kind.encode("ascii"))
    info += struct.pack("=HH", 4 + 8, IFLA_INFO_DATA | NLA_F_NESTED) + _attr(
        IFLA_MACVLAN_MODE, struct.pack("=I", MACVLAN_MODES[mode]))
    attrs = _attr(IFLA_IFNAME, name.encode("utf-8", "surrogateescape") + b"\0")
    attrs += _attr(IFLA_LINK, struct.pack("=I", link))
    if mtu is not None:
        attrs += _attr(IFLA_MTU, struct.pack("=I", mtu))
    if mac_address is not None:
        attrs += _attr(IFLA_ADDRESS, bytes(int(octet, 16) for octet in mac_address.split(":")))
    attrs += struct.pack("=HH", 4 + len(info), IFLA_LINKINFO | NLA_F_NESTED) + info
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attrs
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_NEWLINK, flags, seq, 0) + body


def _why(code: int, name: str, kind: str, mode: str) -> str:
    if code == errno.EPERM:
        return "creating %s devices needs root or CAP_NET_ADMIN" % kind
    if code == errno.EOPNOTSUPP or code == errno.ENOENT:
        return "this kernel has no %s driver (modprobe %s)" % (kind, kind)
    if code == errno.EBUSY and mode == "passthru":
        return "mode passthru needs the lower device to itself, and it already has a macvtap or macvlan"
    if code == errno.EINVAL and mode == "passthru":
        return "the lower device already carries a macvtap or macvlan in mode passthru, or cannot take one"
    if code == errno.EINVAL:
        return "the kernel refused the settings (mtu above the lower device's, mode, or lower device)"
    return os.strerror(code)


def create(name: str, kind: str, link: int, mode: str, mtu: int | None = None,
           mac_address: str | None = None) -> None:
    """Create macvtap/macvlan ``name`` on the lower device with ifindex ``link``; it starts down.

    Raises NameTaken when the name exists, MacvError for any other refusal.
    """
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.sendall(new_link_request(1, name, kind, link, mode, mtu, mac_address))
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, msg_type, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    raise MacvError("malformed netlink answer while creating %r" % name)
                if seq == 1 and msg_type == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, offset + _NLMSGHDR.size)[0]
                    if code == 0:
                        return
                    if code == errno.EEXIST:
                        raise NameTaken("a device named %r already exists" % name)
                    raise MacvError("creating %s %r failed: %s" % (kind, name, _why(code, name, kind, mode)))
                offset = (offset + length + 3) & ~3
