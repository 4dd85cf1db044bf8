"""Runs inside the VM (Debian's kernel, with bridge VLAN filtering): the module's Linux bridge
VLAN path for real, read back with iproute2's ``bridge -j vlan show`` and ``ip -d -j link``.

Each check prints one line on the serial console, ``NTT-CHECK <name> PASS`` or
``NTT-CHECK <name> FAIL <why>``; tests/vmkernel/test_vlan_vm.py boots the VM and asserts
on every line. The VM is a throwaway kernel: devices are made in its own namespace.
"""
from __future__ import annotations

import json
import subprocess
import sys
import traceback

from ansible_collections.netdev.tuntap.plugins.module_utils._engine import TapError, run

REGISTRY = "/tmp/reg/registry.json"


def sh(*argv) -> str:
    proc = subprocess.run(argv, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(argv), proc.returncode, proc.stderr.strip()))
    return proc.stdout


def port_vlans(name: str) -> dict:
    """{vid: "pvid-untagged" | "tagged"} of a bridge port, as iproute2 shows it."""
    data = json.loads(sh("bridge", "-j", "vlan", "show", "dev", name) or "[]")
    found = {}
    for entry in data:
        if entry.get("ifname") != name:
            continue
        for vlan in entry.get("vlans", []):
            flags = vlan.get("flags", [])
            kind = "pvid-untagged" if "PVID" in flags and "Egress Untagged" in flags else "tagged"
            for vid in range(vlan["vlan"], vlan.get("vlanEnd", vlan["vlan"]) + 1):
                found[vid] = kind
    return found


def links() -> dict:
    return {entry["ifname"]: entry for entry in json.loads(sh("ip", "-d", "-j", "link", "show"))}


def task(_check: bool = False, _diff: bool = False, **params) -> dict:
    return run(dict(params, registry=REGISTRY), check_mode=_check, diff=_diff)


def expect(condition: bool, why: str) -> None:
    if not condition:
        raise AssertionError(why)


CHECKS = []


def check(function):
    CHECKS.append(function)
    return function


@check
def filtering_off_is_refused_and_names_the_bridge():
    sh("ip", "link", "add", "br0", "type", "bridge")
    try:
        task(name="vnet%d", lease="g/0", bridge="br0", vlan=100)
    except TapError as exc:
        expect("bridge 'br0' has VLAN filtering off" in str(exc), str(exc))
        expect("bridge_vlan_filtering: true" in str(exc), str(exc))
    else:
        raise AssertionError("no failure")
    expect(set(links()) == {"lo", "br0"}, "devices made: %s" % sorted(links()))


@check
def create_with_pvid_and_trunk():
    result = task(name="vnet%d", lease="g/0", bridge="br0", vlan=100, trunk=["200-202", 300],
                  bridge_vlan_filtering=True)
    name = result["name"]
    expect(links()["br0"]["linkinfo"]["info_data"]["vlan_filtering"] == 1, "filtering not on")
    have = port_vlans(name)
    want = {100: "pvid-untagged", 200: "tagged", 201: "tagged", 202: "tagged", 300: "tagged"}
    expect(have == want, "bridge vlan show: %r, want %r" % (have, want))
    expect((result["vlan"], result["trunk"], result["bridge_type"]) == (100, ["200-202", 300], "linux"),
           "result %r" % {k: result[k] for k in ("vlan", "trunk", "bridge_type")})


@check
def same_task_again_changes_nothing():
    result = task(name="vnet%d", lease="g/0", bridge="br0", vlan=100, trunk=["200-202", 300])
    expect(result["changed"] is False, "changed: %r" % result)


@check
def reconciled_with_added_and_removed_vlans_in_the_diff():
    result = task(name="vnet%d", lease="g/0", bridge="br0", vlan=101, trunk=[300, "400-401"], _diff=True)
    name = result["name"]
    expect(result["changed"] is True, "not changed")
    have = port_vlans(name)
    want = {101: "pvid-untagged", 300: "tagged", 400: "tagged", 401: "tagged"}
    expect(have == want, "bridge vlan show: %r, want %r" % (have, want))
    diff = result["diff"]
    expect((diff["before"]["vlan"], diff["after"]["vlan"]) == (100, 101), "diff vlan %r" % diff)
    expect((diff["before"]["trunk"], diff["after"]["trunk"]) == (["200-202", 300], [300, "400-401"]),
           "diff trunk %r" % diff)


@check
def check_mode_predicts_and_changes_nothing():
    result = task(name="vnet%d", lease="g/0", bridge="br0", vlan=7, _check=True)
    expect(result["changed"] is True and result["vlan"] == 7 and result["trunk"] == [], "result %r" % result)
    expect(port_vlans(result["name"])[101] == "pvid-untagged", "check mode changed the kernel")


@check
def trunk_only_on_a_bridge_that_already_filters():
    sh("ip", "link", "add", "br1", "type", "bridge", "vlan_filtering", "1")
    result = task(name="vnet%d", lease="g/1", bridge="br1", trunk=[10, 20])
    have = port_vlans(result["name"])
    expect(have == {10: "tagged", 20: "tagged"}, "bridge vlan show: %r (the default PVID 1 must go)" % have)
    expect(result["vlan"] is None, "result vlan %r" % result["vlan"])


@check
def moving_to_another_bridge_sets_the_vlans_there():
    result = task(name="vnet%d", lease="g/1", bridge="br0", vlan=30)
    have = port_vlans(result["name"])
    expect(links()[result["name"]]["master"] == "br0", "not on br0")
    expect(have == {30: "pvid-untagged"}, "bridge vlan show: %r" % have)


@check
def host_side_quiet_on_this_kernel_too():
    name = task(name="vnet%d", lease="g/0", bridge="br0", vlan=101, trunk=[300, "400-401"])["name"]
    value = open("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % name).read().strip()
    expect(value == "1", "disable_ipv6 %s" % value)


@check
def removal_leaves_no_device_and_no_vlan_entry():
    names = [task(lease=lease, state="absent")["name"] for lease in ("g/0", "g/1")]
    left = set(links())
    expect(not left & set(names), "devices left: %s" % sorted(left & set(names)))
    entries = {entry.get("ifname") for entry in json.loads(sh("bridge", "-j", "vlan", "show") or "[]")}
    expect(not entries & set(names), "VLAN entries left: %s" % sorted(entries & set(names)))


def main() -> int:
    failed = 0
    for function in CHECKS:
        try:
            function()
        except Exception as exc:  # pylint: disable=broad-exception-caught
            failed += 1
            why = "%s: %s" % (type(exc).__name__, exc)
            print("NTT-CHECK %s FAIL %s" % (function.__name__, why.replace("\n", " | ")), flush=True)
            traceback.print_exc(file=sys.stdout)
        else:
            print("NTT-CHECK %s PASS" % function.__name__, flush=True)
    print("NTT-DONE %d checks, %d failed" % (len(CHECKS), failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
