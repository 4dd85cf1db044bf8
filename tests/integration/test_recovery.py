"""Runs killed in the middle, a full disk, and two registries sharing one namespace (real devices).

Every claim is checked against the kernel (``ip -j link``: names and marks) and the registry file.
"""
from __future__ import annotations

import os

import pytest

import ntt_crash as crash
import ntt_helpers as h

pytestmark = [pytest.mark.root, pytest.mark.integration]

T = "vmt%d"


def marked(ns: str) -> dict:
    """Device name -> lease, for every device carrying a netdev.tuntap mark in ``ns``."""
    return {name: mark["lease"] for name, mark in h.aliases(ns).items()}


def leases(registry) -> dict:
    return {key: rec["name"] for key, rec in h.read_registry(registry)["leases"].items()}


# ----------------------------------------------------------------------------- a killed replacement

@pytest.mark.parametrize("change", [dict(multi_queue=True), dict(mode="tun"), dict(name="other%d")])
def test_a_run_killed_after_making_the_replacement_leaves_one_device_for_the_lease(api, ns, registry, change):
    first = api(name=T, lease="L")
    assert first["name"] == "vmt0"
    wanted = dict(dict(name=T, lease="L"), **change)
    killed = crash.run_forked(api.params(wanted), kill_at=("create", 1))
    assert killed == {crash.KILLED: True}
    made = [name for name, lease in marked(ns).items() if lease == "L"]
    assert len(made) == 1 and made != ["vmt0"], marked(ns)       # the old one is gone, the new one made
    again = api(**wanted)
    assert again["changed"] is True and again["name"] == made[0] and again["adopted"] == made, again
    assert marked(ns) == {made[0]: "L"}                            # no third device
    assert leases(registry) == {"L": made[0]}
    assert api(**wanted)["changed"] is False
    # Released, the lease never comes back.
    assert api(lease="L", state="absent")["changed"] is True
    assert marked(ns) == {}
    assert api(name=T, lease="M")["adopted"] == []
    assert set(leases(registry)) == {"M"}


def test_a_leftover_device_of_a_released_lease_never_brings_it_back(api, ns, registry):
    made = api(name=T, lease="L")
    alias = h.link(ns, made["name"])["ifalias"]
    api(lease="L", state="absent")
    # A device still carrying L's mark (left by a run killed before it recorded its work).
    h.add_tuntap(ns, "vmt7")
    h.ip(ns, "link", "set", "vmt7", "alias", alias)
    result = api(name=T, lease="M")
    assert result["changed"] is True and result["adopted"] == [], result
    assert "L" not in leases(registry)
    assert "vmt7" not in h.tun_names(ns)                            # the orphan was deleted
    assert any("vmt7" in w and "released" in w for w in result["warnings"]), result["warnings"]
    assert api(name=T, lease="M")["changed"] is False
    assert set(leases(registry)) == {"M"}


def test_a_second_device_for_a_leased_lease_is_deleted_when_no_process_holds_it(api, ns, registry):
    api(name=T, lease="L")
    h.add_tuntap(ns, "vmt9")
    h.ip(ns, "link", "set", "vmt9", "alias", h.link(ns, "vmt0")["ifalias"])
    result = api(name=T, lease="L")
    assert result["changed"] is True and result["name"] == "vmt0"
    assert marked(ns) == {"vmt0": "L"}
    assert api(name=T, lease="L")["changed"] is False


# ----------------------------------------------------------------------------- two registries

def test_a_device_of_another_registry_is_never_adopted_changed_or_deleted(api, ns, registry, tmp_path):
    mine = api(name=T, lease="web/0")
    other = str(tmp_path / "other" / "registry.json")
    pruned = api(registry=other, devices=[], prune_prefix="web/")
    assert pruned["changed"] is False and pruned["pruned"] == [] and pruned["adopted"] == [], pruned
    assert any(mine["name"] in w and "another registry" in w for w in pruned["warnings"]), pruned["warnings"]
    assert not os.path.exists(other) or h.read_registry(other)["leases"] == {}
    assert marked(ns) == {mine["name"]: "web/0"}
    assert h.mark_registries(ns) == {mine["name"]: h.registry_id(registry)}
    for params in (dict(name=mine["name"], state="absent"), dict(name=mine["name"], mtu=1400),
                   dict(name=mine["name"], lease="web/0", mtu=1400)):
        message = api.fails(registry=other, **params)
        assert "carries the mark of another registry" in message, message
    # Working in the same namespace, the other registry leaves it alone too.
    api(registry=other, name=T, lease="db/0")
    assert api(name=T, lease="web/0")["changed"] is False
    assert h.link(ns, mine["name"])["mtu"] == 1500


def test_a_legacy_mark_is_not_adopted_where_another_registry_s_devices_live(api, ns, registry, tmp_path):
    api(name=T, lease="web/0")
    h.add_tuntap(ns, "vmt5")
    h.ip(ns, "link", "set", "vmt5", "alias", 'netdev.tuntap {"lease":"legacy/0","template":null}')
    other = str(tmp_path / "other" / "registry.json")
    result = api(registry=other, name="new%d", lease="x")
    assert "legacy/0" not in leases(other)
    assert any("vmt5" in w and "without a registry id" in w for w in result["warnings"]), result["warnings"]
    # Where only legacy marks and this registry's own live, the legacy mark is still adopted, by the
    # first run that comes across the device: here among the names after the counter of T, which
    # every run allocating from T looks up (the namespace is not listed on every run).
    api(registry=other, lease="x", state="absent")
    alone = api(name=T, lease="web/1")
    assert "vmt5" in alone["adopted"] and leases(registry)["legacy/0"] == "vmt5"


# ----------------------------------------------------------------------------- a full disk

def test_disk_full_at_the_final_write_reports_changed_and_the_next_run_adopts(ns, tmp_path):
    regdir = str(tmp_path / "full")
    os.mkdir(regdir, 0o700)
    registry = os.path.join(regdir, "registry.json")
    params = dict(netns=ns, registry=registry, devices=[dict(name=T, lease="a"), dict(name=T, lease="b")])

    def scenario():
        crash.mount_tmpfs(regdir, size="256k", inodes=64)  # an SQLite registry takes a page per table
        failed = crash.run_forked(params, fill_at=("create", 1), fill_dir=regdir)
        crash.unfill(regdir)
        second = crash.run_forked(params)
        third = crash.run_forked(params)
        return failed, second, third, h.read_registry(registry)["leases"]

    failed, second, third, recorded = crash.in_private_mount_namespace(scenario)
    assert "error" in failed and failed["changed"] is True, failed
    assert "No space left on device" in failed["error"], failed
    assert second["result"]["changed"] is True, second
    assert second["result"]["adopted"] == ["vmt0", "vmt1"], second
    assert third["result"]["changed"] is False, third
    assert {k: v["name"] for k, v in recorded.items()} == {"a": "vmt0", "b": "vmt1"}
    assert marked(ns) == {"vmt0": "a", "vmt1": "b"}
    assert not os.path.ismount(regdir) and os.listdir(regdir) == []   # the tmpfs went with its namespace
