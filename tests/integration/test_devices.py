"""Existing devices: owner/group, reconciliation, foreign kinds, leases, replacement, removal."""
from __future__ import annotations

import os
import re

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root]

T = "vmt%d"


# ----------------------------------------------------------------------------- owner / group

@pytest.mark.parametrize("owner, group, uid, gid", [
    (h.NOBODY, None, h.NOBODY_UID, None),
    (str(h.NOBODY_UID), None, h.NOBODY_UID, None),
    ("4242", None, 4242, None),
    (None, h.NOBODY_GROUP, None, h.NOBODY_GID),
    (None, "4343", None, 4343),
    (h.NOBODY, h.NOBODY_GROUP, h.NOBODY_UID, h.NOBODY_GID),
])
def test_owner_and_group_by_name_and_id(api, ns, owner, group, uid, gid):
    params = {"name": T}
    if owner is not None:
        params["owner"] = owner
    if group is not None:
        params["group"] = group
    result = api(**params)
    info = h.tun_info(ns, result["name"])
    assert (info["user"], info["group"]) == (uid, gid)
    assert (result["owner"], result["group"]) == (uid, gid)
    again = api(**dict(params, name=result["name"]))
    assert again["changed"] is False


def test_unknown_owner_name_fails_before_anything(api, ns, registry):
    message = api.fails(name=T, owner="no-such-user-ntt")
    assert "no-such-user-ntt" in message
    assert h.tun_names(ns) == set()


def test_owner_and_group_reconciled_and_left_alone_when_not_given(api, ns):
    made = api(name=T, lease="a")
    name = made["name"]
    assert h.tun_info(ns, name)["user"] == 0
    changed = api(name=T, lease="a", owner=h.NOBODY)
    assert changed["changed"] is True and changed["name"] == name
    assert h.tun_info(ns, name)["user"] == h.NOBODY_UID
    assert api(name=T, lease="a", owner=h.NOBODY)["changed"] is False
    grouped = api(name=T, lease="a", group=h.NOBODY_GROUP)  # owner not given: left alone
    assert grouped["changed"] is True
    info = h.tun_info(ns, name)
    assert (info["user"], info["group"]) == (h.NOBODY_UID, h.NOBODY_GID)
    plain = api(name=T, lease="a")  # neither given on an existing device: nothing changes
    assert plain["changed"] is False
    info = h.tun_info(ns, name)
    assert (info["user"], info["group"]) == (h.NOBODY_UID, h.NOBODY_GID)
    assert h.link(ns, name)["ifindex"] == made["ifindex"]


# ----------------------------------------------------------------------------- reconcile

def test_mtu_mac_bridge_up_reconciled(api, ns):
    h.add_link(ns, "br0", "bridge")
    h.add_link(ns, "br1", "bridge")
    want = {"name": T, "lease": "r", "mtu": 1400, "mac_address": "02:aa:bb:cc:dd:01", "bridge": "br0"}
    made = api(**want)
    name = made["name"]
    entry = h.assert_matches_kernel(ns, made)
    assert (entry["mtu"], entry["address"], h.master(entry), h.is_up(entry)) == \
        (1400, "02:aa:bb:cc:dd:01", "br0", True)
    assert api(**want)["changed"] is False

    steps = [
        ({"mtu": 1300}, lambda e: e["mtu"] == 1300),
        ({"mac_address": "02:AA:BB:CC:DD:02"}, lambda e: e["address"] == "02:aa:bb:cc:dd:02"),
        ({"bridge": "br1"}, lambda e: h.master(e) == "br1"),
        ({"up": False}, lambda e: not h.is_up(e)),
        ({"up": True}, h.is_up),
        ({"bridge": ""}, lambda e: h.master(e) is None),
    ]
    for change, check in steps:
        want.update(change)
        first = api(**want)
        assert first["changed"] is True, change
        assert first["name"] == name and first["ifindex"] == made["ifindex"], change
        entry = h.link(ns, name)
        assert check(entry), (change, entry)
        h.assert_matches_kernel(ns, first)
        second = api(**want)
        assert second["changed"] is False, change
    assert h.tun_names(ns) == {name}


def test_bridge_omitted_leaves_enslavement_alone(api, ns):
    h.add_link(ns, "br0", "bridge")
    made = api(name=T, lease="r", bridge="br0")
    again = api(name=T, lease="r")
    assert again["changed"] is False
    assert h.master(h.link(ns, made["name"])) == "br0"


def test_mtu_and_mac_settings_on_literal_unmanaged_tap(api, ns):
    """An existing unleased tap of the right kind is adopted and reconciled."""
    h.add_tuntap(ns, "tp0")
    ifindex = h.link(ns, "tp0")["ifindex"]
    result = api(name="tp0", mtu=1280)
    assert result["changed"] is True and result["ifindex"] == ifindex
    assert h.link(ns, "tp0")["mtu"] == 1280
    assert api(name="tp0", mtu=1280)["changed"] is False


