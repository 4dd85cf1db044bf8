# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest_taps filters: guests -> tap_device devices, result -> guest_taps_devices fact."""

from __future__ import annotations


import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.netdev.tuntap.plugins.filter.guest_taps import (
    FilterModule, guest_tap_devices, guest_tap_fact, guest_tap_problems, guest_tap_remove_prefixes, host_mac_for)


def nic(**kwargs):
    base = {"bridge": "br0", "mac": "52:54:00:12:34:56"}
    base.update(kwargs)
    return base


# --- host MAC, libvirt's rule ----------------------------------------------------------------

@pytest.mark.parametrize("guest, host", [
    ("52:54:00:12:34:56", "fe:54:00:12:34:56"),
    ("52-54-00-AB-CD-EF", "fe:54:00:ab:cd:ef"),
    ("FE:54:00:12:34:56", "fa:54:00:12:34:56"),
    ("fe:00:00:00:00:01", "fa:00:00:00:00:01"),
    ("fa:54:00:12:34:56", "fe:54:00:12:34:56"),
    ("02:00:00:00:00:01", "fe:00:00:00:00:01"),
])
def test_host_mac_follows_libvirt(guest, host):
    assert host_mac_for(guest) == host


def test_host_mac_refuses_garbage():
    with pytest.raises(AnsibleFilterError):
        host_mac_for("52:54:00:12:34")


# --- the devices list -----------------------------------------------------------------------

def test_devices_for_present_guests_in_input_order():
    guests = [
        {"name": "web1", "nics": [nic(id="net0"), nic(id="net1", bridge="br1", mac="fe:54:00:00:00:02", queues=4)]},
        {"name": "db1", "state": "present", "nics": [nic(mac="52:54:00:00:00:03", mtu=9000)]},
    ]
    assert guest_tap_devices(guests) == [
        {"name": "vmtap%d", "lease": "guest_taps:web1/net0", "state": "present", "multi_queue": False,
         "vnet_hdr": True, "mac_address": "fe:54:00:12:34:56", "bridge": "br0"},
        {"name": "vmtap%d", "lease": "guest_taps:web1/net1", "state": "present", "multi_queue": True,
         "vnet_hdr": True, "mac_address": "fa:54:00:00:00:02", "bridge": "br1"},
        {"name": "vmtap%d", "lease": "guest_taps:db1/0", "state": "present", "multi_queue": False,
         "vnet_hdr": True, "mac_address": "fe:54:00:00:00:03", "bridge": "br0", "mtu": 9000},
    ]


def test_nic_settings_override_role_settings():
    guests = [{"name": "g", "nics": [
        nic(id="a", name="gtap%d", host_mac="02:AA:00:00:00:01", vnet_hdr=False, owner=107, group="kvm"),
        nic(id="b"),
        {"id": "c"},
    ]}]
    devices = guest_tap_devices(guests, template="vm%d", owner="libvirt-qemu", group=36)
    assert devices[0] == {"name": "gtap%d", "lease": "guest_taps:g/a", "state": "present", "multi_queue": False,
                          "vnet_hdr": False, "mac_address": "02:aa:00:00:00:01", "bridge": "br0",
                          "owner": "107", "group": "kvm"}
    assert devices[1]["name"] == "vm%d"
    assert (devices[1]["owner"], devices[1]["group"]) == ("libvirt-qemu", "36")
    # A NIC without a MAC or bridge leaves both to the module (kernel-chosen MAC, bridge untouched).
    assert "mac_address" not in devices[2] and "bridge" not in devices[2]


def test_owner_and_group_are_passed_as_strings():
    devices = guest_tap_devices([{"name": "g", "nics": [nic(owner=0, group=0)]}])
    assert devices[0]["owner"] == "0" and devices[0]["group"] == "0"


def test_empty_bridge_is_kept_to_detach():
    assert guest_tap_devices([{"name": "g", "nics": [nic(bridge="")]}])[0]["bridge"] == ""


@pytest.mark.parametrize("queues, multi", [(None, False), (1, False), (2, True), ("8", True), (256, True)])
def test_queues_decide_multi_queue(queues, multi):
    assert guest_tap_devices([{"name": "g", "nics": [nic(queues=queues)]}])[0]["multi_queue"] is multi


