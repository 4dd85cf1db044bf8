"""The host side of a new tap: IPv6 off before the link first comes up, txqueuelen, the MAC as set.
Read back from /proc/sys and sysfs inside the namespace, and with ip."""
from __future__ import annotations

import json

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root]

T = "vmt%d"


def disable_ipv6(ns, name) -> str:
    return h.sh("ip", "netns", "exec", ns, "cat", "/proc/sys/net/ipv6/conf/%s/disable_ipv6" % name).stdout.strip()


def ipv6_addresses(ns, name) -> list:
    out = h.sh("ip", "-n", ns, "-6", "-j", "addr", "show", "dev", name).stdout
    return [a["local"] for entry in json.loads(out or "[]") for a in entry.get("addr_info", [])]


def test_a_new_tap_has_ipv6_off_and_an_explicit_true_keeps_it(api, ns):
    quiet = api(name=T, lease="q/0")
    assert disable_ipv6(ns, quiet["name"]) == "1" and quiet["ipv6"] is False
    talking = api(name=T, lease="q/1", ipv6=True)
    assert disable_ipv6(ns, talking["name"]) == "0" and talking["ipv6"] is True
    assert api(name=T, lease="q/0")["changed"] is False


def test_an_existing_device_changes_only_when_the_task_asks(api, ns):
    h.add_tuntap(ns, "mytap")
    assert disable_ipv6(ns, "mytap") == "0"
    assert api(name="mytap")["changed"] is True  # it is brought up; IPv6 is not touched
    assert disable_ipv6(ns, "mytap") == "0"
    result = api(name="mytap", ipv6=False, diff=True)
    assert result["changed"] is True and disable_ipv6(ns, "mytap") == "1"
    assert (result["diff"]["before"]["ipv6"], result["diff"]["after"]["ipv6"]) == (True, False)
    assert api(name="mytap", ipv6=False)["changed"] is False


@pytest.mark.qemu
def test_no_ipv6_address_on_a_tap_with_carrier(api, ns, qemu, tun_world_openable):
    quiet = api(name=T, lease="c/0", owner=h.NOBODY)["name"]
    control = api(name=T, lease="c/1", owner=h.NOBODY, ipv6=True)["name"]
    for name in (quiet, control):
        qemu(ns, name)
        h.wait_for(lambda name=name: h.attached(ns, name), what="QEMU attached to %s" % name)
    # The control tap gets its link-local address once carrier is up; the quiet one never does.
    h.wait_for(lambda: ipv6_addresses(ns, control), timeout=20, what="fe80:: on the control tap")
    assert ipv6_addresses(ns, control)[0].startswith("fe80:")
    assert ipv6_addresses(ns, quiet) == []
    assert h.link(ns, quiet)["operstate"] != "DOWN"


def test_txqueuelen_is_set_and_reconciled(api, ns):
    result = api(name=T, lease="t/0", txqueuelen=5000)
    assert h.link(ns, result["name"])["txqlen"] == 5000 and result["txqueuelen"] == 5000
    again = api(name=T, lease="t/0", txqueuelen=100)
    assert again["changed"] is True and h.link(ns, result["name"])["txqlen"] == 100
    assert api(name=T, lease="t/0", txqueuelen=100)["changed"] is False
    assert "txqueuelen 0 is out of range" in api.fails(name=T, lease="t/0", txqueuelen=0)


def test_the_mac_is_marked_as_set_by_userspace(registry, ns):
    # Run in the namespace's own mount of sysfs (ip netns exec), as the module's start namespace.
    [out] = h.api_subprocess([{"name": "mytap", "registry": str(registry), "mac_address": "fe:54:00:aa:bb:cc"}],
                             prefix=["ip", "netns", "exec", ns])
    assert out["result"]["mac_address"] == "fe:54:00:aa:bb:cc", out
    assert out["result"]["warnings"] == []
    assert h.sh("ip", "netns", "exec", ns, "cat", "/sys/class/net/mytap/addr_assign_type").stdout.strip() == "3"
