# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Links looked up one by one, by name or by ifindex: many RTM_GETLINK requests in one send().

A dump reads every link of the namespace (seconds at 30 000 links); a lookup costs the
kernel one hash look-up, however many links there are. Each request carries its own
sequence number; the kernel answers each with the link (RTM_NEWLINK) or an error (ENODEV:
no such link), and answers are matched to requests by that number. The answers are
decoded by _rtnl.parse_link, as the dump's are.

The socket talks to the network namespace the calling thread is in when it is made.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._nl import receive_buffer, route_socket
# The message layouts and constants are _rtnl's (the dump decodes the same answers).
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._rtnl import (
    _IFINFOMSG, _NLMSGHDR, _RTATTR, IFLA_EXT_MASK, IFLA_IFNAME, NLM_F_REQUEST, NLMSG_ERROR, RTEXT_FILTER_SKIP_STATS,
    RTM_GETLINK, RTM_NEWLINK, parse_link)

_EXT_MASK = _RTATTR.pack(8, IFLA_EXT_MASK) + struct.pack("=I", RTEXT_FILTER_SKIP_STATS)

# Requests per send(): every answer of one send() must fit in the socket's receive buffer (the
# kernel drops what does not: ENOBUFS). An answer is a link message of 1-3 KB (a bridge port's
# carries its port attributes), but what it takes of the buffer is its socket buffer's true size:
# up to ANSWER_ROOM. With the 4 MiB buffer _nl.route_socket asks for, CHUNK requests go in one
# send; with the kernel's default (about 208 KiB) fewer.
CHUNK = 64
ANSWER_ROOM = 16 << 10


class ProbeError(OSError):
    """The kernel answered a lookup with an error other than "no such link"."""


def _name_attr(name: str) -> bytes:
    raw = name.encode("utf-8", "surrogateescape") + b"\0"
    attr = _RTATTR.pack(_RTATTR.size + len(raw), IFLA_IFNAME) + raw
    return attr + b"\0" * (-len(attr) % 4)


def _request(seq: int, key) -> bytes:
    """RTM_GETLINK for a name (str) or an ifindex (int)."""
    index, attrs = (key, b"") if isinstance(key, int) else (0, _name_attr(key))
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0) + attrs + _EXT_MASK
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETLINK, NLM_F_REQUEST, seq, 0) + body


def _answers(sock, pending: dict, found: dict) -> None:
    """Read until every request of ``pending`` (seq -> key) is answered; links into ``found``."""
    while pending:
        data = sock.recv(1 << 20)
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                raise ProbeError(errno.EPROTO, "malformed netlink message in a link lookup")
            key = pending.get(seq)
            if key is not None:
                if kind == RTM_NEWLINK:
                    found[key] = parse_link(data, offset + _NLMSGHDR.size, offset + length)
                    del pending[seq]
                elif kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, offset + _NLMSGHDR.size)[0]
                    if code not in (0, errno.ENODEV):
                        raise ProbeError(code, "looking up link %r: %s" % (key, os.strerror(code)))
                    found[key] = None
                    del pending[seq]
            offset = (offset + length + 3) & ~3


def look_up(keys) -> dict:
    """{key: raw link (see _rtnl.parse_link) or None (no such link)} for names and ifindexes.

    A name is answered by the link whose name or alternative name it is: the caller compares
    the answer's name with what it asked for.
    """
    keys = list(dict.fromkeys(keys))
    found: dict = {}
    if not keys:
        return found
    with route_socket() as sock:
        chunk = max(1, min(CHUNK, receive_buffer(sock) // ANSWER_ROOM))
        for start in range(0, len(keys), chunk):
            pending = {start + i + 1: key for i, key in enumerate(keys[start:start + chunk])}
            sock.sendall(b"".join(_request(seq, key) for seq, key in pending.items()))
            _answers(sock, pending, found)
    return found
