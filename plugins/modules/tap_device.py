#!/usr/bin/python
# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tap_device
short_description: Create and manage TAP/TUN and macvtap/macvlan devices with names never reused too soon
version_added: 0.1.0
description:
  - Creates, reconfigures and removes Linux TAP and TUN devices for virtual machines, in the host's
    network namespace or a named one.
  - Given a template such as V(vnet%d), the kernel would pick the lowest free number, so a name freed
    a moment ago goes to the next guest while cleanup keyed by that name (firewall and tc rules, OVS
    ports) for the old guest may still be running. This module instead allocates numbers monotonically
    from a counter persisted in a registry file, locked across processes, and holds released names back
    for O(reuse_delay) seconds, even after the counter wraps around at O(max_id).
  - With O(lease), a stable key such as V(web1/net0) is bound to the allocated name, so running the
    same task again returns the same device. Without O(lease), a template creates a new device on every
    run (ad hoc use, "give me a fresh tap").
  - The device is created with the C(TUNSETIFF) ioctl (exclusive and persistent), so the name reported
    is the one the kernel confirmed. Each managed device carries its lease and template in its interface
    alias, so a lost or corrupt registry is rebuilt with its leases and a device left by an interrupted
    run is adopted by the next one.
  - Batch mode (O(devices)) manages many devices in one call, with one lock and at most two registry
    writes; the single-device form is a batch of one.
  - "Security: a tap with neither owner nor group can be attached by any local user who can open
    C(/dev/net/tun). When neither O(owner) nor O(group) is given at creation, the owner is set to root
    (uid 0)."
author:
  - netdev.tuntap contributors (@netdev-tuntap)
requirements:
  - Linux with the C(tun) driver (C(/dev/net/tun)); the C(macvtap) or C(macvlan) driver for those kinds.
  - Root, or CAP_NET_ADMIN (use C(become=true)).
  - Python 3.9 or newer and pyroute2 >= 0.7.2 on the target.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Predicts names (a concurrent run may change the prediction) and changes nothing, not even the
      registry's directory or lock file.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Before and after of each device's settings.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: partial
    details: Idempotent with O(lease) or a literal O(name); a template without a lease makes a new device
      on every run.
  action_group:
    description: Use C(group/netdev.tuntap.tuntap) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - netdev.tuntap.tuntap
    details: Use C(group/netdev.tuntap.tuntap) in C(module_defaults) to set O(registry) and O(netns) once.
