"""tap_device_info on real devices: what exists, who holds it, and what the registry believes."""
from __future__ import annotations

import importlib
import json
import os

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root]

T = "vmi%d"


def info(ns, registry, **params):
    mod = importlib.import_module("ansible_collections.netdev.tuntap.plugins.module_utils._info")
    params.setdefault("netns", ns)
    params.setdefault("registry", str(registry))
    return mod.run(params)


def info_fails(**params) -> str:
    mod = importlib.import_module("ansible_collections.netdev.tuntap.plugins.module_utils._info")
    with pytest.raises(mod.InfoError) as caught:
        mod.run(params)
    return str(caught.value)


def by_name(entries):
    return {entry["name"]: entry for entry in entries}


def test_lists_devices_with_their_kernel_settings_and_leases(api, ns, registry, hold_tap):
    h.add_link(ns, "br0", "bridge")
    made = api(devices=[{"name": T, "lease": "web1/0", "bridge": "br0", "mtu": 1400},
                        {"name": T, "lease": "web1/1", "multi_queue": True, "owner": h.NOBODY}])["devices"]
    holder = hold_tap(ns, made[0]["name"])
    h.ip(ns, "link", "set", made[0]["name"], "carrier", "off")
    result = info(ns, registry)
    devices = by_name(result["devices"])
    assert set(devices) == {made[0]["name"], made[1]["name"]}
    first = devices[made[0]["name"]]
    kernel = h.link(ns, made[0]["name"])
    assert (first["ifindex"], first["mtu"], first["mac_address"], first["bridge"]) == \
        (kernel["ifindex"], 1400, kernel["address"], "br0")
    assert first["operstate"] == kernel["operstate"].lower()
    assert (first["in_use"], first["holders"], first["carrier"]) == (True, [holder.pid], False)
    assert (first["status"], first["lease"], first["template"], first["id"]) == ("leased", "web1/0", T, 0)
    second = devices[made[1]["name"]]
    assert (second["owner"], second["multi_queue"], second["in_use"], second["holders"]) == \
        (h.NOBODY_UID, True, False, [])
    assert "multi_queue" in second["flags"]
    assert {l["lease"]: l["device_present"] for l in result["leases"]} == {"web1/0": True, "web1/1": True}
    assert result["counters"] == [{"template": T, "last": 1}]
    assert (result["orphans"], result["strangers"], result["missing"]) == ([], [], [])
    assert result["registry"]["exists"] and result["registry"]["readable"]


