# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ledger: the registry's content and its invariants, without files or devices."""

from __future__ import annotations

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils._actions import Action, Kind, Removal
from ansible_collections.netdev.tuntap.plugins.module_utils._allocator import TemplateAllocator
from ansible_collections.netdev.tuntap.plugins.module_utils._device import LinkInfo, TunInfo
from ansible_collections.netdev.tuntap.plugins.module_utils._ledger import Ledger, empty_state, number_in
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import decode_mark, encode_mark
from ansible_collections.netdev.tuntap.plugins.module_utils._spec import parse_task


class FakeClock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def ledger(now=1000.0, **state) -> Ledger:
    doc = empty_state()
    doc.update(state)
    return Ledger(doc, FakeClock(now))


MINE, OTHER = "0123abcd", "feedbeef"


def tap(name, index=10, lease=None, template=None, marked=True, mode="tap", multi_queue=False,
        registry=None) -> LinkInfo:
    alias = encode_mark(lease, template, registry) if marked else None
    return LinkInfo(name=name, index=index, kind="tun", mtu=1500, mac_address="fe:00:00:00:00:01", master=None,
                    up=True, carrier=False, alias=alias, mark=decode_mark(alias),
                    tun=TunInfo(mode=mode, packet_info=False, vnet_hdr=False, persist=True,
                                multi_queue=multi_queue, owner=0, group=None, queues=0 if multi_queue else None))


# -- releases and holds ----------------------------------------------------------------

@pytest.mark.parametrize("age, reuse_delay, kept", [
    (0, 3600, True),
    (3599, 3600, True),
    (3600, 3600, False),       # exactly reuse_delay ago: no longer held
    (3601, 3600, False),
    (1, 0, False),
    (0, 0, False),
])
def test_drop_old_releases(age, reuse_delay, kept):
    book = ledger(10000.0, released={
        "vnet1": {"at": 10000.0 - age, "template": "vnet%d", "netns": None},
        "vnet2": {"at": 10000.0, "template": "vnet%d", "netns": None}})
    book.drop_old_releases(reuse_delay)
    assert ("vnet1" in book.state["released"]) is kept
    assert ("vnet2" in book.state["released"]) is (reuse_delay > 0)


@pytest.mark.parametrize("age, hold, reuse_delay, kept", [
    (100, 3600, 0, True),        # a task with reuse_delay 0 does not end another task's hold
    (100, 3600, 60, True),
    (3600, 3600, 0, False),      # the hold it was released with is over
    (100, 60, 3600, True),       # a short hold does not shorten this task's own reuse_delay
    (3600, 60, 3600, False),
])
def test_drop_old_releases_keeps_the_hold_a_release_was_made_with(age, hold, reuse_delay, kept):
    book = ledger(10000.0, released={"vnet1": {"at": 10000.0 - age, "template": "vnet%d", "netns": None,
                                               "hold": hold}})
    book.drop_old_releases(reuse_delay)
    assert ("vnet1" in book.state["released"]) is kept


@pytest.mark.parametrize("age, reuse_delay, held", [
    (0, 3600, True), (3599, 3600, True), (3600, 3600, False), (10, 0, False), (10, 60, True),
])
def test_held_names_follow_the_asking_task_s_reuse_delay(age, reuse_delay, held):
    # the record's own hold (3600) keeps the record, but only the task's delay decides the skip
    book = ledger(1000.0, released={"vnet1": {"at": 1000.0 - age, "template": "vnet%d", "netns": None,
                                              "hold": 3600}})
    assert ("vnet1" in book.held_names(reuse_delay)) is held


def test_release_records_time_template_netns_and_hold():
    book = ledger(500.0)
    book.release("vnet4", "vnet%d", "ntt-x", 3600)
    book.release("tapfoo", None, None, 0)
    assert book.state["released"] == {
        "vnet4": {"at": 500.0, "template": "vnet%d", "netns": "ntt-x", "hold": 3600},
        "tapfoo": {"at": 500.0, "template": None, "netns": None, "hold": 0}}
    assert book.held_names(3600) == {"vnet4", "tapfoo"}
    book.clock.now += 3600
    book.drop_old_releases(3600)
    assert book.state["released"] == {}