options:
  name:
    description:
      - An interface name (1 to 15 bytes; not V(.) or V(..); no V(/), V(:) or whitespace), or a template
        with exactly one V(%d) and no other V(%), such as V(vnet%d).
      - A device matches a template only when its number is written as the kernel writes it (no leading
        zeros) and is at most O(max_id).
      - Required unless O(devices) is given, or O(state=absent) with a O(lease).
    type: str
  state:
    description:
      - V(present) creates or reconciles the device; V(absent) removes it and releases its lease and name.
      - Removing needs a O(lease) or a literal O(name); a template alone is refused. A device leased to
        another lease is only removed through that lease.
    type: str
    choices: [present, absent]
    default: present
  lease:
    description:
      - A free-form stable key (1 to 176 printable characters, for example V(web1/net0)) that binds the
        allocated name to its consumer.
      - An incompatible change to a leased device (template, literal name, O(mode), O(multi_queue),
        O(netns)) replaces it with a newly allocated device.
      - If the leased device disappeared (a reboot), it is created again under the same name; if another
        device now holds that name, a fresh number is allocated and a warning says so.
    type: str
  mode:
    description: The kind of device.
    type: str
    choices: [tap, tun]
    default: tap
  kind:
    description:
      - V(tuntap) makes a tun/tap device (through C(/dev/net/tun)). V(macvtap) and V(macvlan) make a device
        on the lower device O(link) over rtnetlink, as libvirt's C(<interface type='direct'>) uses, with
        the same templates, counters, leases, O(reuse_delay) and marks as tun/tap devices.
      - A V(macvtap) gets a private character device node that QEMU opens (C(-netdev tap,fd=N)), at
        C(/run/netdev_tuntap/host/NAME) or C(/run/netdev_tuntap/netns/NETNS/NAME), made from the
        device's own major:minor (read from its sysfs entry inside its namespace), owned by O(owner) and
        O(group) (root when neither is given), mode 0600 (0660 with O(group)). It is reported as
        RV(char_device) and removed with the device. C(/dev/tapN) from devtmpfs is not used, because
        C(/dev) is global while interface indexes are per namespace.
      - Options that do not apply to a kind are refused, naming the option and the kind - for
        V(macvtap) and V(macvlan) - O(mode=tun), O(multi_queue), O(vnet_hdr), O(packet_info), O(bridge); for
        V(macvlan) also O(owner) and O(group); for V(tuntap) - O(link) and O(macvtap_mode).
      - A change of kind, like a change of O(mode), replaces a leased device with a newly allocated one.
    type: str
    choices: [tuntap, macvtap, macvlan]
    default: tuntap
  link:
    description:
      - The lower device of a O(kind=macvtap) or O(kind=macvlan) device (for example the host's NIC), in the
        same namespace. Required with those kinds and O(state=present).
      - It must exist and must not itself be a macvtap or macvlan device, else the task fails naming it and
        nothing is made.
      - A leased device on another lower device is replaced (the kernel cannot move it); a device named
        literally is refused.
    type: str
  macvtap_mode:
    description:
      - The mode of a O(kind=macvtap) or O(kind=macvlan) device (C(IFLA_MACVLAN_MODE)), as libvirt's
        C(<source mode=...>). Default V(vepa), as the kernel's, iproute2's and libvirt's.
      - A leased device in another mode is replaced; a device named literally is refused.
      - V(source) is accepted, but its list of source MAC addresses is not managed.
    type: str
    choices: [bridge, vepa, private, passthru, source]
  owner:
    description:
      - User name or numeric uid allowed to attach to the device (C(TUNSETOWNER)); for O(kind=macvtap) the
        owner of its device node.
      - Left alone when not given (the kernel cannot unset it). Changing it needs the device not to be
        held by a process, for a single-queue device.
    type: str
  group:
    description:
      - Group name or numeric gid allowed to attach to the device (C(TUNSETGROUP)). Same rules as O(owner).
    type: str
  multi_queue:
    description: Create a multi-queue device (C(IFF_MULTI_QUEUE)), for guests with several queues.
    type: bool
    default: false
  vnet_hdr:
    description:
      - Set C(IFF_VNET_HDR) at creation. Every process that attaches (QEMU, libvirt) rewrites it, so it is
        applied at creation, reported, and never compared.
    type: bool
    default: false
  packet_info:
    description:
      - Prepend packet information (no C(IFF_NO_PI)) at creation. Like O(vnet_hdr), never compared.
    type: bool
    default: false
  mtu:
    description: The link MTU (68 to 65535).
    type: int
  mac_address:
    description:
      - The link's unicast MAC address. Refused with O(mode=tun).
      - After the run the module reads it back; if something on the host (udev's MACAddressPolicy, a network
        manager) rewrote it, or, in the module's own namespace, the kernel does not record it as set by
        userspace (C(addr_assign_type) 3), the task warns. The next run sets it again.
    type: str
  bridge:
    description:
      - A Linux bridge (in the same namespace) to enslave the device to, or an Open vSwitch bridge to add it to
        as a port (see O(bridge_type)); it must exist. Refused with O(mode=tun).
      - An empty string detaches the device from any bridge; omitted leaves it as it is.
    type: str
  up:
    description: Bring the link up (V(true)) or down (V(false)).
    type: bool
    default: true
  bridge_type:
    description:
      - What kind of bridge O(bridge) is. V(auto) looks first for a Linux bridge of that name in the namespace,
        then asks Open vSwitch (only then, so a task without OVS bridges never needs OVS).
      - V(linux) or V(ovs) say it explicitly; a bridge of the other kind is refused.
      - On an Open vSwitch bridge the device becomes a port whose Interface row carries O(external_ids) and
        the lease (key V(netdev-tuntap-lease)); the row is removed with the device, when its lease is
        released (also after the device vanished), and replaced when a new device takes a name a stale row
        still names. Requires C(ovs-vsctl) on the target; ovs-vswitchd must run in the namespace of the
        device.
    type: str
    choices: [auto, linux, ovs]
    default: auto
  vlan:
    description:
      - The untagged VLAN (1 to 4094) of the device's bridge port. On a Linux bridge, the port's PVID, egress
        untagged; on an Open vSwitch bridge, the Port's C(tag).
      - When O(vlan) or O(trunk) is given, the port's VLAN membership is made exactly what they say (the one
        omitted counts as none) on every run, adding and removing VLANs; when neither is given, it is left
        alone. Needs O(bridge).
      - A Linux bridge needs VLAN filtering on; the module fails naming the bridge unless
        O(bridge_vlan_filtering=true). A kernel built without bridge VLAN filtering refuses with
        C(Operation not supported), and the task fails saying so, leaving no device.
      - On Open vSwitch, O(vlan) alone makes an access port, with O(trunk) a V(native-untagged) trunk, and
        O(trunk) alone a V(trunk) port.
    type: raw
  trunk:
    description:
      - Tagged VLANs of the device's bridge port, as ids and V(a-b) ranges such as V([100, "200-210"]),
        each from 1 to 4094; overlapping items, and the O(vlan) inside the trunk, are refused. On Open
        vSwitch, the Port's C(trunks). An empty list means no tagged VLAN. See O(vlan).
    type: list
    elements: raw
  bridge_vlan_filtering:
    description:
      - Let this task turn VLAN filtering on for a Linux bridge that has it off, when O(vlan) or O(trunk)
        needs it. Off by default, because it changes how the bridge treats every port (each gets the
        bridge's default PVID 1); never turned off by the module.
    type: bool
    default: false
  external_ids:
    description:
      - Open vSwitch Interface C(external_ids) for the device's port, such as V(iface-id) (the logical port a
        controller such as OVN or Neutron binds), V(attached-mac) and V(vm-uuid). Keys are 1 to 64 letters,
        digits and V(_.:-); values strings. Needs an Open vSwitch O(bridge) and a O(lease); the module adds
        V(netdev-tuntap-lease) itself. Keys not given are left as they are (controllers write their own).
    type: dict
  ipv6:
    description:
      - IPv6 on the device's host side. A new device gets IPv6 switched off (C(disable_ipv6)) before its link
        first comes up, unless this is V(true), so no link-local address appears and no router advertisement
        is accepted; this also spares the kernel a route per tap.
      - An existing device is changed only when this is given.
    type: bool
  txqueuelen:
    description: The link's transmit queue length (each queue's ring of a tun device follows it).
    type: int
  force:
    description:
      - With O(state=absent), or when a lease's device is replaced, delete the device even while a process
        (such as QEMU) holds it. Without it, a device in use is never deleted and the task fails naming it and
        the PIDs holding it.
      - A device is in use when a process has it attached, as found in C(/proc) (the C(iff:) line of each tun
        file descriptor's C(fdinfo), for processes in the device's namespace), or when the kernel shows
        carrier or attached queues. Carrier alone is not trusted, since root can force it off under a running guest.
    type: bool
    default: false
  netns:
    description:
      - The named network namespace (as made by C(ip netns add), in C(/run/netns)) where devices are created
        and looked up. It must exist. Omitted means the host's namespace.
      - Counters are shared by all namespaces of one registry, because names such as OVS port names are
        host-global.
    type: str
  registry:
    description:
      - Path of the allocation registry (an SQLite database). Missing directories are created with mode 0700,
        the file with 0600; an existing directory is never changed. A JSON registry of earlier releases found
        at the path is migrated in place on the first run that is not in check mode, the JSON kept beside it
        as V(registry.json.json-v1).
      - A registry whose file or directory is a symlink, is not a regular file (or directory), or is owned
        by or writable for anyone but root (or the user running the module), is refused; so is any directory
        on its path that such a user could change (a world-writable directory counts only with the sticky
        bit and owned by root). The same holds for V(registry.json-journal), V(registry.json.lock) and
        V(registry.json.json-v1) beside it.
      - An unreadable or corrupt registry is moved aside (V(registry.json.corrupt-TIMESTAMP)) and rebuilt
        from the marks of the devices present, with a warning.
      - Each registry has an identifier, stored in the file, that the marks of its devices carry; a device
        marked by another registry is never adopted, changed or deleted, only reported.
    type: path
    default: /var/lib/netdev_tuntap/registry.json
  lock_timeout:
    description:
      - Seconds to wait for the registry lock, held by another run of this module on the same registry.
        When it expires the task fails, naming the lock file and, when the system tells, the process
        holding it.
      - V(0) does not wait at all. At most V(86400).
    type: int
    default: 60
  max_id:
    description:
      - The highest number used before wrapping to 0. A template whose rendering of O(max_id) would not fit
        in 15 bytes is refused, and the message says the longest max_id that fits.
    type: int
    default: 99999
  reuse_delay:
    description:
      - Seconds during which a released name is not handed out again, even after a wraparound.
    type: int
    default: 3600
  devices:
    description:
      - Batch mode; mutually exclusive with O(name) and the other per-device options at the top level.
      - Every item is validated before anything changes. Items are applied in order; if one fails, the items
        before it stay done and recorded, the failing one leaves nothing behind, and the task fails naming
        its index.
      - Returns RV(devices) in input order.
    type: list
    elements: dict
    suboptions:
      name:
        description: As O(name).
        type: str
      lease:
        description: As O(lease). Each lease may appear once per task.
        type: str
      state:
        description: As O(state).
        type: str
        choices: [present, absent]
        default: present
      mode:
        description: As O(mode).
        type: str
        choices: [tap, tun]
        default: tap
      kind:
        description: As O(kind).
        type: str
        choices: [tuntap, macvtap, macvlan]
        default: tuntap
      link:
        description: As O(link).
        type: str
      macvtap_mode:
        description: As O(macvtap_mode).
        type: str
        choices: [bridge, vepa, private, passthru, source]
      owner:
        description: As O(owner).
        type: str
      group:
        description: As O(group).
        type: str
      multi_queue:
        description: As O(multi_queue).
        type: bool
        default: false
      vnet_hdr:
        description: As O(vnet_hdr).
        type: bool
        default: false
      packet_info:
        description: As O(packet_info).
        type: bool
        default: false
      mtu:
        description: As O(mtu).
        type: int
      mac_address:
        description: As O(mac_address).
        type: str
      bridge:
        description: As O(bridge).
        type: str
      up:
        description: As O(up).
        type: bool
        default: true
      force:
        description: As O(force).
        type: bool
        default: false
      bridge_type:
        description: As O(bridge_type).
        type: str
        choices: [auto, linux, ovs]
        default: auto
      vlan:
        description: As O(vlan).
        type: raw
      trunk:
        description: As O(trunk).
        type: list
        elements: raw
      bridge_vlan_filtering:
        description: As O(bridge_vlan_filtering).
        type: bool
        default: false
      external_ids:
        description: As O(external_ids).
        type: dict
      ipv6:
        description: As O(ipv6).
        type: bool
      txqueuelen:
        description: As O(txqueuelen).
        type: int
  prune_prefix:
    description:
      - With O(devices), every lease in this registry that starts with this prefix and that the list does
        not name is removed (its device deleted, subject to the in-use rule) and released.
    type: str
  remove_prefixes:
    description:
      - Every lease in this registry that starts with one of these prefixes is removed (its device deleted,
        subject to the in-use rule, in whichever namespace it lives) and released, for example V(web1/) for a
        guest that is gone. An item of O(devices) with O(devices[].state=present) under one of them is refused.
      - Given without O(name) and O(devices), the task only removes these leases.
    type: list
    elements: str
  ovs_db:
    description:
      - The Open vSwitch database to talk to (C(ovs-vsctl --db)), such as V(unix:/run/openvswitch/db.sock).
        Omitted means ovs-vsctl's default. It is recorded with each lease's port, so that a later task that
        only releases the lease finds the row without it.
    type: str
  ovs_timeout:
    description:
      - Seconds each C(ovs-vsctl) call may take (C(--timeout)), including the wait for ovs-vswitchd to apply
        a change; a database or switch that does not answer in time fails the task, leaving nothing half made.
    type: int
    default: 10
