"""Open vSwitch ports: a private ovsdb-server and ovs-vswitchd (userspace datapath) per test,
in the test's namespace; every row read back with ovs-vsctl, every device with ip."""
from __future__ import annotations

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.ovs]

T = "vmt%d"
LEASE_KEY = "netdev-tuntap-lease"
IDS = {"iface-id": "5c2b3a2e-port", "attached-mac": "52:54:00:12:34:56", "vm-uuid": "0d5e-vm"}


@pytest.fixture
def ovs(private_ovs):
    private_ovs.add_bridge("br-int")
    return private_ovs


def ovs_params(ovs, **params):
    return dict(dict(bridge="br-int", ovs_db=ovs.db, ovs_timeout=20), **params)


def interface(ovs, name):
    return {"ofport": ovs.get("Interface", name, "ofport"), "error": ovs.get("Interface", name, "error"),
            "external_ids": dict(ovs.get("Interface", name, "external_ids")[1])}


def test_tap_joins_an_ovs_bridge_with_ids_and_vlans_and_leaves_no_row_on_release(api, ns, ovs):
    params = ovs_params(ovs, name=T, lease="web1/net0", external_ids=IDS, vlan=100, trunk=[200, "300-302"])
    result = api(**params)
    name = result["name"]
    assert name in h.tun_names(ns)
    assert name in ovs.port_names()
    assert ovs.vsctl("port-to-br", name).stdout.strip() == "br-int"
    iface = interface(ovs, name)
    assert iface["ofport"] > 0 and iface["error"] == ["set", []]
    assert iface["external_ids"] == dict(IDS, **{LEASE_KEY: "web1/net0"})
    assert ovs.get("Port", name, "tag") == 100
    assert ovs.get("Port", name, "trunks") == ["set", [200, 300, 301, 302]]
    assert ovs.get("Port", name, "vlan_mode") == "native-untagged"
    assert (result["bridge"], result["bridge_type"], result["vlan"], result["trunk"]) == (
        "br-int", "ovs", 100, [200, "300-302"])
    assert result["external_ids"] == iface["external_ids"]
    assert h.read_registry(api.registry)["leases"]["web1/net0"]["ovs"] == {"bridge": "br-int", "db": ovs.db}

    again = api(**dict(params, name=T))
    assert again["changed"] is False and again["name"] == name

    gone = api(lease="web1/net0", state="absent", ovs_db=ovs.db)
    assert gone["changed"] is True
    assert name not in h.tun_names(ns)
    assert name not in ovs.port_names()
    assert name not in ovs.interface_rows()


def test_vlan_and_ids_are_reconciled_and_shown_in_the_diff(api, ns, ovs):
    first = api(**ovs_params(ovs, name=T, lease="g/0", external_ids=IDS, vlan=10))
    name = first["name"]
    assert ovs.get("Port", name, "vlan_mode") == "access"
    changed = api(diff=True, **ovs_params(ovs, name=T, lease="g/0", external_ids=dict(IDS, **{"iface-id": "new"}),
                                          trunk=["20-21"]))
    assert changed["changed"] is True
    assert ovs.get("Port", name, "tag") == ["set", []]
    assert ovs.get("Port", name, "trunks") == ["set", [20, 21]]
    assert ovs.get("Port", name, "vlan_mode") == "trunk"
    assert interface(ovs, name)["external_ids"]["iface-id"] == "new"
    diff = changed["diff"]
    assert (diff["before"]["vlan"], diff["after"]["vlan"]) == (10, None)
    assert (diff["before"]["trunk"], diff["after"]["trunk"]) == ([], ["20-21"])
    assert diff["before"]["external_ids"]["iface-id"] == IDS["iface-id"]
    assert diff["after"]["external_ids"]["iface-id"] == "new"
    check = api(check_mode=True, **ovs_params(ovs, name=T, lease="g/0", trunk=["20-21"]))
    assert check["changed"] is False


def test_a_stale_row_of_an_old_guest_is_replaced_not_reused(api, ns, ovs):
    ovs.vsctl("add-port", "br-int", "vmt0", "--", "set", "Interface", "vmt0", 'external_ids:iface-id="old-guest"')
    result = api(**ovs_params(ovs, name="vmt0", lease="new/0", external_ids={"iface-id": "new-guest"}))
    assert interface(ovs, "vmt0")["external_ids"] == {"iface-id": "new-guest", LEASE_KEY: "new/0"}
    assert interface(ovs, "vmt0")["ofport"] > 0
    h.assert_warnings(result, r"vmt0 \(lease 'new/0'\): Open vSwitch had a port row 'vmt0' \(iface-id "
                              r"'old-guest'\) left from a device that no longer exists; it is replaced by the new "
                              r"device's row")


def test_a_row_whose_device_is_gone_is_removed_when_the_lease_is_released(api, ns, ovs):
    name = api(**ovs_params(ovs, name=T, lease="web2/net0", external_ids=IDS))["name"]
    h.del_link(ns, name)  # the device vanished (a reboot, someone's ip link del): the row stays
    assert name in ovs.port_names()
    result = api(remove_prefixes=["web2/"], ovs_db=ovs.db)
    assert result["pruned"] == ["web2/net0"]
    assert name not in ovs.port_names()


