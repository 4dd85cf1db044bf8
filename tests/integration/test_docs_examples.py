"""Every example in README.md and roles/guest_taps/README.md, run as written.

The code blocks are read from the markdown at test time, so a change to the documentation
that stops an example from working fails here. Playbooks run unedited on what looks like a
fresh hypervisor (docs/sandbox.sh): a throwaway ``ntt-*`` network namespace holding the
bridges the examples name (br0, br1), a private mount namespace with empty /etc/libvirt,
/etc/qemu and registry directory, and a ``libvirt-qemu`` user; the inventory group
``hypervisors`` is localhost. What each example promises is checked on the kernel's devices
(``ip -j -d link``), the files it wrote and the results it recorded.

Two blocks are fragments, not programs, and are embedded in a minimal play this file writes:
README.md's ``module_defaults:`` snippet. The ad hoc lines run as written, with HOST replaced
by the inventory's host; their ``netns=lab`` finds a namespace called ``lab`` that exists
only inside the sandbox (a bind mount of the test's ntt-* namespace on a private /run/netns).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest
import yaml

import ntt_helpers as h

sys.path.insert(0, os.path.join(h.INTEGRATION_DIR, "docs"))
import ntt_markdown  # noqa: E402
from ntt_sandbox import Sandbox  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.integration, pytest.mark.ansible, pytest.mark.slow]

README = os.path.join(h.REPO_ROOT, "README.md")
ROLE_README = os.path.join(h.REPO_ROOT, "roles", "guest_taps", "README.md")
EXAMPLES = os.path.join(h.REPO_ROOT, "examples")


# --------------------------------------------------------------------------- the blocks

def _find(path, lang, first_line_start):
    found = [b for b in ntt_markdown.blocks(path)
             if b.lang == lang and b.first_line.startswith(first_line_start)]
    assert len(found) == 1, "expected one ```%s block starting %r in %s, found %d" % (
        lang, first_line_start, path, len(found))
    return found[0]


# Every fenced block of both READMEs and the test that runs it. A block missing from this
# table fails test_every_block_is_tested: a new example needs a test.
KNOWN_BLOCKS = {
    (README, "sh", "bash scripts/demo.sh"): "test_readme_two_commands",
    (README, "yaml", "- name: Taps for a guest"): "test_readme_module_playbook",
    (README, "yaml", "module_defaults:"): "test_readme_module_defaults",
    (README, "sh", "# A fresh tap"): "test_readme_adhoc",
    (README, "yaml", "- name: What exists, who holds it"): "test_readme_info_task",
    (README, "yaml", "- name: Give every guest its TAP devices"): "test_readme_role_playbook",
    (README, "jinja", "{% for nic in guest_taps_devices['web1'] %}"): "test_role_readme_example",
    (README, "", "plugins/modules/tap_device.py"): "test_readme_layout",
    (README, "yaml", "- name: web1's NIC on VLAN 100 of br0"): "test_readme_bridge_ports",
    (README, "text", "inventory/hosts.yml"): "test_readme_many_hosts_layout_is_the_fleet_test_s",
    (ROLE_README, "yaml", "guest_taps_devices:"): "test_role_readme_example",
    (ROLE_README, "yaml", "- name: Give every guest its taps"): "test_role_readme_example",
    (ROLE_README, "xml", "<interface type='ethernet'>"): "test_role_readme_example",
    (ROLE_README, "", "-netdev tap,id=hn0"): "test_role_readme_example",
    (ROLE_README, "yaml", "guest_taps_owner: libvirt-qemu"): "test_role_readme_ovs_nic",
    (ROLE_README, "xml", "<!-- web2: an Open vSwitch port"): "test_role_readme_ovs_nic",
    (ROLE_README, "yaml", "- name: Give a guest a macvtap on the host's NIC"): "test_role_readme_direct_example",
    (ROLE_README, "xml", "<interface type='direct'>"): "test_role_readme_direct_example",
    (ROLE_README, "sh", "exec 3<>/run/netdev_tuntap/host/mvtap0"): "test_role_readme_direct_example",
}


def test_every_block_is_tested():
    untested = []
    for path in (README, ROLE_README):
        for block in ntt_markdown.blocks(path):
            if not any(path == p and block.lang == lang and block.first_line.startswith(start)
                       for p, lang, start in KNOWN_BLOCKS):
                untested.append("%s starting %r" % (block.where(), block.first_line))
    assert not untested, "code blocks no test runs: %s" % untested


def test_readme_layout():
    """The file layout block names files that exist, and every plugin file there is."""
    block = _find(README, "", "plugins/modules/tap_device.py")
    named = [line.split()[0] for line in block.text.splitlines() if line.strip()]
    for path in named:
        assert os.path.exists(os.path.join(h.REPO_ROOT, path)), "README's layout names %r, which does not exist" % path
    plugin_files = []
    for directory in ("plugins/modules", "plugins/module_utils", "plugins/filter"):
        for parent, _dirs, files in os.walk(os.path.join(h.REPO_ROOT, directory)):
            plugin_files += [os.path.relpath(os.path.join(parent, f), h.REPO_ROOT) for f in files
                             if f.endswith(".py") and f != "__init__.py"]
    missing = sorted(f for f in plugin_files if f not in named)
    assert not missing, "README's layout does not name %s" % missing


FLEET = os.path.join(h.REPO_ROOT, "tests", "fleet")
MANY_HOSTS = os.path.join(h.REPO_ROOT, "docs", "many-hosts.md")


def test_readme_many_hosts_layout_is_the_fleet_test_s():
    """The inventory layout README.md shows is the one the fleet stage writes and runs
    (scripts/fleet.sh runs it over SSH; here only the files are compared), and the guide's
    group_vars file is the fleet's own, byte for byte."""
    block = _find(README, "text", "inventory/hosts.yml")
    named = [line.split()[0] for line in block.text.splitlines() if line.strip()]
    assert named == ["inventory/hosts.yml", "inventory/group_vars/hypervisors.yml", "inventory/host_vars/HOST.yml",
                     "site.yml"], named
    assert os.path.isfile(os.path.join(FLEET, "inventory", "group_vars", "hypervisors.yml"))
    writer = open(os.path.join(FLEET, "make_inventory.py"), encoding="utf-8").read()
    assert '"hosts.yml"' in writer and '"host_vars"' in writer
    with open(os.path.join(FLEET, "site.yml"), encoding="utf-8") as handle:
        play = yaml.safe_load(handle)[0]
    assert (play["hosts"], play["become"], play["roles"]) == ("hypervisors", True, ["netdev.tuntap.guest_taps"])
    group_vars = [b for b in ntt_markdown.blocks(MANY_HOSTS) if b.first_line.startswith("---")
                  and "guest_taps_template" in b.text]
    assert len(group_vars) == 1, [b.where() for b in group_vars]
    with open(os.path.join(FLEET, "inventory", "group_vars", "hypervisors.yml"), encoding="utf-8") as handle:
        assert group_vars[0].text == handle.read()