notes:
  - The registry lock is held from allocation until the registry records the result, so concurrent runs
    on one host never get the same name.
  - Devices of other tools in the namespace are never changed, unless named literally.
  - Each lease records its device's ifindex, boot id and namespace inode. Removal and pruning delete a device
    only while it is still the recorded one; a device that merely carries the old name and mark is left alone,
    the lease released, with a warning. Records from before these fields existed trust the mark alone.
  - Several devices removed by one task (O(remove_prefixes), O(prune_prefix), items with O(state=absent)) are
    deleted as one kernel batch (a link group deleted in one request). If the kernel keeps some, the registry
    records exactly those that are gone and the task fails naming the others.
  - Open vSwitch is used through C(ovs-vsctl), the database's own client, rather than the C(ovs) Python IDL,
    so nothing beyond Open vSwitch itself is needed on the target; each change is one transaction.
seealso:
  - name: libvirt pre-made tap devices
    description: Use C(<target dev='NAME' managed='no'/>) so libvirt does not delete a tap made beforehand.
    link: https://libvirt.org/formatdomain.html#generic-ethernet-connection
"""

EXAMPLES = r"""
- name: A macvtap on the host's NIC for a guest, with a node QEMU opens as the guest's user
  netdev.tuntap.tap_device:
    name: mvtap%d
    lease: web1/net1
    kind: macvtap
    link: eno1
    macvtap_mode: bridge
    mac_address: "52:54:00:12:34:57"
    owner: libvirt-qemu
  register: direct

