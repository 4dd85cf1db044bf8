"""Batch creation on real devices: every device made as asked, let go before it comes up, nothing
half made or unmarked when an item fails or the run is killed, and pyroute2 imported light."""
from __future__ import annotations

import json
import socket
import struct

import pytest

import ntt_crash as crash
import ntt_helpers as h
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _rtnl
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import entered

pytestmark = [pytest.mark.integration, pytest.mark.root]

T = "vbc%d"
# A tap's largest MTU is 65535 minus its 14-byte Ethernet header: the kernel refuses 65535.
REFUSED_MTU = 65535
RTMGRP_LINK = 1
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000


def test_a_batch_makes_each_device_with_its_mark_owner_mtu_mac_and_master(api, ns, registry):
    h.add_link(ns, "br0", "bridge")
    devices = [{"name": T, "lease": "g%d/n0" % number, "owner": h.NOBODY, "mtu": 1400 + number,
                "mac_address": "fe:54:00:00:00:%02x" % number, "bridge": "br0", "txqueuelen": 300 + number}
               for number in range(6)]
    devices.append({"name": T, "lease": "g6/n0", "mode": "tun", "up": False})
    result = api(devices=devices)
    assert result["changed"] is True
    links = h.links(ns)
    for number in range(6):
        name = "vbc%d" % number
        entry = links[name]
        assert h.parse_alias(entry) == {"lease": "g%d/n0" % number, "template": T}
        assert h.tun_info(ns, name)["user"] == h.NOBODY_UID
        assert h.tun_info(ns, name)["persist"] is True
        assert entry["mtu"] == 1400 + number
        assert entry["address"] == "fe:54:00:00:00:%02x" % number
        assert entry["txqlen"] == 300 + number
        assert h.master(entry) == "br0" and h.is_up(entry)
    assert h.parse_alias(links["vbc6"]) == {"lease": "g6/n0", "template": T}
    assert not h.is_up(links["vbc6"]) and h.tun_info(ns, "vbc6")["type"] == "tun"
    assert {k: v["name"] for k, v in h.read_registry(registry)["leases"].items()} == {
        "g%d/n0" % number: "vbc%d" % number for number in range(7)}
    assert api(devices=devices)["changed"] is False


def _link_events(sock) -> list:
    """Every RTM_NEWLINK the subscribed ``sock`` has queued: (name, flags) of each."""
    events = []
    sock.setblocking(False)
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return events
        offset = 0
        while offset + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if kind == _rtnl.RTM_NEWLINK:
                link = _rtnl.parse_link(data, offset + 16, offset + length)
                events.append((link["name"], link["flags"]))
            offset += (length + 3) & ~3


def test_a_device_is_brought_up_after_it_is_let_go_so_it_never_has_carrier(api, ns):
    # Subscribed to the namespace's link events before the run: every state each device went
    # through is seen, in order.
    with entered(ns):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, RTMGRP_LINK))
        result = api(devices=[{"name": T, "lease": "a"}, {"name": T, "lease": "b"}])
        events = _link_events(sock)
    for item in result["devices"]:
        seen = [flags for name, flags in events if name == item["name"]]
        assert any(flags & IFF_UP for flags in seen), (item["name"], events)
        assert not any(flags & IFF_LOWER_UP for flags in seen), (item["name"], events)
        entry = h.link(ns, item["name"])
        assert h.is_up(entry) and "LOWER_UP" not in entry["flags"], entry["flags"]


def test_an_item_the_kernel_refuses_leaves_no_half_made_device_and_the_items_before_it_are_recorded(api, ns, registry):
    message = api.fails(devices=[{"name": T, "lease": "a"}, {"name": T, "lease": "b"},
                                 {"name": T, "lease": "c", "mtu": REFUSED_MTU}, {"name": T, "lease": "d"}])
    assert "devices[2] vbc%d (lease 'c') failed: the kernel refused to set mtu=65535" in message, message
    assert "No device was left behind for it; the items before it were applied and recorded" in message
    assert h.tun_names(ns) == {"vbc0", "vbc1"}                 # neither c nor the d after it
    assert set(h.read_registry(registry)["leases"]) == {"a", "b"}
    assert set(h.aliases(ns)) == {"vbc0", "vbc1"}


