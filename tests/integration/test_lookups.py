"""Runs among thousands of devices look devices up by name; they do not list the namespace.

Each run is a new process whose link dumps are counted (every holder of _rtnl.dump_links is
wrapped); the devices are checked with `ip` afterwards.
"""
from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.root, pytest.mark.integration]

T = "vmt%d"
CROWD = 2000      # devices of no registry in the namespace
TAKEN = 150       # of them named from T right after the counter: more than the first window

COUNTED = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, %(root)r)
    from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _rtnl
    from %(engine)s import run, TapError
    real, dumps = _rtnl.dump_links, []

    def counted(*args, **kwargs):
        dumps.append(1)
        return real(*args, **kwargs)

    # Every module holding the function (imported by name or through the module) calls the count.
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("ansible_collections.") and \\
                getattr(module, "dump_links", None) is real:
            module.dump_links = counted
    _rtnl.dump_links = counted
    out = []
    for call in json.loads(sys.argv[1]):
        del dumps[:]
        try:
            out.append({"result": run(call), "dumps": len(dumps)})
        except TapError as exc:
            out.append({"error": str(exc), "dumps": len(dumps)})
    print(json.dumps(out))
""") % {"root": h.COLLECTIONS_ROOT, "engine": h.ENGINE_MODULE}


def counted_runs(calls: list) -> list:
    proc = h.sh(h.PYTHON, "-c", COUNTED, json.dumps(calls), check=False, timeout=300, cwd="/")
    assert proc.returncode == 0, h.show(proc)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def crowd(ns: str, names) -> None:
    """Many taps at once (one `ip -batch`), none of them the registry's."""
    script = "".join("tuntap add dev %s mode tap\n" % name for name in names)
    proc = subprocess.run(["ip", "-n", ns, "-batch", "-"], input=script, text=True, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_one_more_device_among_thousands_is_allocated_without_listing_the_namespace(api, ns, registry):
    first = api(name=T, lease="a")   # the template's first counter: that run lists the namespace
    assert first["name"] == "vmt0"
    h.ip(ns, "link", "add", "br0", "type", "bridge")
    crowd(ns, ["vmt%d" % n for n in range(1, TAKEN + 1)] + ["crowd%d" % n for n in range(CROWD)])
    params = dict(netns=ns, registry=str(registry))
    same, more, again, literal = counted_runs([
        dict(params, name=T, lease="a"),
        dict(params, name=T, lease="b", bridge="br0", mtu=1400),
        dict(params, name=T, lease="b", bridge="br0", mtu=1400),
        dict(params, name="lit0", lease="c"),
    ])
    assert same["dumps"] == 0 and same["result"]["changed"] is False, same
    # vmt1..vmt150 exist and the registry knows none of them: the next free name is vmt151.
    assert more["dumps"] == 0 and more["result"]["changed"] is True, more
    assert more["result"]["name"] == "vmt%d" % (TAKEN + 1) and more["result"]["bridge"] == "br0", more
    assert again["dumps"] == 0 and again["result"]["changed"] is False, again
    assert literal["dumps"] == 0 and literal["result"]["changed"] is True, literal
    made = h.link(ns, "vmt%d" % (TAKEN + 1))
    assert h.master(made) == "br0" and made["mtu"] == 1400
    assert h.aliases(ns)["vmt%d" % (TAKEN + 1)]["lease"] == "b"
    assert h.aliases(ns)["lit0"]["lease"] == "c"
    leases = {key: rec["name"] for key, rec in h.read_registry(registry)["leases"].items()}
    assert leases == {"a": "vmt0", "b": "vmt%d" % (TAKEN + 1), "c": "lit0"}
    assert len(h.tun_names(ns)) == 1 + TAKEN + CROWD + 2


def test_a_marked_device_the_registry_lost_is_found_by_a_lookup_and_adopted(api, ns, registry):
    api(name=T, lease="a")
    crowd(ns, ["crowd%d" % n for n in range(CROWD)])
    # A device this registry made for lease x, which the registry no longer records (as if a run
    # recorded it and the registry was then restored from an older copy).
    alias = h.link(ns, "vmt0")["ifalias"].replace('"a"', '"x"')
    h.add_tuntap(ns, "vmt1")
    h.ip(ns, "link", "set", "vmt1", "alias", alias)
    quiet, found = counted_runs([dict(netns=ns, registry=str(registry), name="other0"),
                                 dict(netns=ns, registry=str(registry), name=T, lease="b")])
    # A run that never comes across it does not list the namespace.
    assert quiet["dumps"] == 0 and quiet["result"]["adopted"] == [], quiet
    # One that allocates from T looks up vmt1, finds the mark, and then scans and adopts.
    assert found["dumps"] >= 1 and found["result"]["adopted"] == ["vmt1"], found
    assert found["result"]["name"] == "vmt2", found
    leases = {key: rec["name"] for key, rec in h.read_registry(registry)["leases"].items()}
    assert leases == {"a": "vmt0", "x": "vmt1", "b": "vmt2"}


def test_removing_a_lease_among_thousands_deletes_only_its_device(api, ns, registry):
    made = api(devices=[dict(name=T, lease="a"), dict(name=T, lease="b")])
    crowd(ns, ["crowd%d" % n for n in range(CROWD)])
    [gone] = counted_runs([dict(netns=ns, registry=str(registry), lease="a", state="absent")])
    # The bulk removal's link group is chosen from a full list: one dump, on removal only.
    assert gone["result"]["changed"] is True and gone["dumps"] == 1, gone
    names = h.tun_names(ns)
    assert made["devices"][0]["name"] not in names and made["devices"][1]["name"] in names
    assert len(names) == 1 + CROWD


@pytest.mark.parametrize("force_buffer", [True, False], ids=["large-buffer", "default-buffer"])
def test_a_batch_on_a_bridge_is_read_back_whole(api, ns, monkeypatch, force_buffer):
    # A bridge port's link answer is larger than a lone tap's: answers of one send overflowed the
    # socket's default receive buffer (ENOBUFS) from a few dozen ports on. Also without the larger
    # buffer that SO_RCVBUFFORCE gives (a kernel or a sandbox that refuses it), the read-back
    # sends fewer requests at a time and still reads every device.
    from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _nl, _probe
    if not force_buffer:
        real = _nl.route_socket

        def default_buffer():
            sock = real()
            sock.setsockopt(_nl.socket.SOL_SOCKET, _nl.socket.SO_RCVBUF, 0)   # the kernel's minimum
            return sock
        monkeypatch.setattr(_probe, "route_socket", default_buffer)
    h.ip(ns, "link", "add", "br0", "up", "type", "bridge")
    result = api(devices=[{"name": "bp%d", "lease": "port/%d" % i, "bridge": "br0"} for i in range(300)])
    assert result["changed"] and len(result["devices"]) == 300
    assert {d["bridge"] for d in result["devices"]} == {"br0"}
    ports = [name for name, link in h.links(ns).items() if link.get("master") == "br0"]
    assert sorted(ports) == sorted("bp%d" % i for i in range(300))
