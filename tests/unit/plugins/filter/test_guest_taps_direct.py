# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest_taps filters for NICs of type direct (a macvtap on a host NIC)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.netdev.tuntap.plugins.filter.guest_taps import (
    guest_tap_devices, guest_tap_fact, guest_tap_problems)
from ansible_collections.netdev.tuntap.plugins.module_utils._spec import parse_task


def direct(**kwargs):
    base = {"id": "net0", "type": "direct", "link": "eno1", "mac": "52:54:00:12:36:01"}
    base.update(kwargs)
    return base


def test_direct_nic_becomes_a_macvtap_with_the_guests_mac():
    tap = {"id": "net1", "bridge": "br0", "mac": "52:54:00:12:36:02"}
    guests = [{"name": "web2", "nics": [direct(mode="bridge"), tap]}]
    devices = guest_tap_devices(guests, owner="libvirt-qemu")
    assert devices[0] == {"name": "mvtap%d", "lease": "guest_taps:web2/net0", "state": "present", "kind": "macvtap",
                          "link": "eno1", "macvtap_mode": "bridge", "mac_address": "52:54:00:12:36:01",
                          "owner": "libvirt-qemu"}
    assert devices[1]["name"] == "vmtap%d" and "kind" not in devices[1]
    # What the module is given is valid for it, batch and all (with an owner this host knows).
    parse_task({"registry": "/nonexistent/r.json", "devices": guest_tap_devices(guests, owner="0")})


def test_direct_template_and_default_mode():
    devices = guest_tap_devices([{"name": "g", "nics": [direct(mac=None)]}], direct_template="dir%d")
    assert devices[0]["name"] == "dir%d" and devices[0]["macvtap_mode"] == "vepa"
    assert "mac_address" not in devices[0]


@pytest.mark.parametrize("nic, words", [
    (direct(link=None), "link is required with type: direct"),
    (direct(bridge="br0"), "bridge is not allowed with type: direct"),
    (direct(host_mac="fe:54:00:00:00:01"), "host_mac is not allowed with type: direct"),
    (direct(vnet_hdr=True), "vnet_hdr is not allowed with type: direct"),
    (direct(queues=2), "queues 2 is not allowed with type: direct"),
    (direct(mode="loose"), "mode 'loose' is not allowed; choose bridge, vepa, private, passthru, source"),
    (direct(link="eth%d"), "link 'eth%d' must be the name of an existing device"),
    (direct(type="bridge"), "type 'bridge' is not allowed; choose ethernet"),
    ({"id": "net0", "bridge": "br0", "link": "eno1"}, "link is only for type: direct"),
    ({"id": "net0", "bridge": "br0", "mode": "vepa"}, "mode is only for type: direct"),
])
def test_direct_nic_problems_name_the_nic(nic, words):
    problems = guest_tap_problems([{"name": "web2", "nics": [nic]}])
    assert any(words in p and "guest 'web2' (guest_taps_guests[0]) nics[0]" in p for p in problems), problems


def test_bad_direct_template_is_refused():
    problems = guest_tap_problems([], direct_template="mvtap")
    assert any("guest_taps_direct_template 'mvtap' must be a template" in p for p in problems), problems
    with pytest.raises(AnsibleFilterError):
        guest_tap_devices([], direct_template="mvtap")


def test_fact_of_a_direct_nic_has_what_libvirt_and_qemu_need():
    guests = [{"name": "web2", "nics": [direct(mode="bridge")]}]
    result = {"devices": [{"lease": "guest_taps:web2/net0", "name": "mvtap0", "mac_address": "52:54:00:12:36:01",
                           "mtu": 1500, "link": "eno1", "macvtap_mode": "bridge", "kind": "macvtap",
                           "char_device": "/run/netdev_tuntap/host/mvtap0", "bridge": None, "multi_queue": False}]}
    assert guest_tap_fact(result, guests) == {"web2": [{
        "id": "net0", "device": "mvtap0", "lease": "guest_taps:web2/net0", "mac": "52:54:00:12:36:01",
        "host_mac": "52:54:00:12:36:01", "bridge": None, "mtu": 1500, "queues": 1, "multi_queue": False,
        "type": "direct", "link": "eno1", "mode": "bridge", "char_device": "/run/netdev_tuntap/host/mvtap0"}]}