@pytest.mark.parametrize("start, number, expected", [
    (None, 3, 3),
    (5, 3, 5),       # never lowered
    (5, 5, 5),
    (5, 9, 9),
    (None, 0, 0),
])
def test_raise_counter(start, number, expected):
    book = ledger(counters={} if start is None else {"v%d": start})
    book.raise_counter("v%d", number)
    assert book.counter("v%d") == expected


# -- leases ----------------------------------------------------------------------------

def test_bind_keeps_since_for_the_same_name_and_renews_it_for_another():
    book = ledger(100.0)
    book.bind("a", "vmtap1", "vmtap%d", 1, None, "tap", False)
    book.clock.now = 200.0
    book.bind("a", "vmtap1", "vmtap%d", 1, None, "tap", True)
    assert book.lease("a")["since"] == 100.0 and book.lease("a")["multi_queue"] is True
    book.bind("a", "vmtap7", "vmtap%d", 7, None, "tap", True)
    assert book.lease("a") == {"name": "vmtap7", "template": "vmtap%d", "id": 7, "netns": None, "mode": "tap",
                               "multi_queue": True, "since": 200.0}


def test_holder_is_per_namespace_and_follows_bind_and_unbind():
    book = ledger()
    book.bind("a", "tap0", None, None, "ns1", "tap", False)
    assert book.holder("ns1", "tap0") == "a"
    assert book.holder(None, "tap0") is None
    book.unbind("a")
    assert book.holder("ns1", "tap0") is None
    book.bind("b", "tap0", None, None, None, "tap", False)
    assert book.holder(None, "tap0") == "b"


def test_leases_under_a_prefix_are_sorted_and_exact():
    book = ledger()
    for key in ("g:web1/1", "g:web1/0", "g:web10/0", "h:web1/0"):
        book.bind(key, key.replace("/", "-")[-8:], None, None, None, "tap", False)
    assert book.leases_under("g:web1/") == ["g:web1/0", "g:web1/1"]


def test_copy_is_independent():
    book = ledger()
    scratch = book.copy()
    scratch.bind("a", "tap0", None, None, None, "tap", False)
    scratch.set_counter("v%d", 4)
    assert book.state == empty_state()


# -- what an action leaves ---------------------------------------------------------------

def _task(**params):
    params.setdefault("registry", "/nonexistent/ntt-unit/registry.json")
    return parse_task(params)


def test_record_of_a_created_leased_device_binds_reclaims_and_moves_the_counter():
    book = ledger(50.0, released={"vmtap4": {"at": 1.0, "template": "vmtap%d", "netns": None, "hold": 3600}})
    spec = _task(name="vmtap%d", lease="web1/net0", multi_queue=True).devices[0]
    allocator = TemplateAllocator("vmtap%d", 99, 3, set())
    number = allocator.take()
    action = Action(spec, Kind.CREATE, "vmtap4", netns="ns", number=number, template="vmtap%d",
                    lease="web1/net0", allocator=allocator)
    book.record(action, 3600)
    assert book.counter("vmtap%d") == 4
    assert "vmtap4" not in book.state["released"]
    assert book.lease("web1/net0") == {"name": "vmtap4", "template": "vmtap%d", "id": 4, "netns": "ns",
                                       "mode": "tap", "multi_queue": True, "since": 50.0}


def test_record_of_a_replacement_releases_the_old_name_then_binds_the_new():
    book = ledger(50.0)
    book.bind("k", "vmtap1", "vmtap%d", 1, None, "tap", False)
    spec = _task(name="vmtap%d", lease="k", netns="ns2").devices[0]
    old = Removal("vmtap1", None, tap("vmtap1", lease="k"), "k", "vmtap%d")
    action = Action(spec, Kind.CREATE, "vmtap2", netns="ns2", number=2, template="vmtap%d", lease="k",
                    replaces=old)
    book.record(action, 60)
    assert book.state["released"]["vmtap1"] == {"at": 50.0, "template": "vmtap%d", "netns": None, "hold": 60}
    assert book.lease("k")["name"] == "vmtap2" and book.lease("k")["netns"] == "ns2"
    assert book.counter("vmtap%d") is None   # a name made again from a record moves no counter


def test_record_of_a_removal_without_releasing_a_name_now_used_by_another_device():
    book = ledger()
    book.bind("k", "vmtap1", "vmtap%d", 1, None, "tap", False)
    removal = Removal("vmtap1", None, None, "k", "vmtap%d", release_name=False)
    book.record(Action(None, Kind.RELEASE, "vmtap1", removal=removal), 3600)
    assert book.lease("k") is None and book.state["released"] == {}