- name: QEMU attaches through the node it was handed
  ansible.builtin.debug:
    msg: "-netdev tap,id=net1,fd=3 3<>{{ direct.char_device }}"

- name: A tap for a guest, bound to a stable lease (same device on every run)
  netdev.tuntap.tap_device:
    name: vmtap%d
    lease: web1/net0
    owner: libvirt-qemu
    bridge: br0
    mac_address: fe:54:00:12:34:56
    vnet_hdr: true
  register: tap

- name: Show the name the guest must use
  ansible.builtin.debug:
    msg: "web1 uses {{ tap.name }}"

- name: Remove the guest's tap and release its lease
  netdev.tuntap.tap_device:
    lease: web1/net0
    state: absent

- name: Several devices in one call, inside a named network namespace
  netdev.tuntap.tap_device:
    netns: lab
    devices:
      - name: vmtap%d
        lease: db1/net0
        multi_queue: true
      - name: vmtap%d
        lease: db1/net1
        mtu: 9000
    prune_prefix: "db1/"

- name: A guest NIC on VLAN 100 of a Linux bridge, with tagged VLANs 200 to 210
  netdev.tuntap.tap_device:
    name: vmtap%d
    lease: web1/net1
    bridge: br0
    vlan: 100
    trunk: ["200-210"]
    bridge_vlan_filtering: true

