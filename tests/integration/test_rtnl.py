"""The module's own link dump (_rtnl) against what iproute2 reports for the same namespace."""
from __future__ import annotations

import pytest

import ntt_helpers as h
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._links import Links
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import entered

pytestmark = [pytest.mark.integration, pytest.mark.root]


def test_dump_agrees_with_iproute2(ns, hold_tap):
    h.add_link(ns, "br0", "bridge")
    h.add_tuntap(ns, "plain0")                                    # no owner, no group
    h.add_tuntap(ns, "owned0", "tap", "user", str(h.NOBODY_UID), "group", str(h.NOBODY_GID))
    h.add_tuntap(ns, "mq0", "tap", "multi_queue", "vnet_hdr")
    h.add_tuntap(ns, "tun0", "tun", "pi")
    h.ip(ns, "link", "set", "plain0", "master", "br0", "mtu", "1400", "address", "02:11:22:33:44:55", "up")
    h.ip(ns, "link", "set", "owned0", "alias", 'netdev.tuntap {"lease":"k/0","template":null}')
    hold_tap(ns, "mq0", multi_queue=True, extra_flags=h.IFF_VNET_HDR)

    with entered(ns), Links() as links:
        mine = links.dump()
    theirs = h.links(ns)
    assert set(mine) == set(theirs)
    for name, entry in theirs.items():
        info = mine[name]
        assert info.index == entry["ifindex"], name
        assert info.mtu == entry["mtu"], name
        assert info.kind == h.kind(entry), name
        assert info.up == ("UP" in entry["flags"]), name
        assert info.alias == entry.get("ifalias"), name
        if entry.get("address") and entry.get("link_type") == "ether":
            assert info.mac_address == entry["address"], name
        master = entry.get("master")
        assert info.master == (theirs[master]["ifindex"] if master else None), name
        if info.kind == "tun":
            data = entry["linkinfo"]["info_data"]
            assert info.tun.mode == data["type"], name
            assert info.tun.packet_info == data["pi"], name
            assert info.tun.vnet_hdr == data["vnet_hdr"], name
            assert info.tun.multi_queue == data["multi_queue"], name
            assert info.tun.persist == data["persist"], name
            assert info.tun.owner == h.tun_info(ns, name)["user"], name
            assert info.tun.group == h.tun_info(ns, name)["group"], name
    assert mine["owned0"].tun.owner == h.NOBODY_UID and mine["plain0"].tun.owner is None
    assert mine["owned0"].mark == {"lease": "k/0", "template": None}
    assert mine["mq0"].in_use and not mine["plain0"].in_use
    assert mine["mq0"].tun.queues == 1


def test_dump_of_many_links_is_complete(ns):
    # More than one recv() of answers: a dump of a few hundred links spans several buffers.
    names = {"many%d" % n for n in range(300)}
    h.sh("ip", "-n", ns, "-batch", "-", input="".join("tuntap add dev %s mode tap\n" % n for n in sorted(names)))
    with entered(ns), Links() as links:
        mine = links.dump()
    assert names <= set(mine)
    assert set(mine) == set(h.links(ns))