# -- after a crash or a lost registry ------------------------------------------------------

def test_recover_adopts_marked_devices_with_unknown_leases_only():
    book = ledger()
    book.bind("known", "vmtap1", "vmtap%d", 1, "ns", "tap", False)
    devices = {d.name: d for d in (
        tap("vmtap1", lease="known", template="vmtap%d"),
        tap("vmtap5", lease="lost", template="vmtap%d", multi_queue=True),
        tap("vmtap6", marked=False),
        tap("vmtap7", lease=None, template="vmtap%d"))}
    warnings = book.recover(devices, "ns", recovered=False, path="/r").warnings
    assert book.lease("lost") == {"name": "vmtap5", "template": "vmtap%d", "id": 5, "netns": "ns", "mode": "tap",
                                  "multi_queue": True, "since": 1000.0}
    assert set(book.leases) == {"known", "lost"}
    assert book.counter("vmtap%d") == 5
    assert warnings == ["adopted 1 device(s) that the registry did not record (left by an interrupted run or a "
                        "lost registry): vmtap5"]


def test_recover_after_a_lost_registry_lets_marks_win_and_raises_counters():
    book = ledger(counters={"vmtap%d": 2})
    book.bind("moved", "vmtap2", "vmtap%d", 2, "ns", "tap", False)
    devices = {d.name: d for d in (tap("vmtap9", lease="moved", template="vmtap%d"),
                                   tap("vmtap12", lease=None, template="vmtap%d"))}
    book.recover(devices, "ns", recovered=True, path="/r")
    assert book.lease("moved")["name"] == "vmtap9"
    assert book.counter("vmtap%d") == 12


def test_recover_does_not_adopt_a_name_another_lease_holds():
    book = ledger()
    book.bind("owner", "vmtap3", "vmtap%d", 3, "ns", "tap", False)
    book.recover({"vmtap3": tap("vmtap3", lease="intruder", template="vmtap%d")}, "ns", recovered=False, path="/r")
    assert book.lease("intruder") is None


def test_recover_of_an_intent_raises_counters_and_clears_it():
    book = ledger()
    book.record_intent("ns", [{"lease": "a", "name": "vmtap8", "template": "vmtap%d", "id": 8, "netns": "ns"},
                              {"lease": None, "name": "t", "template": None, "id": None, "netns": "ns"}])
    warnings = book.recover({}, "ns", recovered=False, path="/reg.json").warnings
    assert book.counter("vmtap%d") == 8 and book.intent is None
    assert warnings == ["registry /reg.json records a run that was interrupted before it finished; its devices "
                        "were checked and counters kept above the numbers it used"]


@pytest.mark.parametrize("template, name, expected", [
    ("vmtap%d", "vmtap12", 12), ("vmtap%d", "vmtap012", None), ("vmtap%d", "other", None),
    (None, "vmtap1", None), ("bad%s", "bad1", None), ("a%db", "a7b", 7),
])
def test_number_in(template, name, expected):
    assert number_in(template, name) == expected


# -- crashes in the middle of a replacement, released leases, other registries ---------------

def mine(**state) -> Ledger:
    book = ledger(**state)
    book.set_registry_id(MINE)
    return book


def test_an_interrupted_replacement_binds_the_lease_to_the_new_device():
    # Killed after the new device was made, before the result was recorded: the registry still
    # maps the lease to the device being replaced (already deleted).
    book = mine()
    book.bind("web/0", "vmtap1", "vmtap%d", 1, "ns", "tap", False)
    book.record_intent("ns", [{"lease": "web/0", "name": "vmtap2", "template": "vmtap%d", "id": 2, "netns": "ns",
                               "replaces": "vmtap1"}], hold=600)
    devices = {"vmtap2": tap("vmtap2", lease="web/0", template="vmtap%d", multi_queue=True, registry=MINE)}
    found = book.recover(devices, "ns", recovered=False, path="/r", hold=60)
    assert book.lease("web/0")["name"] == "vmtap2" and book.lease("web/0")["multi_queue"] is True
    assert found.adopted == ["vmtap2"] and found.orphans == []
    assert book.state["released"]["vmtap1"]["hold"] == 600     # the old name is held back
    assert "lease" not in book.state["released"]["vmtap1"]       # the lease moved, it was not released