- name: A guest NIC as an Open vSwitch port that OVN recognises by its iface-id
  netdev.tuntap.tap_device:
    name: vmtap%d
    lease: web1/net2
    bridge: br-int
    bridge_type: ovs
    mac_address: fe:54:00:12:34:57
    txqueuelen: 4000
    external_ids:
      iface-id: 5c2b3a2e-2f5e-4c3e-9b0f-1d2e3f4a5b6c
      attached-mac: "52:54:00:12:34:57"
      vm-uuid: 0d5e6f70-8192-4a3b-9c4d-5e6f708192a3

- name: Remove every device of a guest that is gone, whatever its NICs were
  netdev.tuntap.tap_device:
    remove_prefixes: ["web2/"]

- name: Set the registry and namespace once for every task of the play
  module_defaults:
    group/netdev.tuntap.tuntap:
      registry: /var/lib/lab/registry.json
      netns: lab
  block:
    - name: A literal name
      netdev.tuntap.tap_device:
        name: tap-router
        mode: tun
"""

RETURN = r"""
name:
  description: The device's name, as the kernel confirmed it.
  returned: single-device form
  type: str
  sample: vmtap12
id:
  description: The number allocated for the template, or null for a literal name.
  returned: single-device form
  type: int
  sample: 12
template:
  description: The template the name was allocated from, or null.
  returned: single-device form
  type: str
  sample: vmtap%d
