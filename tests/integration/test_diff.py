"""The diff's "before" is the device as it was, including the lease its mark carried."""
from __future__ import annotations

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root]


def test_before_shows_no_lease_for_an_unmarked_device_taken_under_a_lease(api, ns):
    h.add_tuntap(ns, "mytap")
    result = api(diff=True, name="mytap", lease="web1/net0")
    assert result["changed"] is True
    assert result["diff"]["before"]["lease"] is None
    assert result["diff"]["after"]["lease"] == "web1/net0"
    assert h.aliases(ns) == {"mytap": {"lease": "web1/net0", "template": None}}


def test_before_shows_the_lease_the_device_carries(api, ns):
    made = api(name="vmd%d", lease="web1/net0")
    result = api(diff=True, check_mode=True, name="vmd%d", lease="web1/net0", mtu=1400)
    assert result["diff"]["before"]["lease"] == "web1/net0"
    assert result["diff"]["before"]["mtu"] == 1500 and result["diff"]["after"]["mtu"] == 1400
    assert result["diff"]["before"]["name"] == made["name"]