# ----------------------------------------------------------------------------- foreign kinds

@pytest.mark.parametrize("setup, params, words", [
    (("foreign",), {}, [None]),
    (("link", "bridge"), {}, ["bridge"]),
    (("tuntap", "tun"), {}, ["tun"]),
    (("tuntap", "tap"), {"mode": "tun"}, ["tap"]),
    (("tuntap", "tap", "multi_queue"), {}, ["multi_queue|multi-queue|multiqueue"]),
    (("tuntap", "tap"), {"multi_queue": True}, ["multi_queue|multi-queue|multiqueue"]),
], ids=["not-tun", "bridge", "tun-for-tap", "tap-for-tun", "mq-device", "mq-wanted"])
def test_unleased_literal_of_a_different_kind_fails_untouched(api, ns, registry, setup, params, words):
    if setup[0] == "foreign":
        words = [h.add_foreign(ns, "dev0")]
    elif setup[0] == "link":
        h.add_link(ns, "dev0", setup[1])
    else:
        h.add_tuntap(ns, "dev0", setup[1], *setup[2:])
    before = h.stable_view(h.link(ns, "dev0"))
    message = api.fails(name="dev0", mtu=1280, **params)
    assert "dev0" in message, message
    for word in words:
        assert re.search(word, message, re.I), message
    assert h.stable_view(h.link(ns, "dev0")) == before, "the foreign device was touched"
    assert h.non_lo(ns) == {"dev0"}


def test_absent_on_non_tuntap_fails_untouched(api, ns):
    h.add_foreign(ns, "dev0")
    message = api.fails(name="dev0", state="absent")
    assert "'dev0' is" in message and "not a tun/tap device; refusing to delete it" in message, message
    assert "dev0" in h.links(ns)


# ----------------------------------------------------------------------------- leases

def test_lease_idempotence(api, ns, registry):
    first = api(name=T, lease="web1/net0")
    assert first["changed"] is True and first["name"] == "vmt0" and first["lease"] == "web1/net0"
    h.assert_matches_kernel(ns, first)
    for _run in range(2):
        again = api(name=T, lease="web1/net0")
        assert again["changed"] is False
        assert (again["name"], again["ifindex"], again["id"]) == ("vmt0", first["ifindex"], 0)
    other = api(name=T, lease="web1/net1")
    assert other["name"] == "vmt1"
    leases = h.read_registry(registry)["leases"]
    assert leases["web1/net0"]["name"] == "vmt0" and leases["web1/net1"]["name"] == "vmt1"
    assert leases["web1/net0"]["template"] == T and leases["web1/net0"]["netns"] == ns
    assert h.aliases(ns) == {"vmt0": {"lease": "web1/net0", "template": T},
                             "vmt1": {"lease": "web1/net1", "template": T}}


def test_literal_name_with_lease(api, ns, registry):
    made = api(name="lit0", lease="L")
    assert made["name"] == "lit0" and made["id"] is None and made["template"] is None
    h.assert_matches_kernel(ns, made)
    assert api(name="lit0", lease="L")["changed"] is False
    assert h.read_registry(registry)["leases"]["L"]["name"] == "lit0"


def test_leased_device_deleted_behind_our_back_is_recreated_same_name(api, ns, registry):
    api(name=T, lease="a")
    made = api(name=T, lease="b", mtu=1400)
    h.del_link(ns, made["name"])
    again = api(name=T, lease="b", mtu=1400)
    assert again["changed"] is True and again["name"] == made["name"] == "vmt1"
    h.assert_matches_kernel(ns, again)
    assert api(name=T, lease="c")["name"] == "vmt2"


@pytest.mark.parametrize("squatter", ["tuntap", "foreign"])
def test_leased_name_taken_by_another_device_gets_a_fresh_number(api, ns, registry, squatter):
    made = api(name=T, lease="a")
    api(name=T)  # vmt1
    h.del_link(ns, "vmt0")
    if squatter == "tuntap":
        h.add_tuntap(ns, "vmt0")
    else:
        h.add_foreign(ns, "vmt0")
    squat_before = h.stable_view(h.link(ns, "vmt0"))
    again = api(name=T, lease="a")
    assert again["changed"] is True
    assert again["name"] == "vmt2", "a fresh number, never the squatted one or a freed one"
    h.assert_warnings(again, h.lease_moved_warning("a", "vmt0", "vmt2"))
    assert h.stable_view(h.link(ns, "vmt0")) == squat_before, "the squatter was touched"
    assert h.read_registry(registry)["leases"]["a"]["name"] == "vmt2"
    h.assert_matches_kernel(ns, again)
    assert made["ifindex"] != again["ifindex"]