@pytest.mark.ovs
def test_readme_bridge_ports(ns, tmp_path, private_ovs):
    """Both tasks of the bridge-ports example, with their arguments as written, through the module's
    engine in a throwaway namespace: the OVS one on a private Open vSwitch (its database given as
    ovs_db), the VLAN one on this machine's kernel, which lacks bridge VLAN filtering and must say so
    (its working path is the vlan_vm stage's, on Debian's kernel)."""
    block = _find(README, "yaml", "- name: web1's NIC on VLAN 100 of br0")
    vlan_task, ovs_task = [task["netdev.tuntap.tap_device"] for task in yaml.safe_load(block.text)]
    h.add_link(ns, "br0", "bridge")
    private_ovs.add_bridge("br-int")
    api = h.Api(ns, tmp_path / "reg" / "registry.json")
    message = api.fails(**vlan_task)
    assert "built without CONFIG_BRIDGE_VLAN_FILTERING" in message, message
    result = api(ovs_db=private_ovs.db, **ovs_task)
    name = result["name"]
    assert private_ovs.vsctl("port-to-br", name).stdout.strip() == "br-int"
    ids = dict(private_ovs.get("Interface", name, "external_ids")[1])
    assert ids == dict(ovs_task["external_ids"], **{"netdev-tuntap-lease": "web1/net1"})
    assert private_ovs.get("Port", name, "tag") == ovs_task["vlan"]


