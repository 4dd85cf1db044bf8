# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kind macvtap/macvlan: option checks, planning decisions and node rules, from fake links only."""

from __future__ import annotations

import struct

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils._actions import Kind
from ansible_collections.netdev.tuntap.plugins.module_utils._device import LinkInfo, MacvlanInfo
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _macv
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._rtnl import parse_link
from ansible_collections.netdev.tuntap.plugins.module_utils._ledger import Ledger, empty_state
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import decode_mark, encode_mark
from ansible_collections.netdev.tuntap.plugins.module_utils._nodes import NodeState, node_path, wanted_node
from ansible_collections.netdev.tuntap.plugins.module_utils._plan import Planner, PlanError
from ansible_collections.netdev.tuntap.plugins.module_utils._spec import SpecError, parse_task
from ansible_collections.netdev.tuntap.plugins.module_utils._world import World

REG = "/nonexistent/ntt-unit/registry.json"
NOW = 1000.0
NS = "lab"


def nic(name="eth0", index=2, kind=None):
    return LinkInfo(name=name, index=index, kind=kind, mtu=1500, mac_address="52:54:00:99:99:99", master=None,
                    up=True, carrier=True, alias=None)


def macv(name, index, *, kind="macvtap", lower=2, mode="vepa", lease=None, template=None, chardev=(240, 1),
         node_owner=0):
    """A macvtap/macvlan LinkInfo; a macvtap has a sound node owned by ``node_owner`` (None: no node)."""
    alias = encode_mark(lease, template) if lease or template else None
    info = MacvlanInfo(mode=mode, link=lower, chardev=chardev if kind == "macvtap" else None)
    if kind == "macvtap" and node_owner is not None:
        info.node = NodeState(chardev, node_owner, 0, 0o600)
    return LinkInfo(name=name, index=index, kind=kind, mtu=1500, mac_address="52:54:00:00:00:07", master=None,
                    up=True, carrier=False, alias=alias, macvlan=info, mark=decode_mark(alias))


def planner(present=(), leases=None, holders=None, **params):
    params.setdefault("registry", REG)
    params.setdefault("netns", NS)
    task = parse_task(params)
    state = empty_state()
    state["leases"].update(leases or {})
    world = World(NS, links={NS: {d.name: d for d in present}},
                  open_char_devices=(lambda: holders) if holders is not None else None)
    return Planner(task, Ledger(state, lambda: NOW), world)


def spec_error(**params) -> str:
    params.setdefault("registry", REG)
    with pytest.raises(SpecError) as exc:
        parse_task(params)
    return str(exc.value)


# -- options --------------------------------------------------------------------

def test_macvtap_defaults():
    spec = parse_task({"registry": REG, "name": "mvtap%d", "kind": "macvtap", "link": "eth0"}).devices[0]
    assert (spec.kind, spec.link, spec.macvtap_mode, spec.mode) == ("macvtap", "eth0", "vepa", "tap")
    tap = parse_task({"registry": REG, "name": "vnet%d"}).devices[0]
    assert (tap.kind, tap.link, tap.macvtap_mode) == ("tuntap", None, None)


@pytest.mark.parametrize("params, words", [
    (dict(kind="macvtap", link="eth0", mode="tun"), "mode 'tun' is not allowed with kind 'macvtap'"),
    (dict(kind="macvtap", link="eth0", multi_queue=True), "multi_queue is not allowed with kind 'macvtap'"),
    (dict(kind="macvlan", link="eth0", vnet_hdr=True), "vnet_hdr is not allowed with kind 'macvlan'"),
    (dict(kind="macvtap", link="eth0", packet_info=True), "packet_info is not allowed with kind 'macvtap'"),
    (dict(kind="macvtap", link="eth0", bridge="br0"), "bridge is not allowed with kind 'macvtap'"),
    (dict(kind="macvlan", link="eth0", owner="0"), "owner is not allowed with kind 'macvlan'"),
    (dict(kind="macvlan", link="eth0", group="0"), "group is not allowed with kind 'macvlan'"),
    (dict(link="eth0"), "link is not allowed with kind 'tuntap'"),
    (dict(macvtap_mode="bridge"), "macvtap_mode is not allowed with kind 'tuntap'"),
    (dict(kind="macvtap"), "link is required with kind 'macvtap'"),
    (dict(kind="macvtap", link="a/b"), "link 'a/b'"),
    (dict(kind="macvtap", link="eth0", macvtap_mode="loose"), "macvtap_mode"),
    (dict(kind="bond", link="eth0"), "kind"),
])
def test_options_that_do_not_apply_to_the_kind_are_refused(params, words):
    assert words in spec_error(name="mvtap%d", **params)