def test_absent_guests_give_no_devices_but_their_lease_prefixes():
    guests = [
        {"name": "web1", "nics": [nic(id="net0")]},
        {"name": "db1", "state": "absent", "nics": [{"id": 0}, {"id": "x", "mac": "not checked when absent"}]},
        {"name": "gone", "state": "absent"},
        {"name": 101, "state": "absent", "nics": []},
    ]
    assert [d["lease"] for d in guest_tap_devices(guests)] == ["guest_taps:web1/net0"]
    # In input order; the trailing "/" keeps db1 from matching db10's leases.
    assert guest_tap_remove_prefixes(guests) == ["guest_taps:db1/", "guest_taps:gone/", "guest_taps:101/"]


def test_no_absent_guest_no_prefixes():
    assert guest_tap_remove_prefixes([{"name": "web1", "nics": [nic()]}, {"name": "db1", "state": "present"}]) == []
    assert guest_tap_remove_prefixes([]) == []


def test_remove_prefixes_refuses_bad_input_naming_it():
    with pytest.raises(AnsibleFilterError, match=r"guest 'a/b' \(guest_taps_guests\[1\]\): name must not contain '/'"):
        guest_tap_remove_prefixes([{"name": "ok", "state": "absent"}, {"name": "a/b", "state": "absent"}])
    with pytest.raises(AnsibleFilterError, match="must be a list of guests, got None"):
        guest_tap_remove_prefixes(None)


def test_numeric_guest_names_work_as_strings():
    guests = [{"name": 101, "nics": [nic(id="net0")]}]
    devices = guest_tap_devices(guests)
    assert devices[0]["lease"] == "guest_taps:101/net0"
    fact = guest_tap_fact({"devices": [dict(devices[0], name="vmtap0")]}, guests)
    assert list(fact) == ["101"] and fact["101"][0]["device"] == "vmtap0"
    assert guest_tap_problems([{"name": 101}, {"name": "101"}])[0].endswith("guest names must be unique")


def test_no_guests():
    assert guest_tap_devices([]) == []
    with pytest.raises(AnsibleFilterError, match="must be a list of guests, got None"):
        guest_tap_devices(None)


def test_bad_input_raises_naming_every_problem():
    with pytest.raises(AnsibleFilterError) as err:
        guest_tap_devices([{"name": "a/b", "nics": [nic()]}, {"name": "c", "nics": [nic(mac="zz")]}])
    message = str(err.value)
    assert "2 problem(s)" in message
    assert "guest 'a/b' (guest_taps_guests[0])" in message
    assert "guest 'c' (guest_taps_guests[1]) nics[0]: mac 'zz'" in message


# --- problems ----------------------------------------------------------------------------------

