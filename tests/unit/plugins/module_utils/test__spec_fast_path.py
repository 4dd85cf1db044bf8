# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Items that skip Ansible's validator get exactly what the validator would return; all others
still go through it (their messages are checked in test__spec.py)."""

from __future__ import annotations

import itertools

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils import _spec


def validator_result(item):
    result = _spec._DEVICE_VALIDATOR.validate({k: v for k, v in item.items() if v is not None})
    assert not result.error_messages, result.error_messages
    return dict(result.validated_parameters)


VALID_ITEMS = [
    {"name": "vmtap%d", "lease": "guest_taps:g1/net0", "state": "present", "multi_queue": False,
     "vnet_hdr": True, "mac_address": "fe:54:00:00:00:01", "bridge": "br0"},
    {"name": "tap0"},
    {"lease": "web1/net0", "state": "absent"},
    {"name": "vmtap%d", "mtu": 9000, "txqueuelen": 500, "up": False, "force": True, "ipv6": True},
    {"name": "vmtap%d", "vlan": 10, "trunk": [20, "30-40"], "bridge": "br0", "bridge_type": "ovs",
     "external_ids": {"iface-id": "x"}, "lease": "a/b"},
    {"name": "mvtap%d", "kind": "macvtap", "link": "eth0", "macvtap_mode": "bridge", "owner": "0", "group": "0"},
    {"name": "tun0", "mode": "tun", "packet_info": True, "mtu": None, "bridge": None},
    {"name": "vmtap%d", "vlan": "7"},   # raw: passed through unchanged, checked later by the module
]


@pytest.mark.parametrize("item", VALID_ITEMS)
def test_fast_path_returns_what_the_validator_returns(item):
    fast = _spec._already_valid(_spec._PLAIN_DEVICE_OPTIONS, item)
    assert fast is not None, "a plain valid item must take the fast path"
    slow = validator_result(item)
    assert fast == slow
    assert sorted(fast) == sorted(slow) == sorted(_spec.DEVICE_OPTIONS)
    for key in fast:
        assert type(fast[key]) is type(slow[key]), key


NEEDS_THE_VALIDATOR = [
    {"name": "tap0", "mtu": "1500"},          # converted: a string for an int
    {"name": "tap0", "vnet_hdr": "yes"},      # converted: a string for a bool
    {"name": "tap0", "mtu": True},            # a bool is no int here
    {"name": "tap0", "up": 1},                # nor an int a bool
    {"name": "tap0", "state": "gone"},        # not a choice
    {"name": "tap0", "kind": ["tuntap"]},     # not even hashable
    {"name": "tap0", "colour": "red"},        # unknown option
    {"name": "tap0", "trunk": "10,20"},       # a string the validator splits
    {"name": "tap0", "external_ids": "a=b"},  # a string the validator parses
    {"name": 5},                              # an int for a str
]


@pytest.mark.parametrize("item", NEEDS_THE_VALIDATOR)
def test_anything_the_validator_would_convert_or_refuse_takes_the_slow_path(item):
    assert _spec._already_valid(_spec._PLAIN_DEVICE_OPTIONS, item) is None


@pytest.mark.parametrize("item", NEEDS_THE_VALIDATOR)
def test_the_slow_path_still_converts_or_refuses(item):
    """parse_device gives the same outcome as before: a conversion or the validator's message."""
    try:
        spec = _spec.parse_device(item, "devices[0].", 99999)
    except _spec.SpecError as exc:
        assert str(exc).startswith("devices[0]"), str(exc)
    else:
        assert spec.name == str(item["name"])


def test_every_combination_of_booleans_and_choices_matches_the_validator():
    choices = {"state": ["present", "absent"], "mode": ["tap", "tun"], "bridge_type": ["auto", "linux", "ovs"]}
    for state, mode, bridge_type, flag in itertools.product(*choices.values(), (True, False, None)):
        item = {"name": "t%d", "lease": "l/1", "state": state, "mode": mode, "bridge_type": bridge_type,
                "multi_queue": flag, "vnet_hdr": flag, "up": flag}
        assert _spec._already_valid(_spec._PLAIN_DEVICE_OPTIONS, item) == validator_result(item)


def test_a_spec_with_more_than_types_choices_and_defaults_never_takes_the_fast_path():
    assert _spec._plain_options({"a": {"type": "str", "aliases": ["b"]}}) is None
    assert _spec._plain_options({"a": {"type": "path"}}) is None
    assert _spec._plain_options({"a": {"type": "list", "elements": "int"}}) is None
    assert _spec._plain_options({"a": {"type": "str", "required": True}}) is None
    assert _spec._plain_options({"a": {"type": "str", "no_log": True}}) is None


def test_a_batch_list_is_not_copied_by_the_top_level_check():
    devices = [{"name": "tap%d" % i} for i in range(3)]
    spec = _spec.parse_task({"devices": devices, "registry": "/nonexistent/ntt-unit/registry.json"})
    assert [d.name for d in spec.devices] == ["tap0", "tap1", "tap2"]
    assert devices == [{"name": "tap%d" % i} for i in range(3)]   # the caller's list is left as it was