lease:
  description: The lease bound to the device, or null.
  returned: single-device form
  type: str
  sample: web1/net0
state:
  description: The requested state.
  returned: single-device form
  type: str
  sample: present
ifindex:
  description: The interface index; null in check mode for a device not yet made, and when absent.
  returned: single-device form
  type: int
  sample: 17
mac_address:
  description: The link's MAC address (null for tun devices and absent ones).
  returned: single-device form
  type: str
  sample: fe:54:00:12:34:56
mtu:
  description: The link's MTU.
  returned: single-device form
  type: int
  sample: 1500
owner:
  description: The owning uid, or null when unset; for a macvtap its node's owner.
  returned: single-device form
  type: int
  sample: 0
group:
  description: The owning gid, or null when unset.
  returned: single-device form
  type: int
  sample: null
flags:
  description: The tun flags, by name (empty for macvtap and macvlan).
  returned: single-device form
  type: list
  elements: str
  sample: [tap, multi_queue, vnet_hdr, no_pi, persist]
bridge:
  description: The bridge the device is enslaved to, or null.
  returned: single-device form
  type: str
  sample: br0
netns:
  description: The namespace of the device, or null for the host's.
  returned: single-device form
  type: str
  sample: null
mode:
  description: V(tap) or V(tun).
  returned: single-device form
  type: str
  sample: tap
multi_queue:
  description: Whether the device is multi-queue.
  returned: single-device form
  type: bool
  sample: false
vnet_hdr:
  description: Whether C(IFF_VNET_HDR) is set now (processes that attach rewrite it).
  returned: single-device form
  type: bool
  sample: true
packet_info:
  description: Whether packet information is prepended (no C(IFF_NO_PI)).
  returned: single-device form
  type: bool
  sample: false
up:
  description: Whether the link is administratively up.
  returned: single-device form
  type: bool
  sample: true
in_use:
  description:
    - Whether a process (QEMU, libvirt) holds the device, as the kernel shows it (carrier, attached queues).
    - Not looked up in C(/proc) here, to keep runs that remove nothing cheap; see M(netdev.tuntap.tap_device_info).
    - Null for a macvtap, whose holders are looked for (a scan of every process's open files) only when it is
      to be removed.
  returned: single-device form
  type: bool
  sample: false
bridge_type:
  description: V(linux) or V(ovs) for a device on a bridge, null otherwise.
  returned: single-device form
  type: str
  sample: ovs
vlan:
  description: The port's untagged VLAN (Linux bridge PVID, OVS tag); null when none or not read (the task
    gave no VLAN option and the bridge is a Linux bridge).
  returned: single-device form
  type: int
  sample: 100