@pytest.mark.parametrize("guests, fragment", [
    ("web1", "must be a list"),
    (["web1"], "guest_taps_guests[0] must be a dict"),
    ([{"nics": []}], "name is required"),
    ([{"name": True}], "name is required"),
    ([{"name": 1.5}], "name is required"),
    ([{"name": ""}], "name is required"),
    ([{"name": "a/b"}], "must not contain '/'"),
    ([{"name": "a\nb"}], "control characters"),
    ([{"name": "a"}, {"name": "a"}], "also used by guest_taps_guests[0]"),
    ([{"name": "a", "state": "running"}], "state 'running' is not allowed"),
    ([{"name": "a", "color": "red"}], "unknown key color"),
    ([{"name": "a", "nics": {"id": 1}}], "nics must be a list"),
    ([{"name": "a", "nics": ["eth0"]}], "nics[0] must be a dict"),
    ([{"name": "a", "nics": [nic(id="x"), nic(id="x")]}], "nics[1]: id 'x' is also the id of nics[0]"),
    ([{"name": "a", "nics": [nic(), nic(id=0)]}], "a NIC without id takes its index"),
    ([{"name": "a", "nics": [nic(id=1), nic()]}], "nics[1]: id 1 is also the id of nics[0]"),
    ([{"name": "a", "nics": [nic(id="1"), nic(id=1)]}], "is also the id of nics[0]"),
    ([{"name": "a", "nics": [nic(id="")]}], "id must be a non-empty string or an integer"),
    ([{"name": "a", "nics": [nic(id=True)]}], "id must be a non-empty string or an integer"),
    ([{"name": "a", "nics": [nic(id=-1)]}], "must not be negative"),
    ([{"name": "a", "nics": [nic(mac="52:54:00:12:34")]}], "is not a MAC address"),
    ([{"name": "a", "nics": [nic(mac="01:00:5e:00:00:01")]}], "nics[0]: mac '01:00:5e:00:00:01' is a multicast"),
    ([{"name": "a", "nics": [nic(host_mac="00:00:00:00:00:00")]}], "all zeros"),
    ([{"name": "a", "nics": [nic(mtu=67)]}], "nics[0]: mtu 67 is out of range; allowed: 68 to 65535"),
    ([{"name": "a", "nics": [nic(mtu="big")]}], "nics[0]: mtu 'big' is not an integer"),
    ([{"name": "a", "nics": [nic(queues=0)]}], "queues 0 must be an integer from 1 to 256"),
    ([{"name": "a", "nics": [nic(queues=257)]}], "queues 257"),
    ([{"name": "a", "nics": [nic(vnet_hdr="maybe")]}], "vnet_hdr 'maybe' must be a boolean"),
    ([{"name": "a", "nics": [nic(owner=-1)]}], "owner must be a user/group name"),
    ([{"name": "a", "nics": [nic(group="a b")]}], "group must be a user/group name"),
    # Kernel name rules come from module_utils/_names (its wording is tested there): only where, here.
    ([{"name": "a", "nics": [nic(bridge="br/0")]}], "guest 'a' (guest_taps_guests[0]) nics[0]: bridge"),
    ([{"name": "a", "nics": [nic(bridge="br%d")]}], "not a template"),
    ([{"name": "a", "nics": [nic(name="way-too-long-name0")]}], "guest 'a' (guest_taps_guests[0]) nics[0]: name"),
    ([{"name": "a", "nics": [nic(name="t%d%d")]}], "guest 'a' (guest_taps_guests[0]) nics[0]: name"),
    ([{"name": "a", "nics": [nic(name="tap\u00e0")]}], "guest 'a' (guest_taps_guests[0]) nics[0]: name"),
    ([{"name": "a", "nics": [nic(name="eth 0")]}], "guest 'a' (guest_taps_guests[0]) nics[0]: name"),
    ([{"name": "a", "nics": [nic(name="tap0")]}, {"name": "b", "nics": [nic(name="tap0")]}],
     "name 'tap0' is also given to guest 'a' (guest_taps_guests[0]) nics[0]"),
    ([{"name": "a", "nics": [nic(color="red")]}], "unknown key color"),
    ([{"name": "x" * 176, "nics": [nic()]}],
     "nics[0]: its lease 'guest_taps:xxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' is not a valid lease: use 1 to 176 printable "
     "characters"),
    # 60 x e-acute is 60 characters, but 360 bytes in the device's alias (JSON escapes)
    ([{"name": "\u00e9" * 60, "nics": [nic()]}], "too long to be carried in the device's alias"),
    # 28 x e-acute fits with vmtap%d (250 bytes), not with a longer per-NIC template (255)
    ([{"name": "\u00e9" * 28, "nics": [nic(name="abcdefghij%d")]}], "with template 'abcdefghij%d' (255 bytes"),
    ([{"name": "a", "nics": [nic(mac=683252891426)]}], "quote MAC addresses in YAML"),
    (None, "must be a list"),
])
def test_problems(guests, fragment):
    problems = guest_tap_problems(guests)
    assert any(fragment in problem for problem in problems), problems


def test_the_longest_lease_the_alias_carries_has_no_problem():
    # 'netdev.tuntap {"lease":"guest_taps:NAME/0","registry":"0123abcd","template":"vmtap%d"}' is 82
    # bytes besides NAME, and each e-acute takes 6 (\u00e9): 28 of them make 250 bytes, 29 make 256
    assert guest_tap_problems([{"name": "\u00e9" * 28, "nics": [nic()]}]) == []
    problems = guest_tap_problems([{"name": "\u00e9" * 29, "nics": [nic()]}])
    assert len(problems) == 1 and "(256 bytes, at most 254)" in problems[0], problems