def test_batch_item_names_its_index():
    message = spec_error(devices=[{"name": "mvtap%d", "kind": "macvtap"}])
    assert message.startswith("devices[0].link is required with kind 'macvtap'"), message


# -- planning ---------------------------------------------------------------------

def test_new_macvtap_gets_its_lower_index_and_node():
    action, = planner([nic()], name="mvtap%d", lease="g/0", kind="macvtap", link="eth0").plan()
    assert (action.kind, action.name, action.lower) == (Kind.CREATE, "mvtap0", 2)
    assert action.node == node_path(NS, "mvtap0")
    assert node_path(None, "mvtap0") == "/run/netdev_tuntap/host/mvtap0"


def test_new_macvlan_has_no_node():
    action, = planner([nic()], name="mvl%d", kind="macvlan", link="eth0").plan()
    assert action.node is None and action.lower == 2


@pytest.mark.parametrize("present, words", [
    ([], "link 'eth0' does not exist in netns 'lab'"),
    ([macv("eth0", 4)], "link 'eth0' is itself a macvtap device"),
    ([macv("eth0", 4, kind="macvlan")], "link 'eth0' is itself a macvlan device"),
    ([nic("eth0", 1, kind=None), nic("lo", 1)], None),
])
def test_bad_lower_device_is_refused(present, words):
    plan = planner(present, name="mvtap%d", kind="macvtap", link="eth0")
    if words is None:
        assert plan.plan()[0].lower == 1
        return
    with pytest.raises(PlanError) as exc:
        plan.plan()
    assert words in str(exc.value)


def test_leased_macvtap_is_reconciled_and_its_node_made_again_when_missing():
    record = {"name": "mvtap3", "template": "mvtap%d", "id": 3, "netns": NS, "mode": "tap", "multi_queue": False,
              "since": 1.0, "kind": "macvtap"}
    device = macv("mvtap3", 7, lease="g/0", template="mvtap%d", node_owner=None)
    action, = planner([nic(), device], leases={"g/0": record}, name="mvtap%d", lease="g/0", kind="macvtap",
                      link="eth0", owner="65534").plan()
    assert action.kind is Kind.RECONCILE
    assert action.changes == {"node": NodeState((240, 1), 65534, 0, 0o600)}


def test_leased_macvtap_unchanged_is_not_changed():
    record = {"name": "mvtap3", "template": "mvtap%d", "id": 3, "netns": NS, "mode": "tap", "multi_queue": False,
              "since": 1.0, "kind": "macvtap"}
    device = macv("mvtap3", 7, lease="g/0", template="mvtap%d")
    action, = planner([nic(), device], leases={"g/0": record}, name="mvtap%d", lease="g/0", kind="macvtap",
                      link="eth0").plan()
    assert action.kind is Kind.RECONCILE and not action.changed


@pytest.mark.parametrize("change", [dict(link="eth1"), dict(macvtap_mode="bridge"), dict(kind="macvlan")])
def test_other_lower_device_mode_or_kind_replaces_the_leased_device(change):
    record = {"name": "mvtap3", "template": "mvtap%d", "id": 3, "netns": NS, "mode": "tap", "multi_queue": False,
              "since": 1.0, "kind": "macvtap"}
    device = macv("mvtap3", 7, lease="g/0", template="mvtap%d")
    params = dict(name="mvtap%d", lease="g/0", kind="macvtap", link="eth0")
    params.update(change)
    action, = planner([nic(), nic("eth1", 3), device], leases={"g/0": record}, **params).plan()
    assert action.kind is Kind.CREATE and action.name == "mvtap4"
    assert action.replaces is not None and action.replaces.device is device
    assert action.replaces.node == node_path(NS, "mvtap3")


