#!/usr/bin/python
# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tap_device_info
short_description: List TAP/TUN devices, who holds them, and what the allocation registry believes
version_added: 0.1.0
description:
  - Lists the tun/tap devices of a network namespace (or of every namespace a registry knows), with their
    settings, whether a process holds them and which PIDs, and the lease, template and number the registry
    binds to them.
  - Reports the registry itself, as it is on disk - counters per template, held names with their release
    time, leases whose device is missing, devices that carry the mark of M(netdev.tuntap.tap_device) but no
    lease (orphans), and unmarked devices whose names match a template of the registry (strangers).
  - Read-only. The registry (an SQLite database) is opened read-only, without the lock of
    M(netdev.tuntap.tap_device) runs (a run's changes are committed in one transaction, so they are seen whole
    or not at all); nothing is created, not even its directory. A JSON registry not migrated yet is read as it is.
  - Links are read with one raw netlink dump per namespace, and holders with one pass over C(/proc), so it
    stays fast with thousands of devices.
author:
  - netdev.tuntap contributors (@netdev-tuntap)
requirements:
  - Linux with the C(tun) driver.
  - Root, to read other network namespaces and the C(/proc) entries of every process (use C(become=true)).
  - Python 3.9 or newer on the target. pyroute2 is not needed.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module never changes anything; check mode returns the same result.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: full
  action_group:
    description: Use C(group/netdev.tuntap.tuntap) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - netdev.tuntap.tuntap
options:
  netns:
    description:
      - The named network namespace (in C(/run/netns)) to list. Omitted means the host's namespace.
      - It must exist.
    type: str
  all_namespaces:
    description:
      - Also list every namespace that a lease or a held name of the registry lives in. A recorded namespace
        that no longer exists is reported in RV(namespaces) with C(exists=false), and its leases as missing.
    type: bool
    default: false
  registry:
    description: Path of the allocation registry of M(netdev.tuntap.tap_device). A missing file is an empty registry.
    type: path
    default: /var/lib/netdev_tuntap/registry.json
  names:
    description:
      - Only devices (and leases, held names) whose device name matches one of these shell patterns, such as
        V(vmtap*).
    type: list
    elements: str
  templates:
    description:
      - Only devices whose name matches one of these templates (such as V(vmtap%d), matched as the kernel writes
        numbers), and leases, held names and counters of these templates.
    type: list
    elements: str
  lease_prefix:
    description:
      - Only devices and leases whose lease starts with this prefix (such as V(guest_taps:web1/)). Devices with
        no lease, and held names, are left out then.
    type: str
  holders:
    description:
      - Look up the processes that hold each device, in the C(iff:) line of every tun file descriptor's
        C(/proc/PID/fdinfo). Without it, RV(devices[].in_use) is only the kernel's sign (carrier, attached
        queues), which root can hide by forcing carrier off, and RV(devices[].holders) is null.
    type: bool
    default: true
  export:
    description:
      - Also return the whole registry, unfiltered, as RV(export), in the layout of the JSON registries of
        earlier releases (C(docs/registry.md) in the collection describes it). Written to a file, it is a
        registry those releases read; C(ansible localhost -m netdev.tuntap.tap_device_info -a
        "registry=PATH export=true") prints it.
    type: bool
    default: false
notes:
  - Holders are processes in the device's network namespace; PIDs are as seen from the module's PID namespace.
seealso:
  - module: netdev.tuntap.tap_device
"""

EXAMPLES = r"""
- name: What exists on this host, and what the registry believes
  netdev.tuntap.tap_device_info:
  register: taps

- name: Fail when the registry lost track of something
  ansible.builtin.assert:
    that:
      - taps.orphans == []
      - taps.missing == []
    fail_msg: "orphans: {{ taps.orphans }}; leases without device: {{ taps.missing }}"

- name: The taps of one guest made by the guest_taps role, in every namespace of a lab registry
  netdev.tuntap.tap_device_info:
    registry: /var/lib/lab/registry.json
    all_namespaces: true
    lease_prefix: "guest_taps:web1/"

- name: Which processes hold vmtap devices in netns lab
  netdev.tuntap.tap_device_info:
    netns: lab
    templates: ["vmtap%d"]
  register: lab

- name: Show them
  ansible.builtin.debug:
    msg: "{{ lab.devices | selectattr('in_use') | map(attribute='name') | list }}"
