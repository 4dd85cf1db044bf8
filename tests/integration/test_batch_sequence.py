"""Items of one batch see what the items before them leave: a released lease, a deleted device."""
from __future__ import annotations

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.mark.parametrize("second", [
    {"name": "lit7", "lease": "b"},
    {"name": "lit7"},
])
def test_a_lease_released_by_an_earlier_item_frees_its_literal_name(api, ns, registry, second):
    first = api(name="lit7", lease="a")
    old_index = first["ifindex"]
    result = api(devices=[{"lease": "a", "state": "absent"}, second])
    assert result["changed"] is True
    removed, made = result["devices"]
    assert removed["changed"] is True and made["changed"] is True and made["name"] == "lit7"
    entry = h.assert_matches_kernel(ns, made)
    assert entry["ifindex"] != old_index, "the old device was reconciled instead of being replaced"
    leases = h.read_registry(registry)["leases"]
    assert "a" not in leases
    assert (leases.get("b") or {}).get("name") == ("lit7" if second.get("lease") else None)
    # run again: nothing left to do
    again = api(devices=[{"lease": "a", "state": "absent"}, second])
    assert again["changed"] is False


def test_check_mode_predicts_the_same_sequence(api, ns, registry):
    api(name="lit7", lease="a")
    links = h.stable_links(ns)
    result = api(check_mode=True, devices=[{"lease": "a", "state": "absent"}, {"name": "lit7", "lease": "b"}])
    assert [d["changed"] for d in result["devices"]] == [True, True]
    assert h.stable_links(ns) == links
