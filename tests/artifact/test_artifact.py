"""The built collection artifact, installed into an empty collections path, used from there only:
ad hoc and from a playbook (module_defaults through group/netdev.tuntap.tuntap, the role).

scripts/test.sh's artifact stage builds and installs the tarball, then runs this file.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import tarfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = "netdev.tuntap.tap_device"
LEASE = "artifact/adhoc"
MUST_HOLD = ("MANIFEST.json", "README.md", "LICENSE", "meta/runtime.yml", "plugins/modules/tap_device.py",
             "plugins/modules/tap_device_info.py",
             "roles/guest_taps/tasks/main.yml", "roles/guest_taps/meta/argument_specs.yml")
# Build and test leftovers that must never ship: first path component, or anywhere in the path.
NEVER_TOP = (".venv", ".git", ".ci", ".pytest_cache")


def run(argv, env, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd="/", stdin=subprocess.DEVNULL,
                          timeout=300, check=False, **kwargs)


def show(proc) -> str:
    return "%r rc=%s\n--- stdout\n%s\n--- stderr\n%s" % (proc.args, proc.returncode, proc.stdout, proc.stderr)


def ip_link(netns: str) -> dict:
    out = subprocess.run(["ip", "-n", netns, "-d", "-j", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {entry["ifname"]: entry for entry in json.loads(out)}


def is_tap(entry) -> bool:
    info = (entry or {}).get("linkinfo") or {}
    return info.get("info_kind") == "tun" and (info.get("info_data") or {}).get("type") == "tap"


def read_leases(registry: str) -> dict:
    """Lease -> device name, read from the registry's database with sqlite3 itself (docs/registry.md)."""
    conn = sqlite3.connect("file:%s?mode=ro" % registry, uri=True)
    try:
        return dict(conn.execute("SELECT key, name FROM leases"))
    finally:
        conn.close()


def test_tarball_holds_the_collection_and_nothing_else(tarball):
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    assert not [must for must in MUST_HOLD if must not in names], names
    bad = [name for name in names
           if name.split("/")[0] in NEVER_TOP or name.startswith("tests/output") or "__pycache__" in name
           or name.endswith((".pyc", ".tar.gz"))]
    assert bad == [], "the artifact holds files it should not: %s" % sorted(bad)[:10]
    print("artifact: %d entries, %s" % (len(names), tarball))


def test_only_the_installed_artifact_provides_the_collection(ansible_env, collections_path):
    proc = run(["ansible-galaxy", "collection", "list", "netdev.tuntap"], ansible_env)
    assert proc.returncode == 0, show(proc)
    roots = re.findall(r"^# (.+)$", proc.stdout, re.M)
    assert roots == [os.path.join(collections_path, "ansible_collections")], show(proc)


@pytest.mark.parametrize("kind, name", [("module", MODULE), ("role", "netdev.tuntap.guest_taps")])
def test_docs_render_from_the_installed_copy(ansible_env, collections_path, kind, name):
    proc = run(["ansible-doc", "-t", kind, name], ansible_env)
    assert proc.returncode == 0, show(proc)
    assert collections_path in proc.stdout, "ansible-doc did not read the installed copy:\n" + show(proc)


@pytest.fixture(scope="module")
def adhoc(ansible_env, netns, registry) -> list[dict]:
    """Two ad-hoc runs with one lease: the results as printed (``localhost | CHANGED => {...}``)."""
    results = []
    for _run in range(2):
        proc = run(["ansible", "localhost", "-m", MODULE, "-a",
                    "name=vnet%%d lease=%s netns=%s registry=%s" % (LEASE, netns, registry)], ansible_env)
        assert proc.returncode == 0, show(proc)
        print(proc.stdout)
        head, _arrow, body = proc.stdout.partition(" => ")
        assert head.startswith("localhost | "), show(proc)
        results.append(json.JSONDecoder().raw_decode(body[body.index("{"):])[0])
    return results


def test_adhoc_twice_with_one_lease_gives_one_tap(adhoc, netns):
    first, second = adhoc
    assert first["changed"] is True and re.fullmatch(r"vnet\d+", first["name"]), first
    assert second["changed"] is False and second["name"] == first["name"], second
    links = ip_link(netns)
    assert is_tap(links.get(first["name"])), links.get(first["name"])
    assert links[first["name"]]["ifindex"] == first["ifindex"] == second["ifindex"]


def test_playbook_module_defaults_release_and_role(adhoc, ansible_env, netns, registry, tmp_path):
    first = adhoc[0]["name"]
    out = tmp_path / "results.json"
    variables = {"ntt_netns": netns, "ntt_registry": registry, "ntt_bridge": "ntt-br0", "ntt_out": str(out)}
    proc = run(["ansible-playbook", os.path.join(HERE, "play.yml"), "-e", json.dumps(variables)], ansible_env)
    print(proc.stdout)
    assert proc.returncode == 0, show(proc)
    res = json.loads(out.read_text(encoding="utf-8"))

    leased, after = res["leased"], res["after"]["devices"][0]
    assert leased["changed"] is True and leased["netns"] == netns, leased
    assert res["removed"]["changed"] is True, res["removed"]
    assert after["name"] != first, "a released name was handed out again"
    assert after["id"] > leased["id"], (after, leased)
    assert len(res["role"]["g1"]) == 1, res["role"]
    role_device = res["role"]["g1"][0]["device"]

    links = ip_link(netns)
    assert first not in links, "%s still exists after state=absent" % first
    for name in (leased["name"], after["name"], role_device):
        assert is_tap(links.get(name)), (name, links.get(name))
    assert links[role_device].get("master") == "ntt-br0", links[role_device]
    leases = read_leases(registry)
    assert LEASE not in leases, leases
    assert leases["artifact/play"] == leased["name"] and leases["artifact/after"] == after["name"], leases
