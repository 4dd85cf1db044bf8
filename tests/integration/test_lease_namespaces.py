"""A lease recorded in the host's namespace, acted on by a task that targets a named one.

The whole task runs inside a throwaway outer namespace that plays the host (``ip netns exec
OUTER python ...``), so "the host's namespace" is never the machine's real one.
"""
from __future__ import annotations

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root]

T = "vmh%d"


def in_outer(outer: str, calls: list[dict]) -> list[dict]:
    """Run the calls through the Python API in a new process inside ``outer`` (the "host")."""
    return h.api_subprocess(calls, prefix=["ip", "netns", "exec", outer])


def ok(outcome: dict) -> dict:
    assert "result" in outcome, outcome
    return outcome["result"]


def host_taps(outer: str) -> set[str]:
    return h.tun_names(outer)


def test_moving_a_host_lease_into_a_named_namespace_deletes_the_host_device(make_ns, registry):
    outer, inner = make_ns(), make_ns()
    reg = str(registry)
    made = ok(in_outer(outer, [{"name": T, "lease": "web1/net0", "registry": reg}])[0])
    assert made["netns"] is None and host_taps(outer) == {made["name"]}

    moved = ok(in_outer(outer, [{"name": T, "lease": "web1/net0", "netns": inner, "registry": reg}])[0])
    assert moved["changed"] is True and moved["netns"] == inner
    assert host_taps(outer) == set(), "the host namespace's old device was left behind"
    assert h.aliases(inner) == {moved["name"]: {"lease": "web1/net0", "template": T}}
    record = h.read_registry(registry)["leases"]["web1/net0"]
    assert (record["name"], record["netns"]) == (moved["name"], inner)
    assert made["name"] in h.read_registry(registry)["released"]

    # A later run in the host namespace finds no mark to adopt the lease back from.
    ok(in_outer(outer, [{"name": "vmother%d", "lease": "other", "registry": reg}])[0])
    assert h.read_registry(registry)["leases"]["web1/net0"]["netns"] == inner


def test_pruning_from_a_named_namespace_deletes_a_host_lease_s_device(make_ns, registry):
    outer, inner = make_ns(), make_ns()
    reg = str(registry)
    made = ok(in_outer(outer, [{"devices": [{"name": T, "lease": "g:old/0"}, {"name": T, "lease": "g:keep/0"}],
                                "registry": reg}])[0])
    old, kept = (d["name"] for d in made["devices"])
    assert host_taps(outer) == {old, kept}

    pruned = ok(in_outer(outer, [{"devices": [{"name": T, "lease": "g:new/0"}], "netns": inner,
                                  "prune_prefix": "g:old/", "registry": reg}])[0])
    assert pruned["pruned"] == ["g:old/0"]
    assert host_taps(outer) == {kept}, "the pruned lease's device in the host namespace was left behind"
    leases = h.read_registry(registry)["leases"]
    assert "g:old/0" not in leases and leases["g:keep/0"]["netns"] is None

    # The host namespace's next run does not bring the released lease back.
    ok(in_outer(outer, [{"name": T, "lease": "g:keep/0", "registry": reg}])[0])
    assert "g:old/0" not in h.read_registry(registry)["leases"]


def test_removing_a_host_lease_by_prefix_from_a_named_namespace(make_ns, registry):
    outer, inner = make_ns(), make_ns()
    reg = str(registry)
    made = ok(in_outer(outer, [{"name": T, "lease": "guest_taps:db1/net0", "registry": reg}])[0])
    result = ok(in_outer(outer, [{"remove_prefixes": ["guest_taps:db1/"], "netns": inner, "registry": reg}])[0])
    assert result["changed"] is True and result["pruned"] == ["guest_taps:db1/net0"]
    assert made["name"] not in host_taps(outer)
    assert h.read_registry(registry)["leases"] == {}
