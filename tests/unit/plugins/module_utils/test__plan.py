# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning decisions, from fake links and a registry state: no system state is touched.

The planner's module imports nothing that touches the system (checked below); the world
it sees is a plain World snapshot built here.
"""

from __future__ import annotations

import copy
import re

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils._actions import Removal
from ansible_collections.netdev.tuntap.plugins.module_utils._device import LinkInfo, TunInfo
from ansible_collections.netdev.tuntap.plugins.module_utils._ledger import Ledger, empty_state
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import decode_mark, encode_mark
from ansible_collections.netdev.tuntap.plugins.module_utils import _plan as _plan_module
from ansible_collections.netdev.tuntap.plugins.module_utils._plan import Planner, PlanError, lease_namespaces
from ansible_collections.netdev.tuntap.plugins.module_utils._spec import parse_task
from ansible_collections.netdev.tuntap.plugins.module_utils._world import World

REG = "/nonexistent/ntt-unit/registry.json"
NOW = 1000.0
UNSET = object()


def tap(name, index=None, *, mode="tap", mq=False, lease=None, template=None, marked=UNSET, in_use=False,
        queues=None, mtu=1500, mac="52:54:00:00:00:01", master=None, up=True, owner=0, group=None):
    """A tun/tap LinkInfo as _links would report it; marked with lease/template when either is given."""
    if marked is UNSET:
        marked = lease is not None or template is not None
    alias = encode_mark(lease, template) if marked else None
    if mq:
        queues = (2 if in_use else 0) if queues is None else queues
    return LinkInfo(name=name, index=index or abs(hash(name)) % 10000 + 10, kind="tun", mtu=mtu,
                    mac_address=None if mode == "tun" else mac, master=master, up=up,
                    carrier=in_use and not mq, alias=alias,
                    tun=TunInfo(mode=mode, packet_info=False, vnet_hdr=False, persist=True, multi_queue=mq,
                                owner=owner, group=group, queues=queues),
                    mark=decode_mark(alias))


def link(name, kind, index=None):
    """A device that is not a tun/tap (kind None: no IFLA_LINKINFO, e.g. a physical NIC)."""
    return LinkInfo(name=name, index=index or abs(hash(name)) % 10000 + 10, kind=kind, mtu=1500,
                    mac_address="52:54:00:99:99:99", master=None, up=True, carrier=True, alias=None)


def lease_rec(name, template=None, number=None, netns=None, mode="tap", mq=False, since=1.0):
    return {"name": name, "template": template, "id": number, "netns": netns, "mode": mode,
            "multi_queue": mq, "since": since}


def state_of(counters=None, leases=None, released=None):
    state = empty_state()
    state["counters"].update(counters or {})
    state["leases"].update(leases or {})
    state["released"].update({name: {"at": NOW - 10, "template": None, "netns": None}
                              for name in (released or ())})
    return state


def world_of(task, present=(), elsewhere=None, missing=(), looked_up=True) -> World:
    """The snapshot: ``present`` in the task's namespace, ``elsewhere`` {netns: [devices]} in others.

    ``looked_up``: the holders of every device were looked up and none found, as the engine
    leaves the snapshot before its last plan of a removal (False: not looked up yet).
    """
    world = World(task.netns, links={task.netns: {d.name: d for d in present}}, missing=set(missing))
    for netns, devices in (elsewhere or {}).items():
        world.links[netns] = {d.name: d for d in devices}
    if looked_up:
        world.holders = {(netns, name): [] for netns, links in world.links.items() for name in links}
    return world


def planner_for(present=(), reg=None, elsewhere=None, missing=(), looked_up=True, **params):
    """A Planner for the task ``params`` (module options), devices ``present``, registry state ``reg``."""
    params.setdefault("registry", REG)
    task = parse_task(params)
    ledger = Ledger(reg if reg is not None else state_of(), lambda: NOW)
    return Planner(task, ledger, world_of(task, present, elsewhere, missing, looked_up))


def plan(present=(), reg=None, **params):
    planner = planner_for(present, reg, **params)
    return planner, planner.plan()


def plan_one(present=(), reg=None, **params):
    planner, actions = plan(present, reg, **params)
    assert len(actions) == 1
    return planner, actions[0]


def refusal(present=(), reg=None, **params) -> str:
    with pytest.raises(PlanError) as exc:
        plan(present, reg, **params)
    return str(exc.value)


# -- allocation for templates ------------------------------------------------------------

@pytest.mark.parametrize("present, state, max_id, expected", [
    # first use: the counter starts above every canonical match in the namespace
    ([], None, 99999, "vnet0"),
    (["vnet0", "vnet3"], None, 99999, "vnet4"),
    (["vnet3", "vnet1"], None, 99999, "vnet4"),
    (["vnet007"], None, 99999, "vnet0"),              # not canonical: ignored
    (["vnet00", "vnet01"], None, 99999, "vnet0"),
    (["vnet100000"], None, 99999, "vnet0"),           # above max_id: not a match
    (["vnet5", "vnet100000"], None, 99999, "vnet6"),
    (["vnet9", "tap12", "vnetx"], None, 99999, "vnet10"),
    (["vnet5"], None, 5, "vnet0"),                    # the match is max_id: wrap
    # first use: leases and releases block numbers but do not raise the start
    ([], state_of(leases={"other": lease_rec("vnet9", "vnet%d", 9)}), 99999, "vnet0"),
    ([], state_of(released=["vnet0"]), 99999, "vnet1"),
    (["vnet2"], state_of(leases={"o": lease_rec("vnet3", "vnet%d", 3)}, released=["vnet4"]), 99999, "vnet5"),
    # a counter wins over the devices present
    ([], state_of(counters={"vnet%d": 12}), 99999, "vnet13"),
    (["vnet50"], state_of(counters={"vnet%d": 3}), 99999, "vnet4"),
    (["vnet4"], state_of(counters={"vnet%d": 3}), 99999, "vnet5"),                        # skip existing
    ([], state_of(counters={"vnet%d": 3}, leases={"o": lease_rec("vnet4", "vnet%d", 4)}), 99999, "vnet5"),
    ([], state_of(counters={"vnet%d": 3}, released=["vnet4", "vnet5"]), 99999, "vnet6"),  # skip held back
    (["vnet13"], state_of(counters={"vnet%d": 12}, leases={"o": lease_rec("vnet14", "vnet%d", 14)},
                          released=["vnet15"]), 99999, "vnet16"),
    # leases in other namespaces still block: names are host-global
    ([], state_of(counters={"vnet%d": 3}, leases={"o": lease_rec("vnet4", "vnet%d", 4, netns="ntt-other")}),
     99999, "vnet5"),
    # the counter of another template does not matter
    ([], state_of(counters={"tap%d": 40}), 99999, "vnet0"),
    # wrap after max_id, skipping what is taken
    ([], state_of(counters={"vnet%d": 5}), 5, "vnet0"),
    (["vnet0"], state_of(counters={"vnet%d": 5}, released=["vnet1"]), 5, "vnet2"),
    ([], state_of(counters={"vnet%d": 900}), 5, "vnet0"),       # max_id lowered below the counter
    # non-canonical devices do not block their canonical twin
    (["vnet04"], state_of(counters={"vnet%d": 3}), 99999, "vnet4"),
])
def test_template_allocation(present, state, max_id, expected):
    devices = [tap(name) if name.startswith("vnet") else link(name, "veth") for name in present]
    planner, action = plan_one(devices, state, name="vnet%d", max_id=max_id)
    assert action.kind == "create"
    assert action.name == expected
    assert action.number == int(expected[4:])
    assert action.template == "vnet%d"
    assert action.changed is True


def test_template_without_lease_makes_a_new_device_every_time():
    _planner, action = plan_one([tap("vnet0"), tap("vnet1")], state_of(counters={"vnet%d": 1}), name="vnet%d")
    assert (action.kind, action.name, action.lease, action.lease_changed) == ("create", "vnet2", None, False)


def test_exhausted_range_is_a_clear_error():
    state = state_of(counters={"vnet%d": 1}, leases={"o": lease_rec("vnet1", "vnet%d", 1)}, released=["vnet2"])
    message = refusal([tap("vnet0"), tap("vnet3")], state, name="vnet%d", max_id=3, reuse_delay=60)
    for part in ("no free name for template 'vnet%d'", "max_id 3", "reuse_delay (60 s)", "Raise max_id"):
        assert part in message


def test_exhaustion_with_a_huge_range_and_few_names_is_instant():
    _planner, action = plan_one([tap("v%d" % n) for n in range(100)], state_of(counters={"v%d": 10 ** 9 - 1}),
                                name="v%d", max_id=10 ** 9)
    assert action.name == "v1000000000"
    _planner, action = plan_one([tap("v%d" % n) for n in range(100)], state_of(counters={"v%d": 10 ** 9}),
                                name="v%d", max_id=10 ** 9)
    assert action.name == "v100"


def test_batch_allocates_distinct_increasing_numbers():
    planner, actions = plan([tap("vnet2")], state_of(counters={"vnet%d": 0}, released=["vnet4"]),
                            devices=[{"name": "vnet%d"}, {"name": "tap%d"}, {"name": "vnet%d", "lease": "a"},
                                     {"name": "vnet%d", "lease": "b"}])
    assert [a.name for a in actions] == ["vnet1", "tap0", "vnet3", "vnet5"]
    assert planner.ledger.state["counters"] == {"vnet%d": 5, "tap%d": 0}


def test_batch_template_does_not_take_a_name_requested_literally():
    # a literal name in the same task is about to be created: the template must not plan it too
    _planner, actions = plan([], state_of(counters={"vnet%d": 4}),
                             devices=[{"name": "vnet%d"}, {"name": "vnet5"}])
    names = [a.name for a in actions]
    assert [a.kind for a in actions] == ["create", "create"]
    assert len(set(names)) == 2, "two creates of the same name planned: %r" % names


def test_store_counters_only_for_templates_that_handed_out_numbers():
    state = state_of(counters={"vnet%d": 7, "tap%d": 3},
                     leases={"k": lease_rec("tap9", "tap%d", 9)})
    planner, actions = plan([tap("tap9", lease="k", template="tap%d")], state,
                            devices=[{"name": "tap%d", "lease": "k"}, {"name": "vnet%d"}])
    assert [a.kind for a in actions] == ["reconcile", "create"]
    assert planner.ledger.state["counters"] == {"vnet%d": 8, "tap%d": 3}


def test_planning_does_not_change_the_state():
    state = state_of(counters={"vnet%d": 7}, leases={"k": lease_rec("vnet3", "vnet%d", 3)}, released=["vnet9"])
    before = copy.deepcopy(state)
    plan([tap("vnet3", lease="k", template="vnet%d")], state,
         devices=[{"name": "vnet%d", "lease": "k"}, {"name": "vnet%d", "lease": "new"}, {"name": "tap0"}])
    assert state == before


# -- leases --------------------------------------------------------------------------

def test_new_lease_creates_and_records():
    planner, action = plan_one([], None, name="vnet%d", lease="web1/net0")
    assert (action.kind, action.name, action.number, action.lease, action.lease_changed) == \
        ("create", "vnet0", 0, "web1/net0", True)
    assert planner.ledger.lease("web1/net0") == lease_rec("vnet0", "vnet%d", 0, since=NOW)


def test_leased_device_present_is_reconciled_without_change():
    state = state_of(counters={"vnet%d": 3}, leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    device = tap("vnet3", lease="k", template="vnet%d")
    _planner, action = plan_one([device], state, name="vnet%d", lease="k")
    assert (action.kind, action.name, action.number, action.template) == ("reconcile", "vnet3", 3, "vnet%d")
    assert action.changes == {}
    assert action.changed is False
    assert action.device is device


def test_leased_name_held_by_an_unmarked_tap_is_not_taken_over():
    # only a device marked with the lease is the lease's device: an unmarked tap under a freed
    # name was made by someone else (the engine marks the orphans of an interrupted run first)
    state = state_of(counters={"vnet%d": 3}, leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    planner, action = plan_one([tap("vnet3", marked=False)], state, name="vnet%d", lease="k")
    assert (action.kind, action.name) == ("create", "vnet4")
    assert action.replaces == Removal("vnet3", None, None, "k", "vnet%d", release_name=False)
    assert "now held by a tap device" in planner.warnings[0]


def test_leased_device_with_a_lost_alias_but_our_mark_is_reconciled():
    # the mark is what counts; a different alias text with our mark is rewritten
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    device = tap("vnet3", lease="k", template="vnet%d")
    device.alias = device.alias.replace('"template"', ' "template"')   # same JSON, other spelling
    _planner, action = plan_one([device], state, name="vnet%d", lease="k")
    assert action.kind == "reconcile"
    assert action.changes == {"alias": encode_mark("k", "vnet%d")}


def test_leased_device_gone_is_made_again_under_the_same_name():
    state = state_of(counters={"vnet%d": 9}, leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    planner, action = plan_one([], state, name="vnet%d", lease="k")
    assert (action.kind, action.name, action.number, action.allocator, action.replaces) == \
        ("create", "vnet3", 3, None, None)
    assert planner.ledger.state["counters"] == {"vnet%d": 9}


def test_leased_literal_device_gone_is_made_again():
    state = state_of(leases={"k": lease_rec("mytap")})
    _planner, action = plan_one([], state, name="mytap", lease="k")
    assert (action.kind, action.name, action.number, action.template) == ("create", "mytap", None, None)


@pytest.mark.parametrize("holder", [
    tap("vnet3", lease="someone-else", template="vnet%d"),
    link("vnet3", "veth"),
    tap("vnet3", mode="tun"),
    tap("vnet3", mq=True),
])
def test_leased_name_taken_by_another_device_moves_the_lease(holder):
    state = state_of(counters={"vnet%d": 3}, leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    planner, action = plan_one([holder], state, name="vnet%d", lease="k")
    assert (action.kind, action.name, action.lease_changed) == ("create", "vnet4", True)
    assert action.replaces == Removal("vnet3", None, None, "k", "vnet%d", release_name=False)
    assert len(planner.warnings) == 1
    for part in ("lease 'k'", "'vnet3' is now held by", "fresh name 'vnet4'"):
        assert part in planner.warnings[0]


def test_leased_literal_name_taken_by_another_device_is_an_error():
    state = state_of(leases={"k": lease_rec("mytap")})
    message = refusal([link("mytap", "bridge")], state, name="mytap", lease="k")
    assert "mytap (lease 'k')" in message
    assert "the name 'mytap' is now held by a bridge device" in message


@pytest.mark.parametrize("record, params, old_device", [
    # template changed
    (lease_rec("vnet3", "vnet%d", 3), dict(name="tap%d"), True),
    # from a template to a literal name, and from one literal name to another
    (lease_rec("vnet3", "vnet%d", 3), dict(name="mytap"), True),
    (lease_rec("mytap"), dict(name="othertap"), True),
    (lease_rec("mytap"), dict(name="vnet%d"), True),
    # mode / multi_queue changed
    (lease_rec("vnet3", "vnet%d", 3), dict(name="vnet%d", mode="tun"), True),
    (lease_rec("vnet3", "vnet%d", 3), dict(name="vnet%d", multi_queue=True), True),
    # the old device is already gone
    (lease_rec("vnet3", "vnet%d", 3), dict(name="vnet%d", mode="tun"), False),
])
def test_incompatible_change_replaces_the_device(record, params, old_device):
    state = state_of(counters={"vnet%d": 3}, leases={"k": record})
    old = tap(record["name"], lease="k", template=record["template"])
    planner, action = plan_one([old] if old_device else [], state, lease="k", **params)
    assert action.kind == "create"
    assert action.changed and action.lease_changed
    assert action.replaces.name == record["name"]
    assert action.replaces.lease == "k"
    assert action.replaces.template == record["template"]
    assert action.replaces.release_name is True
    assert action.replaces.device is (old if old_device else None)
    if params["name"].endswith("%d"):
        assert action.name != record["name"]
        assert action.template == params["name"]
    else:
        assert action.name == params["name"]
    assert planner.warnings == []


def test_replacement_allocates_past_the_old_name():
    state = state_of(counters={"vnet%d": 3}, leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    _planner, action = plan_one([tap("vnet3", lease="k", template="vnet%d")], state, name="vnet%d", lease="k",
                                multi_queue=True)
    assert action.name == "vnet4"


def test_replacing_a_device_in_use_needs_force():
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    old = tap("vnet3", lease="k", template="vnet%d", in_use=True)
    message = refusal([old], state, name="vnet%d", lease="k", mode="tun")
    assert "device 'vnet3' is in use" in message and "force: true" in message
    _planner, action = plan_one([old], state, name="vnet%d", lease="k", mode="tun", force=True)
    assert action.replaces.device is old


def test_replacement_leaves_a_device_that_is_not_ours():
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    stranger = tap("vnet3", lease="other", template="vnet%d", in_use=True)
    planner, action = plan_one([stranger], state, name="tap%d", lease="k")
    assert action.replaces.device is None          # not deleted, and its in-use state is irrelevant
    assert "lease 'k'" in planner.warnings[0] and "left alone" in planner.warnings[0]


def test_lease_moved_to_another_namespace_whose_old_namespace_is_gone():
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3, netns="ntt-gone")})
    _planner, action = plan_one([], state, missing=["ntt-gone"], name="vnet%d", lease="k", netns="ntt-here")
    assert action.kind == "create"
    assert action.replaces == Removal("vnet3", "ntt-gone", None, "k", "vnet%d")
    # the old name is still leased while planning: the new one is not the same
    assert action.name == "vnet0"


def test_lease_in_another_existing_namespace_is_looked_up_there():
    old = tap("vnet3", lease="k", template="vnet%d", in_use=True)
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3, netns="ntt-old")})
    # a device of the same name in the target namespace is not the one the lease holds
    here = [tap("vnet3", lease="k", template="vnet%d")]
    # the old device is in use there: moving the lease to this namespace needs force
    message = refusal(here, state, elsewhere={"ntt-old": [old]}, name="vnet%d", lease="k", netns="ntt-new")
    assert "device 'vnet3' is in use" in message
    _planner, action = plan_one(here, state, elsewhere={"ntt-old": [old]}, name="vnet%d", lease="k",
                                netns="ntt-new", force=True)
    assert action.replaces == Removal("vnet3", "ntt-old", old, "k", "vnet%d")


def test_lease_in_the_host_namespace_is_looked_up_there_from_a_named_one():
    # netns None is the host's namespace: its device is found there, not in the target
    old = tap("vnet3", lease="k", template="vnet%d")
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3, netns=None)})
    _planner, action = plan_one([], state, elsewhere={None: [old]}, name="vnet%d", lease="k", netns="ntt-new")
    assert action.replaces == Removal("vnet3", None, old, "k", "vnet%d")
    _planner, actions = plan([], state, elsewhere={None: [old]}, devices=[], prune_prefix="k", netns="ntt-new")
    assert [(a.kind, a.removal.device) for a in actions] == [("delete", old)]


def test_a_namespace_that_was_not_read_is_an_internal_error_not_an_empty_one():
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3, netns="ntt-unread")})
    with pytest.raises(LookupError):
        plan([], state, name="vnet%d", lease="k", netns="ntt-new")


def test_the_namespaces_to_read_are_those_of_the_task_s_leases():
    state = state_of(leases={"a": lease_rec("t1", netns="ntt-a"), "g:x": lease_rec("t2", netns=None),
                             "g:y": lease_rec("t3", netns="ntt-here"), "z": lease_rec("t4", netns="ntt-z")})
    task = parse_task({"registry": REG, "netns": "ntt-here", "devices": [{"name": "q", "lease": "a"}],
                       "prune_prefix": "g:"})
    assert lease_namespaces(task, Ledger(state, lambda: NOW)) == {"ntt-a", None}


def test_same_namespace_lease_is_reconciled():
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3, netns="ntt-here")})
    _planner, action = plan_one([tap("vnet3", lease="k", template="vnet%d")], state, name="vnet%d", lease="k",
                                netns="ntt-here")
    assert action.kind == "reconcile" and not action.changed


def test_binding_keeps_since_for_the_same_name():
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3, since=5.0)})
    planner, _action = plan_one([tap("vnet3", lease="k", template="vnet%d")], state, name="vnet%d", lease="k",
                                mtu=9000)
    assert planner.ledger.lease("k")["since"] == 5.0
    planner2, action2 = plan_one([tap("vnet3", lease="other", template="vnet%d")],
                                 state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3, since=5.0)}),
                                 name="vnet%d", lease="k")
    assert planner2.ledger.lease("k") == lease_rec(action2.name, "vnet%d", action2.number, since=NOW)


# -- literal names ------------------------------------------------------------------

def test_literal_name_absent_is_created():
    _planner, action = plan_one([], None, name="mytap", mode="tun")
    assert (action.kind, action.name, action.number, action.template, action.lease_changed) == \
        ("create", "mytap", None, None, False)
    assert action.label() == "mytap"


def test_literal_name_present_and_matching_is_reconciled():
    _planner, action = plan_one([tap("mytap")], None, name="mytap")
    assert (action.kind, action.changes, action.changed) == ("reconcile", {}, False)


@pytest.mark.parametrize("device, params, difference", [
    (link("eth0", None), dict(name="eth0"), "is a non-tun/tap device, not a tun/tap device"),
    (link("veth0", "veth"), dict(name="veth0"), "is a veth device, not a tun/tap device"),
    (link("br0", "bridge"), dict(name="br0", mode="tun"), "is a bridge device"),
    (tap("t0", mode="tun"), dict(name="t0"), "is a tun device, but mode 'tap' was requested"),
    (tap("t0"), dict(name="t0", mode="tun"), "is a tap device, but mode 'tun' was requested"),
    (tap("t0"), dict(name="t0", multi_queue=True), "has multi_queue false, but multi_queue true was requested"),
    (tap("t0", mq=True), dict(name="t0"), "has multi_queue true, but multi_queue false was requested"),
    (tap("t0", mode="tun"), dict(name="t0", lease="k"), "is a tun device"),
])
def test_literal_name_of_a_different_kind_is_refused(device, params, difference):
    message = refusal([device], None, **params)
    assert "the existing device %r" % device.name in message
    assert difference in message
    assert "left untouched" in message


def test_literal_name_leased_to_another_is_refused():
    state = state_of(leases={"theirs": lease_rec("mytap")})
    for params in (dict(name="mytap"), dict(name="mytap", lease="mine")):
        message = refusal([tap("mytap", lease="theirs")], state, **params)
        assert "the name 'mytap' is leased to 'theirs'" in message
        assert "lease: 'theirs'" in message


def test_literal_name_leased_in_another_namespace_is_free_here():
    state = state_of(leases={"theirs": lease_rec("mytap", netns="ntt-other")})
    _planner, action = plan_one([], state, name="mytap")
    assert (action.kind, action.name) == ("create", "mytap")


def test_literal_name_with_a_new_lease_adopts_the_device():
    _planner, action = plan_one([tap("mytap")], None, name="mytap", lease="k")
    assert action.kind == "reconcile"
    assert action.changes == {"alias": encode_mark("k", None)}
    assert action.lease_changed is True


# -- reconciling settings ---------------------------------------------------------------

@pytest.mark.parametrize("device, params, changes", [
    (tap("t0", mtu=1500), dict(mtu=9000), {"mtu": 9000}),
    (tap("t0", mtu=9000), dict(mtu=9000), {}),
    (tap("t0", mac="52:54:00:AB:CD:EF"), dict(mac_address="52:54:00:ab:cd:ef"), {}),
    (tap("t0", mac="52:54:00:ab:cd:ef"), dict(mac_address="52-54-00-AB-CD-EE"),
     {"mac_address": "52:54:00:ab:cd:ee"}),
    (tap("t0", up=True), dict(up=False), {"up": False}),
    (tap("t0", up=False), dict(), {"up": True}),                 # up defaults to true
    (tap("t0", owner=0, group=None), dict(owner="1000"), {"owner": 1000}),
    (tap("t0", owner=1000), dict(), {}),                         # owner not given: left alone
    (tap("t0", owner=None, group=5), dict(group="5"), {}),
    (tap("t0", group=None), dict(group="100"), {"group": 100}),
    (tap("t0", master=7), dict(bridge=""), {"master": 0}),       # "" detaches
    (tap("t0", master=None), dict(bridge=""), {}),
    (tap("t0", master=None), dict(bridge="br0"), {"master": 77}),
    (tap("t0", master=77), dict(bridge="br0"), {}),
    (tap("t0", master=12), dict(bridge="br0"), {"master": 77}),
    (tap("t0", mtu=1500, up=False, owner=0), dict(mtu=1400, up=True, owner="0"), {"mtu": 1400, "up": True}),
    # multi-queue: owner can change while queues are attached
    (tap("t0", mq=True, in_use=True, owner=0), dict(owner="5", multi_queue=True), {"owner": 5}),
])
def test_reconcile_changes(device, params, changes):
    _planner, action = plan_one([device, link("br0", "bridge", index=77)], None, name="t0", **params)
    assert action.kind == "reconcile"
    assert action.changes == changes
    assert action.changed is bool(changes)


@pytest.mark.parametrize("params", [dict(owner="1000"), dict(group="1000"), dict(owner="5", group="6")])
def test_owner_group_change_of_a_held_single_queue_tap_is_refused(params):
    message = refusal([tap("t0", in_use=True, owner=0)], None, name="t0", **params)
    assert "owner/group of 't0' cannot be changed while a process holds it" in message
    assert "(0/None)" in message


def test_held_tap_with_owner_unchanged_is_fine():
    _planner, action = plan_one([tap("t0", in_use=True, owner=1000)], None, name="t0", owner="1000", mtu=1400)
    assert action.changes == {"mtu": 1400}


@pytest.mark.parametrize("present, netns, parts", [
    ([], None, ["bridge 'br0' does not exist in the host namespace", "create the bridge first"]),
    ([], "ntt-x", ["bridge 'br0' does not exist in netns 'ntt-x'"]),
    ([link("br0", "veth")], None, ["bridge 'br0' is a veth device, not a Linux bridge"]),
    ([tap("br0")], None, ["bridge 'br0' is a tun device, not a Linux bridge"]),
    ([link("br0", None)], None, ["bridge 'br0' is a non-bridge device"]),
])
def test_bridge_checks(present, netns, parts):
    for devices, params in (([], dict(name="vnet%d")), ([tap("t0")], dict(name="t0"))):
        message = refusal(devices + present, None, bridge="br0", netns=netns, **params)
        for part in parts:
            assert part in message


def test_bridge_checks_name_the_item_and_its_lease_in_batch_mode():
    message = refusal([], None, devices=[{"name": "a"}, {"name": "vnet%d", "lease": "g:web1/0", "bridge": "br9"}])
    assert message.startswith("devices[1] vnet%d (lease 'g:web1/0'): bridge 'br9' does not exist")


def test_new_device_gets_the_bridge_index():
    _planner, action = plan_one([link("br0", "bridge", index=42)], None, name="vnet%d", bridge="br0")
    assert action.master == 42
    _planner, action = plan_one([], None, name="vnet%d", bridge="")
    assert action.master == 0
    _planner, action = plan_one([], None, name="vnet%d")
    assert action.master is None


# -- state: absent -----------------------------------------------------------------------

@pytest.mark.parametrize("params", [dict(lease="nope"), dict(lease="nope", name="vnet%d")])
def test_absent_unknown_lease_is_nothing_to_do(params):
    _planner, action = plan_one([tap("vnet3", lease="nope", template="vnet%d")], None, state="absent", **params)
    assert (action.kind, action.changed, action.lease) == ("absent", False, "nope")
    assert action.removal is None


def test_absent_unknown_lease_with_a_literal_name_removes_that_name():
    device = tap("mytap")
    _planner, action = plan_one([device], None, name="mytap", lease="nope", state="absent")
    assert (action.kind, action.name) == ("delete", "mytap")
    assert action.removal.device is device
    _planner, action = plan_one([], None, name="mytap", lease="nope", state="absent")
    assert (action.kind, action.changed) == ("absent", False)


def test_absent_lease_deletes_its_device_and_releases():
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    device = tap("vnet3", lease="k", template="vnet%d")
    _planner, action = plan_one([device], state, lease="k", state="absent")
    assert (action.kind, action.name, action.number, action.template, action.changed) == \
        ("delete", "vnet3", 3, "vnet%d", True)
    assert action.removal == Removal("vnet3", None, device, "k", "vnet%d", release_name=True)


def test_absent_lease_with_another_literal_name_is_refused():
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    present = [tap("vnet3", lease="k", template="vnet%d"), tap("mytap")]
    message = refusal(present, state, lease="k", name="mytap", state="absent")
    assert "lease 'k' holds 'vnet3', not 'mytap'" in message
    _planner, action = plan_one(present, state, lease="k", name="vnet3", state="absent")
    assert action.kind == "delete" and action.name == "vnet3"


def test_absent_lease_whose_device_is_gone_is_released():
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    _planner, action = plan_one([], state, lease="k", state="absent")
    assert (action.kind, action.changed) == ("release", True)
    assert action.removal == Removal("vnet3", None, None, "k", "vnet%d")


def test_absent_lease_whose_namespace_is_gone_is_released():
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3, netns="ntt-gone")})
    _planner, action = plan_one([], state, missing=["ntt-gone"], lease="k", state="absent")
    assert action.kind == "release"
    assert action.removal.netns == "ntt-gone" and action.removal.device is None


def test_absent_lease_whose_name_now_holds_a_stranger_only_releases():
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    planner, action = plan_one([link("vnet3", "veth")], state, lease="k", state="absent")
    assert action.kind == "release" and action.removal.device is None
    assert "left alone" in planner.warnings[0]


@pytest.mark.parametrize("device, detail", [
    (tap("vnet3", lease="k", template="vnet%d", in_use=True), "a process has it open"),
    (tap("vnet3", lease="k", template="vnet%d", mq=True, queues=2), "2 queue(s) attached"),
])
def test_absent_lease_in_use_needs_force(device, detail):
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3, mq=device.tun.multi_queue)})
    message = refusal([device], state, lease="k", state="absent")
    assert "device 'vnet3' is in use (%s)" % detail in message
    assert "force: true" in message
    _planner, action = plan_one([device], state, lease="k", state="absent", force=True)
    assert action.kind == "delete" and action.removal.device is device


def test_absent_literal_nothing_there():
    _planner, action = plan_one([], None, name="mytap", state="absent")
    assert (action.kind, action.changed) == ("absent", False)


@pytest.mark.parametrize("device, template", [
    (tap("mytap"), None),
    (tap("vnet5", template="vnet%d"), "vnet%d"),      # an unleased device made from a template
])
def test_absent_literal_deletes_and_records_the_release(device, template):
    _planner, action = plan_one([device], None, name=device.name, state="absent")
    assert (action.kind, action.name, action.changed) == ("delete", device.name, True)
    assert action.removal == Removal(device.name, None, device, None, template, release_name=True)


def test_absent_literal_not_a_tun_tap_is_refused():
    message = refusal([link("eth0", None)], None, name="eth0", state="absent")
    assert "'eth0' is a non-tun/tap device, not a tun/tap device; refusing to delete it" in message


def test_absent_literal_in_use_needs_force():
    device = tap("mytap", in_use=True)
    message = refusal([device], None, name="mytap", state="absent")
    assert "device 'mytap' is in use" in message and "force: true" in message
    _planner, action = plan_one([device], None, name="mytap", state="absent", force=True)
    assert action.kind == "delete"


def test_absent_literal_leased_to_another_is_refused():
    state = state_of(leases={"theirs": lease_rec("mytap")})
    message = refusal([tap("mytap", lease="theirs")], state, name="mytap", state="absent")
    assert "the device 'mytap' is leased to 'theirs'" in message
    assert "lease: 'theirs'" in message


def test_absent_literal_leased_to_another_with_a_non_matching_lease_is_refused():
    # "leased to someone else and no matching lease given -> fail naming the lease"
    state = state_of(leases={"theirs": lease_rec("mytap")})
    with pytest.raises(PlanError) as exc:
        plan([tap("mytap", lease="theirs")], state, name="mytap", lease="mine", state="absent")
    assert "'theirs'" in str(exc.value)


def test_absent_literal_leased_in_another_namespace_is_not_ours_to_refuse():
    state = state_of(leases={"theirs": lease_rec("mytap", netns="ntt-other")})
    _planner, action = plan_one([tap("mytap")], state, name="mytap", state="absent")
    assert action.kind == "delete"


# -- prune_prefix --------------------------------------------------------------------------

def test_prune_removes_unnamed_leases_with_the_prefix_only():
    state = state_of(leases={
        "guest:a": lease_rec("vnet1", "vnet%d", 1),
        "guest:b": lease_rec("vnet2", "vnet%d", 2),
        "guest:c": lease_rec("vnet3", "vnet%d", 3),
        "other:d": lease_rec("vnet4", "vnet%d", 4),
        "guestx": lease_rec("vnet5", "vnet%d", 5),
    })
    present = [tap("vnet%d" % n, lease=lease, template="vnet%d")
               for n, lease in ((1, "guest:a"), (2, "guest:b"), (4, "other:d"), (5, "guestx"))]
    _planner, actions = plan(present, state, devices=[{"name": "vnet%d", "lease": "guest:a"}], prune_prefix="guest:")
    assert [(a.kind, a.spec is None, a.lease, a.name) for a in actions] == [
        ("reconcile", False, "guest:a", "vnet1"),
        ("delete", True, "guest:b", "vnet2"),
        ("release", True, "guest:c", "vnet3"),      # its device is already gone
    ]
    assert actions[1].label() == "pruning lease 'guest:b'"
    assert actions[1].removal.device is present[1]


def test_prune_keeps_leases_named_with_state_absent_to_their_own_action():
    state = state_of(leases={"g:a": lease_rec("vnet1", "vnet%d", 1)})
    _planner, actions = plan([], state, devices=[{"lease": "g:a", "state": "absent"}], prune_prefix="g:")
    assert [(a.kind, a.spec is not None) for a in actions] == [("release", True)]


def test_prune_refuses_a_device_in_use():
    state = state_of(leases={"g:b": lease_rec("vnet2", "vnet%d", 2)})
    device = tap("vnet2", lease="g:b", template="vnet%d", in_use=True)
    message = refusal([device], state, devices=[], prune_prefix="g:")
    assert message.startswith("pruning lease 'g:b': device 'vnet2' is in use")


def test_without_prune_prefix_nothing_is_pruned():
    state = state_of(leases={"g:b": lease_rec("vnet2", "vnet%d", 2)})
    _planner, actions = plan([], state, devices=[])
    assert actions == []


# -- the planner's own shape -------------------------------------------------------------

SYSTEM_MODULES = ("socket", "fcntl", "ctypes", "subprocess", "pyroute2", "_kernel", "_world", "_registry",
                  "_apply", "_engine")


def test_the_planner_imports_nothing_that_touches_the_system():
    # A fresh interpreter: what importing the planner pulls in, not what this test process holds.
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    root = _plan_module.__file__.rsplit("/ansible_collections/", 1)[0]
    code = ("import sys; sys.path.insert(0, %r); "
            "import ansible_collections.netdev.tuntap.plugins.module_utils._plan; "
            "print('\\n'.join(sorted(sys.modules)))" % root)
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    ours = [m for m in loaded if m.startswith("ansible_collections.netdev.tuntap.")]
    assert "ansible_collections.netdev.tuntap.plugins.module_utils._plan" in ours
    touching = [m for m in loaded if m.split(".")[-1] in SYSTEM_MODULES or m.split(".")[0] in SYSTEM_MODULES]
    assert touching == [], "the planner imports %s" % touching


# -- a batch's items see what the earlier ones leave ----------------------------------------

def test_a_literal_name_released_by_an_earlier_item_is_free_for_a_later_one():
    state = state_of(leases={"a": lease_rec("lit7")})
    old = tap("lit7", lease="a")
    _planner, actions = plan([old], state, devices=[{"lease": "a", "state": "absent"}, {"name": "lit7", "lease": "b"}])
    assert [(a.kind, a.name) for a in actions] == [("delete", "lit7"), ("create", "lit7")]
    assert actions[0].removal.device is old


def test_a_device_deleted_by_an_earlier_item_is_not_reconciled_by_a_later_one():
    old = tap("lit7")
    _planner, actions = plan([old], None, devices=[{"name": "lit7", "state": "absent"}, {"name": "other"}])
    assert [a.kind for a in actions] == ["delete", "create"]
    _planner, actions = plan([tap("lit7", lease="a")], state_of(leases={"a": lease_rec("lit7")}),
                             devices=[{"lease": "a", "state": "absent"}, {"name": "lit7"}])
    assert [(a.kind, a.name) for a in actions] == [("delete", "lit7"), ("create", "lit7")]


def test_remove_prefixes_remove_every_lease_under_them_named_or_not():
    state = state_of(leases={"g:db1/0": lease_rec("t1"), "g:db1/1": lease_rec("t2"), "g:web1/0": lease_rec("t3")})
    _planner, actions = plan([tap("t1", lease="g:db1/0"), tap("t3", lease="g:web1/0")], state,
                             devices=[{"name": "t3", "lease": "g:web1/0"}],
                             remove_prefixes=["g:db1/"])
    assert [(a.kind, a.lease, a.label()) for a in actions] == [
        ("reconcile", "g:web1/0", "devices[0] t3 (lease 'g:web1/0')"),
        ("delete", "g:db1/0", "removing lease 'g:db1/0'"),
        ("release", "g:db1/1", "removing lease 'g:db1/1'")]


def test_remove_prefixes_refuse_a_device_in_use_naming_the_lease():
    state = state_of(leases={"g:db1/0": lease_rec("t1")})
    message = refusal([tap("t1", lease="g:db1/0", in_use=True)], state, remove_prefixes=["g:db1/"])
    assert message.startswith("removing lease 'g:db1/0': device 't1' is in use")


# -- holders and identity before a removal --------------------------------------------------

BOOT = "11111111-2222-3333-4444-555555555555"


def identified(record, index, boot=BOOT, inode=4026532000):
    return dict(record, ifindex=index, boot_id=boot, netns_inode=inode)


def test_a_removal_asks_for_the_holders_of_the_device_it_deletes():
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    planner, action = plan_one([tap("vnet3", lease="k", template="vnet%d")], state, lease="k", state="absent",
                               looked_up=False)
    assert action.kind == "delete"
    assert (planner.unchecked, planner.refusal_pending) == ([(None, "vnet3")], False)


def test_a_device_with_carrier_is_refused_once_its_holders_are_known():
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    device = tap("vnet3", lease="k", template="vnet%d", in_use=True)
    planner, _action = plan_one([device], state, lease="k", state="absent", looked_up=False)
    assert (planner.unchecked, planner.refusal_pending) == ([(None, "vnet3")], True)
    planner = planner_for([device], state, lease="k", state="absent", looked_up=False)
    planner.world.holders[(None, "vnet3")] = [77]
    with pytest.raises(PlanError, match=r"device 'vnet3' is in use \(held by PID 77\)"):
        planner.plan()


def test_a_plan_that_deletes_nothing_asks_for_no_holders():
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    planner, action = plan_one([tap("vnet3", lease="k", template="vnet%d")], state, name="vnet%d", lease="k",
                               looked_up=False)
    assert action.kind == "reconcile" and planner.unchecked == []
    forced, _action = plan_one([tap("vnet3", lease="k", template="vnet%d")], state, lease="k", state="absent",
                               force=True, looked_up=False)
    assert forced.unchecked == []


def test_a_holder_found_in_proc_refuses_the_removal_even_without_carrier():
    state = state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3)})
    planner = planner_for([tap("vnet3", lease="k", template="vnet%d")], state, lease="k", state="absent")
    planner.world.holders[(None, "vnet3")] = [4242, 4243]
    with pytest.raises(PlanError, match=r"device 'vnet3' is in use \(held by PID 4242, 4243\)"):
        planner.plan()
    planner = planner_for([tap("vnet3", lease="k", template="vnet%d")], state, lease="k", state="absent")
    assert planner.plan()[0].kind == "delete" and planner.unchecked == []


@pytest.mark.parametrize("record_fields, world_fields, reason", [
    ({"ifindex": 7}, {}, r"the lease recorded ifindex 7, this device has ifindex 9"),
    ({"boot_id": "old-boot"}, {}, r"recorded in an earlier boot \(old-boot\)"),
    ({"netns_inode": 1}, {}, r"another instance of the host namespace \(namespace inode 1, now 4026532000\)"),
])
def test_a_marked_device_that_is_not_the_recorded_one_is_left_alone(record_fields, world_fields, reason):
    record = identified(lease_rec("vnet3", "vnet%d", 3), 9)
    record.update(record_fields)
    state = state_of(leases={"k": record})
    planner = planner_for([tap("vnet3", 9, lease="k", template="vnet%d")], state, lease="k", state="absent")
    planner.world.boot_id, planner.world.netns_keys[None] = BOOT, (1, 4026532000)
    action = planner.plan()[0]
    assert action.kind == "release" and action.removal.device is None and action.changed
    assert len(planner.warnings) == 1 and re.search(reason, planner.warnings[0]), planner.warnings
    assert "left alone and the lease released" in planner.warnings[0]
    assert planner.ledger.lease("k") is None and planner.unchecked == []


def test_the_recorded_device_is_deleted_and_unknown_fields_trust_the_mark():
    for record in (identified(lease_rec("vnet3", "vnet%d", 3), 9), lease_rec("vnet3", "vnet%d", 3)):
        planner = planner_for([tap("vnet3", 9, lease="k", template="vnet%d")], state_of(leases={"k": record}),
                              lease="k", state="absent")
        planner.world.boot_id, planner.world.netns_keys[None] = BOOT, (1, 4026532000)
        action = planner.plan()[0]
        assert action.kind == "delete" and planner.warnings == []


def test_created_and_reconciled_leases_carry_the_identity_the_world_knows():
    planner = planner_for([tap("vnet3", 9, lease="k", template="vnet%d")],
                          state_of(leases={"k": lease_rec("vnet3", "vnet%d", 3)}),
                          devices=[{"name": "vnet%d", "lease": "k"}, {"name": "vnet%d", "lease": "new"}])
    planner.world.boot_id, planner.world.netns_keys[None] = BOOT, (1, 4026532000)
    reconcile, create = planner.plan()
    assert reconcile.identity == {"ifindex": 9, "boot_id": BOOT, "netns_inode": 4026532000}
    assert create.identity == {"ifindex": None, "boot_id": BOOT, "netns_inode": 4026532000}
    assert planner.ledger.lease("k")["ifindex"] == 9
    assert "ifindex" not in planner.ledger.lease("new") and planner.ledger.lease("new")["boot_id"] == BOOT
