"""Removal beside running guests: holders found in /proc, identity checked, one kernel batch."""
from __future__ import annotations

import json
import re

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root]

T = "vmr%d"


def carrier(netns: str, name: str) -> bool:
    return "LOWER_UP" in h.link(netns, name)["flags"]


def rewrite_lease(registry, lease: str, **fields) -> None:
    """Change fields of one lease record in the registry file (None removes the field)."""
    data = h.read_registry(registry)
    for key, value in fields.items():
        if value is None:
            data["leases"][lease].pop(key, None)
        else:
            data["leases"][lease][key] = value
    with open(registry, "w", encoding="utf-8") as handle:
        json.dump(data, handle)


def real_boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
        return handle.read().strip()


# ----------------------------------------------------------------------------- holders

def test_held_tap_with_carrier_forced_off_is_not_removed(api, ns, registry, hold_tap):
    name = api(name=T, lease="vm/0")["name"]
    holder = hold_tap(ns, name)
    h.ip(ns, "link", "set", name, "carrier", "off")
    assert not carrier(ns, name), "the test needs the carrier forced off under the holder"
    message = api.fails(lease="vm/0", state="absent")
    assert re.search(r"device %s is in use \(held by PID %d\)" % (re.escape(repr(name)), holder.pid), message), message
    assert name in h.links(ns)
    assert "vm/0" in h.read_registry(registry)["leases"]
    # Pruning and remove_prefixes refuse it the same way, and nothing else of the batch is deleted.
    other = api(name=T, lease="vm/1")["name"]
    message = api.fails(remove_prefixes=["vm/"])
    assert "held by PID %d" % holder.pid in message, message
    assert {name, other} <= h.tun_names(ns)
    hold_tap.release(holder)
    removed = api(remove_prefixes=["vm/"], devices=[])
    assert removed["pruned"] == ["vm/0", "vm/1"], removed
    assert not {name, other} & h.tun_names(ns)


def test_refusal_with_carrier_up_names_the_holder_too(api, ns, hold_tap):
    name = api(name=T, lease="vm/0")["name"]
    holder = hold_tap(ns, name)
    assert carrier(ns, name)
    message = api.fails(lease="vm/0", state="absent")
    assert "device %r is in use (held by PID %d)" % (name, holder.pid) in message, message


def test_holder_in_another_namespace_with_the_same_name_does_not_count(api, make_ns, ns, hold_tap):
    name = api(name=T, lease="vm/0")["name"]
    elsewhere = make_ns()
    h.add_tuntap(elsewhere, name)
    hold_tap(elsewhere, name)
    h.ip(ns, "link", "set", name, "carrier", "off")
    assert api(lease="vm/0", state="absent")["changed"] is True
    assert name not in h.links(ns)
    assert name in h.links(elsewhere)


def test_a_run_that_removes_nothing_does_not_look_for_holders(api, ns, monkeypatch):
    from ansible_collections.netdev.tuntap.plugins.module_utils import _world
    looked = []
    monkeypatch.setattr(_world._holders, "holders", lambda wanted: looked.append(wanted) or {})
    api(name=T, lease="vm/0")
    assert api(name=T, lease="vm/0")["changed"] is False
    assert looked == []


# ----------------------------------------------------------------------------- identity

def test_lease_records_the_identity_of_its_device(api, ns, registry):
    made = api(name=T, lease="vm/0")
    record = h.read_registry(registry)["leases"]["vm/0"]
    assert record["ifindex"] == h.link(ns, made["name"])["ifindex"] == made["ifindex"]
    assert record["boot_id"] == real_boot_id()
    assert record["netns_inode"] == h.os.stat("/run/netns/%s" % ns).st_ino


def test_device_remade_under_the_leased_name_with_the_mark_is_left_alone(api, ns, registry):
    made = api(name=T, lease="vm/0")
    name, alias = made["name"], h.link(ns, made["name"])["ifalias"]
    h.del_link(ns, name)
    h.add_tuntap(ns, name)
    h.ip(ns, "link", "set", name, "alias", alias)  # someone copied the mark onto a new device
    new_index = h.link(ns, name)["ifindex"]
    assert new_index != made["ifindex"]
    result = api(lease="vm/0", state="absent")
    assert result["changed"] is True
    h.assert_warnings(result, r"lease 'vm/0': %s in netns %s carries the lease's mark but is not the recorded "
                      r"device \(the lease recorded ifindex %d, this device has ifindex %d\); it was left alone "
                      r"and the lease released" % (re.escape(repr(name)), re.escape(repr(ns)), made["ifindex"],
                                                   new_index))
    assert h.link(ns, name)["ifindex"] == new_index, "the device that is not the recorded one must stay"
    assert "vm/0" not in h.read_registry(registry)["leases"]


def test_device_from_an_earlier_boot_is_not_deleted(api, ns, registry):
    made = api(name=T, lease="vm/0")
    rewrite_lease(registry, "vm/0", boot_id="00000000-0000-0000-0000-000000000000")
    result = api(lease="vm/0", state="absent")
    assert any("recorded in an earlier boot" in w for w in result["warnings"]), result
    assert h.link(ns, made["name"])["ifindex"] == made["ifindex"]
    assert "vm/0" not in h.read_registry(registry)["leases"]


