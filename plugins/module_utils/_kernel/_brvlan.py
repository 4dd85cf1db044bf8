# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Linux bridge VLANs over raw rtnetlink: read a namespace's port VLANs, change one port's.

The same messages as ``bridge vlan`` and ``ip link set BR type bridge vlan_filtering 1``
(AF_BRIDGE link requests with IFLA_AF_SPEC / IFLA_BRIDGE_VLAN_INFO). Written raw rather than
through pyroute2 because its vlan_filter arguments differ between the releases the module
supports, and reading needs only the few attributes decoded here.

Like every socket, these talk to the namespace the calling thread is in when they are called.
A kernel without CONFIG_BRIDGE_VLAN_FILTERING answers changes with EOPNOTSUPP.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._rtnl import (
    _IFINFOMSG, _NLMSGHDR, _RTATTR, IFLA_EXT_MASK, IFLA_INFO_DATA, IFLA_INFO_KIND, IFLA_LINKINFO,
    NETLINK_ROUTE, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, RTM_GETLINK, RTM_NEWLINK,
    IFLA_BR_VLAN_FILTERING, _attributes)
from ansible_collections.netdev.tuntap.plugins.module_utils._ports import BRIDGE_VLAN_INFO_PVID, BRIDGE_VLAN_INFO_UNTAGGED

AF_BRIDGE = 7
RTM_DELLINK, RTM_SETLINK = 17, 19
NLM_F_ACK = 0x4
IFLA_AF_SPEC = 26
IFLA_BRIDGE_VLAN_INFO = 2
RTEXT_FILTER_BRVLAN = 1 << 1      # every VLAN one by one (not compressed into ranges)
# include/uapi/linux/if_bridge.h
BRIDGE_VLAN_INFO_RANGE_BEGIN = 1 << 3
BRIDGE_VLAN_INFO_RANGE_END = 1 << 4
UNTAGGED_PVID = BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED
_VLAN_INFO = struct.Struct("=HH")


class BridgeVlanError(OSError):
    """The kernel refused a bridge VLAN request (errno as the kernel gave it)."""


def _attr(kind: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _message(kind: int, flags: int, seq: int, family: int, index: int, attrs: bytes) -> bytes:
    body = _IFINFOMSG.pack(family, 0, index, 0, 0) + attrs
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def _socket():
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    sock.bind((0, 0))
    return sock


def _request(message: bytes, seq: int) -> None:
    """Send one request and wait for its acknowledgement; raise BridgeVlanError on a refusal."""
    with _socket() as sock:
        sock.sendall(message)
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _flags, msg_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    raise BridgeVlanError(errno.EPROTO, "malformed netlink answer")
                if msg_seq == seq and kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, offset + _NLMSGHDR.size)[0]
                    if code:
                        raise BridgeVlanError(code, os.strerror(code))
                    return
                offset = (offset + length + 3) & ~3


def dump_port_vlans() -> dict:
    """{ifindex: {vid: flags}} for every bridge port (and bridge) of the current namespace."""
    ext_mask = _attr(IFLA_EXT_MASK, struct.pack("=I", RTEXT_FILTER_BRVLAN))
    found: dict = {}
    with _socket() as sock:
        sock.sendall(_message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 1, AF_BRIDGE, 0, ext_mask))
        while True:
            data = sock.recv(1 << 20)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    raise BridgeVlanError(errno.EPROTO, "malformed netlink message in the bridge VLAN dump")
                end = offset + length
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, offset + _NLMSGHDR.size)[0]
                    if code:
                        raise BridgeVlanError(code, os.strerror(code))
                elif kind == RTM_NEWLINK:
                    body = offset + _NLMSGHDR.size
                    index = _IFINFOMSG.unpack_from(data, body)[2]
                    for attr, value in _attributes(data, body + _IFINFOMSG.size, end):
                        if attr != IFLA_AF_SPEC:
                            continue
                        vlans = found.setdefault(index, {})
                        for inner, info in _attributes(value, 0, len(value)):
                            if inner == IFLA_BRIDGE_VLAN_INFO and len(info) >= _VLAN_INFO.size:
                                flags, vid = _VLAN_INFO.unpack_from(info)
                                vlans[vid] = flags
                offset = (end + 3) & ~3


def _vlan_infos(ranges, flags: int) -> bytes:
    out = b""
    for low, high in ranges:
        if low == high:
            out += _attr(IFLA_BRIDGE_VLAN_INFO, _VLAN_INFO.pack(flags, low))
        else:
            out += _attr(IFLA_BRIDGE_VLAN_INFO, _VLAN_INFO.pack(flags | BRIDGE_VLAN_INFO_RANGE_BEGIN, low))
            out += _attr(IFLA_BRIDGE_VLAN_INFO, _VLAN_INFO.pack(flags | BRIDGE_VLAN_INFO_RANGE_END, high))
    return out


def add_vlans(index: int, ranges, flags: int = 0) -> None:
    """Make port ``index`` a member of the VLANs of ``ranges`` ((low, high) pairs) with ``flags``
    (UNTAGGED_PVID for the untagged PVID, 0 for tagged); an existing membership takes the flags."""
    if ranges:
        _request(_message(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 1, AF_BRIDGE, index,
                          _attr(IFLA_AF_SPEC, _vlan_infos(ranges, flags))), 1)


def remove_vlans(index: int, ranges) -> None:
    if ranges:
        _request(_message(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, 1, AF_BRIDGE, index,
                          _attr(IFLA_AF_SPEC, _vlan_infos(ranges, 0))), 1)


def set_vlan_filtering(index: int, enabled: bool) -> None:
    """``ip link set BRIDGE type bridge vlan_filtering 0|1``."""
    data = _attr(IFLA_BR_VLAN_FILTERING, struct.pack("=B", int(enabled)))
    linkinfo = _attr(IFLA_INFO_KIND, b"bridge\0") + _attr(IFLA_INFO_DATA, data)
    _request(_message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, 1, socket.AF_UNSPEC, index,
                      _attr(IFLA_LINKINFO, linkinfo)), 1)
