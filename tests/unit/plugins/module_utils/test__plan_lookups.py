# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The planner on a snapshot read in part: names it does not know, looked up and planned again.

The engine's loop is played here by hand on plain data: plan, look up what the planner
listed in ``unknown`` (from a fake namespace), read whole what it listed in ``unread``,
plan again, until a plan lists neither.
"""

from __future__ import annotations

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils._allocator import TemplateAllocator
from ansible_collections.netdev.tuntap.plugins.module_utils._device import LinkInfo, TunInfo
from ansible_collections.netdev.tuntap.plugins.module_utils._ledger import Ledger, empty_state
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import decode_mark, encode_mark
from ansible_collections.netdev.tuntap.plugins.module_utils._plan import Planner, PlanError, lookups
from ansible_collections.netdev.tuntap.plugins.module_utils._spec import parse_task
from ansible_collections.netdev.tuntap.plugins.module_utils._world import World

REG = "/nonexistent/ntt-unit/registry.json"
NS = "ntt-unit"


def tap(name, index, lease=None, template=None, master=None):
    alias = encode_mark(lease, template) if lease or template else None
    return LinkInfo(name=name, index=index, kind="tun", mtu=1500, mac_address="52:54:00:00:00:01", master=master,
                    up=True, carrier=False, alias=alias, mark=decode_mark(alias),
                    tun=TunInfo(mode="tap", packet_info=False, vnet_hdr=False, persist=True, multi_queue=False,
                                owner=0, group=None, queues=None))


def bridge(name, index):
    return LinkInfo(name=name, index=index, kind="bridge", mtu=1500, mac_address="52:54:00:99:99:99", master=None,
                    up=True, carrier=True, alias=None)


class FakeNamespace:
    """A namespace's devices, and a partial snapshot of it that counts what was read."""

    def __init__(self, devices):
        self.devices = {d.name: d for d in devices}
        self.looked_up = []   # each round's names
        self.read_whole = 0

    def world(self) -> World:
        return World(NS, links={NS: {}}, partial={NS}, asked={NS: set()})

    def look_up(self, world, names) -> None:
        self.looked_up.append(sorted(names))
        world.asked[NS].update(names)
        world.links[NS].update({n: self.devices[n] for n in names if n in self.devices})

    def dump(self, world) -> None:
        self.read_whole += 1
        world.links[NS] = dict(self.devices)
        world.partial.discard(NS)


def state(counters=None, leases=None):
    result = empty_state()
    result["counters"].update(counters or {})
    result["leases"].update(leases or {})
    return result


def run(namespace, reg, window=4, first_lookups=True, **params):
    """Plan as the engine does; returns (actions, rounds of planning)."""
    params.setdefault("registry", REG)
    task = parse_task(dict(params, netns=NS))
    ledger = Ledger(reg, lambda: 1000.0)
    world = namespace.world()
    if first_lookups:
        namespace.look_up(world, lookups(task, ledger, window)[NS])
    rounds = 0
    while True:
        rounds += 1
        planner = Planner(task, ledger, world, window=window)
        try:
            actions, error = planner.plan(), None
        except PlanError as exc:   # a name taken as free may be why: the engine looks up and plans again
            actions, error = None, exc
        if not planner.unknown and not planner.unread:
            if error is not None:
                raise error
            return actions, rounds
        assert rounds < 20, "the plan never settles"
        if planner.unread:
            namespace.dump(world)
        namespace.look_up(world, {name for _netns, name in planner.unknown})
        window *= 4


def test_the_names_a_task_gives_and_the_window_after_the_counter_are_looked_up_first():
    record = {"name": "vn3", "template": "vn%d", "id": 3, "netns": NS, "mode": "tap", "multi_queue": False,
              "since": 1.0}
    reg = state(counters={"vn%d": 6}, leases={"a": record})
    task = parse_task(dict(registry=REG, netns=NS, devices=[
        {"name": "vn%d", "lease": "a", "bridge": "br0"}, {"name": "vn%d", "lease": "b"}, {"name": "lit0"}]))
    wanted = lookups(task, Ledger(reg, lambda: 1000.0), 4)
    # Two items of vn%d: the window is 4 + 2 names after the counter.
    assert wanted == {NS: {"vn3", "br0", "lit0", "vn7", "vn8", "vn9", "vn10", "vn11", "vn12"}}


def test_one_more_device_is_planned_in_one_round_from_the_first_lookups():
    namespace = FakeNamespace([tap("vn%d" % n, 10 + n, lease="l%d" % n, template="vn%d" % n) for n in range(6)]
                              + [bridge("br0", 2)])
    actions, rounds = run(namespace, state(counters={"vn%d": 5}), name="vn%d", lease="new", bridge="br0")
    assert [(a.kind, a.name, a.master) for a in actions] == [("create", "vn6", 2)]
    assert rounds == 1 and namespace.read_whole == 0
    assert namespace.looked_up == [["br0", "vn10", "vn6", "vn7", "vn8", "vn9"]]


