"""Linux bridge VLANs on this machine's kernel, which is built without bridge VLAN filtering:
every request fails clearly and makes nothing. (The working path runs on Debian's kernel under
QEMU: tests/vmkernel.)"""
from __future__ import annotations

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root]

T = "vmt%d"


@pytest.mark.parametrize("params, words", [
    (dict(vlan=0), "vlan 0 is out of range; allowed VLAN ids: 1 to 4094"),
    (dict(vlan=4095), "vlan 4095 is out of range; allowed VLAN ids: 1 to 4094"),
    (dict(vlan=4096), "vlan 4096 is out of range"),
    (dict(vlan="x"), "vlan 'x' is not a VLAN id; give a number from 1 to 4094"),
    (dict(trunk=["x"]), "trunk item 'x' is not a VLAN id or a range"),
    (dict(trunk=[0]), "trunk item 0 is out of range"),
    (dict(trunk=["100-110", "105-120"]), "trunk items '100-110' and '105-120' overlap"),
    (dict(trunk=["110-100"]), "trunk item '110-100' is a range whose start is above its end"),
    (dict(vlan=5, trunk=["1-10"]), "trunk contains vlan 5"),
])
def test_bad_vlan_ids_fail_before_anything(api, ns, registry, params, words):
    h.add_link(ns, "br0", "bridge")
    message = api.fails(name=T, lease="v/0", bridge="br0", **params)
    assert words in message
    assert h.non_lo(ns) == {"br0"}
    assert not registry.exists()


def test_bad_ids_in_a_batch_name_the_item(api, ns, registry):
    h.add_link(ns, "br0", "bridge")
    message = api.fails(devices=[{"name": T, "lease": "ok/0"},
                                 {"name": T, "lease": "bad/0", "bridge": "br0", "vlan": 4095}])
    assert message.startswith("devices[1].vlan 4095 is out of range")
    assert "(the item with lease 'bad/0')" in message
    assert h.non_lo(ns) == {"br0"} and not registry.exists()


def test_a_bridge_without_vlan_filtering_is_named_with_how_to_enable_it(api, ns, registry):
    h.add_link(ns, "br0", "bridge")
    message = api.fails(name=T, lease="v/0", bridge="br0", vlan=100)
    assert ("bridge 'br0' has VLAN filtering off, so vlan and trunk cannot be applied; turn it on "
            "(ip link set br0 type bridge vlan_filtering 1), or set bridge_vlan_filtering: true") in message
    assert h.non_lo(ns) == {"br0"}


def test_this_kernel_says_it_has_no_bridge_vlan_filtering(api, ns, registry):
    h.add_link(ns, "br0", "bridge")
    message = api.fails(name=T, lease="v/0", bridge="br0", vlan=100, trunk=["200-210"], bridge_vlan_filtering=True)
    assert "turning VLAN filtering on for bridge 'br0' failed: Operation not supported" in message
    assert "built without CONFIG_BRIDGE_VLAN_FILTERING" in message
    assert "No device was left behind" in message
    assert h.non_lo(ns) == {"br0"}
    assert h.link(ns, "br0")["linkinfo"]["info_data"]["vlan_filtering"] == 0
    assert h.read_registry(registry)["leases"] == {}


def test_vlan_options_need_a_bridge(api, ns):
    assert "vlan needs bridge" in api.fails(name=T, vlan=10)
    assert "external_ids needs an Open vSwitch bridge, but bridge_type is 'linux'" in api.fails(
        name=T, lease="x/0", bridge="br0", bridge_type="linux", external_ids={"iface-id": "a"})