def test_after_a_reboot_the_leased_device_is_made_again_and_the_record_refreshed(api, ns, registry):
    made = api(name=T, lease="vm/0")
    h.del_link(ns, made["name"])  # what a reboot does to a tap
    rewrite_lease(registry, "vm/0", boot_id="00000000-0000-0000-0000-000000000000", ifindex=99999)
    again = api(name=T, lease="vm/0")
    assert (again["changed"], again["name"]) == (True, made["name"])
    record = h.read_registry(registry)["leases"]["vm/0"]
    assert (record["boot_id"], record["ifindex"]) == (real_boot_id(), h.link(ns, made["name"])["ifindex"])
    assert api(lease="vm/0", state="absent")["warnings"] == []
    assert made["name"] not in h.links(ns)


def test_a_record_without_identity_trusts_the_mark(api, ns, registry):
    made = api(name=T, lease="vm/0")
    rewrite_lease(registry, "vm/0", ifindex=None, boot_id=None, netns_inode=None)
    unchanged = api(name=T, lease="vm/0")
    assert unchanged["changed"] is False
    # The unchanged run records what the device is now.
    assert h.read_registry(registry)["leases"]["vm/0"]["ifindex"] == made["ifindex"]
    rewrite_lease(registry, "vm/0", ifindex=None, boot_id=None, netns_inode=None)
    result = api(lease="vm/0", state="absent")
    assert (result["changed"], result["warnings"]) == (True, [])
    assert made["name"] not in h.links(ns)


# ----------------------------------------------------------------------------- one kernel batch

def test_many_leases_are_removed_in_one_batch(api, ns, registry):
    made = api(devices=[{"name": T, "lease": "vm/%d" % i} for i in range(40)])
    names = {d["name"] for d in made["devices"]}
    h.add_tuntap(ns, "bystander")
    result = api(remove_prefixes=["vm/"])
    assert result["changed"] is True and len(result["pruned"]) == 40
    assert h.tun_names(ns) == {"bystander"}
    data = h.read_registry(registry)
    assert data["leases"] == {}
    assert names <= set(data["released"])
    # The batch's link group is gone with the devices; the bystander kept its own.
    assert h.link(ns, "bystander").get("group", "default") == "default"


def test_a_batch_that_fails_part_way_records_only_what_is_gone(api, ns, registry, monkeypatch):
    from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _rtnl
    made = api(devices=[{"name": T, "lease": "vm/%d" % i} for i in range(6)])
    names = [d["name"] for d in made["devices"]]
    real_delete_group = _rtnl.delete_group

    def half_then_fail(group):
        # The kernel removed some, then refused: delete three by hand and report an error.
        for name in names[:3]:
            h.del_link(ns, name)
        return 1  # EPERM

    monkeypatch.setattr(_rtnl, "delete_group", half_then_fail)
    message = api.fails(remove_prefixes=["vm/"])
    assert "3 of 6 device(s) removed and released" in message, message
    assert all(repr(n) in message for n in names[3:]), message
    leases = h.read_registry(registry)["leases"]
    assert sorted(leases) == ["vm/3", "vm/4", "vm/5"]
    assert h.tun_names(ns) == set(names[3:])
    # The survivors are back in the default link group, and the next run removes them.
    assert all(h.link(ns, n).get("group", "default") == "default" for n in names[3:])
    monkeypatch.setattr(_rtnl, "delete_group", real_delete_group)
    assert sorted(api(remove_prefixes=["vm/"])["pruned"]) == ["vm/3", "vm/4", "vm/5"]
    assert h.tun_names(ns) == set()


def test_delete_many_refused_by_the_kernel_removes_nothing_and_restores_groups(ns):
    from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._links import BulkDeleteError, Links
    from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import entered
    for name in ("t0", "t1"):
        h.add_tuntap(ns, name)
    wanted = [(name, h.link(ns, name)["ifindex"], 0) for name in ("t0", "t1", "lo")]
    # lo cannot be deleted, so the kernel refuses the whole group.
    with entered(ns), Links() as links, pytest.raises(BulkDeleteError) as caught:
        links.delete_many(wanted, {0})
    assert caught.value.gone == set()
    assert "'t0'" in str(caught.value) and "'lo'" in str(caught.value)
    assert {"t0", "t1", "lo"} <= set(h.links(ns))
    assert all(h.link(ns, n).get("group", "default") == "default" for n in ("t0", "t1", "lo"))


def test_one_task_removes_leases_of_several_namespaces_each_in_its_own_batch(make_ns, registry):
    first, second = make_ns(), make_ns()
    one = h.Api(first, registry)(devices=[{"name": T, "lease": "g/a%d" % i} for i in range(3)])
    two = h.Api(second, registry)(devices=[{"name": T, "lease": "g/b%d" % i} for i in range(3)])
    assert h.tun_names(first) and h.tun_names(second)
    removed = h.Api(first, registry)(remove_prefixes=["g/"])
    assert len(removed["pruned"]) == 6
    assert h.tun_names(first) == set() and h.tun_names(second) == set(), (one, two)
    assert h.read_registry(registry)["leases"] == {}
