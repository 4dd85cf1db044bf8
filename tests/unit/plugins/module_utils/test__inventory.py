# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""tap_device_info's classification, from a fake snapshot and registry state: nothing is read."""

from __future__ import annotations

from ansible_collections.netdev.tuntap.plugins.module_utils._device import LinkInfo, TunInfo
from ansible_collections.netdev.tuntap.plugins.module_utils._inventory import Filters, build
from ansible_collections.netdev.tuntap.plugins.module_utils._ledger import empty_state
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import decode_mark, encode_mark
from ansible_collections.netdev.tuntap.plugins.module_utils._world import World

NOW = 5000.0


def tap(name, index, lease=None, template=None, marked=None, carrier=False, master=None):
    alias = encode_mark(lease, template) if (marked if marked is not None else (lease or template)) else None
    return LinkInfo(name=name, index=index, kind="tun", mtu=1500, mac_address="fe:54:00:00:00:%02x" % index,
                    master=master, up=True, carrier=carrier, alias=alias,
                    tun=TunInfo(mode="tap", packet_info=False, vnet_hdr=True, persist=True, multi_queue=False,
                                owner=0, group=None, queues=None),
                    mark=decode_mark(alias), operstate="down")


def bridge(name, index):
    return LinkInfo(name=name, index=index, kind="bridge", mtu=1500, mac_address=None, master=None, up=True,
                    carrier=True, alias=None)


def state():
    data = empty_state()
    data["counters"] = {"vm%d": 9}
    data["leases"] = {
        "web/0": {"name": "vm1", "template": "vm%d", "id": 1, "netns": None, "mode": "tap", "ifindex": 11},
        "web/1": {"name": "vm2", "template": "vm%d", "id": 2, "netns": None, "mode": "tap"},
        "far/0": {"name": "vm3", "template": "vm%d", "id": 3, "netns": "elsewhere", "mode": "tap"},
    }
    data["released"] = {"vm5": {"at": NOW - 100, "template": "vm%d", "netns": None, "hold": 3600},
                        "vm6": {"at": NOW - 7200, "template": "vm%d", "netns": None}}
    return data


def world(holders=None):
    links = {d.name: d for d in (bridge("br0", 2), tap("vm1", 11, "web/0", "vm%d", carrier=True, master=2),
                                 tap("vm4", 14, "lost/0", "vm%d"), tap("vm7", 17, template="vm%d"),
                                 tap("vm8", 18), tap("other", 19))}
    snapshot = World(None, links={None: links})
    snapshot.holders = holders or {}
    return snapshot


def test_each_device_is_classified_and_the_registry_reported():
    result = build(state(), world({(None, "vm1"): [300]}), [None], Filters(), NOW)
    devices = {d["name"]: d for d in result["devices"]}
    assert set(devices) == {"vm1", "vm4", "vm7", "vm8", "other"}, "the bridge is not a tun/tap"
    assert {n: d["status"] for n, d in devices.items()} == {
        "vm1": "leased", "vm4": "orphan", "vm7": "orphan", "vm8": "stranger", "other": "unmanaged"}
    vm1 = devices["vm1"]
    assert (vm1["lease"], vm1["id"], vm1["bridge"], vm1["holders"], vm1["in_use"], vm1["operstate"]) == \
        ("web/0", 1, "br0", [300], True, "down")
    assert devices["vm8"]["holders"] is None and devices["vm8"]["in_use"] is False
    assert [(o["name"], o["reason"]) for o in result["orphans"]] == [
        ("vm4", "the registry holds no lease 'lost/0'"), ("vm7", "made from a template without a lease")]
    assert [(s["name"], s["template"]) for s in result["strangers"]] == [("vm8", "vm%d")]
    assert [(m["lease"], m["reason"]) for m in result["missing"]] == [
        ("web/1", "no device 'vm2' in the host namespace")]
    leases = {entry["lease"]: entry for entry in result["leases"]}
    assert leases["far/0"]["device_present"] is None, "a namespace not listed is not a missing device"
    assert leases["web/0"]["ifindex"] == 11 and leases["web/1"]["ifindex"] is None
    assert [(h["name"], h["held"], h["held_until"]) for h in result["held_names"]] == [
        ("vm5", True, NOW - 100 + 3600), ("vm6", False, NOW - 7200)]
    assert result["counters"] == [{"template": "vm%d", "last": 9}]


def test_filters():
    def names(filters):
        return sorted(d["name"] for d in build(state(), world(), [None], filters, NOW)["devices"])

    assert names(Filters(names=["vm[14]"])) == ["vm1", "vm4"]
    assert names(Filters(lease_prefix="web/")) == ["vm1"]
    assert names(Filters(templates=["oth%d"])) == []
    only = build(state(), world(), [None], Filters(lease_prefix="web/"), NOW)
    assert [entry["lease"] for entry in only["leases"]] == ["web/0", "web/1"] and only["held_names"] == []
