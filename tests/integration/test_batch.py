"""Batch mode (`devices:`) through the Python API, on real devices."""
from __future__ import annotations

import os
import re

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root]

T = "vmt%d"


def test_batch_preserves_input_order_and_is_idempotent(api, ns, registry):
    h.add_link(ns, "br0", "bridge")
    devices = [
        {"name": T, "lease": "g/b"},
        {"name": "lit0"},
        {"name": T, "lease": "g/a", "mtu": 1400, "bridge": "br0"},
        {"name": "tn%d", "lease": "g/tun", "mode": "tun"},
        {"name": T, "lease": "g/mq", "multi_queue": True, "owner": h.NOBODY},
    ]
    first = api(devices=devices)
    assert first["changed"] is True
    items = first["devices"]
    assert [d.get("lease") for d in items] == [d.get("lease") for d in devices]
    assert [d["name"] for d in items] == ["vmt0", "lit0", "vmt1", "tn0", "vmt2"]
    for item in items:
        assert item["changed"] is True
        h.assert_matches_kernel(ns, item)
    assert h.tun_names(ns) == {"vmt0", "lit0", "vmt1", "tn0", "vmt2"}
    leases = h.read_registry(registry)["leases"]
    assert {k: v["name"] for k, v in leases.items()} == {
        "g/b": "vmt0", "g/a": "vmt1", "g/tun": "tn0", "g/mq": "vmt2"}

    again = api(devices=devices)
    assert again["changed"] is False
    assert [d["name"] for d in again["devices"]] == ["vmt0", "lit0", "vmt1", "tn0", "vmt2"]
    assert all(d["changed"] is False for d in again["devices"])

    reordered = api(devices=list(reversed(devices)))
    assert [d["name"] for d in reordered["devices"]] == ["vmt2", "tn0", "vmt1", "lit0", "vmt0"]
    assert reordered["changed"] is False


def test_batch_check_mode_predicts_distinct_names_and_changes_nothing(api, ns, registry):
    api(devices=[{"name": T, "lease": "a"}])
    before = h.tree_snapshot(os.path.dirname(registry))
    links_before = h.stable_links(ns)
    result = api(check_mode=True, devices=[{"name": T, "lease": "a"}, {"name": T, "lease": "b"},
                                           {"name": T, "lease": "c"}])
    assert result["changed"] is True
    h.assert_warnings(result, h.CHECK_MODE_WARNING)
    assert [d["name"] for d in result["devices"]] == ["vmt0", "vmt1", "vmt2"]
    assert [d["changed"] for d in result["devices"]] == [False, True, True]
    assert [d["ifindex"] is None for d in result["devices"]] == [False, True, True]
    assert h.tree_snapshot(os.path.dirname(registry)) == before
    assert h.stable_links(ns) == links_before


def test_batch_diff_is_a_list_in_input_order(api, ns):
    api(devices=[{"name": T, "lease": "a", "mtu": 1400}, {"name": T, "lease": "b"}])
    result = api(diff=True, devices=[{"name": T, "lease": "a", "mtu": 1300}, {"name": T, "lease": "b"}])
    diff = result["diff"]
    assert isinstance(diff, list) and len(diff) == 2, diff
    assert diff[0]["before"].get("mtu") == 1400 and diff[0]["after"].get("mtu") == 1300, diff
    assert diff[1]["before"] == diff[1]["after"], diff


def test_batch_of_one_changes_per_item(api, ns):
    api(devices=[{"name": T, "lease": "a"}, {"name": T, "lease": "b"}])
    result = api(devices=[{"name": T, "lease": "a"}, {"name": T, "lease": "b", "mtu": 1300}])
    assert result["changed"] is True
    assert [d["changed"] for d in result["devices"]] == [False, True]
    assert h.link(ns, "vmt1")["mtu"] == 1300


@pytest.mark.parametrize("devices, field, indexes", [
    ([{"name": T, "lease": "x"}, {"name": "lit0"}, {"name": T, "lease": "x"}], "lease", ["0", "2"]),
    ([{"name": "lit0"}, {"name": T, "lease": "y"}, {"name": "lit0"}], "name", ["0", "2"]),
    ([{"name": T, "lease": "a"}, {"name": "ta/p"}], "name", ["1"]),
    ([{"name": T, "lease": "a"}, {"name": T, "mode": "tun", "mac_address": "02:00:00:00:00:01"}],
     "mac_address", ["1"]),
    ([{"name": T, "lease": "a"}, {"name": T, "bridge": "nobr0"}], "bridge", ["1"]),
    ([{"name": T, "lease": "a"}, {"name": T, "state": "absent"}], "lease", ["1"]),
], ids=["dup-lease", "dup-literal", "bad-name", "mac-on-tun", "missing-bridge", "absent-template"])
def test_batch_validation_fails_naming_indexes_and_field_before_any_change(
        api, ns, registry, devices, field, indexes):
    message = api.fails(devices=devices)
    assert field in message, message
    for index in indexes:
        assert re.search(r"\b%s\b" % index, message), message
    assert h.non_lo(ns) == set()
    assert not os.path.exists(os.path.dirname(registry)), "validation must come before any write"


