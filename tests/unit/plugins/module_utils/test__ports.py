# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bridge ports without a bridge: VLAN ids and ranges, the VLAN requests a port needs, OVS columns,
and the planner's decisions for Linux bridge VLANs and OVS ports from fake snapshots."""

from __future__ import annotations

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils import _ports
from ansible_collections.netdev.tuntap.plugins.module_utils._ledger import Ledger
from ansible_collections.netdev.tuntap.plugins.module_utils._plan import Planner, PlanError, port_needs
from ansible_collections.netdev.tuntap.plugins.module_utils._results import device_result
from ansible_collections.netdev.tuntap.plugins.module_utils._spec import parse_task
from ansible_collections.netdev.tuntap.plugins.module_utils._values import (
    compress_vlans, format_vlans, parse_trunk, vlan_problem)

from ansible_collections.netdev.tuntap.plugins.module_utils._device import LinkInfo, TunInfo
from ansible_collections.netdev.tuntap.plugins.module_utils._ledger import empty_state
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import decode_mark, encode_mark
from ansible_collections.netdev.tuntap.plugins.module_utils._world import World

REG = "/nonexistent/ntt-unit/registry.json"
NOW = 1000.0


def tap(name, index=None, lease=None, template=None, master=None):
    alias = encode_mark(lease, template) if lease or template else None
    return LinkInfo(name=name, index=index or 10, kind="tun", mtu=1500, mac_address="52:54:00:00:00:01",
                    master=master, up=True, carrier=False, alias=alias,
                    tun=TunInfo(mode="tap", packet_info=False, vnet_hdr=False, persist=True, multi_queue=False,
                                owner=0, group=None, queues=None),
                    mark=decode_mark(alias))


def link(name, kind, index=None):
    return LinkInfo(name=name, index=index or 20, kind=kind, mtu=1500, mac_address="52:54:00:99:99:99",
                    master=None, up=True, carrier=True, alias=None)


def lease_rec(name, template=None, number=None):
    return {"name": name, "template": template, "id": number, "netns": None, "mode": "tap",
            "multi_queue": False, "since": 1.0}


def state_of(leases=None):
    state = empty_state()
    state["leases"].update(leases or {})
    return state


def world_of(task, present=()):
    return World(task.netns, links={task.netns: {d.name: d for d in present}})


PU = _ports.BRIDGE_VLAN_INFO_PVID | _ports.BRIDGE_VLAN_INFO_UNTAGGED


@pytest.mark.parametrize("value, problem", [
    (1, None), (4094, None), ("100", None),
    (0, "is out of range"), (4095, "is out of range"), (4096, "is out of range"), (-1, "is out of range"),
    ("x", "is not a VLAN id"), (True, "is not a VLAN id"), (1.5, "is not a VLAN id"), ("", "is not a VLAN id"),
])
def test_vlan_problem(value, problem):
    found = vlan_problem(value)
    assert (found is None) if problem is None else problem in found


@pytest.mark.parametrize("items, ranges, problem", [
    ([100, "200-210", "5"], [(5, 5), (100, 100), (200, 210)], None),
    ([], [], None),
    (["1-4094"], [(1, 4094)], None),
    ([4095], None, "item 4095 is out of range"),
    (["0-5"], None, "item '0-5' is out of range"),
    (["10-5"], None, "start is above its end"),
    (["a-b"], None, "item 'a-b' is not a VLAN id"),
    ([[1]], None, "is not a VLAN id"),
    ([5, "1-10"], None, "items '1-10' and 5 overlap"),
    ([5, 5], None, "items 5 and 5 overlap"),
    ({"a": 1}, None, "is not a list"),
])
def test_parse_trunk(items, ranges, problem):
    found, why = parse_trunk(items)
    assert found == ranges
    assert (why is None) if problem is None else problem in why


def test_compress_and_format():
    assert compress_vlans([5, 1, 2, 3, 7]) == [(1, 3), (5, 5), (7, 7)]
    assert format_vlans([(1, 3), (5, 5)]) == ["1-3", 5]


def spec_of(**params):
    return parse_task(dict(params, registry=REG, name=params.get("name", "t0"))).devices[0]