def test_problems_of_template():
    assert "must be a template" in guest_tap_problems([], template="tap0")[0]
    assert guest_tap_problems([], template="tap%s")[0].startswith("guest_taps_template")
    assert guest_tap_problems([], template=None) == []


def test_good_input_has_no_problems():
    guests = [
        {"name": "web1", "nics": [nic(id="net0", queues=4, mtu=9000, owner="libvirt-qemu", group=107,
                                      name="web1-%d", vnet_hdr="yes", host_mac="02:00:00:00:00:01"),
                                  nic(id=7), nic()]},
        {"name": "db1", "state": "absent"},
        {"name": "old", "state": "absent", "nics": [{"id": "net0", "mac": "not checked when absent"}]},
        {"name": "bare"},
    ]
    assert guest_tap_problems(guests) == []


def test_literal_names_may_repeat_as_templates():
    guests = [{"name": "a", "nics": [nic(name="t%d")]}, {"name": "b", "nics": [nic(name="t%d")]}]
    assert guest_tap_problems(guests) == []


# --- the fact ----------------------------------------------------------------------------------

GUESTS = [
    {"name": "web1", "nics": [nic(id="net0", mac="52:54:00:AA:00:01"), nic(id="net1", queues=2, bridge="br1")]},
    {"name": "db1", "state": "absent", "nics": [{"id": 0}]},
    {"name": "empty"},
]


def made(lease, name, mac="fe:54:00:aa:00:01", bridge="br0", multi_queue=False, **extra):
    item = {"lease": lease, "name": name, "mac_address": mac, "bridge": bridge, "multi_queue": multi_queue,
            "mtu": 1500, "changed": False, "state": "present"}
    item.update(extra)
    return item


RESULT = {"changed": True, "devices": [
    made("guest_taps:web1/net0", "vmtap3"),
    made("guest_taps:web1/net1", "vmtap9", mac="fe:54:00:12:34:56", bridge="br1", multi_queue=True),
    {"lease": "guest_taps:db1/0", "name": None, "state": "absent"},
]}


def test_fact_from_result():
    assert guest_tap_fact(RESULT, GUESTS) == {
        "web1": [
            {"id": "net0", "device": "vmtap3", "lease": "guest_taps:web1/net0", "mac": "52:54:00:aa:00:01",
             "host_mac": "fe:54:00:aa:00:01", "bridge": "br0", "mtu": 1500, "queues": 1, "multi_queue": False},
            {"id": "net1", "device": "vmtap9", "lease": "guest_taps:web1/net1", "mac": "52:54:00:12:34:56",
             "host_mac": "fe:54:00:12:34:56", "bridge": "br1", "mtu": 1500, "queues": 2, "multi_queue": True},
        ],
        "empty": [],
    }


def test_fact_from_devices_list_and_pruned_extras():
    # Items the module adds for pruned leases (or in any order) do not disturb the pairing.
    devices = list(reversed(RESULT["devices"])) + [made("guest_taps:gone/0", "vmtap1", state="absent")]
    assert guest_tap_fact(devices, GUESTS) == guest_tap_fact(RESULT, GUESTS)


def test_fact_names_a_missing_lease():
    with pytest.raises(AnsibleFilterError, match="no device for lease 'guest_taps:web1/net1'"):
        guest_tap_fact({"devices": RESULT["devices"][:1]}, GUESTS)


def test_fact_refuses_a_single_device_result():
    with pytest.raises(AnsibleFilterError, match="batch result"):
        guest_tap_fact({"name": "vmtap1", "changed": False}, GUESTS)


def test_round_trip_devices_to_fact():
    devices = guest_tap_devices(GUESTS)
    result = {"devices": [dict(item, name="vmtap%d" % index if item["state"] == "present" else None,
                               bridge=item.get("bridge"), mtu=1500)
                          for index, item in enumerate(devices)]}
    fact = guest_tap_fact(result, GUESTS)
    assert [n["device"] for n in fact["web1"]] == ["vmtap0", "vmtap1"]
    assert [n["host_mac"] for n in fact["web1"]] == ["fe:54:00:aa:00:01", "fe:54:00:12:34:56"]


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"guest_tap_devices", "guest_tap_fact", "guest_tap_problems",
                                             "guest_tap_remove_prefixes"}


