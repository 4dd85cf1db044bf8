# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decoding RTM_NEWLINK messages built byte by byte as the kernel lays them out."""

from __future__ import annotations

import struct

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _rtnl
from ansible_collections.netdev.tuntap.plugins.module_utils._device import link_info


def attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    """One rtattr, padded to 4 bytes (NLA_F_NESTED set on nested ones, as the kernel does)."""
    header = struct.pack("=HH", 4 + len(payload), kind | (0x8000 if nested else 0))
    return header + payload + b"\0" * (-len(payload) % 4)


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def u8(value: int) -> bytes:
    return struct.pack("=B", value)


def ifinfo(index: int, flags: int) -> bytes:
    return struct.pack("=BxHiII", 0, 1, index, flags, 0)


def tun_link(index=7, name=b"vmtap3\0", owner=None, multi_queue=0, queues=None, disabled=None) -> bytes:
    tun = attr(3, u8(2)) + attr(4, u8(0)) + attr(5, u8(1)) + attr(6, u8(1)) + attr(7, u8(multi_queue))
    if owner is not None:
        tun += attr(1, u32(owner))
    if queues is not None:
        tun += attr(8, u32(queues)) + attr(9, u32(disabled or 0))
    linkinfo = attr(1, b"tun\0") + attr(2, tun, nested=True)
    return (ifinfo(index, 0x1003) + attr(3, name) + attr(4, u32(1500))
            + attr(1, bytes([0xFE, 0x54, 0, 0x12, 0x34, 0x56])) + attr(10, u32(42))
            + attr(33, u8(0)) + attr(20, b'netdev.tuntap {"lease":"k","template":"vmtap%d"}\0')
            + attr(16, u8(2)) + attr(27, u32(5))
            + attr(18, linkinfo, nested=True))


def test_parse_link_reads_what_the_module_uses():
    body = tun_link(owner=107)
    link = _rtnl.parse_link(body, 0, len(body))
    assert link == {
        "index": 7, "flags": 0x1003, "name": "vmtap3", "mtu": 1500, "address": "fe:54:00:12:34:56",
        "master": 42, "carrier": 0, "alias": 'netdev.tuntap {"lease":"k","template":"vmtap%d"}',
        "kind": "tun", "tun": {"type": 2, "pi": 0, "vnet_hdr": 1, "persist": 1, "multi_queue": 0, "owner": 107},
        "link": None, "macvlan": None, "operstate": 2, "group": 5}
    info = link_info(link)
    assert (info.operstate, info.link_group) == ("down", 5)
    assert (info.name, info.index, info.up, info.carrier, info.master) == ("vmtap3", 7, True, False, 42)
    assert info.mark == {"lease": "k", "template": "vmtap%d"}
    assert (info.tun.mode, info.tun.owner, info.tun.group, info.tun.vnet_hdr, info.tun.packet_info) == \
        ("tap", 107, None, True, False)


@pytest.mark.parametrize("kind, mode_number, mode", [
    (b"macvtap", 4, "bridge"), (b"macvlan", 1, "private"), (b"macvtap", 2, "vepa"), (b"macvtap", 64, None)])
def test_parse_link_reads_a_macvlan_kind_its_mode_and_lower_device(kind, mode_number, mode):
    linkinfo = attr(1, kind + b"\0") + attr(2, attr(1, u32(mode_number)), nested=True)
    body = (ifinfo(9, 0x1002) + attr(3, b"mvtap4\0") + attr(4, u32(1500)) + attr(5, u32(3))
            + attr(18, linkinfo, nested=True))
    link = _rtnl.parse_link(body, 0, len(body))
    assert (link["kind"], link["link"], link["macvlan"], link["tun"]) == (kind.decode(), 3, {"mode": mode_number}, None)
    info = link_info(link)
    assert info.managed_kind == kind.decode() and info.tun is None
    assert (info.macvlan.mode, info.macvlan.link) == (mode, 3)
    assert not info.in_use  # a macvtap's holders are found by World.holders, not on the link


def test_a_veth_has_a_link_but_is_not_a_managed_kind():
    body = ifinfo(3, 0x1003) + attr(3, b"v0\0") + attr(5, u32(2)) + attr(18, attr(1, b"veth\0"), nested=True)
    info = link_info(_rtnl.parse_link(body, 0, len(body)))
    assert (info.kind, info.macvlan, info.managed_kind) == ("veth", None, None)


@pytest.mark.parametrize("queues, disabled, in_use", [(0, 0, False), (1, 0, True), (0, 1, True), (2, 1, True)])
def test_multi_queue_use_counts_detached_queues(queues, disabled, in_use):
    body = tun_link(multi_queue=1, queues=queues, disabled=disabled)
    info = link_info(_rtnl.parse_link(body, 0, len(body)))
    assert info.tun.queues == queues + disabled
    assert info.in_use is in_use


def test_a_link_without_linkinfo_or_address():
    body = ifinfo(1, 0x9) + attr(3, b"lo\0") + attr(4, u32(65536))
    info = link_info(_rtnl.parse_link(body, 0, len(body)))
    assert (info.name, info.kind, info.tun, info.mac_address, info.mark, info.up) == \
        ("lo", None, None, None, None, True)


def test_unknown_and_truncated_attributes_are_skipped():
    body = ifinfo(3, 0) + attr(3, b"t0\0") + attr(250, b"future") + struct.pack("=HH", 2, 4)
    link = _rtnl.parse_link(body, 0, len(body))
    assert link["name"] == "t0" and link["mtu"] is None


def test_request_asks_for_a_dump_without_statistics():
    request = _rtnl._request(5)
    length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", request)
    assert (length, kind, seq) == (len(request), _rtnl.RTM_GETLINK, 5)
    assert flags == _rtnl.NLM_F_REQUEST | _rtnl.NLM_F_DUMP
    assert request.endswith(struct.pack("=HHI", 8, _rtnl.IFLA_EXT_MASK, _rtnl.RTEXT_FILTER_SKIP_STATS))