def test_a_row_that_is_not_ours_is_left_alone_on_release(api, ns, ovs):
    name = api(**ovs_params(ovs, name=T, lease="web3/net0"))["name"]
    h.del_link(ns, name)
    # Someone else's row under that name now (another tool made it after the device vanished).
    ovs.vsctl("--", "--if-exists", "del-port", name, "--", "add-port", "br-int", name,
              "--", "set", "Interface", name, 'external_ids:iface-id="theirs"')
    api(lease="web3/net0", state="absent", ovs_db=ovs.db)
    assert name in ovs.port_names()
    assert interface(ovs, name)["external_ids"] == {"iface-id": "theirs"}


def test_moving_from_ovs_to_a_linux_bridge_removes_the_row(api, ns, ovs):
    h.add_link(ns, "br0", "bridge")
    name = api(**ovs_params(ovs, name=T, lease="mv/0"))["name"]
    moved = api(name=T, lease="mv/0", bridge="br0", ovs_db=ovs.db)
    assert moved["changed"] is True and moved["bridge"] == "br0" and moved["bridge_type"] == "linux"
    assert name not in ovs.port_names()
    assert h.master(h.link(ns, name)) == "br0"
    assert "ovs" not in h.read_registry(api.registry)["leases"]["mv/0"]


def test_ovs_not_running_fails_and_makes_nothing(api, ns, registry, tmp_path):
    db = "unix:%s" % (tmp_path / "no-such.sock")
    message = api.fails(name=T, lease="a/0", bridge="br-int", bridge_type="ovs", ovs_db=db, ovs_timeout=3)
    assert "bridge 'br-int': Open vSwitch is not running or not reachable at %s" % db in message
    assert h.non_lo(ns) == set()
    # auto: a bridge that is neither a Linux bridge nor answerable by OVS
    message = api.fails(name=T, lease="a/0", bridge="br-int", ovs_db=db, ovs_timeout=3)
    assert "bridge 'br-int' does not exist in netns %r (nor, as far as could be asked, an Open vSwitch " \
           "bridge: Open vSwitch is not running" % ns in message
    assert h.non_lo(ns) == set()
    assert not registry.exists() or h.read_registry(registry)["leases"] == {}


def test_vswitchd_not_answering_fails_and_leaves_no_row_and_no_device(api, ns, ovs):
    datapath = h.tun_names(ns)  # ovs-vswitchd's own taps (br-int, ovs-netdev)
    ovs.stop_switch()
    message = api.fails(**ovs_params(ovs, name=T, lease="b/0", ovs_timeout=2))
    assert "Open vSwitch did not answer within 2 s (ovs_timeout)" in message
    assert "No device was left behind" in message
    assert h.tun_names(ns) == datapath
    assert ovs.port_names() == {"br-int"}


def test_missing_ovs_bridge_fails_and_makes_nothing(api, ns, ovs):
    datapath = h.tun_names(ns)
    message = api.fails(**ovs_params(ovs, name=T, lease="c/0", bridge="br-nope"))
    assert "bridge 'br-nope' does not exist in netns %r (nor an Open vSwitch bridge)" % ns in message
    message = api.fails(**ovs_params(ovs, name=T, lease="c/0", bridge="br-nope", bridge_type="ovs"))
    assert "bridge 'br-nope' is not an Open vSwitch bridge" in message
    assert h.tun_names(ns) == datapath and ovs.port_names() == {"br-int"}


def test_a_device_ovs_cannot_open_fails_clearly_and_leaves_nothing(api, make_ns, ovs):
    # ovs-vswitchd runs in the ovs fixture's namespace; a tap made in another one is invisible to it.
    other = make_ns()
    message = api.fails(**ovs_params(ovs, name=T, lease="d/0", netns=other))
    assert "Open vSwitch could not open 'vmt0' as a port of bridge 'br-int' (ofport -1" in message
    assert "could not open network device vmt0" in message
    assert "the port row was removed" in message
    assert h.tun_names(other) == set()
    assert ovs.port_names() == {"br-int"}


@pytest.mark.qemu
def test_qemu_attached_to_a_tap_on_an_ovs_bridge(api, ns, ovs, qemu, tun_world_openable):
    result = api(**ovs_params(ovs, name=T, lease="vm/0", owner=h.NOBODY, external_ids=IDS, vlan=5))
    name = result["name"]
    proc = qemu(ns, name)
    h.wait_for(lambda: h.attached(ns, name), what="QEMU attached to %s" % name)
    assert proc.poll() is None
    again = api(**ovs_params(ovs, name=T, lease="vm/0", owner=h.NOBODY, external_ids=IDS, vlan=5))
    assert again["changed"] is False and again["in_use"] is True
    assert interface(ovs, name)["ofport"] > 0
    # The host side carries no address, even with carrier up.
    assert h.sh("ip", "-n", ns, "-j", "addr", "show", "dev", name).stdout.count('"local"') == 0
    assert ovs.get("Port", name, "tag") == 5


def test_releasing_a_port_lease_while_ovs_is_down_needs_force(api, ns, ovs):
    name = api(**ovs_params(ovs, name=T, lease="e/0"))["name"]
    ovs.stop()
    message = api.fails(lease="e/0", state="absent", ovs_db=ovs.db, ovs_timeout=2)
    assert "lease 'e/0' has an Open vSwitch port %r, and removing it needs Open vSwitch" % name in message
    assert "set force: true to release the lease and leave the row" in message
    assert name in h.tun_names(ns)
    result = api(lease="e/0", state="absent", force=True, ovs_db=ovs.db, ovs_timeout=2)
    assert result["changed"] is True and name not in h.tun_names(ns)
    h.assert_warnings(result, r"lease 'e/0': its Open vSwitch port row %r was left, because Open vSwitch could "
                              r"not be asked: .*" % name)
