# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rtnetlink link requests on a socket of our own: pyroute2's message classes, light, and batches.

pyroute2's package ``__init__`` imports all of it (NDB, IPDB, asyncio, conntrack...): about
13 MB and 150 ms before the first request. The message classes alone are 1 MB and 15 ms, so
``messages()`` imports just those, with the package ``__init__`` left out (see _light_package).
pyroute2 encodes the single requests (one device changed or deleted); they go out on our own
AF_NETLINK socket (``Rtnl``), not through IPRoute.

Many devices at once (a batch being created) are packed here by hand, byte for byte what
pyroute2's ifinfmsg encodes (the unit tests compare both): pyroute2 needs about 100 us to
encode one request of five attributes and 40 us for one that only brings a link up, more than
the kernel's own cost of creating a tap (60-140 us), and the batch must stay near that floor.
All requests of a batch go in as few sends as the socket's buffers allow, and each one's
answer is mapped back to it by its sequence number.

Sockets talk to the namespace the calling thread is in when they are made.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import socket
import struct
import sys
import types

MIN_PYROUTE2 = "0.7.2"

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10          # an error answer leaves out the request it answers: small answers
SO_RCVBUFFORCE = 33
RTM_NEWLINK, RTM_DELLINK = 16, 17
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
IFF_UP = 0x1

# include/uapi/linux/if_link.h
IFLA_ADDRESS, IFLA_MTU, IFLA_MASTER, IFLA_TXQLEN, IFLA_IFALIAS, IFLA_GROUP = 1, 4, 10, 13, 20, 27

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_RTATTR = struct.Struct("=HH")
_U32_ATTR = struct.Struct("=HHI")
_ERRNO = struct.Struct("=i")

# How many requests go in one send: their answers must fit the receive buffer (set to
# RCVBUF below; an answer takes about 1 KiB of it, whatever its size), or the kernel drops them.
CHUNK = 1024
RCVBUF = 4 << 20
SEND_BYTES = 64 << 10   # well under the default send buffer (212992 bytes)


class NetlinkUnavailable(Exception):
    """pyroute2 is missing or too old (message is user-facing)."""


# -- pyroute2's message classes, without its package __init__ --------------------------------
def _light_package() -> None:
    """Put a stand-in for the package 'pyroute2' into sys.modules, unless pyroute2 is imported.

    It has the real package's __path__ and spec, so ``pyroute2.netlink...`` submodules import
    from the real files; the real ``__init__`` runs only if someone asks the package itself
    for a name (``from pyroute2 import IPRoute``), then in the same module object, so code
    that wants all of pyroute2 in the same process still gets it.
    """
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("No module named 'pyroute2'")
    package = types.ModuleType("pyroute2")
    package.__spec__ = spec
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    package.__package__ = "pyroute2"
    package.__loader__ = spec.loader

    def full_package(name):
        # PEP 562: called only for names the stand-in lacks. A submodule ("from pyroute2 import
        # config", as pyroute2's own modules do) is imported; any other name runs the real __init__
        # once, in this module object.
        if name.startswith("__") or package.__dict__.get("_ntt_full"):
            raise AttributeError(name)
        if importlib.util.find_spec("pyroute2." + name) is not None:
            return importlib.import_module("pyroute2." + name)
        package.__dict__["_ntt_full"] = True
        del package.__dict__["__getattr__"]
        spec.loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = full_package
    sys.modules["pyroute2"] = package


_MESSAGES: list = []


def messages():
    """(ifinfmsg, NetlinkError) from pyroute2, imported light; NetlinkUnavailable if it cannot be."""
    if not _MESSAGES:
        try:
            _light_package()
            ifinfmsg = importlib.import_module("pyroute2.netlink.rtnl.ifinfmsg").ifinfmsg
            netlink_error = importlib.import_module("pyroute2.netlink.exceptions").NetlinkError
        except ImportError as exc:
            raise NetlinkUnavailable("pyroute2 cannot be imported (%s); the module needs pyroute2 >= %s"
                                     % (exc, MIN_PYROUTE2))
        _MESSAGES.append((ifinfmsg, netlink_error))
    return _MESSAGES[0]


def _pyroute2_attrs(settings: dict) -> list:
    attrs = []
    if settings.get("mtu") is not None:
        attrs.append(("IFLA_MTU", settings["mtu"]))
    if settings.get("address") is not None:
        attrs.append(("IFLA_ADDRESS", settings["address"]))
    if settings.get("master") is not None:
        attrs.append(("IFLA_MASTER", settings["master"]))
    if settings.get("txqlen") is not None:
        attrs.append(("IFLA_TXQLEN", settings["txqlen"]))
    if settings.get("alias") is not None:
        attrs.append(("IFLA_IFALIAS", settings["alias"]))
    if settings.get("group") is not None:
        attrs.append(("IFLA_GROUP", settings["group"]))
    return attrs