def test_thousand_nics_in_one_batch_and_back_into_the_fact():
    # (Its speed is measured by benchmarks/guest_taps_bench.sh, not asserted here.)
    guests = [{"name": "vm%d" % g, "nics": [
        {"id": "net0", "bridge": "br0", "mac": "52:54:00:00:%02x:%02x" % (g // 256, g % 256)},
        {"id": "net1", "bridge": "br1", "mac": "52:54:01:00:%02x:%02x" % (g // 256, g % 256), "queues": 4},
    ]} for g in range(500)]
    devices = guest_tap_devices(guests)
    result = {"devices": [dict(item, name="vmtap%d" % i) for i, item in enumerate(devices)]}
    fact = guest_tap_fact(result, guests)
    assert len(devices) == 1000 and len(fact) == 500
    assert [n["device"] for n in fact["vm499"]] == ["vmtap998", "vmtap999"]
    assert fact["vm499"][1]["multi_queue"] is True and fact["vm499"][1]["host_mac"] == "fe:54:01:00:01:f3"


# -- bridge ports: VLANs and Open vSwitch ids ----------------------------------------------

def _one(nic):
    return [{"name": "web1", "nics": [dict({"id": "net0", "bridge": "br-int"}, **nic)]}]


@pytest.mark.parametrize("nic, words", [
    ({"vlan": 0}, "vlan 0 is out of range; allowed VLAN ids: 1 to 4094"),
    ({"vlan": 4095}, "vlan 4095 is out of range"),
    ({"vlan": "x"}, "vlan 'x' is not a VLAN id"),
    ({"trunk": ["10-20", 15]}, "trunk items '10-20' and 15 overlap"),
    ({"trunk": [5], "vlan": 5}, "trunk contains vlan 5"),
    ({"external_ids": {"iface id": "x"}}, "external_ids key 'iface id' is not allowed"),
    ({"external_ids": {"netdev-tuntap-lease": "x"}}, "is set by the module from the lease"),
    ({"iface_id": ""}, "iface_id must be a non-empty string"),
    ({"bridge_type": "bogus"}, "bridge_type 'bogus' is not allowed"),
    ({"bridge": None, "vlan": 5}, "vlan needs bridge"),
    ({"bridge_type": "linux", "iface_id": "p"}, "iface_id needs an Open vSwitch bridge"),
])
def test_port_problems_name_the_nic(nic, words):
    problems = guest_tap_problems(_one(nic))
    assert len(problems) == 1 and problems[0].startswith("guest 'web1' (guest_taps_guests[0]) nics[0]: ")
    assert words in problems[0], problems


def test_port_options_reach_the_module_and_the_fact():
    guests = _one({"mac": "52:54:00:12:36:01", "iface_id": "p1", "external_ids": {"vm-uuid": "u1"},
                   "vlan": 10, "trunk": ["20-21"], "bridge_type": "ovs"})
    [item] = guest_tap_devices(guests)
    assert item["external_ids"] == {"iface-id": "p1", "attached-mac": "52:54:00:12:36:01", "vm-uuid": "u1"}
    assert (item["vlan"], item["trunk"], item["bridge_type"]) == (10, ["20-21"], "ovs")
    made = dict(item, name="vmtap0", bridge="br-int", bridge_type="ovs",
                external_ids=dict(item["external_ids"], **{"netdev-tuntap-lease": item["lease"]}))
    [nic] = guest_tap_fact({"devices": [made]}, guests)["web1"]
    assert (nic["bridge_type"], nic["vlan"], nic["trunk"], nic["iface_id"]) == ("ovs", 10, ["20-21"], "p1")
    assert nic["external_ids"]["netdev-tuntap-lease"] == "guest_taps:web1/net0"


def test_nics_without_port_options_keep_their_fact_and_items():
    guests = _one({"mac": "52:54:00:12:36:01"})
    [item] = guest_tap_devices(guests)
    assert not {"vlan", "trunk", "external_ids", "bridge_type"} & set(item)
    [nic] = guest_tap_fact({"devices": [dict(item, name="vmtap0")]}, guests)["web1"]
    assert not {"vlan", "trunk", "external_ids", "iface_id", "bridge_type"} & set(nic)