def test_orphans_strangers_missing_leases_and_held_names(api, ns, registry):
    made = api(devices=[{"name": T, "lease": "a"}, {"name": T, "lease": "b"}, {"name": T, "lease": "c"}])
    a, b, c = (d["name"] for d in made["devices"])
    api(lease="c", state="absent")                   # released: a held name
    h.del_link(ns, b)                                 # lease b loses its device
    data = h.read_registry(registry)
    del data["leases"]["a"]                           # device a keeps its mark, its lease is lost
    with open(registry, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    h.add_tuntap(ns, "vmi7")                          # a stranger under our template
    h.add_tuntap(ns, "other0")                        # unmanaged
    result = info(ns, registry)
    assert [(o["name"], o["lease"]) for o in result["orphans"]] == [(a, "a")]
    assert "the registry holds no lease 'a'" in result["orphans"][0]["reason"]
    assert [(s["name"], s["template"]) for s in result["strangers"]] == [("vmi7", T)]
    assert [(m["lease"], m["name"]) for m in result["missing"]] == [("b", b)]
    assert by_name(result["devices"])["other0"]["status"] == "unmanaged"
    held = by_name(result["held_names"])
    assert c in held and held[c]["held"] is True and held[c]["hold"] == 3600
    assert held[c]["held_until"] == pytest.approx(held[c]["released_at"] + 3600)
    # The registry was only read: the lock file and everything else are as they were.
    before = h.tree_snapshot(os.path.dirname(registry))
    info(ns, registry)
    assert h.tree_snapshot(os.path.dirname(registry)) == before


def test_filters_by_name_template_and_lease_prefix(api, ns, registry):
    api(devices=[{"name": T, "lease": "web1/0"}, {"name": T, "lease": "web2/0"},
                 {"name": "lit%d", "lease": "web1/1"}])
    h.add_tuntap(ns, "zz0")

    def names(result):
        return sorted(d["name"] for d in result["devices"])

    assert names(info(ns, registry, names=["vmi*"])) == ["vmi0", "vmi1"]
    assert names(info(ns, registry, templates=["lit%d"])) == ["lit0"]
    only = info(ns, registry, lease_prefix="web1/")
    assert names(only) == ["lit0", "vmi0"]
    assert sorted(l["lease"] for l in only["leases"]) == ["web1/0", "web1/1"]
    assert "not a valid template" in info_fails(registry=str(registry), netns=ns, templates=["x%s"])


def test_every_namespace_of_the_registry_and_a_missing_one(api, make_ns, registry):
    first, second = make_ns(), make_ns()
    h.Api(first, registry)(name=T, lease="one")
    h.Api(second, registry)(name=T, lease="two")
    h.sh("ip", "netns", "del", second)
    result = info(None, registry, all_namespaces=True, netns=first)
    assert {n["netns"]: n["exists"] for n in result["namespaces"]} == {first: True, second: False}
    assert [(d["netns"], d["name"]) for d in result["devices"]] == [(first, "vmi0")]
    assert [(m["lease"], m["reason"]) for m in result["missing"]] == [
        ("two", "netns %r does not exist" % second)]


def test_no_registry_and_no_namespace(ns, tmp_path):
    missing = tmp_path / "none" / "registry.json"
    result = info(ns, missing)
    assert result["registry"] == {"path": str(missing), "exists": False, "readable": True, "error": None}
    assert not os.path.exists(missing.parent), "reading must not create the registry's directory"
    message = info_fails(netns="ntt-does-not-exist-%s" % os.getpid(), registry=str(missing))
    assert "does not exist" in message


def test_corrupt_registry_is_reported_not_repaired(api, ns, registry):
    api(name=T, lease="a")
    with open(registry, "w", encoding="utf-8") as handle:
        handle.write("{broken")
    result = info(ns, registry)
    assert result["registry"]["readable"] is False and "not valid JSON" in result["registry"]["error"]
    assert any("is unusable" in w for w in result["warnings"])
    assert [o["name"] for o in result["orphans"]] == ["vmi0"]
    assert open(registry, encoding="utf-8").read() == "{broken"


@pytest.mark.ansible
def test_through_ansible_in_check_mode_with_module_defaults(api, ns, registry, tmp_path):
    api(name=T, lease="a")
    play = h.write_playbook(tmp_path, """
        - hosts: localhost
          gather_facts: false
          module_defaults:
            group/netdev.tuntap.tuntap:
              registry: %s
              netns: %s
          tasks:
            - netdev.tuntap.tap_device_info:
              register: taps
            - ansible.builtin.assert:
                that:
                  - taps is not changed
                  - taps.devices | map(attribute='name') | list == ['vmi0']
                  - taps.leases[0].lease == 'a'
        """ % (registry, ns))
    proc = h.ansible_playbook(play, check=True)
    assert proc.returncode == 0, h.show(proc)
    assert "changed=0" in proc.stdout and "failed=0" in proc.stdout, proc.stdout


def test_the_documented_command_prints_the_whole_registry(api, ns, registry):
    # docs/registry.md: the export of a registry, in the layout of the JSON registries.
    api(devices=[{"name": T, "lease": "web1/0"}, {"name": T, "lease": "web1/1", "multi_queue": True}])
    api(name=T, lease="web1/1", state="absent")
    adhoc = h.ansible_adhoc("registry=%s export=true" % registry, module="netdev.tuntap.tap_device_info")
    assert adhoc.rc == 0 and not adhoc.failed, adhoc
    exported = adhoc.result["export"]
    assert exported == h.read_registry(registry)
    assert set(exported) == {"version", "registry_id", "counters", "leases", "released", "intent"}
    assert {key: rec["name"] for key, rec in exported["leases"].items()} == {"web1/0": "vmi0"}
    assert exported["released"]["vmi1"]["lease"] == "web1/1" and exported["counters"] == {T: 1}
    assert exported["registry_id"] == h.mark_registries(ns)["vmi0"]
    # Written to a file, it is a JSON registry: the module migrates it and reads the same content.
    again = registry.parent / "again" / "registry.json"
    again.parent.mkdir(mode=0o700)
    with open(again, "w", encoding="utf-8") as handle:
        json.dump(exported, handle)
    os.chmod(again, 0o600)
    assert info(ns, again, export=True)["export"] == exported
    h.Api(ns, again)(name=T, lease="web1/0")
    assert h.read_registry(again)["leases"]["web1/0"] == exported["leases"]["web1/0"]