def test_batch_duplicate_against_existing_state_changes_nothing(api, ns, registry):
    api(devices=[{"name": T, "lease": "a"}])
    before = h.tree_snapshot(os.path.dirname(registry))
    message = api.fails(devices=[{"name": T, "lease": "b"}, {"name": T, "lease": "b"}])
    assert "lease" in message and "'b'" in message, message
    assert re.search(r"\b0\b", message) and re.search(r"\b1\b", message), message
    assert h.tun_names(ns) == {"vmt0"}
    assert h.tree_snapshot(os.path.dirname(registry)) == before


def test_batch_name_and_devices_are_mutually_exclusive(api, ns):
    message = api.fails(name=T, devices=[{"name": T}])
    assert "devices and name are mutually exclusive" in message, message
    assert h.non_lo(ns) == set()


def test_prune_prefix_removes_unnamed_leases(api, ns, registry):
    api(devices=[{"name": T, "lease": "g/a"}, {"name": T, "lease": "g/b"},
                 {"name": T, "lease": "g/c"}, {"name": T, "lease": "other/x"}])
    assert h.tun_names(ns) == {"vmt0", "vmt1", "vmt2", "vmt3"}
    result = api(devices=[{"name": T, "lease": "g/b"}], prune_prefix="g/")
    assert result["changed"] is True
    assert [d["name"] for d in result["devices"]] == ["vmt1"]
    assert h.tun_names(ns) == {"vmt1", "vmt3"}
    data = h.read_registry(registry)
    assert set(data["leases"]) == {"g/b", "other/x"}
    assert {"vmt0", "vmt2"} <= set(data["released"])
    again = api(devices=[{"name": T, "lease": "g/b"}], prune_prefix="g/")
    assert again["changed"] is False
    fresh = api(devices=[{"name": T, "lease": "g/d"}], prune_prefix="g/")
    assert [d["name"] for d in fresh["devices"]] == ["vmt4"]
    assert h.tun_names(ns) == {"vmt3", "vmt4"}


def test_prune_prefix_respects_in_use(api, ns, registry, hold_tap):
    api(devices=[{"name": T, "lease": "g/a"}, {"name": T, "lease": "g/b"}])
    hold_tap(ns, "vmt0")
    message = api.fails(devices=[{"name": T, "lease": "g/b"}], prune_prefix="g/")
    assert "'g/a'" in message and "'vmt0' is in use" in message and "force: true" in message, message
    assert "vmt0" in h.links(ns)
    assert "g/a" in h.read_registry(registry)["leases"]


def test_batch_mixed_present_and_absent(api, ns, registry):
    api(devices=[{"name": T, "lease": "a"}, {"name": T, "lease": "b"}])
    result = api(devices=[{"lease": "a", "state": "absent"}, {"name": T, "lease": "c"}])
    assert [d["changed"] for d in result["devices"]] == [True, True]
    assert result["devices"][1]["name"] == "vmt2"
    assert h.tun_names(ns) == {"vmt1", "vmt2"}


# Things the kernel refuses that a module cannot reasonably know beforehand. The first one
# the implementation does not pre-validate is used to make item 2 fail while applying.
MID_APPLY_FAILURES = [
    {"mtu": 65535},                         # tap max_mtu is 65521
    {"mtu": 70000},
    {"mac_address": "01:00:5e:00:00:01"},   # multicast: EADDRNOTAVAIL
    {"owner": "4294967295"},                # (uid_t)-1: EINVAL
]


def test_failure_while_applying_keeps_earlier_items_and_leaves_nothing_for_the_failing_one(
        make_ns, tmp_path):
    tried = []
    for index, bad in enumerate(MID_APPLY_FAILURES):
        netns = make_ns()
        reg = tmp_path / ("reg%d" % index) / "registry.json"
        api = h.Api(netns, reg)
        devices = [{"name": T, "lease": "m/0"}, {"name": "lit0", "lease": "m/1"},
                   dict({"name": T, "lease": "m/2"}, **bad), {"name": T, "lease": "m/3"}]
        message = api.fails(devices=devices)
        made = h.tun_names(netns)
        tried.append((bad, message, sorted(made)))
        if not made:
            continue  # pre-validated: no mid-apply failure with this one, try the next
        print("mid-apply failure provoked with %r: %s" % (bad, message))
        assert re.search(r"\b2\b", message), message
        assert {"vmt0", "lit0"} <= made, "items before 2 stay done"
        marks = h.aliases(netns)
        assert marks["vmt0"] == {"lease": "m/0", "template": T}
        assert marks["lit0"] == {"lease": "m/1", "template": None}
        assert not [n for n, m in marks.items() if m["lease"] == "m/2"], "item 2 left a device"
        assert set(marks) == made, "every device made is marked"
        leases = {k: v["name"] for k, v in h.read_registry(reg)["leases"].items()}
        assert "m/2" not in leases
        assert {"m/0": "vmt0", "m/1": "lit0"}.items() <= leases.items()
        assert set(leases.values()) == made, "every device made is recorded, nothing else"
        # the next run completes the batch and keeps what was made
        devices[2] = {"name": T, "lease": "m/2"}
        result = api(devices=devices)
        names = [d["name"] for d in result["devices"]]
        assert names[:2] == ["vmt0", "lit0"] and len(set(names)) == 4
        assert h.tun_names(netns) == set(names)
        return
    pytest.fail("no provocation failed mid-apply; tried: %r" % tried)