def test_readme_two_commands():
    """The demo runs as written and ends with "demo OK" (its third step removes a guest with the
    role). The other command is the suite this test belongs to: only its stage list is run."""
    block = _find(README, "sh", "bash scripts/demo.sh")
    commands = [line.split("#")[0].strip() for line in block.text.splitlines()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"], commands
    listed = h.sh("bash", "scripts/test.sh", "--list", cwd=h.REPO_ROOT, timeout=600)
    assert "unit" in listed.stdout.split() and "molecule" in listed.stdout.split(), listed.stdout
    demo = h.sh("bash", "scripts/demo.sh", cwd=h.REPO_ROOT, check=False, timeout=900)
    assert demo.returncode == 0 and demo.stdout.strip().splitlines()[-1] == "demo OK", h.show(demo)


# --------------------------------------------------------------------------- fixtures

@pytest.fixture
def bridged_ns(ns):
    for bridge in ("br0", "br1"):
        h.ip(ns, "link", "add", bridge, "type", "bridge")
        h.ip(ns, "link", "set", bridge, "up")
    return ns


@pytest.fixture
def sandbox(bridged_ns, tmp_path):
    if not any(os.access(os.path.join(d, "sudo"), os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.fail("sudo is missing: the examples use become: true / -b (apt-get install sudo)")
    with Sandbox(bridged_ns, tmp_path) as box:
        yield box


def _write(directory, name, text):
    path = os.path.join(str(directory), name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def _tap(ns, name):
    """The device ``name`` as the kernel shows it, asserted to be a tap."""
    entry = h.link(ns, name)
    assert entry is not None, "no device %r in %s: %s" % (name, ns, sorted(h.links(ns)))
    info = h.tun_info(ns, name)
    assert info["type"] == "tap" and info["persist"], info
    return entry, info


def _check_nic(ns, nic, owner_uid):
    """One entry of guest_taps_devices against the kernel."""
    entry, info = _tap(ns, nic["device"])
    assert h.master(entry) == nic["bridge"], (nic, entry)
    assert entry["address"] == nic["host_mac"], (nic, entry)
    assert entry["mtu"] == nic["mtu"], (nic, entry)
    assert bool(info["multi_queue"]) == (nic["queues"] > 1) == nic["multi_queue"], (nic, info)
    assert info["user"] == owner_uid, (nic, info)
    assert h.parse_alias(entry)["lease"] == nic["lease"], entry


def _published_fact(run):
    return run.result("Publish guest_taps_devices")["ansible_facts"]["guest_taps_devices"]


# --------------------------------------------------------------------------- README.md

def test_readme_module_playbook(sandbox, tmp_path):
    """The module playbook: a leased tap, a batch with prune_prefix, removal by lease."""
    block = _find(README, "yaml", "- name: Taps for a guest")
    play = _write(tmp_path, "module.yml", block.text)
    ns = sandbox.netns
    libvirt_qemu = sandbox.uid("libvirt-qemu")

    first = sandbox.playbook(play).ok()
    tap = first.result("A tap bound to the lease web1/net0 (the same device while the lease is held)")
    assert tap["changed"] and tap["lease"] == "web1/net0" and tap["template"] == "vmtap%d", tap
    assert tap["name"] == "vmtap%d" % tap["id"], tap
    assert (tap["bridge"], tap["mac_address"], tap["mtu"], tap["owner"]) == ("br0", "fe:54:00:12:34:56", 1500,
                                                                             libvirt_qemu), tap
    msg = first.result("The name the kernel confirmed")["msg"]
    assert msg == "web1 net0 is %s (number %d, ifindex %d)" % (tap["name"], tap["id"], tap["ifindex"]), msg
    db1 = {d["lease"]: d for d in first.result("Many devices in one call (one lock, at most two registry writes)")
           ["devices"]}
    assert set(db1) == {"db1/net0", "db1/net1"}, db1
    for lease, bridge, multi_queue in (("db1/net0", "br0", False), ("db1/net1", "br1", True)):
        entry, info = _tap(ns, db1[lease]["name"])
        assert h.master(entry) == bridge and bool(info["multi_queue"]) == multi_queue, (lease, entry, info)
    removed = first.result("Remove a guest's tap and release its lease (its name is held back for reuse_delay)")
    assert removed["changed"], removed
    assert h.link(ns, tap["name"]) is None, "web1/net0's %s is still there" % tap["name"]
    assert set(h.tun_names(ns)) == {d["name"] for d in db1.values()}, h.tun_names(ns)

    # Again: db1's batch changes nothing; web1/net0, released at the end of the first run, gets a
    # new, higher number - never the name it just freed.
    second = sandbox.playbook(play).ok()
    assert not second.result("Many devices in one call (one lock, at most two registry writes)")["changed"]
    again = second.result("A tap bound to the lease web1/net0 (the same device while the lease is held)")
    assert again["id"] > tap["id"], (tap, again)
    assert set(h.tun_names(ns)) == {d["name"] for d in db1.values()}, h.tun_names(ns)


def test_readme_module_defaults(sandbox, tmp_path):
    """The module_defaults fragment, embedded in a minimal play (it is not a playbook by itself)."""
    block = _find(README, "yaml", "module_defaults:")
    play = textwrap.dedent("""\
        - name: The README's module_defaults fragment, in a minimal play
          hosts: hypervisors
          gather_facts: false
        %s  tasks:
            - name: A tap under the action group's registry and namespace
              netdev.tuntap.tap_device:
                name: vnet%%d
                lease: fragment/net0
        """) % block.text
    run = sandbox.playbook(_write(tmp_path, "fragment.yml", play)).ok()
    made = run.result("A tap under the action group's registry and namespace")
    assert made["netns"] == "lab", made
    _tap(sandbox.netns, made["name"])  # "lab" is the test's namespace inside the sandbox
    # A copy: SQLite resolves the /proc/PID/root link of the sandbox's path to the machine's root.
    copy = str(tmp_path / "lab-registry")
    shutil.copyfile(sandbox.path("/var/lib/lab/registry.json"), copy)
    registry = h.read_registry(copy)
    assert "fragment/net0" in registry["leases"], registry
    assert not os.listdir(sandbox.path("/var/lib/netdev_tuntap")), "the default registry was used"


def test_readme_info_task(sandbox, tmp_path):
    """The tap_device_info task, after a tap_device task that gives it a leased tap to list."""
    block = _find(README, "yaml", "- name: What exists, who holds it")
    play = textwrap.dedent("""\
        - name: The README's tap_device_info task, in a minimal play
          hosts: hypervisors
          gather_facts: false
          become: true
          tasks:
            - name: A leased tap to list
              netdev.tuntap.tap_device:
                netns: lab
                name: vmtap%d
                lease: info/net0
        """) + textwrap.indent(block.text, "    ")
    run = sandbox.playbook(_write(tmp_path, "info.yml", play)).ok()
    made = run.result("A leased tap to list")
    listed = run.result("What exists, who holds it, and what the registry believes")
    assert not listed["changed"], listed
    devices = {d["name"]: d for d in listed["devices"]}
    assert set(devices) == {made["name"]}, listed["devices"]
    device = devices[made["name"]]
    assert (device["netns"], device["lease"], device["status"], device["ifindex"]) == \
        ("lab", "info/net0", "leased", h.link(sandbox.netns, made["name"])["ifindex"]), device
    assert [l["lease"] for l in listed["leases"]] == ["info/net0"], listed["leases"]


def test_readme_adhoc(sandbox):
    """Every ad hoc line, in order, with what its comment promises."""
    block = _find(README, "sh", "# A fresh tap")
    lines = [line for line in block.text.splitlines() if line.strip() and not line.startswith("#")]
    ns = sandbox.netns
    names = {}

    def adhoc(line):
        argv = [("localhost" if word == "HOST" else word) for word in shlex.split(line)]
        assert argv[:2] in (["ansible", "localhost"],), line
        run = sandbox.run(argv).ok()
        result = run.result("netdev.tuntap.tap_device")
        return run, result

    def step(matching):
        found = [line for line in lines if matching(line)]
        assert len(found) == 1, "expected one ad hoc line for this step, found %r in %r" % (found, lines)
        lines.remove(found[0])
        return found[0]

    # A template without a lease: a new device on every run (owned by root: no owner given).
    line = step(lambda l: "'name=vnet%d'" in l)
    first, second = adhoc(line)[1], adhoc(line)[1]
    assert first["changed"] and second["changed"] and first["name"] != second["name"], (first, second)
    for result in (first, second):
        assert _tap(ns, result["name"])[1]["user"] == 0, result

    # A leased one: twice, the second time unchanged with the same name, on br0.
    line = step(lambda l: "lease=test/net0" in l and "bridge=br0" in l)
    leased, again = adhoc(line)[1], adhoc(line)[1]
    assert leased["changed"] and not again["changed"] and leased["name"] == again["name"], (leased, again)
    assert h.master(_tap(ns, leased["name"])[0]) == "br0"
    names["test/net0"] = leased["name"]

    # Check mode predicts the name and changes nothing: no device, no registry write. The same line
    # without --check --diff then makes exactly the predicted name.
    line = step(lambda l: "--check" in l)
    registry_before = h.tree_snapshot(sandbox.path("/var/lib/netdev_tuntap"))
    links_before = set(h.links(ns))
    predicted = adhoc(line)[1]
    assert predicted["changed"] and predicted["name"] not in links_before, predicted
    assert set(h.links(ns)) == links_before
    assert h.tree_snapshot(sandbox.path("/var/lib/netdev_tuntap")) == registry_before
    real = adhoc(line.replace(" --check", "").replace(" --diff", ""))[1]
    assert real["name"] == predicted["name"], (predicted, real)
    _tap(ns, real["name"])

    # netns=lab with a registry of its own: the device lands in the namespace called lab.
    line = step(lambda l: "netns=lab" in l)
    in_lab = adhoc(line)[1]
    assert in_lab["netns"] == "lab", in_lab
    _tap(ns, in_lab["name"])
    assert os.path.isfile(sandbox.path("/var/lib/lab/registry.json"))

    # Removal of the leased one.
    line = step(lambda l: "state=absent" in l)
    gone = adhoc(line)[1]
    assert gone["changed"], gone
    assert h.link(ns, names["test/net0"]) is None, "%s is still there" % names["test/net0"]
    assert not lines, "ad hoc lines this test does not know: %r" % lines


def test_readme_role_playbook(sandbox, tmp_path):
    """The role's complete playbook in README.md: the taps, then changed=0 on a second run."""
    block = _find(README, "yaml", "- name: Give every guest its TAP devices")
    play = _write(tmp_path, "role.yml", block.text)
    first = sandbox.playbook(play).ok()
    fact = _published_fact(first)
    assert sorted(fact) == ["db1", "web1"], fact
    owner = sandbox.uid("libvirt-qemu")
    for nics in fact.values():
        for nic in nics:
            _check_nic(sandbox.netns, nic, owner)
    assert [n["mtu"] for n in fact["db1"]] == [9000]
    assert [n["host_mac"] for n in fact["web1"]] == ["fe:54:00:6b:01:01", "fe:54:00:6b:01:02"]
    shown = [item["msg"] for item in first.result("Show the device of every NIC")["results"]]
    assert shown == ["%s %s: %s on %s" % (g, n["id"], n["device"], n["bridge"])
                     for g, nics in fact.items() for n in nics], shown
    second = sandbox.playbook(play).ok()
    assert second.changed == 0, second
    assert _published_fact(second) == fact


# --------------------------------------------------------------------------- roles/guest_taps/README.md

def _render(sandbox, tmp_path, template_text, fact, name):
    """README.md's jinja block rendered by ansible.builtin.template with a real guest_taps_devices."""
    src = _write(tmp_path, name + ".j2", template_text)
    out = os.path.join(str(tmp_path), name + ".out")
    play = _write(tmp_path, name + ".yml", textwrap.dedent("""\
        - name: Render a template from README.md with a real guest_taps_devices
          hosts: hypervisors
          gather_facts: false
          vars:
            guest_taps_devices: %s
          tasks:
            - name: Render it
              ansible.builtin.template:
                src: %s
                dest: %s
                mode: "0644"
        """) % (json.dumps(fact), src, out))
    sandbox.playbook(play).ok()
    with open(out, encoding="utf-8") as handle:
        return handle.read()


def test_role_readme_example(sandbox, tmp_path):
    """The role README's playbook on a fresh host; the fact, the files and README.md's templates
    are exactly what the READMEs show."""
    block = _find(ROLE_README, "yaml", "- name: Give every guest its taps")
    play = _write(tmp_path, "role_readme.yml", block.text)
    first = sandbox.playbook(play).ok()
    assert first.changed == 4, first  # as the README says: taps, directories, two files per guest
    fact = _published_fact(first)

    shown_fact = yaml.safe_load(_find(ROLE_README, "yaml", "guest_taps_devices:").text)["guest_taps_devices"]
    assert fact == shown_fact, "the role README's fact differs from the real one:\n%s" % json.dumps(fact, indent=1)
    owner = sandbox.uid("libvirt-qemu")
    for nics in fact.values():
        for nic in nics:
            _check_nic(sandbox.netns, nic, owner)

    xml_sample = _find(ROLE_README, "xml", "<interface type='ethernet'>").text
    args_sample = _find(ROLE_README, "", "-netdev tap,id=hn0").text
    assert sandbox.read("/etc/libvirt/guest-nics/web1-interfaces.xml") == xml_sample
    assert sandbox.read("/etc/qemu/guest-nics/web1-qemu-net.args") == args_sample
    db1_xml = ET.fromstring("<d>%s</d>" % sandbox.read("/etc/libvirt/guest-nics/db1-interfaces.xml"))
    assert [t.get("dev") for t in db1_xml.iter("target")] == [n["device"] for n in fact["db1"]]
    assert {t.get("managed") for t in db1_xml.iter("target")} == {"no"}

    second = sandbox.playbook(play).ok()
    assert second.changed == 0, second
    assert _published_fact(second) == fact

    # README.md's two templates, given this fact, write what the role README shows for web1.
    libvirt_tpl, qemu_tpl = [b for b in ntt_markdown.blocks(README) if b.lang == "jinja"]
    assert _render(sandbox, tmp_path, libvirt_tpl.text, fact, "libvirt") == xml_sample
    assert _render(sandbox, tmp_path, qemu_tpl.text, fact, "qemu") == args_sample


@pytest.mark.ovs
def test_role_readme_ovs_nic(sandbox, tmp_path, private_ovs):
    """The role README's OVS NIC: its variables (plus guest_taps_ovs_db) in the README's example
    playbook, run by the role on a private Open vSwitch. The port row carries what the README says,
    the fact shows the port, libvirt's file is the one shown, a second run changes nothing, and
    removing the guest leaves no row."""
    private_ovs.add_bridge("br-int")
    variables = yaml.safe_load(_find(ROLE_README, "yaml", "guest_taps_owner: libvirt-qemu").text)
    [play] = yaml.safe_load(_find(ROLE_README, "yaml", "- name: Give every guest its taps").text)
    play["vars"] = dict(variables, guest_taps_ovs_db=private_ovs.db)
    path = _write(tmp_path, "ovs_nic.yml", yaml.safe_dump([play], sort_keys=False))
    first = sandbox.playbook(path).ok()
    [nic] = _published_fact(first)["web2"]
    guest_nic = variables["guest_taps_guests"][0]["nics"][0]
    assert (nic["bridge"], nic["bridge_type"], nic["vlan"], nic["iface_id"]) == (
        "br-int", "ovs", 10, guest_nic["iface_id"]), nic
    name = nic["device"]
    assert private_ovs.vsctl("port-to-br", name).stdout.strip() == "br-int"
    ids = dict(private_ovs.get("Interface", name, "external_ids")[1])
    assert ids == {"iface-id": guest_nic["iface_id"], "attached-mac": guest_nic["mac"],
                   "vm-uuid": guest_nic["external_ids"]["vm-uuid"], "netdev-tuntap-lease": "guest_taps:web2/net0"}
    assert nic["external_ids"] == ids
    assert private_ovs.get("Port", name, "tag") == 10
    assert private_ovs.get("Interface", name, "ofport") > 0
    xml_sample = _find(ROLE_README, "xml", "<!-- web2: an Open vSwitch port").text
    assert sandbox.read("/etc/libvirt/guest-nics/web2-interfaces.xml") == xml_sample.split("\n", 1)[1]
    assert sandbox.playbook(path).ok().changed == 0
    play["vars"]["guest_taps_guests"][0]["state"] = "absent"
    gone = _write(tmp_path, "ovs_nic_gone.yml", yaml.safe_dump([play], sort_keys=False))
    sandbox.playbook(gone).ok()
    assert name not in private_ovs.port_names()
    assert name not in h.tun_names(sandbox.netns)


@pytest.fixture
def nic_sandbox(bridged_ns, tmp_path):
    """The sandbox, with a host NIC called eno1 (a veth) for macvtaps."""
    h.ip(bridged_ns, "link", "add", "eno1", "type", "veth", "peer", "name", "eno1-peer")
    with Sandbox(bridged_ns, tmp_path) as box:
        yield box


def test_role_readme_direct_example(nic_sandbox, tmp_path):
    """The role README's type: direct playbook: a macvtap on eno1 with the guest's MAC, its node owned
    by libvirt-qemu, the two files exactly as shown, changed=0 the second time, and a QEMU started as
    libvirt-qemu through the second file attaches to the macvtap."""
    sandbox = nic_sandbox
    block = _find(ROLE_README, "yaml", "- name: Give a guest a macvtap on the host's NIC")
    play = _write(tmp_path, "role_readme_direct.yml", block.text)
    first = sandbox.playbook(play).ok()
    assert first.changed == 2, first
    nic, = _published_fact(first)["web2"]
    entry = h.link(sandbox.netns, nic["device"])
    assert h.kind(entry) == "macvtap" and entry["link"] == "eno1", entry
    assert entry["linkinfo"]["info_data"]["mode"] == "bridge" and entry["address"] == "52:54:00:12:36:01"
    assert h.parse_alias(entry)["lease"] == nic["lease"] == "guest_taps:web2/net0"
    assert (nic["type"], nic["link"], nic["mode"], nic["char_device"]) == (
        "direct", "eno1", "bridge", "/run/netdev_tuntap/host/%s" % nic["device"])
    node = os.lstat(sandbox.path(nic["char_device"]))
    index = entry["ifindex"]
    dev = h.sh("ip", "netns", "exec", sandbox.netns, "cat",
               "/sys/class/net/%s/macvtap/tap%d/dev" % (nic["device"], index)).stdout.strip()
    assert "%d:%d" % (os.major(node.st_rdev), os.minor(node.st_rdev)) == dev
    assert (node.st_uid, node.st_mode & 0o777) == (sandbox.uid("libvirt-qemu"), 0o600)

    shown_xml = _find(ROLE_README, "xml", "<interface type='direct'>").text
    assert sandbox.read("/etc/libvirt/web2-interfaces.xml") == shown_xml
    script = _find(ROLE_README, "sh", "exec 3<>/run/netdev_tuntap/host/mvtap0").text
    assert sandbox.read("/etc/qemu/web2-qemu-net.sh") == script
    assert sandbox.playbook(play).ok().changed == 0

    # -S: QEMU sets its netdevs up and waits, running no guest code; its monitor answers after that.
    launcher = ('. /etc/qemu/web2-qemu-net.sh && exec "$0" -machine pc -m 32 -S -display none -serial none '
                '-nodefaults -monitor stdio "$@"')
    qemu = subprocess.Popen(
        ["nsenter", "--target", str(sandbox.proc.pid), "--mount", "--", "runuser", "-u", "libvirt-qemu", "--",
         "sh", "-c", launcher, h.qemu_binary()],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        qemu.stdin.write("info network\n")
        qemu.stdin.flush()
        seen = ""
        while "hd0:" not in seen:
            line = qemu.stdout.readline()
            assert line, "QEMU exited: %s %s" % (seen, qemu.stderr.read())
            seen += line
        assert "hd0: index=0,type=tap,fd=3" in seen, seen
    finally:
        os.killpg(qemu.pid, 9)
        qemu.wait(timeout=60)


# --------------------------------------------------------------------------- examples/

def test_example_guest_taps(sandbox):
    """examples/guest_taps.yml (README.md: "also in"): the taps, then changed=0."""
    play = os.path.join(EXAMPLES, "guest_taps.yml")
    first = sandbox.playbook(play).ok()
    fact = _published_fact(first)
    assert sorted(fact) == ["db1", "web1"], fact
    for nics in fact.values():
        for nic in nics:
            _check_nic(sandbox.netns, nic, 0)
    assert sandbox.playbook(play).ok().changed == 0


def _qemu_netdev_files(sandbox):
    directory = sandbox.path("/etc/libvirt/guest-nics")
    return sorted(os.listdir(directory))


def test_example_qemu_netdev(sandbox):
    """examples/qemu_netdev.yml: one <interface> file per NIC, QEMU arguments with vhost only when
    /dev/vhost-net exists; changed=0 the second time."""
    play = os.path.join(EXAMPLES, "qemu_netdev.yml")
    first = sandbox.playbook(play, cwd=EXAMPLES).ok()
    fact = _published_fact(first)
    vhost = "on" if os.path.exists("/dev/vhost-net") else "off"
    assert first.result("Choose vhost=on or off")["ansible_facts"]["guest_qemu_vhost_used"] == vhost
    assert _qemu_netdev_files(sandbox) == ["web1-net0.xml", "web1-net1.xml"]
    for nic in fact["web1"]:
        _check_nic(sandbox.netns, nic, 0)
        element = ET.fromstring(sandbox.read("/etc/libvirt/guest-nics/web1-%s.xml" % nic["id"]))
        assert element.find("target").attrib == {"dev": nic["device"], "managed": "no"}
        assert element.find("mac").get("address") == nic["mac"]
        driver = element.find("driver")
        assert (driver.get("queues") if driver is not None else None) == (
            str(nic["queues"]) if nic["queues"] > 1 else None), ET.tostring(element)
    args = first.result("Show each guest's QEMU command line (network part)")["results"][0]["msg"]
    assert args.count(",vhost=%s" % vhost) == 2 and "queues=4" in args, args
    assert sandbox.playbook(play, cwd=EXAMPLES).ok().changed == 0


def test_example_qemu_netdev_removes_absent_guest(sandbox, tmp_path):
    """examples/qemu_netdev.yml with web1 set to state: absent: its taps and files are gone."""
    play = os.path.join(EXAMPLES, "qemu_netdev.yml")
    fact = _published_fact(sandbox.playbook(play, cwd=EXAMPLES).ok())
    guests = _write(tmp_path, "absent.json", json.dumps({"guest_taps_guests": [{"name": "web1", "state": "absent"}]}))
    sandbox.playbook(play, "-e", "@" + guests, cwd=EXAMPLES).ok()
    assert _qemu_netdev_files(sandbox) == []
    for nic in fact["web1"]:
        assert h.link(sandbox.netns, nic["device"]) is None, nic
