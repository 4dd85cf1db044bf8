# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One rtnetlink link dump (RTM_GETLINK) with a plain socket, and link groups set and deleted.

Every run reads all links of the namespace once or twice. pyroute2 decodes each message
into generic objects, which costs about 0.8 ms per link (0.9 s for a thousand taps, on
every run, changed or not); reading only the attributes we use costs a few microseconds.
Requests that change links are _nl's; the link groups (for deleting many devices at once)
are set and deleted here as batches of them, many to a send().

The socket talks to the network namespace the calling thread is in when it is made.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _nl

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_DUMP_INTR = 0x10     # the link list changed while it was dumped: the dump may be inconsistent
IFLA_EXT_MASK = 29
RTEXT_FILTER_SKIP_STATS = 1 << 3   # the counters are most of each message, and unused here

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER, IFLA_TXQLEN = 1, 3, 4, 5, 10, 13
IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_GROUP, IFLA_CARRIER = 16, 18, 20, 27, 33
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
# include/uapi/linux/if_link.h, enum IFLA_TUN_*
TUN_ATTRS = {1: ("owner", "I"), 2: ("group", "I"), 3: ("type", "B"), 4: ("pi", "B"), 5: ("vnet_hdr", "B"),
             6: ("persist", "B"), 7: ("multi_queue", "B"), 8: ("num_queues", "I"), 9: ("num_disabled_queues", "I")}
# include/uapi/linux/if_link.h, enum IFLA_BR_*: only sent by kernels with CONFIG_BRIDGE_VLAN_FILTERING
IFLA_BR_VLAN_FILTERING = 7
# include/uapi/linux/if_link.h, enum IFLA_MACVLAN_* (macvtap uses the same attributes)
IFLA_MACVLAN_MODE = 1
MACVLAN_KINDS = ("macvlan", "macvtap")

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_RTATTR = struct.Struct("=HH")
_ATTR_TYPE_MASK = 0x3FFF   # without NLA_F_NESTED / NLA_F_NET_BYTEORDER


class NetlinkDumpError(OSError):
    """The kernel answered the dump with an error."""


def _attributes(data: bytes, offset: int, end: int):
    """(type, payload) of each rtattr in data[offset:end]."""
    while offset + 4 <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < 4:
            break
        yield kind & _ATTR_TYPE_MASK, data[offset + 4:offset + length]
        offset += (length + 3) & ~3


def _text(payload: bytes) -> str:
    return payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _number(payload: bytes, fmt: str) -> int:
    return struct.unpack_from("=" + fmt, payload)[0]


def _linkinfo(payload: bytes, link: dict) -> None:
    data = None
    for kind, value in _attributes(payload, 0, len(payload)):
        if kind == IFLA_INFO_KIND:
            link["kind"] = _text(value)
        elif kind == IFLA_INFO_DATA:
            data = value
    if link.get("kind") == "tun" and data is not None:
        tun = {}
        for kind, value in _attributes(data, 0, len(data)):
            known = TUN_ATTRS.get(kind)
            if known is not None and len(value) >= struct.calcsize(known[1]):
                tun[known[0]] = _number(value, known[1])
        link["tun"] = tun
    if link.get("kind") == "bridge" and data is not None:
        for kind, value in _attributes(data, 0, len(data)):
            if kind == IFLA_BR_VLAN_FILTERING and value:
                link["vlan_filtering"] = bool(value[0])
    if link.get("kind") in MACVLAN_KINDS:
        macvlan = {}
        for kind, value in _attributes(data or b"", 0, len(data or b"")):
            if kind == IFLA_MACVLAN_MODE and len(value) >= 4:
                macvlan["mode"] = _number(value, "I")
        link["macvlan"] = macvlan


def parse_link(data: bytes, offset: int, end: int) -> dict:
    """One RTM_NEWLINK message body (from its ifinfomsg) as a dict of what we use."""
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, offset)
    link = {"index": index, "flags": flags, "name": None, "mtu": None, "address": None, "master": None,
            "carrier": None, "alias": None, "kind": None, "tun": None, "link": None, "macvlan": None,
            "operstate": None, "group": None}
    for kind, value in _attributes(data, offset + _IFINFOMSG.size, end):
        if kind == IFLA_IFNAME:
            link["name"] = _text(value)
        elif kind == IFLA_MTU:
            link["mtu"] = _number(value, "I")
        elif kind == IFLA_ADDRESS:
            link["address"] = ":".join("%02x" % octet for octet in value)
        elif kind == IFLA_TXQLEN:
            link["txqlen"] = _number(value, "I")
        elif kind == IFLA_LINK:
            link["link"] = _number(value, "I")
        elif kind == IFLA_MASTER:
            link["master"] = _number(value, "I")
        elif kind == IFLA_CARRIER:
            link["carrier"] = _number(value, "B")
        elif kind == IFLA_IFALIAS:
            link["alias"] = _text(value)
        elif kind == IFLA_OPERSTATE:
            link["operstate"] = _number(value, "B")
        elif kind == IFLA_GROUP:
            link["group"] = _number(value, "I")
        elif kind == IFLA_LINKINFO:
            _linkinfo(value, link)
    return link


def _request(seq: int) -> bytes:
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    ext_mask = _RTATTR.pack(8, IFLA_EXT_MASK) + struct.pack("=I", RTEXT_FILTER_SKIP_STATS)
    length = _NLMSGHDR.size + len(body) + len(ext_mask)
    return _NLMSGHDR.pack(length, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body + ext_mask


def dump_links(attempts: int = 5) -> list[dict]:
    """Every link of the current network namespace (see parse_link for the keys)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        for seq in range(1, attempts + 1):
            links, interrupted = _dump_once(sock, seq)
            if not interrupted:
                return links
    raise NetlinkDumpError(errno.EAGAIN, "the link list kept changing during %d dumps" % attempts)


def _dump_once(sock, seq: int) -> tuple[list, bool]:
    links = []
    interrupted = False
    sock.sendall(_request(seq))
    while True:
        data = sock.recv(1 << 20)
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind, flags, msg_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                raise NetlinkDumpError(errno.EPROTO, "malformed netlink message in the link dump")
            end = offset + length
            if msg_seq == seq:
                interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
                if kind == NLMSG_DONE:
                    return links, interrupted
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, offset + _NLMSGHDR.size)[0]
                    if code:
                        raise NetlinkDumpError(code, os.strerror(code))
                elif kind == RTM_NEWLINK:
                    links.append(parse_link(data, offset + _NLMSGHDR.size, end))
            offset = (end + 3) & ~3


# -- batches of requests (on _nl's socket) ------------------------------------------------------
def _send(kind: int, settings_of: list) -> list:
    sock = _nl.Rtnl()
    try:
        return sock.links(kind, settings_of)
    finally:
        sock.close()


def set_groups(indexes_groups: list) -> list:
    """Put each link (ifindex, group) into that link group; the errno of each (0: done)."""
    return _send(RTM_NEWLINK, [(index, {"group": group}) for index, group in indexes_groups])


def delete_group(group: int) -> int:
    """Delete every link of ``group`` in one request (the kernel unregisters them together).

    Returns the errno (0: done). The kernel refuses group 0, the default group of every link.
    """
    return _send(RTM_DELLINK, [(0, {"group": group})])[0]