def test_vlan_changes_add_the_missing_and_remove_the_rest():
    spec = spec_of(bridge="br0", vlan=100, trunk=["200-202"])
    changes = _ports.vlan_changes(spec, {1: PU, 200: 0, 300: 0})
    assert changes == {"untagged": [(100, 100)], "tagged": [(201, 202)], "remove": [(1, 1), (300, 300)]}
    assert _ports.vlan_changes(spec, {100: PU, 200: 0, 201: 0, 202: 0}) is None
    # a tagged VLAN that should be the untagged one is re-added with the flags
    assert _ports.vlan_changes(spec_of(bridge="br0", vlan=200), {200: 0})["untagged"] == [(200, 200)]


def test_linux_view_reads_pvid_and_trunk():
    assert _ports.linux_view({100: PU, 5: 0, 6: 0}) == {"vlan": 100, "trunk": ["5-6"]}
    assert _ports.linux_view(None) == {"vlan": None, "trunk": None}


@pytest.mark.parametrize("vlan, trunk, settings", [
    (100, None, {"tag": 100, "trunks": [], "vlan_mode": "access"}),
    (100, [5], {"tag": 100, "trunks": [5], "vlan_mode": "native-untagged"}),
    (None, ["5-6"], {"tag": None, "trunks": [5, 6], "vlan_mode": "trunk"}),
])
def test_ovs_settings_match_linux_meaning(vlan, trunk, settings):
    params = {"bridge": "br-int"}
    if vlan is not None:
        params["vlan"] = vlan
    if trunk is not None:
        params["trunk"] = trunk
    assert _ports.wanted_ovs_settings(spec_of(**params)) == settings


def ovs_port(bridge="br-int", lease=None, tag=None, trunks=(), mode=None, **ids):
    external = dict(ids)
    if lease is not None:
        external[_ports.LEASE_KEY] = lease
    return {"bridge": bridge, "tag": tag, "trunks": list(trunks), "vlan_mode": mode, "external_ids": external,
            "ofport": 1, "error": None}


def ovs_world(task, present, ports=None, error=None, port_vlans=None):
    world = world_of(task, present)
    world.ovs_asked = True
    world.ovs_error = error
    world.port_vlans = port_vlans
    if error is None:
        bridges = {"br-int": sorted(ports or {})}
        world.ovs = {"bridges": bridges, "ports": dict(ports or {})}
    return world


def planner(present=(), reg=None, ports=None, error=None, port_vlans=None, **params):
    task = parse_task(dict(params, registry=REG))
    ledger = Ledger(reg if reg is not None else state_of(), lambda: NOW)
    return Planner(task, ledger, ovs_world(task, present, ports, error, port_vlans)), task, ledger


def test_needs_read_only_what_the_task_uses():
    for params, needs in (
        (dict(name="t0"), set()),
        (dict(name="t0", bridge="br0"), set()),                       # a Linux bridge that exists
        (dict(name="t0", bridge="br-int"), {"ovs"}),                  # not a Linux bridge here: ask OVS
        (dict(name="t0", bridge="br0", bridge_type="ovs"), {"ovs"}),
        (dict(name="t0", bridge="br0", vlan=5), {"vlans"}),
        (dict(name="t0", ipv6=False), {"ipv6"}),
        (dict(lease="a/0", state="absent"), set()),
    ):
        task = parse_task(dict(params, registry=REG))
        assert port_needs(task, Ledger(state_of(), lambda: NOW), world_of(task, [link("br0", "bridge")])) == needs
    task = parse_task(dict(lease="a/0", state="absent", registry=REG))
    reg = state_of(leases={"a/0": dict(lease_rec("t0"), ovs={"bridge": "br-int", "db": None})})
    assert port_needs(task, Ledger(reg, lambda: NOW), world_of(task)) == {"ovs"}


def test_new_device_on_an_ovs_bridge_carries_ids_and_lease():
    plan, task, _ledger = planner(name="vnet%d", lease="g/0", bridge="br-int", vlan=7,
                                  external_ids={"iface-id": "p1"})
    [action] = plan.plan()
    assert action.master is None
    assert action.port == {"kind": "ovs", "bridge": "br-int",
                           "settings": {"tag": 7, "trunks": [], "vlan_mode": "access"},
                           "external_ids": {"iface-id": "p1", _ports.LEASE_KEY: "g/0"}}
    assert action.ovs_record == {"bridge": "br-int", "db": None}
    result = device_result(action, None, {}, None, predicted=True)
    assert (result["bridge"], result["bridge_type"], result["vlan"], result["trunk"]) == ("br-int", "ovs", 7, [])


