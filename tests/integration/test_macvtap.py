"""kind macvtap and macvlan on real devices: a veth as the lower device, QEMU attached through the node.

Everything is checked against what the kernel (``ip -d -j link``), sysfs read inside the
device's namespace (``ip netns exec``), the node's inode and the registry file show.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root]

T = "mvtap%d"
NODE_ROOT = "/run/netdev_tuntap"
OTHER_USER = "daemon"   # a second unprivileged user present on every Debian system


def node_dir(netns: str) -> str:
    return "%s/netns/%s" % (NODE_ROOT, netns)


@pytest.fixture(autouse=True)
def _node_root_left_as_found():
    """The module makes /run/netdev_tuntap/netns for the tests' namespaces: remove what a test made
    (once empty), so that nothing is left on the machine."""
    made = [path for path in (NODE_ROOT, NODE_ROOT + "/netns") if not os.path.exists(path)]
    yield
    for path in reversed(made):
        try:
            os.rmdir(path)
        except OSError:
            pass  # not empty: another run's nodes are in it


@pytest.fixture
def lower(ns) -> str:
    """A veth pair in ``ns``; its end ``v0`` is the lower device. The node directory of ``ns`` is
    removed in teardown, whatever the test left."""
    h.ip(ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    try:
        yield "v0"
    finally:
        shutil.rmtree(node_dir(ns), ignore_errors=True)


@pytest.fixture
def make_ns_with_lower(make_ns):
    made = []

    def make() -> str:
        netns = make_ns()
        made.append(netns)
        h.ip(netns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        return netns

    try:
        yield make
    finally:
        for netns in made:
            shutil.rmtree(node_dir(netns), ignore_errors=True)


def macvlan_info(netns: str, name: str) -> dict:
    entry = h.link(netns, name)
    assert entry is not None, "no %r in %s: %s" % (name, netns, sorted(h.links(netns)))
    return {"kind": h.kind(entry), "mode": entry["linkinfo"]["info_data"]["mode"], "link": entry.get("link"),
            "mark": h.parse_alias(entry), "ifindex": entry["ifindex"], "up": h.is_up(entry),
            "address": entry["address"], "mtu": entry["mtu"]}


def sysfs_chardev(netns: str, name: str, ifindex: int) -> tuple:
    """major:minor of a macvtap as its own namespace's sysfs shows it (ip netns exec mounts that)."""
    out = h.sh("ip", "netns", "exec", netns, "cat", "/sys/class/net/%s/macvtap/tap%d/dev" % (name, ifindex)).stdout
    major, minor = out.strip().split(":")
    return int(major), int(minor)


def node_facts(path: str) -> dict:
    info = os.lstat(path)
    assert stat.S_ISCHR(info.st_mode), "%s is not a character device" % path
    return {"rdev": (os.major(info.st_rdev), os.minor(info.st_rdev)), "uid": info.st_uid, "gid": info.st_gid,
            "mode": stat.S_IMODE(info.st_mode)}


def in_use_refusal(name: str) -> re.Pattern:
    return re.compile(r"device %s is in use \(1 open descriptor\(s\) of its character device\); stop the process "
                      r"holding it, or set force: true" % re.escape(repr(name)))