def encode(kind: int, seq: int, index: int, settings: dict) -> bytes:
    """One link request encoded by pyroute2's ifinfmsg (see ``pack`` for ``settings``)."""
    ifinfmsg = messages()[0]
    msg = ifinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = index
    up = settings.get("up")
    if up is not None:
        msg["flags"] = IFF_UP if up else 0
        msg["change"] = IFF_UP
    msg["attrs"] = _pyroute2_attrs(settings)
    msg["header"]["type"] = kind
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


# -- the same requests packed by hand, for batches ---------------------------------------------
def _mac_bytes(address: str) -> bytes:
    return bytes(int(octet, 16) for octet in address.split(":"))


def _string_attr(kind: int, text: str) -> bytes:
    payload = text.encode("utf-8") + b"\0"
    return _RTATTR.pack(4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def pack(kind: int, seq: int, index: int, settings: dict) -> bytes:
    """One link request: RTM_NEWLINK/RTM_DELLINK of link ``index`` with ``settings`` (keys mtu,
    address, master, txqlen, alias, group: None or missing leaves it alone; up: True/False sets
    IFF_UP, None leaves it), acknowledged. The same bytes as ``encode``."""
    attrs = []
    value = settings.get("mtu")
    if value is not None:
        attrs.append(_U32_ATTR.pack(8, IFLA_MTU, value))
    value = settings.get("address")
    if value is not None:
        mac = _mac_bytes(value)
        attrs.append(_RTATTR.pack(4 + len(mac), IFLA_ADDRESS) + mac + b"\0" * (-len(mac) % 4))
    value = settings.get("master")
    if value is not None:
        attrs.append(_U32_ATTR.pack(8, IFLA_MASTER, value))
    value = settings.get("txqlen")
    if value is not None:
        attrs.append(_U32_ATTR.pack(8, IFLA_TXQLEN, value))
    value = settings.get("alias")
    if value is not None:
        attrs.append(_string_attr(IFLA_IFALIAS, value))
    value = settings.get("group")
    if value is not None:
        attrs.append(_U32_ATTR.pack(8, IFLA_GROUP, value))
    up = settings.get("up")
    flags, change = (0, 0) if up is None else ((IFF_UP if up else 0), IFF_UP)
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change) + b"".join(attrs)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def read_answers(data: bytes, pending: set, answers: dict) -> None:
    """Take the error/ACK answers in ``data`` whose sequence numbers are ``pending`` into
    ``answers`` ({seq: errno, 0 for done}) and out of ``pending``."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            raise OSError(errno.EPROTO, "malformed netlink message in an answer")
        if kind == NLMSG_ERROR and seq in pending:
            answers[seq] = -_ERRNO.unpack_from(data, offset + _NLMSGHDR.size)[0]
            pending.discard(seq)
        offset = (offset + length + 3) & ~3


def route_socket() -> socket.socket:
    """A bound rtnetlink socket in the calling thread's namespace, with a receive buffer of RCVBUF
    where the kernel allows it (SO_RCVBUFFORCE needs CAP_NET_ADMIN, which the module has): every
    answer to one send must fit in it, or the kernel drops them (ENOBUFS). ``receive_buffer``
    says what it got."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    try:
        sock.bind((0, 0))
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        except OSError:
            pass  # older kernels: answers carry the request too, and fewer fit (CHUNK allows for it)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    except BaseException:
        sock.close()
        raise
    return sock


def receive_buffer(sock: socket.socket) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


class Rtnl:
    """An rtnetlink socket in the calling thread's namespace, for acknowledged requests."""

    def __init__(self):
        self._sock = route_socket()
        self._seq = 0
        self._chunk = CHUNK if receive_buffer(self._sock) >= RCVBUF else 128

    def close(self) -> None:
        self._sock.close()

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def request(self, message: bytes, seq: int) -> int:
        """Send one request; its errno (0: done)."""
        return self.requests([(seq, message)])[0]

    def requests(self, messages: list) -> list:
        """Send (seq, bytes) requests, many to a send, in order; the errno of each (0: done).

        The kernel carries out each on its own: one refused does not stop the others.
        """
        results = []
        for chunk in self._chunks(messages):
            pending = {seq for seq, _message in chunk}
            answers: dict = {}
            self._sock.sendall(b"".join(message for _seq, message in chunk))
            while pending:
                read_answers(self._sock.recv(1 << 20), pending, answers)
            results.extend(answers[seq] for seq, _message in chunk)
        return results

    def _chunks(self, messages: list):
        """Runs of ``messages`` of at most self._chunk requests and SEND_BYTES bytes (a send larger
        than the socket's send buffer is refused whole)."""
        chunk, size = [], 0
        for seq, message in messages:
            if chunk and (len(chunk) >= self._chunk or size + len(message) > SEND_BYTES):
                yield chunk
                chunk, size = [], 0
            chunk.append((seq, message))
            size += len(message)
        if chunk:
            yield chunk

    def links(self, kind: int, settings_of: list) -> list:
        """Send one hand-packed request per (ifindex, settings) pair; the errno of each."""
        requests = []
        for index, settings in settings_of:
            seq = self.next_seq()
            requests.append((seq, pack(kind, seq, index, settings)))
        return self.requests(requests)
