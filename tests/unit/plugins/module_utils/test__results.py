# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Results and diff, read from actions and links: no decisions, no system calls."""

from __future__ import annotations

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils._actions import Action, Kind, Removal
from ansible_collections.netdev.tuntap.plugins.module_utils._allocator import TemplateAllocator
from ansible_collections.netdev.tuntap.plugins.module_utils._device import LinkInfo, TunInfo
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import decode_mark, encode_mark
from ansible_collections.netdev.tuntap.plugins.module_utils._results import report, settings_diff
from ansible_collections.netdev.tuntap.plugins.module_utils._spec import parse_task


def tap(name, lease=None, mtu=1500, index=5):
    alias = encode_mark(lease, None) if lease else None
    return LinkInfo(name=name, index=index, kind="tun", mtu=mtu, mac_address="fe:00:00:00:00:01", master=None,
                    up=True, carrier=False, alias=alias, mark=decode_mark(alias),
                    tun=TunInfo(mode="tap", packet_info=False, vnet_hdr=False, persist=True, multi_queue=False,
                                owner=0, group=None, queues=None))


def task(**params):
    params.setdefault("registry", "/nonexistent/ntt-unit/registry.json")
    return parse_task(params)


@pytest.mark.parametrize("carried", [None, "old/lease"])
def test_diff_before_shows_the_lease_the_device_carries(carried):
    spec = task(name="mytap", lease="new/lease").devices[0]
    device = tap("mytap", lease=carried)
    action = Action(spec, Kind.RECONCILE, "mytap", lease="new/lease", device=device,
                    changes={"alias": encode_mark("new/lease", None)}, lease_changed=True)
    after = {"name": "mytap", "lease": "new/lease", "netns": None}
    diff = settings_diff(action, device, {}, after)
    assert diff["before"]["lease"] == carried
    assert diff["after"]["lease"] == "new/lease"


def test_removed_device_has_an_empty_after_and_a_replaced_one_an_empty_before():
    spec = task(lease="k", state="absent").devices[0]
    device = tap("vm1", lease="k")
    removal = Removal("vm1", None, device, "k", None)
    gone = settings_diff(Action(spec, Kind.DELETE, "vm1", lease="k", device=device, removal=removal),
                         device, {}, {"netns": None})
    assert gone["after"] == {} and gone["before"]["name"] == "vm1"
    spec = task(name="vm%d", lease="k", multi_queue=True).devices[0]
    replaced = settings_diff(Action(spec, Kind.CREATE, "vm2", lease="k", device=device, replaces=removal),
                             device, {}, {"name": "vm2", "netns": None})
    assert replaced["before"] == {}


def test_report_in_check_mode_predicts_a_new_device_and_warns_about_allocation():
    spec_task = task(name="vm%d", lease="k", mtu=1400)
    allocator = TemplateAllocator("vm%d", 99, -1, set())
    action = Action(spec_task.devices[0], Kind.CREATE, "vm0", number=allocator.take(), template="vm%d", lease="k",
                    allocator=allocator, lease_changed=True)
    result = report(spec_task, [action], {}, {}, [], diff=False, predicted=True)
    assert result["changed"] is True and result["name"] == "vm0" and result["mtu"] == 1400
    assert result["ifindex"] is None and result["owner"] == 0
    assert result["warnings"] == ["check mode: predicted names may differ in a real run if another run allocates "
                                  "from the same registry in the meantime"]
