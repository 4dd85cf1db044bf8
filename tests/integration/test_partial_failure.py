"""A batch that fails part way: the error the user sees is the one that stopped it, and
``changed`` says that devices were made, also when reading them back fails afterwards."""
from __future__ import annotations

import errno

import pytest

import ntt_helpers as h
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _probe
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._links import LinkError, Links

pytestmark = [pytest.mark.integration, pytest.mark.root]

T = "vmp%d"
# A tap's largest MTU is 65535 minus its 14-byte Ethernet header: the kernel refuses 65535.
REFUSED_MTU = 65535


@pytest.fixture
def dumps_fail_after_the_first(monkeypatch):
    """A link dump or lookup that would show a device this test made fails, as a netlink error
    would: the snapshots before anything is made work, reading the result back does not."""
    real_dump, real_look_up = Links.dump, _probe.look_up

    def dump(self):
        links = real_dump(self)
        if any(name.startswith("vmp") for name in links):
            raise LinkError("listing network links failed: injected")
        return links

    def look_up(keys):
        found = real_look_up(keys)
        if any(raw is not None and raw["name"].startswith("vmp") for raw in found.values()):
            raise OSError(errno.EIO, "injected")
        return found

    monkeypatch.setattr(Links, "dump", dump)
    monkeypatch.setattr(_probe, "look_up", look_up)


def test_a_failing_item_is_reported_as_itself_with_changed_true(api, ns, registry, dumps_fail_after_the_first):
    with pytest.raises(h.engine().TapError) as failure:
        batch = [{"name": T, "lease": "a"}, {"name": T, "lease": "b", "mtu": REFUSED_MTU}]
        h.engine().run(api.params({"devices": batch}))
    message = str(failure.value)
    assert message.startswith("devices[1] vmp%d (lease 'b') failed: the kernel refused to set mtu=65535"), message
    assert "network links failed" not in message   # listing or looking up: the read-back is not the error
    assert failure.value.changed is True
    # What was done is recorded, and nothing half made remains for the failed item.
    assert set(h.read_registry(registry)["leases"]) == {"a"}
    assert h.tun_names(ns) == {"vmp0"}


def test_reading_back_after_a_complete_batch_fails_with_changed_true(api, ns, registry, dumps_fail_after_the_first):
    with pytest.raises(h.engine().TapError) as failure:
        h.engine().run(api.params({"devices": [{"name": T, "lease": "a"}]}))
    assert "the devices were changed and recorded, but reading them back failed" in str(failure.value)
    assert failure.value.changed is True
    assert set(h.read_registry(registry)["leases"]) == {"a"} and h.tun_names(ns) == {"vmp0"}


def test_without_injected_faults_the_same_failing_batch_reports_the_kernel_error(api, ns, registry):
    message = api.fails(devices=[{"name": T, "lease": "a"}, {"name": T, "lease": "b", "mtu": REFUSED_MTU}])
    assert "devices[1] vmp%d (lease 'b') failed: the kernel refused to set mtu=65535" in message
    assert "No device was left behind for it; the items before it were applied and recorded" in message
    assert h.tun_names(ns) == {"vmp0"}