def test_removal_is_refused_while_a_process_holds_the_character_device():
    record = {"name": "mvtap3", "template": "mvtap%d", "id": 3, "netns": NS, "mode": "tap", "multi_queue": False,
              "since": 1.0, "kind": "macvtap"}
    device = macv("mvtap3", 7, lease="g/0", template="mvtap%d")
    with pytest.raises(PlanError) as exc:
        planner([nic(), device], leases={"g/0": record}, holders={(240, 1): 1}, lease="g/0", state="absent").plan()
    assert "device 'mvtap3' is in use (1 open descriptor(s) of its character device)" in str(exc.value)
    other, = planner([nic(), device], leases={"g/0": record}, holders={(240, 2): 1}, lease="g/0",
                     state="absent").plan()
    assert other.kind is Kind.DELETE and other.removal.node == node_path(NS, "mvtap3")
    forced, = planner([nic(), device], leases={"g/0": record}, holders={(240, 1): 1}, lease="g/0", state="absent",
                      force=True).plan()
    assert forced.kind is Kind.DELETE


def test_release_of_a_gone_macvtap_still_removes_its_node():
    record = {"name": "mvtap3", "template": "mvtap%d", "id": 3, "netns": NS, "mode": "tap", "multi_queue": False,
              "since": 1.0, "kind": "macvtap"}
    action, = planner([nic()], leases={"g/0": record}, lease="g/0", state="absent").plan()
    assert action.kind is Kind.RELEASE and action.removal.node == node_path(NS, "mvtap3")


def test_literal_absent_of_another_kind_is_refused():
    with pytest.raises(PlanError) as exc:
        planner([nic(), macv("mv0", 7)], name="mv0", state="absent").plan()
    assert "is a macvtap device, not a tun/tap device; refusing to delete it; give kind: macvtap" in str(exc.value)


def test_adoption_of_a_marked_macvtap_records_its_kind():
    ledger = Ledger(empty_state(), lambda: NOW)
    device = macv("mvtap5", 7, lease="g/0", template="mvtap%d")
    ledger.recover({"mvtap5": device}, NS, recovered=True, path=REG)
    assert ledger.lease("g/0")["kind"] == "macvtap" and ledger.counter("mvtap%d") == 5


# -- nodes ------------------------------------------------------------------------

def test_wanted_node():
    assert wanted_node((1, 2), None, None, None) == NodeState((1, 2), 0, 0, 0o600)
    assert wanted_node((1, 2), 7, None, None) == NodeState((1, 2), 7, 0, 0o600)
    assert wanted_node((1, 2), None, 9, None) == NodeState((1, 2), 0, 9, 0o660)
    found = NodeState((1, 2), 7, 9, 0o660)
    assert wanted_node((1, 2), None, None, found) == found
    assert wanted_node((1, 2), 8, None, NodeState((1, 2), 7, 0, 0o600)) == NodeState((1, 2), 8, 0, 0o600)


# -- the create request -----------------------------------------------------------

def test_new_link_request_carries_name_lower_mode_and_is_exclusive():
    message = _macv.new_link_request(5, "mvtap3", "macvtap", 2, "bridge", 1400, "52:54:00:00:00:07")
    length, msg_type, flags, seq, _pid = struct.unpack_from("=IHHII", message)
    assert (length, msg_type, seq) == (len(message), 16, 5)
    assert flags & _macv.NLM_F_EXCL and flags & _macv.NLM_F_CREATE
    link = parse_link(message, 16, len(message))
    assert (link["name"], link["link"], link["mtu"], link["address"]) == ("mvtap3", 2, 1400, "52:54:00:00:00:07")
    assert (link["kind"], link["macvlan"]) == ("macvtap", {"mode": 4})