trunk:
  description: The port's tagged VLANs, as ids and V(a-b) ranges; null when not read.
  returned: single-device form
  type: list
  elements: raw
  sample: [200, "300-310"]
external_ids:
  description: The Open vSwitch Interface's external_ids (null when not on an OVS bridge).
  returned: single-device form
  type: dict
  sample: {"iface-id": "5c2b3a2e", "netdev-tuntap-lease": "web1/net2"}
txqueuelen:
  description: The link's transmit queue length.
  returned: single-device form
  type: int
  sample: 1000
ipv6:
  description: Whether IPv6 is on for the device; null when not read or the kernel has no IPv6.
  returned: single-device form
  type: bool
  sample: false
kind:
  description: V(tuntap), V(macvtap) or V(macvlan); for a removed item the kind of the device removed.
  returned: single-device form
  type: str
  sample: macvtap
link:
  description: The lower device of a macvtap or macvlan (null for tun/tap devices).
  returned: single-device form
  type: str
  sample: eno1
macvtap_mode:
  description: The mode of a macvtap or macvlan (null for tun/tap devices).
  returned: single-device form
  type: str
  sample: bridge
char_device:
  description:
    - The private character device node of a macvtap (see O(kind)), for QEMU's C(-netdev tap,fd=N);
      null for other kinds and when absent.
  returned: single-device form
  type: str
  sample: /run/netdev_tuntap/host/mvtap3
devices:
  description:
    - One entry per item of O(devices), in input order, each with the keys of the single-device form and
      C(changed).
  returned: batch mode
  type: list
  elements: dict
  sample:
    - name: vmtap3
      id: 3
      lease: db1/net0
      changed: true
pruned:
  description: The leases removed by O(prune_prefix) and O(remove_prefixes).
  returned: batch mode
  type: list
  elements: str
  sample: ["db1/net2"]
adopted:
  description:
    - Devices this run took into the registry from the marks they carry (left by a run that was killed or
      failed to record them, or found after the registry was rebuilt); a non-empty list makes the task
      changed.
  returned: always
  type: list
  elements: str
  sample: ["vnet12"]
"""

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.netdev.tuntap.plugins.module_utils._engine import TapError, run
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._links import PYROUTE2_IMPORT_ERROR
from ansible_collections.netdev.tuntap.plugins.module_utils._spec import ARGUMENT_SPEC, MUTUALLY_EXCLUSIVE


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE,
                           supports_check_mode=True)
    if PYROUTE2_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("pyroute2 >= 0.7.2"), exception=str(PYROUTE2_IMPORT_ERROR))

    try:
        result = run(module.params, check_mode=module.check_mode, diff=module._diff)
    except TapError as exc:
        extra = {"exception": exc.detail} if exc.detail else {}
        module.fail_json(msg=str(exc), changed=exc.changed, **extra)
    for warning in result.pop("warnings"):
        module.warn(warning)
    exit_json(module, result)


def exit_json(module, result):
    """module.exit_json(**result), without a value-by-value copy of the result when no value is secret.

    exit_json passes the whole result (and the parameters it echoes as invocation) through
    remove_values(), which rebuilds every container and compares every string with each no_log
    value. For a batch of a thousand devices that is a tenth of the module's run time, spent to
    find nothing when no option marked no_log was given (none of this module's options is; a
    value is only in module.no_log_values when one is). Then the result goes out as it is;
    otherwise the scan runs exactly as before.
    """
    original = getattr(basic, "remove_values", None)
    if module.no_log_values or original is None:
        module.exit_json(**result)
        return  # not reached: exit_json ends the process

    def remove_values(value, no_log_strings):
        return original(value, no_log_strings) if no_log_strings else value

    basic.remove_values = remove_values
    try:
        module.exit_json(**result)
    finally:
        basic.remove_values = original


if __name__ == "__main__":
    main()