def test_an_interrupted_replacement_whose_old_device_survives_leaves_one_device_per_lease():
    book = mine()
    book.bind("web/0", "vmtap1", "vmtap%d", 1, "ns", "tap", False)
    book.record_intent("ns", [{"lease": "web/0", "name": "vmtap2", "template": "vmtap%d", "id": 2, "netns": "ns",
                               "replaces": "vmtap1"}])
    old = tap("vmtap1", index=5, lease="web/0", template="vmtap%d", registry=MINE)
    new = tap("vmtap2", index=6, lease="web/0", template="vmtap%d", registry=MINE)
    found = book.recover({"vmtap1": old, "vmtap2": new}, "ns", recovered=False, path="/r")
    assert book.lease("web/0")["name"] == "vmtap2"
    assert [(ns, dev.name) for ns, dev, _why in found.orphans] == [("ns", "vmtap1")]


def test_a_marked_device_whose_recorded_device_is_gone_is_the_lease_s_device():
    book = mine()
    book.bind("web/0", "vmtap1", "vmtap%d", 1, "ns", "tap", False)
    found = book.recover({"vmtap2": tap("vmtap2", lease="web/0", template="vmtap%d", registry=MINE)}, "ns",
                         recovered=False, path="/r", hold=30)
    assert book.lease("web/0")["name"] == "vmtap2" and found.adopted == ["vmtap2"]
    assert "vmtap1" in book.state["released"]


def test_a_second_device_for_a_recorded_lease_is_an_orphan():
    book = mine()
    book.bind("web/0", "vmtap1", "vmtap%d", 1, "ns", "tap", False)
    devices = {"vmtap1": tap("vmtap1", index=5, lease="web/0", template="vmtap%d", registry=MINE),
               "vmtap2": tap("vmtap2", index=6, lease="web/0", template="vmtap%d", registry=MINE)}
    found = book.recover(devices, "ns", recovered=False, path="/r")
    assert book.lease("web/0")["name"] == "vmtap1" and found.adopted == []
    assert [dev.name for _ns, dev, _why in found.orphans] == ["vmtap2"]


def test_a_released_lease_is_never_adopted_back():
    book = mine()
    book.bind("web/0", "vmtap3", "vmtap%d", 3, "ns", "tap", False)
    removal = Removal("vmtap3", "ns", None, "web/0", "vmtap%d")
    book.forget(removal, 3600)
    assert book.state["released"]["vmtap3"]["lease"] == "web/0"
    leftover = tap("vmtap2", lease="web/0", template="vmtap%d", registry=MINE)
    found = book.recover({"vmtap2": leftover}, "ns", recovered=False, path="/r")
    assert book.lease("web/0") is None and found.adopted == []
    assert [dev.name for _ns, dev, _why in found.orphans] == ["vmtap2"]


def test_another_registry_s_devices_are_never_adopted_and_are_reported():
    book = mine()
    devices = {"vmtap4": tap("vmtap4", lease="theirs", template="vmtap%d", registry=OTHER),
               "vmtap5": tap("vmtap5", lease="old", template="vmtap%d")}        # legacy: no registry id
    found = book.recover(devices, "ns", recovered=True, path="/r")
    assert book.leases == {} and found.adopted == [] and found.orphans == []
    assert any("vmtap4" in w and "another registry" in w for w in found.warnings), found.warnings
    assert any("vmtap5" in w and "without a registry id" in w for w in found.warnings), found.warnings


def test_legacy_marks_are_adopted_when_no_other_registry_shares_the_namespace():
    book = mine()
    found = book.recover({"vmtap5": tap("vmtap5", lease="old", template="vmtap%d")}, "ns", recovered=False,
                         path="/r")
    assert book.lease("old")["name"] == "vmtap5" and found.adopted == ["vmtap5"]


def test_an_intent_in_another_namespace_is_recovered_there():
    book = mine()
    book.bind("web/0", "vmtap1", "vmtap%d", 1, "a", "tap", False)
    book.record_intent("a", [{"lease": "web/0", "name": "vmtap2", "template": "vmtap%d", "id": 2, "netns": "b"}])
    there = {"vmtap2": tap("vmtap2", lease="web/0", template="vmtap%d", registry=MINE)}
    assert book.recovery_namespaces({}) == {"b"}
    found = book.recover({}, "c", recovered=False, path="/r", elsewhere={"b": there, "a": {}}.get)
    assert book.lease("web/0")["netns"] == "b" and found.adopted == ["vmtap2"]