def test_names_taken_by_devices_the_registry_does_not_know_are_skipped():
    # vn6..vn14 were made by someone else after the counter: the window (4, then 16) finds them.
    foreign = [tap("vn%d" % n, 100 + n) for n in range(6, 15)]
    namespace = FakeNamespace(foreign)
    actions, rounds = run(namespace, state(counters={"vn%d": 5}), name="vn%d", lease="new")
    assert [a.name for a in actions] == ["vn15"]
    assert rounds == 3 and namespace.read_whole == 0
    looked = [name for names in namespace.looked_up for name in names]
    assert len(looked) == len(set(looked)), "a name is looked up once"


def test_a_batch_asks_for_every_window_it_runs_through_in_one_round():
    namespace = FakeNamespace([tap("vn7", 50)])
    devices = [{"name": "vn%d", "lease": "k%d" % i} for i in range(10)]
    actions, rounds = run(namespace, state(counters={"vn%d": 0}), first_lookups=False, devices=devices)
    assert [a.name for a in actions] == ["vn%d" % n for n in (1, 2, 3, 4, 5, 6, 8, 9, 10, 11)]
    assert rounds == 2   # the first plan listed every unknown name its ten allocations ran through


def test_a_template_without_a_counter_reads_the_namespace_whole():
    namespace = FakeNamespace([tap("vn40", 50), tap("vn3", 51)])
    actions, rounds = run(namespace, state(), name="vn%d", lease="x")
    assert [a.name for a in actions] == ["vn41"]
    assert namespace.read_whole == 1 and rounds == 2


def test_an_unknown_literal_name_is_looked_up_before_the_plan_stands():
    # The first lookups are skipped: the planner itself asks for the name and the bridge.
    namespace = FakeNamespace([tap("lit0", 30, master=2), bridge("br0", 2)])
    actions, rounds = run(namespace, state(), first_lookups=False, name="lit0", bridge="br0", mtu=1400)
    assert [(a.kind, a.name, a.changes) for a in actions] == [("reconcile", "lit0", {"mtu": 1400})]
    assert rounds == 2 and namespace.looked_up == [["br0", "lit0"]]


def test_a_missing_bridge_is_refused_only_once_it_was_looked_up():
    namespace = FakeNamespace([])
    with pytest.raises(PlanError, match="bridge 'br0' does not exist"):
        run(namespace, state(), first_lookups=False, name="lit0", bridge="br0")
    assert namespace.looked_up == [["br0", "lit0"]]


def test_the_snapshot_never_answers_for_a_name_it_did_not_look_up():
    world = World(NS, links={NS: {"a": tap("a", 3)}}, partial={NS}, asked={NS: {"a", "gone"}})
    assert world.device(NS, "a").index == 3 and world.device(NS, "gone") is None
    assert world.knows(NS, "a") and not world.knows(NS, "other") and not world.whole(NS)
    with pytest.raises(LookupError):
        world.device(NS, "other")
    with pytest.raises(LookupError):
        world.knows("ntt-never-opened", "a")
    assert World(NS, links={NS: {}}).knows(NS, "anything")   # read whole: every name is known


@pytest.mark.parametrize("last, blocked, window, expected", [
    (5, set(), 3, {6, 7, 8}),
    (5, {7, 8}, 3, {6, 9, 0}),
    (8, {0}, 4, {9, 1, 2, 3}),       # wraps after max_id 9, past blocked numbers
    (5, set(range(10)) - {6}, 4, {6}),
])
def test_the_allocator_lists_a_window_of_free_looking_numbers_after_an_unknown_one(last, blocked, window, expected):
    allocator = TemplateAllocator("vn%d", 9, last, set(blocked), unknown=lambda n: True, window=window)
    first = allocator.take()
    assert first == min(expected, key=lambda n: (n <= last, n))
    assert allocator.unknown_numbers == expected


def test_the_allocator_lists_nothing_when_every_number_it_hands_out_is_known():
    allocator = TemplateAllocator("vn%d", 99, 5, {7}, unknown=lambda n: n > 9, window=8)
    assert [allocator.take() for _step in range(3)] == [6, 8, 9]
    assert allocator.unknown_numbers == set()
    assert allocator.take() == 10 and allocator.unknown_numbers == set(range(10, 18))


def test_leases_are_asked_for_by_name_not_read_whole(monkeypatch):
    # 3000 leases of vn%d, and vn3001 leased under a literal name beyond the counter: the plan asks
    # for the candidates' names one at a time and never reads every leased name.
    leases = {"g%d" % n: {"name": "vn%d" % n, "template": "vn%d", "id": n, "netns": NS, "mode": "tap",
                          "multi_queue": False, "since": 1.0} for n in range(3000)}
    leases["odd"] = {"name": "vn3001", "template": None, "id": None, "netns": "elsewhere", "mode": "tap",
                     "multi_queue": False, "since": 1.0}

    def read_whole(self, template):
        raise AssertionError("every leased name of %s was read" % template)
    monkeypatch.setattr(Ledger, "lease_names_like", read_whole)
    namespace = FakeNamespace([])
    actions, rounds = run(namespace, state(counters={"vn%d": 2999}, leases=leases), devices=[
        {"name": "vn%d", "lease": "new1"}, {"name": "vn%d", "lease": "new2"}])
    assert [a.name for a in actions] == ["vn3000", "vn3002"]
    assert namespace.read_whole == 0