@pytest.fixture
def qemu_on_node():
    """Factory ``qemu_on_node(node, user)`` -> Popen of a QEMU (no guest) whose only netdev is
    ``tap,fd=3`` with fd 3 opened on ``node`` by a shell running as ``user`` (/dev/net/tun is not
    involved). Its monitor is on stdin/stdout. The process group is killed in teardown."""
    binary = h.qemu_binary()
    started: list = []

    def start(node: str, user: str = h.NOBODY) -> subprocess.Popen:
        command = ('exec "$0" -machine none -display none -serial none -nodefaults -monitor stdio '
                   '-netdev tap,id=n0,fd=3,vhost=off 3<>"$1"')
        proc = subprocess.Popen(["runuser", "-u", user, "--", "sh", "-c", command, binary, node],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
            proc.wait(timeout=30)


def monitor_shows_netdev(proc: subprocess.Popen) -> str:
    """Ask QEMU's monitor for its networks; it answers only after the netdev was set up from fd 3.
    (Read up to the answer's line only: the prompt after it ends without a newline.)"""
    proc.stdin.write("info network\n")
    proc.stdin.flush()
    seen = ""
    while "n0:" not in seen:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("QEMU exited: %s\n%s" % (seen, proc.stderr.read()))
        seen += line
    return seen


def quit_qemu(proc: subprocess.Popen) -> None:
    proc.stdin.write("quit\n")
    proc.stdin.flush()
    proc.wait(timeout=60)


# --------------------------------------------------------------------------- allocation

def test_names_increase_and_a_removed_name_is_not_handed_out_again(api, ns, lower, registry):
    first = api(name=T, lease="g1/net0", kind="macvtap", link=lower, macvtap_mode="bridge")
    second = api(name=T, lease="g2/net0", kind="macvtap", link=lower)
    assert (first["name"], second["name"]) == ("mvtap0", "mvtap1")
    v0_index = h.link(ns, lower)["ifindex"]
    info = macvlan_info(ns, "mvtap0")
    assert info["kind"] == "macvtap" and info["mode"] == "bridge" and info["up"]
    assert info["mark"] == {"lease": "g1/net0", "template": T}
    assert h.link(ns, "mvtap0")["link"] == lower and first["link"] == lower
    assert first["ifindex"] == info["ifindex"] and first["macvtap_mode"] == "bridge"
    assert macvlan_info(ns, "mvtap1")["mode"] == "vepa"   # the default, as the kernel's and libvirt's
    assert v0_index != info["ifindex"]

    removed = api(lease="g2/net0", state="absent")
    assert removed["changed"] is True and removed["kind"] == "macvtap"
    assert "mvtap1" not in h.links(ns)
    assert not os.path.exists(second["char_device"])
    # The kernel would hand out mvtap1 again (lowest free); the registry does not.
    third = api(name=T, lease="g3/net0", kind="macvtap", link=lower)
    assert third["name"] == "mvtap2"
    registry_state = h.read_registry(registry)
    assert registry_state["counters"][T] == 2
    assert "mvtap1" in registry_state["released"]
    assert registry_state["leases"]["g3/net0"]["kind"] == "macvtap"
    again = api(name=T, lease="g3/net0", kind="macvtap", link=lower)
    assert again["changed"] is False and again["name"] == "mvtap2"


def test_macvlan_shares_counters_and_leases_with_taps(api, ns, lower, registry):
    tap = api(name=T, lease="g/0")
    vlan = api(name=T, lease="g/1", kind="macvlan", link=lower, macvtap_mode="private", mtu=1400,
               mac_address="52:54:00:aa:bb:01")
    assert (tap["name"], vlan["name"]) == ("mvtap0", "mvtap1")
    info = macvlan_info(ns, "mvtap1")
    assert (info["kind"], info["mode"], info["mtu"]) == ("macvlan", "private", 1400)
    assert info["address"] == "52:54:00:aa:bb:01"
    assert vlan["char_device"] is None and not os.path.exists(node_dir(ns) + "/mvtap1")
    # A change of kind replaces the leased device with a fresh name, as a change of mode does.
    swapped = api(name=T, lease="g/0", kind="macvtap", link=lower)
    assert swapped["name"] == "mvtap2" and swapped["kind"] == "macvtap"
    assert h.kind(h.link(ns, "mvtap2")) == "macvtap" and "mvtap0" not in h.links(ns)


def test_other_lower_device_or_mode_replaces_the_leased_macvtap(api, ns, lower):
    h.ip(ns, "link", "add", "w0", "type", "veth", "peer", "name", "w1")
    made = api(name=T, lease="g/0", kind="macvtap", link=lower, macvtap_mode="bridge")
    moved = api(name=T, lease="g/0", kind="macvtap", link="w0", macvtap_mode="bridge")
    assert moved["changed"] is True and moved["name"] == "mvtap1" and moved["link"] == "w0"
    assert made["name"] not in h.links(ns) and h.link(ns, "mvtap1")["link"] == "w0"
    assert not os.path.exists(made["char_device"])
    remoded = api(name=T, lease="g/0", kind="macvtap", link="w0", macvtap_mode="private")
    assert remoded["name"] == "mvtap2" and macvlan_info(ns, "mvtap2")["mode"] == "private"


def test_check_mode_and_diff_predict_the_real_run(api, ns, lower, registry):
    predicted = api(check_mode=True, diff=True, name=T, lease="g/0", kind="macvtap", link=lower,
                    owner=h.NOBODY, macvtap_mode="bridge")
    assert h.non_lo(ns) == {"v0", "v1"} and not os.path.exists(registry)
    assert not os.path.exists(node_dir(ns))
    real = api(diff=True, name=T, lease="g/0", kind="macvtap", link=lower, owner=h.NOBODY, macvtap_mode="bridge")
    for key in ("name", "id", "kind", "link", "macvtap_mode", "owner", "group", "char_device"):
        assert predicted[key] == real[key], key
    assert predicted["diff"]["after"]["char_device"] == real["char_device"]
    assert real["diff"]["before"] == {}
    # A change of owner is predicted in check mode and done on the node only by a real run.
    node = real["char_device"]
    change = api(check_mode=True, diff=True, name=T, lease="g/0", kind="macvtap", link=lower, owner=OTHER_USER,
                 macvtap_mode="bridge")
    other_uid = h._uid(OTHER_USER)
    assert change["changed"] is True and change["owner"] == other_uid
    assert change["diff"]["before"]["owner"] == h.NOBODY_UID and change["diff"]["after"]["owner"] == other_uid
    assert node_facts(node)["uid"] == h.NOBODY_UID
    done = api(name=T, lease="g/0", kind="macvtap", link=lower, owner=OTHER_USER, macvtap_mode="bridge")
    assert done["changed"] is True and node_facts(node)["uid"] == other_uid
    assert api(name=T, lease="g/0", kind="macvtap", link=lower, macvtap_mode="bridge")["changed"] is False


def test_a_node_whose_device_was_deleted_behind_our_back_does_not_outlive_it(api, ns, lower, registry):
    made = api(name=T, lease="g/0", kind="macvtap", link=lower)
    other = api(name=T, lease="g/1", kind="macvtap", link=lower)
    old_inode = os.lstat(made["char_device"]).st_ino
    h.ip(ns, "link", "del", made["name"])
    h.ip(ns, "link", "del", other["name"])
    # The lease's device is made again under its name, with a node of the new device's numbers.
    again = api(name=T, lease="g/0", kind="macvtap", link=lower)
    assert again["name"] == made["name"] and again["changed"] is True
    # (The kernel may well give the new device the old minor: the node is made again all the same.)
    assert node_facts(made["char_device"])["rdev"] == sysfs_chardev(ns, made["name"], again["ifindex"])
    assert os.lstat(made["char_device"]).st_ino != old_inode
    # The other node pointed at numbers the kernel hands to the next macvtap: it is gone.
    assert not os.path.exists(other["char_device"])
    assert os.listdir(node_dir(ns)) == [made["name"]]


def test_a_lost_registry_is_rebuilt_from_the_marks(api, ns, lower, registry):
    made = api(name=T, lease="g/0", kind="macvtap", link=lower)
    os.unlink(registry)
    again = api(name=T, lease="g/0", kind="macvtap", link=lower)
    # Taking the device back into the registry is a change, reported with its name.
    assert again["name"] == made["name"] and again["changed"] is True and again["adopted"] == [made["name"]]
    assert h.read_registry(registry)["leases"]["g/0"]["kind"] == "macvtap"
    assert api(name=T, lease="g/1", kind="macvtap", link=lower)["name"] == "mvtap1"


# --------------------------------------------------------------------------- the character device

def test_node_is_this_devices_own_even_with_the_same_ifindex_in_another_namespace(make_ns_with_lower, registry):
    ns_a, ns_b = make_ns_with_lower(), make_ns_with_lower()
    a = h.Api(ns_a, registry)(name=T, lease="a/0", kind="macvtap", link="v0", owner=h.NOBODY)
    b = h.Api(ns_b, registry)(name=T, lease="b/0", kind="macvtap", link="v0", group=h.NOBODY_GROUP)
    assert a["ifindex"] == b["ifindex"], "the test needs the same ifindex in both namespaces"
    assert a["name"] != b["name"]  # one registry: one counter for both namespaces
    facts_a, facts_b = node_facts(a["char_device"]), node_facts(b["char_device"])
    assert a["char_device"] == node_dir(ns_a) + "/" + a["name"]
    assert facts_a["rdev"] == sysfs_chardev(ns_a, a["name"], a["ifindex"])
    assert facts_b["rdev"] == sysfs_chardev(ns_b, b["name"], b["ifindex"])
    assert facts_a["rdev"] != facts_b["rdev"]
    assert (facts_a["uid"], facts_a["gid"], facts_a["mode"]) == (h.NOBODY_UID, 0, 0o600)
    assert (facts_b["uid"], facts_b["gid"], facts_b["mode"]) == (0, h.NOBODY_GID, 0o660)
    assert (a["owner"], b["group"]) == (h.NOBODY_UID, h.NOBODY_GID)
    # A node removed behind our back is made again by the next run.
    os.unlink(b["char_device"])
    again = h.Api(ns_b, registry)(name=T, lease="b/0", kind="macvtap", link="v0", group=h.NOBODY_GROUP)
    assert again["changed"] is True and node_facts(b["char_device"]) == facts_b


def test_qemu_attaches_as_the_owner_and_removal_waits_for_it(api, ns, lower, registry, qemu_on_node):
    made = api(name=T, lease="g/0", kind="macvtap", link=lower, owner=h.NOBODY)
    node = made["char_device"]
    refused = qemu_on_node(node, user=OTHER_USER)
    assert refused.wait(timeout=60) != 0
    assert "Permission denied" in refused.stderr.read()

    guest = qemu_on_node(node, user=h.NOBODY)
    answer = monitor_shows_netdev(guest)
    assert re.search(r"n0: index=0,type=tap,fd=3", answer), answer

    message = api.fails(lease="g/0", state="absent")
    assert in_use_refusal(made["name"]).search(message), message
    assert made["name"] in h.links(ns) and os.path.exists(node)
    assert "g/0" in h.read_registry(registry)["leases"]

    quit_qemu(guest)
    gone = api(lease="g/0", state="absent")
    assert gone["changed"] is True
    assert made["name"] not in h.links(ns) and not os.path.exists(node)
    assert "g/0" not in h.read_registry(registry)["leases"]


# --------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("lower_kind", ["missing", "macvtap", "macvlan"])
def test_a_bad_lower_device_fails_clearly_and_makes_nothing(api, ns, lower, registry, lower_kind):
    link = "nope0"
    if lower_kind != "missing":
        link = "stack0"
        h.ip(ns, "link", "add", "link", lower, "name", link, "type", lower_kind)
    before = h.non_lo(ns)
    message = api.fails(name=T, lease="g/0", kind="macvtap", link=link)
    if lower_kind == "missing":
        assert "link 'nope0' does not exist in netns %r" % ns in message, message
    else:
        assert "link 'stack0' is itself a %s device" % lower_kind in message, message
    assert h.non_lo(ns) == before
    assert not os.path.exists(node_dir(ns))
    assert not os.path.exists(registry) or "g/0" not in h.read_registry(registry)["leases"]


@pytest.mark.parametrize("extra, words", [
    (dict(mode="tun"), "mode 'tun' is not allowed with kind 'macvtap'"),
    (dict(multi_queue=True), "multi_queue is not allowed with kind 'macvtap'"),
    (dict(vnet_hdr=True), "vnet_hdr is not allowed with kind 'macvtap'"),
    (dict(bridge="br0"), "bridge is not allowed with kind 'macvtap'"),
])
def test_options_that_do_not_apply_are_refused(api, ns, lower, extra, words):
    message = api.fails(name=T, lease="g/0", kind="macvtap", link=lower, **extra)
    assert words in message, message
    assert h.non_lo(ns) == {"v0", "v1"}
