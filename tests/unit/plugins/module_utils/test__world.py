# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The world snapshot as plain data: what it answers for namespaces read, missing, and never read."""

from __future__ import annotations

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils._device import LinkInfo
from ansible_collections.netdev.tuntap.plugins.module_utils._world import World


def veth(name, index):
    return LinkInfo(name=name, index=index, kind="veth", mtu=1500, mac_address=None, master=None, up=True,
                    carrier=True, alias=None)


def test_devices_of_read_missing_and_unread_namespaces():
    world = World("ntt-a", links={"ntt-a": {"v0": veth("v0", 3)}, None: {}}, missing={"ntt-gone"})
    assert world.device("ntt-a", "v0").index == 3
    assert world.device(None, "v0") is None
    assert world.exists("ntt-a") and world.exists(None) and not world.exists("ntt-gone")
    assert world.devices("ntt-gone") == {}
    with pytest.raises(LookupError):
        world.devices("ntt-never-read")


def test_names_by_index():
    world = World(None, links={None: {"v0": veth("v0", 3), "br0": veth("br0", 7)}})
    assert world.names_by_index(None) == {3: "v0", 7: "br0"}
