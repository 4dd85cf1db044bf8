"""libvirt as a real client: guests started on the guest_taps role's taps by a private libvirtd.

The role's fact is rendered with examples/libvirt_interface.xml.j2 into <interface
type='ethernet'> elements of two disk-less type='qemu' domains (one single-queue NIC, one
multi-queue NIC with <driver queues>). Checked on the kernel, libvirt and /proc: virsh domiflist
names our taps; a second role run while they run changes nothing and leaves the QEMU processes
and ifindexes as they were; tap_device_info names the QEMU PIDs; removing a running guest's tap
is refused even with its carrier forced off; after virsh destroy it is removed.
"""
from __future__ import annotations

import importlib
import json
import os

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.libvirt, pytest.mark.root]

PLAY = """
- hosts: localhost
  gather_facts: false
  vars:
    guest_taps_install_deps: false
  roles:
    - netdev.tuntap.guest_taps
  tasks:
    - name: Domain XML for each guest from the role's fact
      ansible.builtin.copy:
        dest: "{{ xml_dir }}/{{ item.key }}.xml"
        mode: "0600"
        content: |
          <domain type='qemu'>
            <name>{{ item.key }}</name>
            <memory unit='MiB'>64</memory>
            <vcpu>1</vcpu>
            <os><type arch='x86_64'>hvm</type></os>
            <devices>
              <emulator>/usr/bin/qemu-system-x86_64</emulator>
          {% for nic in item.value %}
          {{ lookup('ansible.builtin.template', example, template_vars={'nic': nic}) }}
          {% endfor %}
              <memballoon model='none'/>
            </devices>
          </domain>
      loop: "{{ guest_taps_devices | dict2items }}"
      loop_control:
        label: "{{ item.key }}"
    - name: The fact, for the test to read
      ansible.builtin.copy:
        dest: "{{ xml_dir }}/fact.json"
        mode: "0600"
        content: "{{ guest_taps_devices | to_json }}"
"""

GUESTS = [
    {"name": "ntt-g1", "nics": [{"id": "net0", "mac": "52:54:00:aa:00:01"}]},
    {"name": "ntt-g2", "nics": [{"id": "net0", "mac": "52:54:00:aa:00:02", "queues": 2}]},
]


def role_run(play, libvirt, registry, xml_dir, guests):
    return h.ansible_playbook(play, extra_vars={
        "guest_taps_guests": guests, "guest_taps_netns": libvirt.netns, "guest_taps_registry": str(registry),
        "xml_dir": str(xml_dir), "example": os.path.join(h.REPO_ROOT, "examples", "libvirt_interface.xml.j2")},
        timeout=300)


def recap(proc) -> str:
    lines = [line for line in proc.stdout.splitlines() if line.startswith("localhost")]
    assert lines, h.show(proc)
    return lines[-1]


def info(libvirt, registry) -> dict:
    mod = importlib.import_module("ansible_collections.netdev.tuntap.plugins.module_utils._info")
    return {d["name"]: d for d in mod.run({"netns": libvirt.netns, "registry": str(registry)})["devices"]}


def test_guests_run_on_the_role_s_taps_and_are_never_pulled_from_under(libvirt, tmp_path):
    registry = tmp_path / "reg" / "registry.json"
    xml_dir = tmp_path / "xml"
    xml_dir.mkdir()
    play = h.write_playbook(tmp_path, PLAY)

    first = role_run(play, libvirt, registry, xml_dir, GUESTS)
    assert first.returncode == 0, h.show(first)
    fact = json.loads((xml_dir / "fact.json").read_text())
    taps = {guest: nics[0]["device"] for guest, nics in fact.items()}
    assert set(taps) == {"ntt-g1", "ntt-g2"} and fact["ntt-g2"][0]["multi_queue"] is True
    xml = (xml_dir / "ntt-g2.xml").read_text()
    assert "<target dev='%s' managed='no'/>" % taps["ntt-g2"] in xml and "queues='2'" in xml, xml

    for guest in ("ntt-g1", "ntt-g2"):
        libvirt.virsh("create", str(xml_dir / ("%s.xml" % guest)))
    qemu = {guest: libvirt.qemu_pid(guest) for guest in taps}
    libvirt.qemu_pids.update(qemu.values())
    assert all(qemu.values()), qemu
    for guest, tap in taps.items():
        assert tap in libvirt.virsh("domiflist", guest).stdout
        assert h.attached(libvirt.netns, tap), "QEMU of %s does not hold %s" % (guest, tap)
    indexes = {tap: h.link(libvirt.netns, tap)["ifindex"] for tap in taps.values()}

    # A second role run while the guests run: nothing changes, nothing is restarted or re-made.
    second = role_run(play, libvirt, registry, xml_dir, GUESTS)
    assert second.returncode == 0, h.show(second)
    assert "changed=0" in recap(second), recap(second)
    assert {guest: libvirt.qemu_pid(guest) for guest in taps} == qemu
    assert all(os.path.exists("/proc/%d" % pid) for pid in qemu.values())
    assert {tap: h.link(libvirt.netns, tap)["ifindex"] for tap in taps.values()} == indexes

    # tap_device_info finds the QEMUs in /proc.
    listed = info(libvirt, registry)
    for guest, tap in taps.items():
        assert qemu[guest] in listed[tap]["holders"], listed[tap]
        assert listed[tap]["status"] == "leased" and listed[tap]["in_use"] is True

    # Removing a running guest is refused, even with the carrier of its tap forced off.
    h.ip(libvirt.netns, "link", "set", taps["ntt-g1"], "carrier", "off")
    gone_g1 = [dict(GUESTS[0], state="absent"), GUESTS[1]]
    refused = role_run(play, libvirt, registry, xml_dir, gone_g1)
    assert refused.returncode != 0, h.show(refused)
    assert "is in use (held by PID %d" % qemu["ntt-g1"] in refused.stdout, h.show(refused)
    assert h.link(libvirt.netns, taps["ntt-g1"])["ifindex"] == indexes[taps["ntt-g1"]]
    assert libvirt.qemu_pid("ntt-g1") == qemu["ntt-g1"] and os.path.exists("/proc/%d" % qemu["ntt-g1"])
    assert "guest_taps:ntt-g1/net0" in h.read_registry(registry)["leases"]

    # Once the guest is destroyed, its tap goes; the other guest's stays, still held.
    libvirt.virsh("destroy", "ntt-g1")
    assert taps["ntt-g1"] in h.links(libvirt.netns), "libvirt must leave a managed='no' tap alone"
    removed = role_run(play, libvirt, registry, xml_dir, gone_g1)
    assert removed.returncode == 0, h.show(removed)
    assert taps["ntt-g1"] not in h.links(libvirt.netns)
    leases = h.read_registry(registry)["leases"]
    assert "guest_taps:ntt-g1/net0" not in leases and "guest_taps:ntt-g2/net0" in leases
    assert h.link(libvirt.netns, taps["ntt-g2"])["ifindex"] == indexes[taps["ntt-g2"]]
    assert libvirt.qemu_pid("ntt-g2") == qemu["ntt-g2"]