"""

RETURN = r"""
devices:
  description: The tun/tap devices found, by namespace and name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The device name.
      type: str
      sample: vmtap3
    netns:
      description: Its namespace, null for the host's.
      type: str
      sample: null
    ifindex:
      description: The interface index.
      type: int
      sample: 17
    mode:
      description: V(tap) or V(tun).
      type: str
      sample: tap
    flags:
      description: The tun flags, by name.
      type: list
      elements: str
      sample: [tap, vnet_hdr, no_pi, persist]
    owner:
      description: The owning uid, or null when unset.
      type: int
      sample: 0
    group:
      description: The owning gid, or null when unset.
      type: int
      sample: null
    mtu:
      description: The MTU.
      type: int
      sample: 1500
    mac_address:
      description: The MAC address (null for tun devices).
      type: str
      sample: fe:54:00:12:34:56
    bridge:
      description: The bridge it is enslaved to, or null.
      type: str
      sample: br0
    operstate:
      description: The operational state (V(up), V(down), V(unknown), ...).
      type: str
      sample: up
    up:
      description: Whether the link is administratively up.
      type: bool
      sample: true
    carrier:
      description: Whether the link has carrier (a sign that a process holds it, not a proof either way).
      type: bool
      sample: true
    multi_queue:
      description: Whether it is a multi-queue device.
      type: bool
      sample: false
    queues:
      description: Queues attached (enabled or not) for a multi-queue device, else null.
      type: int
      sample: null
    in_use:
      description: Whether a process holds it (a holder found, carrier, or attached queues).
      type: bool
      sample: true
    holders:
      description: The PIDs holding it, or null when O(holders=false).
      type: list
      elements: int
      sample: [4242]
    status:
      description:
        - V(leased) (a lease is bound to it), V(orphan) (our mark, no lease bound), V(stranger) (no mark, but
          its name matches a template of the registry) or V(unmanaged).
      type: str
      sample: leased
    reason:
      description: For an orphan, why it has no lease.
      type: str
      sample: the registry holds no lease 'web1/net0'
    lease:
      description: The lease bound to it (or, for an orphan, the lease its mark names).
      type: str
      sample: guest_taps:web1/net0
    template:
      description: The template its name was allocated from (or matches), or null.
      type: str
      sample: vmtap%d
    id:
      description: Its number in that template, or null.
      type: int
      sample: 3
    mark:
      description: The lease and template of the mark in its interface alias, or null when unmarked.
      type: dict
      sample: {lease: "guest_taps:web1/net0", template: "vmtap%d"}
leases:
  description: The leases of the registry (filtered), with the identity recorded for their device.
  returned: always
  type: list
  elements: dict
  contains:
    lease:
      description: The lease key.
      type: str
      sample: guest_taps:web1/net0
    name:
      description: The device name bound to it.
      type: str
      sample: vmtap3
    template:
      description: The template, or null for a literal name.
      type: str
      sample: vmtap%d
    id:
      description: The number, or null.
      type: int
      sample: 3
    netns:
      description: The namespace, null for the host's.
      type: str
      sample: null
    mode:
      description: V(tap) or V(tun).
      type: str
      sample: tap
    multi_queue:
      description: Whether the device is multi-queue.
      type: bool
      sample: false
    since:
      description: When the binding was made (epoch seconds).
      type: float
      sample: 1795587667.95
    ifindex:
      description: The ifindex recorded for the device, or null (not recorded yet).
      type: int
      sample: 17
    boot_id:
      description: The boot the device was recorded in, or null.
      type: str
      sample: 9c0a3f0e-5b5d-4c43-9d3c-5d8f8f0c7a11
    netns_inode:
      description: The inode of the namespace the device was recorded in, or null.
      type: int
      sample: 4026531840
    device_present:
      description: Whether its device is there (carrying its mark); null when its namespace was not listed.
      type: bool
      sample: true
counters:
  description: Per template, the last number handed out.
  returned: always
  type: list
  elements: dict
  sample: [{template: "vmtap%d", last: 41}]
held_names:
  description:
    - Released names, with when they were released (C(released_at)), for how long the releasing task held
      them back (C(hold), seconds), until when (C(held_until)) and whether that is still ahead (C(held)).
  returned: always
  type: list
  elements: dict
  sample: [{name: vmtap12, template: "vmtap%d", netns: null, released_at: 1795587601.2, hold: 3600,
            held_until: 1795591201.2, held: true}]
missing:
  description: Leases whose device is not there (C(lease), C(name), C(netns), C(reason)).
  returned: always
  type: list
  elements: dict
  sample: [{lease: "web1/net0", name: vmtap3, netns: null, reason: "no device 'vmtap3' in the host namespace"}]
orphans:
  description: Devices that carry the mark but no lease bound to them (C(name), C(netns), C(ifindex), C(lease), C(template), C(reason)).
  returned: always
  type: list
  elements: dict
  sample: [{name: vmtap7, netns: null, ifindex: 21, lease: "web2/net0", template: "vmtap%d",
            reason: "the registry holds no lease 'web2/net0'"}]
strangers:
  description: Unmarked devices whose name matches a template of the registry (C(name), C(netns), C(ifindex), C(template)).
  returned: always
  type: list
  elements: dict
  sample: [{name: vmtap9, netns: null, ifindex: 30, template: "vmtap%d"}]
namespaces:
  description: The namespaces listed, and whether each exists.
  returned: always
  type: list
  elements: dict
  sample: [{netns: null, exists: true}]
export:
  description:
    - With O(export=true), the whole registry - C(version), C(registry_id), C(counters), C(leases),
      C(released), C(intent) - as one document (empty when it could not be read).
  returned: when O(export=true)
  type: dict
  sample: {version: 1, registry_id: 5f0c2a9e, counters: {"vmtap%d": 41}, leases: {}, released: {}, intent: null}
registry:
  description: The registry (C(path)), whether it exists, whether it could be read, and why not (C(error)).
  returned: always
  type: dict
  sample: {path: /var/lib/netdev_tuntap/registry.json, exists: true, readable: true, error: null}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netdev.tuntap.plugins.module_utils._info import ARGUMENT_SPEC, InfoError, run


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = run(module.params)
    except InfoError as exc:
        module.fail_json(msg=str(exc))
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
