"""What must hold between a registry and the devices of its namespace after any run."""
from __future__ import annotations

import os
import re

import ntt_helpers as h

NAME_BYTES = re.compile(r"\A[^\x00-\x20\x7f/:]{1,15}\Z")


def check(registry: str, ns: str, expected: dict | None = None, released=()) -> dict:
    """Assert the invariants; return the registry document.

    - every lease maps to a device of its namespace that carries its mark (and this registry's id);
    - no device carries this registry's mark for a lease the registry does not bind to it
      (so: at most one device per lease, and no released lease kept by a leftover);
    - names are distinct and valid; counters are at or above every number handed out;
    - ``expected`` (lease -> spec dict), when given, is exactly the set of leases, with their mode and
      multi_queue; no lease of ``released`` is present.
    """
    empty = {"leases": {}, "counters": {}, "registry_id": None}
    doc = h.read_registry(registry) if os.path.exists(registry) else empty
    reg_id = doc.get("registry_id")
    links = h.links(ns)
    # Only this namespace's leases (a broken-registry case may hold records of others).
    leases = {key: rec for key, rec in doc["leases"].items() if rec.get("netns") == ns}
    names = [rec["name"] for rec in leases.values() if rec.get("netns") == ns]
    assert len(names) == len(set(names)), "two leases share a name: %r" % leases
    for key, rec in leases.items():
        entry = links.get(rec["name"])
        assert entry is not None, "lease %r maps to %r, which does not exist; devices: %s" % (
            key, rec["name"], sorted(links))
        mark = h.raw_mark(entry)
        assert mark is not None and mark["lease"] == key and mark.get("registry") == reg_id, (key, entry)
        assert NAME_BYTES.match(rec["name"]), rec["name"]
        if rec.get("template") is not None and rec.get("id") is not None:
            assert doc["counters"].get(rec["template"], -1) >= rec["id"], (key, rec, doc["counters"])
    bound = {rec["name"]: key for key, rec in leases.items()}
    for name, entry in links.items():
        mark = h.raw_mark(entry)
        if mark is None or mark.get("registry") != reg_id or mark["lease"] is None:
            continue
        assert bound.get(name) == mark["lease"], (
            "device %r carries lease %r, which the registry binds to %r"
            % (name, mark["lease"], leases.get(mark["lease"])))
    if expected is not None:
        assert set(leases) == set(expected), (sorted(leases), sorted(expected))
        for key, spec in expected.items():
            info = links[leases[key]["name"]]["linkinfo"]["info_data"]
            assert info["type"] == spec.get("mode", "tap"), (key, info)
            assert bool(info["multi_queue"]) == bool(spec.get("multi_queue", False)), (key, info)
            if "template" in spec:
                assert leases[key]["template"] == spec["template"], (key, leases[key])
    for key in released:
        assert key not in leases, "released lease %r came back: %r" % (key, leases[key])
    return doc


def counters_cover(doc: dict, handed_out: dict) -> None:
    """Every number handed out for a template (template -> numbers) is at or below its counter,
    unless the counter wrapped (it never does in these tests: max_id is large)."""
    for template, numbers in handed_out.items():
        if numbers:
            assert doc["counters"].get(template, -1) >= max(numbers), (template, doc["counters"], max(numbers))