def test_a_run_killed_in_a_batch_leaves_only_marked_devices_and_the_next_run_adopts_them(api, ns, registry):
    params = api.params({"devices": [{"name": T, "lease": "k%d" % number} for number in range(5)]})
    killed = crash.run_forked(params, kill_at=("create", 2))      # two persistent, three still held
    assert killed == {crash.KILLED: True}
    assert h.tun_names(ns) == {"vbc0", "vbc1"}
    assert h.aliases(ns) == {"vbc0": {"lease": "k0", "template": T}, "vbc1": {"lease": "k1", "template": T}}
    again = api(**params)
    assert again["changed"] is True and sorted(again["adopted"]) == ["vbc0", "vbc1"], again
    # The numbers the killed run had handed out stay taken: the other three get new names.
    names = {item["lease"]: item["name"] for item in again["devices"]}
    assert names["k0"] == "vbc0" and names["k1"] == "vbc1", names
    assert {mark["lease"] for mark in h.aliases(ns).values()} == set(names) and h.tun_names(ns) == set(names.values())
    assert all(h.is_up(h.link(ns, name)) for name in names.values())
    assert api(**params)["changed"] is False


def test_a_run_killed_after_configuring_a_batch_leaves_nothing(api, ns):
    params = api.params({"devices": [{"name": T, "lease": "k%d" % number} for number in range(3)]})
    assert crash.run_forked(params, kill_at=("configure", 1)) == {crash.KILLED: True}
    assert h.tun_names(ns) == set()   # marked, but none persistent yet: gone with the process


def test_a_batch_larger_than_the_descriptor_limit_is_made_in_parts(ns, registry):
    calls = [{"netns": ns, "registry": str(registry),
              "devices": [{"name": T, "lease": "p%d" % number} for number in range(150)]}]
    # Hard limit 100: the batch cannot hold all 150 devices at once.
    [outcome] = h.api_subprocess(calls, prefix=["prlimit", "--nofile=100:100", "--"])
    assert outcome["result"]["changed"] is True, outcome
    assert h.tun_names(ns) == {"vbc%d" % number for number in range(150)}
    assert len(h.aliases(ns)) == 150 and len(h.read_registry(registry)["leases"]) == 150


CHECK_IMPORTS = """
import json, sys
sys.path.insert(0, %(root)r)
from %(engine)s import run
out = []
for call in json.loads(sys.argv[1]):
    run(call, check_mode=False)
    out.append(sorted(name for name in sys.modules if name.startswith("pyroute2")))
print(json.dumps(out))
"""


def test_create_change_and_delete_runs_import_only_pyroute2s_message_classes(ns, registry):
    base = {"netns": ns, "registry": str(registry)}
    calls = [dict(base, name=T, lease="a"),                  # create
             dict(base, name=T, lease="a", mtu=1400),        # reconcile: one request encoded by pyroute2
             dict(base, name=T, lease="a", mtu=1400),        # no change
             dict(base, lease="a", state="absent")]          # delete
    proc = h.sh(h.PYTHON, "-c", CHECK_IMPORTS % {"root": h.COLLECTIONS_ROOT, "engine": h.ENGINE_MODULE},
                json.dumps(calls), cwd="/")
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    for modules in seen:
        assert not [name for name in modules if name.startswith(("pyroute2.ndb", "pyroute2.iproute",
                                                                 "pyroute2.ipdb"))], modules
    assert "pyroute2.netlink.rtnl.ifinfmsg" in seen[1]           # the change was encoded by pyroute2
    assert h.link(ns, "vbc0") is None