def test_a_stale_row_under_the_new_name_is_warned_about():
    plan, _task, _ledger = planner(name="vnet0", lease="g/0", bridge="br-int",
                                   ports={"vnet0": ovs_port(lease="old/0", **{"iface-id": "old"})})
    plan.plan()
    assert plan.warnings == ["vnet0 (lease 'g/0'): Open vSwitch had a port row 'vnet0' (iface-id 'old') left "
                             "from a device that no longer exists; it is replaced by the new device's row"]


def test_existing_port_reconciles_only_what_differs():
    device = tap("vnet0", lease="g/0", template="vnet%d")
    reg = state_of(leases={"g/0": dict(lease_rec("vnet0", "vnet%d", 0), ovs={"bridge": "br-int", "db": None})})
    ports = {"vnet0": ovs_port(lease="g/0", tag=7, mode="access", **{"iface-id": "p1"})}
    plan, _task, _ledger = planner([device], reg, ports, name="vnet%d", lease="g/0", bridge="br-int", vlan=7,
                                   external_ids={"iface-id": "p1"})
    [action] = plan.plan()
    assert action.changes == {} and not action.changed
    plan, _task, _ledger = planner([device], reg, ports, name="vnet%d", lease="g/0", bridge="br-int", vlan=8,
                                   external_ids={"iface-id": "p2"})
    [action] = plan.plan()
    assert action.changes == {"ovs_port": {"settings": {"tag": 8}, "external_ids": {"iface-id": "p2"},
                                           "bridge": "br-int", "add": False}}


def test_release_removes_only_a_row_carrying_the_lease():
    reg = state_of(leases={"g/0": dict(lease_rec("vnet0", "vnet%d", 0), ovs={"bridge": "br-int", "db": None})})
    for port, removes in ((ovs_port(lease="g/0"), True), (ovs_port(lease="other"), False),
                          (ovs_port(), False), (None, False)):
        plan, _task, _ledger = planner([], reg, {"vnet0": port} if port else {}, lease="g/0", state="absent")
        [action] = plan.plan()
        assert (action.kind, action.removal.ovs_port) == ("release", removes)


def test_ovs_not_answering_is_a_failure_only_when_needed():
    with pytest.raises(PlanError) as refused:
        planner(name="t0", bridge="br-int", bridge_type="ovs", error="Open vSwitch is not running")[0].plan()
    assert "bridge 'br-int': Open vSwitch is not running" in str(refused.value)
    plan, _task, _ledger = planner([link("br0", "bridge")], error="Open vSwitch is not running", name="t0",
                                   bridge="br0")
    assert plan.plan()[0].master is not None


def test_linux_bridge_vlans_need_filtering_or_permission():
    bridge = link("br0", "bridge", index=5)
    bridge.vlan_filtering = False
    with pytest.raises(PlanError) as refused:
        planner([bridge], name="t0", bridge="br0", vlan=3)[0].plan()
    message = str(refused.value)
    assert "bridge 'br0' has VLAN filtering off" in message and "vlan_filtering 1" in message
    plan, _task, _ledger = planner([bridge], name="t0", bridge="br0", vlan=3, bridge_vlan_filtering=True)
    [action] = plan.plan()
    assert action.port["filtering"] == {"bridge": "br0", "index": 5}
    assert action.port["vlans"]["untagged"] == [(3, 3)]


def test_existing_port_on_a_filtering_bridge_reconciles_vlans():
    bridge = link("br0", "bridge", index=5)
    bridge.vlan_filtering = True
    device = tap("t0", index=9, master=5)
    plan, _task, _ledger = planner([bridge, device], port_vlans={9: {1: PU, 20: 0}}, name="t0", bridge="br0",
                                   trunk=[20, 21])
    [action] = plan.plan()
    assert action.changes["vlans"]["tagged"] == [(21, 21)]
    assert action.changes["vlans"]["remove"] == [(1, 1)]
    plan, _task, _ledger = planner([bridge, device], port_vlans={9: {20: 0, 21: 0}}, name="t0", bridge="br0",
                                   trunk=[20, 21])
    assert plan.plan()[0].changes == {}