@pytest.mark.parametrize("change, check", [
    ({"mode": "tun"}, lambda info, name: info["type"] == "tun"),
    ({"multi_queue": True}, lambda info, name: info["multi_queue"] is True),
    ({"name": "other%d"}, lambda info, name: name == "other0"),
    ({"name": "lit9"}, lambda info, name: name == "lit9"),
], ids=["mode", "multi_queue", "template", "literal"])
def test_incompatible_change_replaces_the_leased_device(api, ns, registry, change, check):
    old = api(name=T, lease="a")
    assert old["name"] == "vmt0"
    new = api(**dict({"name": T, "lease": "a"}, **change))
    assert new["changed"] is True
    assert new["name"] != "vmt0"
    if new["template"] == T:
        assert new["name"] == "vmt1", "replacement takes a new, higher number"
    assert "vmt0" not in h.links(ns), "the old device must be removed"
    assert check(h.tun_info(ns, new["name"]), new["name"])
    h.assert_matches_kernel(ns, new)
    assert h.read_registry(registry)["leases"]["a"]["name"] == new["name"]
    assert api(**dict({"name": T, "lease": "a"}, **change))["changed"] is False


def test_incompatible_change_of_netns_replaces_the_device(make_ns, registry):
    one, two = make_ns(), make_ns()
    old = h.Api(one, registry)(name=T, lease="a")
    new = h.Api(two, registry)(name=T, lease="a")
    assert new["changed"] is True and new["name"] == "vmt1" and new["netns"] == two
    assert h.tun_names(one) == set() and h.tun_names(two) == {"vmt1"}
    assert old["name"] == "vmt0"


def test_template_without_lease_makes_a_new_device_each_run(api, ns):
    assert [api(name=T)["name"] for _run in range(2)] == ["vmt0", "vmt1"]


# ----------------------------------------------------------------------------- absent

def test_absent_with_lease_deletes_and_releases(api, ns, registry):
    made = api(name=T, lease="a")
    api(name=T, lease="b")
    gone = api(lease="a", state="absent")
    assert gone["changed"] is True and gone["state"] == "absent"
    assert made["name"] not in h.links(ns)
    data = h.read_registry(registry)
    assert "a" not in data["leases"] and made["name"] in data["released"]
    assert data["counters"][T] in (1, 2), "releasing never lowers a counter"
    assert api(lease="a", state="absent")["changed"] is False
    assert api(name=T, lease="c")["name"] == "vmt2"


@pytest.mark.parametrize("give_netns", [True, False], ids=["same-task-netns", "no-netns"])
def test_absent_with_lease_in_a_namespace_that_is_gone(make_ns, registry, give_netns):
    """"a lease whose namespace is gone is simply released": both the same task with
    state: absent (netns still set to the gone namespace) and one without netns."""
    live, doomed = make_ns(), make_ns()
    h.Api(doomed, registry)(name=T, lease="gone/0")
    h.delete_ns(doomed)
    api = h.Api(doomed if give_netns else None, registry)
    result = api(lease="gone/0", state="absent")
    assert result["changed"] is True
    assert "gone/0" not in h.read_registry(registry)["leases"]
    assert doomed not in h.netns_list(), "the namespace must not be re-created"
    assert h.Api(live, registry)(name=T)["name"] == "vmt1"


def test_absent_literal(api, ns, registry):
    assert api(name="nothere0", state="absent")["changed"] is False
    h.add_tuntap(ns, "tp0")
    gone = api(name="tp0", state="absent")
    assert gone["changed"] is True
    assert "tp0" not in h.links(ns)
    assert "tp0" in h.read_registry(registry)["released"]
    assert api(name="tp0", state="absent")["changed"] is False


def test_absent_literal_leased_to_someone_else_fails_naming_the_lease(api, ns, registry):
    made = api(name=T, lease="web9/net0")
    message = api.fails(name=made["name"], state="absent")
    assert "web9/net0" in message and made["name"] in message
    message = api.fails(name=made["name"], lease="other", state="absent")
    assert "web9/net0" in message
    assert made["name"] in h.links(ns)
    ok = api(name=made["name"], lease="web9/net0", state="absent")
    assert ok["changed"] is True and made["name"] not in h.links(ns)


def test_absent_template_without_lease_is_an_error(api, ns):
    api(name=T)
    message = api.fails(name=T, state="absent")
    assert repr(T) in message and "is a template" in message and "give the lease" in message, message
    assert h.tun_names(ns) == {"vmt0"}


def test_name_required_unless_absent_with_lease(api, ns, registry):
    message = api.fails(lease="x")
    assert "name is required to create a device" in message, message
    message = api.fails(state="absent")
    assert "name or lease is required with state 'absent'" in message, message
    assert h.non_lo(ns) == set()
    assert not os.path.exists(os.path.dirname(registry)), "nothing may be written for bad input"
