# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deciding what each requested device needs: (task, ledger, world) -> actions.

Imports nothing that touches the system. Numbers for templates are allocated here, in
memory, so check mode reports the names a real run would use. Each item's effect is
recorded on a scratch copy of the ledger, and the devices it deletes are struck from
the snapshot, so a later item of the same batch sees what the earlier ones leave (a
released literal name, a deleted device).

The snapshot need not list every device of a namespace: the planner asks it only about
names, and of a namespace read in part it knows only the names looked up. A name it does
not know is taken as free for the rest of the plan and listed in ``unknown``; a template
whose counter is not set yet (it starts above every matching device) lists its namespace
in ``unread``. The engine looks those up and plans again; only a plan with neither stands.
``lookups`` says beforehand which names a plan will ask about, so that most runs need one
batch of look-ups and one plan.
"""

from __future__ import annotations

from ansible_collections.netdev.tuntap.plugins.module_utils import _ports
from ansible_collections.netdev.tuntap.plugins.module_utils._actions import Action, Kind, Removal
from ansible_collections.netdev.tuntap.plugins.module_utils._allocator import (
    LeasedNumbers, RangeExhausted, TemplateAllocator, first_counter)
from ansible_collections.netdev.tuntap.plugins.module_utils._device import MACVLAN_KINDS, MACVTAP, TUNTAP
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import encode_mark
from ansible_collections.netdev.tuntap.plugins.module_utils._names import TemplateMatcher, render
from ansible_collections.netdev.tuntap.plugins.module_utils._nodes import node_path, wanted_node


class PlanError(Exception):
    """A request that cannot be carried out as asked (message is user-facing)."""


def lease_namespaces(task, ledger) -> set:
    """The namespaces of the recorded leases this task may act on, besides its own."""
    keys = {spec.lease for spec in task.devices if spec.lease}
    for _origin, prefix in task.prefixes():
        keys.update(ledger.leases_under(prefix))
    records = (ledger.lease(key) for key in keys)
    return {record.get("netns") for record in records if record is not None} - {task.netns}


def lookups(task, ledger, window: int) -> dict:
    """netns -> the device names a plan of ``task`` asks about, as far as the task and the
    registry tell: the literal names, bridges and lower devices it names, the devices of the
    leases it may act on, and for each template it creates from, the ``window`` names after
    the template's counter (where its next names come from, and where devices made by a run
    the registry lost would be found)."""
    wanted: dict = {task.netns: set()}

    def add(netns, name) -> None:
        if name:
            wanted.setdefault(netns, set()).add(name)

    templates: dict = {}
    for spec in task.devices:
        for name in (spec.name, spec.bridge, spec.link):
            add(task.netns, name)
        if spec.template is not None and spec.state == "present":
            templates[spec.template] = templates.get(spec.template, 0) + 1
    for record in _touched_leases(task, ledger):
        add(record.get("netns"), record["name"])
    for template, count in templates.items():
        last = ledger.counter(template)
        if last is None:
            continue  # the whole namespace is read for it (see Planner.unread)
        number = last
        for _step in range(min(window + count, task.max_id + 1)):
            number = number + 1 if 0 <= number < task.max_id else 0
            add(task.netns, render(template, number))
    return wanted


def _touched_leases(task, ledger) -> list:
    keys = [spec.lease for spec in task.devices if spec.lease]
    for _origin, prefix in task.prefixes():
        keys.extend(ledger.leases_under(prefix))
    return [record for record in map(ledger.lease, keys) if record is not None]


def port_needs(task, ledger, world) -> set:
    """What of the target namespace's ports the snapshot must read for this task: "vlans" (Linux
    bridge VLANs), "ipv6", "ovs" (Open vSwitch, only when a bridge may be one, or a lease the task
    touches has a port row). A task that uses none of them reads none."""
    needs = set()
    present = [spec for spec in task.devices if spec.state == "present"]
    if any(spec.vlans_given for spec in present):
        needs.add("vlans")
    if any(spec.ipv6 is not None for spec in present):
        needs.add("ipv6")
    for spec in present:
        if not spec.bridge or spec.bridge_type == "linux":
            continue
        link = world.device(task.netns, spec.bridge) if world.exists(task.netns) else None
        if spec.bridge_type == "ovs" or link is None or link.kind != "bridge":
            needs.add("ovs")
    if any(record.get("ovs") for record in _touched_leases(task, ledger)):
        needs.add("ovs")
    return needs


def ovs_db_of(task, ledger) -> str | None:
    """The OVS database to ask: the task's, else the one a touched lease's port was made in."""
    if task.ovs_db:
        return task.ovs_db
    for record in _touched_leases(task, ledger):
        if record.get("ovs") and record["ovs"].get("db"):
            return record["ovs"]["db"]
    return None


def describe(device) -> str:
    owner = device.mark["lease"] if device.mark and device.mark["lease"] else None
    leased = " leased to %r" % owner if owner else ""
    if device.tun is None:
        return "a %s device%s" % (device.kind or "non-tun/tap", leased if device.managed_kind else "")
    what = "a %s%s device" % ("multi-queue " if device.tun.multi_queue else "", device.tun.mode)
    return what + leased


def _in_use_detail(device, pids) -> str:
    held = "held by PID %s" % ", ".join(map(str, pids)) if pids else None
    if device.tun.multi_queue and device.tun.queues:
        return "%d queue(s) attached%s" % (device.tun.queues, ", " + held if held else "")
    return held or "a process has it open"


def _identity_difference(record: dict, device, world, netns) -> str | None:
    """Why ``device`` (found under the lease's name, carrying its mark) is not the recorded one.

    A field the record lacks (written before it was recorded) is unknown and trusted.
    """
    boot = record.get("boot_id")
    if boot is not None and world.boot_id is not None and boot != world.boot_id:
        return "the lease was recorded in an earlier boot (%s), so its device did not survive; this one " \
               "was made since" % boot
    inode = record.get("netns_inode")
    current = world.netns_inode(netns)
    if inode is not None and current is not None and inode != current:
        return "the lease was recorded in another instance of %s (namespace inode %d, now %d)" % (
            _where(netns), inode, current)
    index = record.get("ifindex")
    if index is not None and index != device.index:
        return "the lease recorded ifindex %d, this device has ifindex %d" % (index, device.index)
    return None


def _where(netns) -> str:
    return "netns %r" % netns if netns else "the host namespace"


class Planner:
    def __init__(self, task, ledger, world, orphans=(), window: int = 64):
        self.task = task
        self.ledger = ledger.copy()   # scratch: what the earlier items leave for the later ones
        self.world = world
        self.orphans = list(orphans)  # (netns, device, why) from Ledger.recover: ours, explained by nothing
        self.gone: set = set()        # (netns, name) of devices an earlier item deletes
        self.allocators: dict = {}
        self.warnings: list = []
        self.filtering_on: set = set()    # bridges an earlier item turns VLAN filtering on for
        self._pending_name = None
        # Devices to delete whose holders were not looked up in the snapshot (world.holders):
        # the engine looks them up and plans again when that can change the plan.
        self.unchecked: list = []
        self.refusal_pending = False  # a device in use by the kernel's signs, refused once its PIDs are known
        # Names the snapshot does not know, taken as free in this plan: (netns, name). The engine looks
        # them up and plans again. ``window``: how many free-looking names after an unknown one a
        # template asks for at once.
        self.unknown: set = set()
        self.unread: set = set()   # namespaces the plan needs every link of (a template's first counter)
        self.window = window

    # -- the plan ----------------------------------------------------------
    def plan(self) -> list:
        try:
            return self._plan()
        finally:
            # Also when the plan failed: the failure may come from a name taken as free unseen.
            for allocator in self.allocators.values():
                self.unknown.update((self.task.netns, allocator.render(n)) for n in allocator.unknown_numbers)

    def _plan(self) -> list:
        actions = []
        for spec in self.task.devices:
            action = self._plan_present(spec) if spec.state == "present" else self._plan_absent(spec)
            self._record(action)
            actions.append(action)
        actions.extend(self._plan_orphans())
        named = {spec.lease for spec in self.task.devices if spec.lease}
        for origin, prefix in self.task.prefixes():
            for lease in self.ledger.leases_under(prefix):
                if origin == "pruning" and lease in named:
                    continue
                label = "%s lease %r" % (origin, lease)
                action = self._plan_release(None, label, lease, self.ledger.lease(lease), force=False)
                action.origin = origin
                self._record(action)
                actions.append(action)
        return actions

    def _plan_orphans(self) -> list:
        """Delete the devices that carry this registry's mark for a lease bound elsewhere or released.

        They are left by runs killed in the middle; keeping them would leave two devices for one
        lease, or bring a released lease back. One that a process holds is only reported.
        """
        actions, deleted = [], []
        for netns, device, why in self.orphans:
            if (netns, device.name) in self.gone:
                continue
            held = self._orphan_held(netns, device)
            if held:
                self.warnings.append("device %r in %s carries this registry's mark for a lease it cannot explain "
                                     "(%s), but it is in use (%s); it was left alone: stop that process, "
                                     "or delete the device" % (device.name, _where(netns), why, held))
                continue
            removal = Removal(device.name, netns, device, None, device.mark["template"],
                              node=self._node_of(netns, device.name, device.managed_kind))
            action = Action(None, Kind.DELETE, device.name, netns=netns, device=device, removal=removal,
                            template=device.mark["template"], origin="orphan")
            self._record(action)
            actions.append(action)
            deleted.append("%s (%s)" % (device.name, why))
        if deleted:
            self.warnings.append("deleted %d device(s) left by an interrupted run that carried this registry's mark "
                                 "for a lease it cannot explain: %s" % (len(deleted), "; ".join(deleted)))
        return actions

    def _orphan_held(self, netns, device) -> str | None:
        """How a process holds an orphan, in words; None when nothing does (as far as is known yet)."""
        if device.tun is None:
            opened = self.world.chardev_holders(device)
            return "%d open descriptor(s) of its character device" % opened if opened else None
        pids = self.world.holders_of(netns, device.name)
        if pids is None:
            self.unchecked.append((netns, device.name))   # looked up, then planned again
            return _in_use_detail(device, ()) if device.in_use else None
        return _in_use_detail(device, pids) if device.in_use or pids else None

    def _record(self, action: Action) -> None:
        for removal in (action.replaces, action.removal):
            if removal is not None and removal.device is not None:
                self.gone.add((removal.netns, removal.name))
        self.ledger.record(action, self.task.reuse_delay)

    def _device(self, netns, name: str):
        if (netns, name) in self.gone:
            return None
        if not self.world.knows(netns, name):
            self.unknown.add((netns, name))
            return None
        return self.world.device(netns, name)

    def _plan_present(self, spec) -> Action:
        record = self.ledger.lease(spec.lease) if spec.lease else None
        if record is None:
            return self._new(spec) if spec.template else self._plan_literal(spec)
        if not self._compatible(spec, record):
            return self._new(spec, replaces=self._removal_of(spec.label(), spec.lease, record, spec.force))
        device = self._device(self.task.netns, record["name"])
        if device is None:  # gone (e.g. a reboot): make it again under the same name
            return self._new(spec, name=record["name"], number=record.get("id"))
        if self._ours(device, spec.lease) and self._kind_difference(spec, device) is None:
            return self._reconcile(spec, device, record.get("template"), record.get("id"))
        if self._ours(device, spec.lease) and device.managed_kind == spec.kind:
            # Our own macvtap/macvlan on another lower device or in another mode: the kernel cannot
            # move it, so it is replaced, as a change of mode replaces a tap.
            return self._new(spec, replaces=self._removal_of(spec.label(), spec.lease, record, spec.force))
        if spec.template is None:
            raise PlanError("%s: the name %r is now held by %s; remove that device or use another name"
                            % (spec.label(), device.name, describe(device)))
        action = self._new(spec, replaces=Removal(record["name"], record.get("netns"), None, spec.lease,
                                                  record.get("template"), release_name=False))
        self.warnings.append("lease %r: its device name %r is now held by %s, so the lease was moved to the "
                             "fresh name %r" % (spec.lease, device.name, describe(device), action.name))
        return action

    def _plan_literal(self, spec) -> Action:
        holder = self.ledger.holder(self.task.netns, spec.name)
        if holder is not None and holder != spec.lease:
            raise PlanError("%s: the name %r is leased to %r in this registry; give lease: %r to manage it, "
                            "or release that lease first" % (spec.label(), spec.name, holder, holder))
        device = self._device(self.task.netns, spec.name)
        if device is None:
            return self._new(spec)
        self._refuse_foreign(spec, device)
        problem = self._kind_difference(spec, device)
        if problem:
            raise PlanError("%s: the existing device %r %s; it was left untouched"
                            % (spec.label(), spec.name, problem))
        return self._reconcile(spec, device, None, None)

    def _plan_absent(self, spec) -> Action:
        if spec.lease is not None:
            record = self.ledger.lease(spec.lease)
            if record is not None and spec.name is not None and spec.name != record["name"]:
                raise PlanError("%s: lease %r holds %r, not %r; give the lease alone to remove its device, "
                                "or the name alone" % (spec.label(), spec.lease, record["name"], spec.name))
            if record is not None:
                return self._plan_release(spec, spec.label(), spec.lease, record, spec.force)
            if spec.name is None:
                return Action(spec, Kind.ABSENT, spec.template, netns=self.task.netns, lease=spec.lease)
            # An unknown lease with a literal name: remove that name, unless another lease holds it.
        holder = self.ledger.holder(self.task.netns, spec.name)
        if holder is not None and holder != spec.lease:
            raise PlanError("%s: the device %r is leased to %r; remove it by giving lease: %r with state: "
                            "absent" % (spec.label(), spec.name, holder, holder))
        device = self._device(self.task.netns, spec.name)
        if device is None:
            return Action(spec, Kind.ABSENT, spec.name, netns=self.task.netns)
        if device.managed_kind != spec.kind:
            raise PlanError("%s: %r is %s, not a %s device; refusing to delete it%s"
                            % (spec.label(), spec.name, describe(device), _kind_words(spec.kind),
                               "; give kind: %s to remove it" % device.managed_kind if device.managed_kind else ""))
        self._refuse_foreign(spec, device)
        self._check_not_in_use(spec.label(), device, spec.force, self.task.netns)
        template = device.mark["template"] if device.mark else None
        removal = Removal(spec.name, self.task.netns, device, None, template,
                          node=self._node_of(self.task.netns, device.name, device.managed_kind))
        return Action(spec, Kind.DELETE, spec.name, netns=self.task.netns, device=device, removal=removal)

    def _plan_release(self, spec, label: str, lease: str, record: dict, force: bool) -> Action:
        removal = self._removal_of(label, lease, record, force)
        kind = Kind.DELETE if removal.device is not None else Kind.RELEASE
        return Action(spec, kind, record["name"], netns=removal.netns, number=record.get("id"),
                      template=record.get("template"), lease=lease, device=removal.device, removal=removal)

    # -- building blocks ---------------------------------------------------
    def _identity(self, device) -> dict:
        """What the ledger records about the device a lease is bound to (ifindex: once made)."""
        return {"ifindex": device.index if device is not None else None, "boot_id": self.world.boot_id,
                "netns_inode": self.world.netns_inode(self.task.netns)}

    def _removal_of(self, label: str, lease: str, record: dict, force: bool) -> Removal:
        """The leased device, wherever it lives, ready to be deleted (in-use rule checked), and
        its Open vSwitch port row when one carries the lease."""
        netns = record.get("netns")
        ovs_port = bool(record.get("ovs")) and _ports.owned_by(self.world.ovs_port(record["name"]), lease)
        if record.get("ovs") and not self.world.ovs_asked:
            ovs_port = False
        elif record.get("ovs") and self.world.ovs_error:
            if not force:
                raise PlanError("%s: lease %r has an Open vSwitch port %r, and removing it needs Open vSwitch: %s. "
                                "Start Open vSwitch (or give ovs_db), or set force: true to release the lease and "
                                "leave the row" % (label, lease, record["name"], self.world.ovs_error))
            self.warnings.append("lease %r: its Open vSwitch port row %r was left, because Open vSwitch could not "
                                 "be asked: %s" % (lease, record["name"], self.world.ovs_error))
        # A namespace that is gone took its devices with it.
        device = self._device(netns, record["name"]) if self.world.exists(netns) else None
        if device is not None and (device.managed_kind is None or not self._ours(device, lease)):
            self.warnings.append("lease %r: %r is now %s, not the leased device; it was left alone"
                                 % (lease, record["name"], describe(device)))
            device = None
        if device is not None:
            difference = _identity_difference(record, device, self.world, netns)
            if difference is not None:
                self.warnings.append("lease %r: %r in %s carries the lease's mark but is not the recorded "
                                     "device (%s); it was left alone and the lease released"
                                     % (lease, record["name"], _where(netns), difference))
                device = None
        if device is not None:
            self._check_not_in_use(label, device, force, netns)
        # The node goes with the lease even when the device is already gone (a namespace deleted).
        node = self._node_of(netns, record["name"], record.get("kind", TUNTAP))
        return Removal(record["name"], netns, device, lease, record.get("template"),
                       node=node if device is not None or record.get("kind") == MACVTAP else None, ovs_port=ovs_port)

    @staticmethod
    def _node_of(netns, name: str, kind) -> str | None:
        return node_path(netns, name) if kind == MACVTAP else None

    def _check_not_in_use(self, label: str, device, force: bool, netns) -> None:
        if force:
            return
        if device.tun is None:
            # A macvtap is held through its character device: the processes that have it open.
            opened = self.world.chardev_holders(device)
            if opened:
                raise PlanError("%s: device %r is in use (%d open descriptor(s) of its character device); stop "
                                "the process holding it, or set force: true to delete it anyway"
                                % (label, device.name, opened))
            return
        pids = self.world.holders_of(netns, device.name)
        if pids is None:
            # Not looked up yet. Carrier off proves nothing (root can force it off under a running
            # guest); carrier on does, but the refusal waits for the PIDs it can name.
            self.unchecked.append((netns, device.name))
            self.refusal_pending = self.refusal_pending or device.in_use
            return
        if device.in_use or pids:
            raise PlanError("%s: device %r is in use (%s); stop the process holding it, or set force: true "
                            "to delete it anyway" % (label, device.name, _in_use_detail(device, pids)))

    def _ours(self, device, lease) -> bool:
        # Only a device marked with this lease by this registry (or by one from before registries had
        # ids); a tap someone made under a freed name, or another registry's, is not ours.
        return device.mark is not None and device.mark["lease"] == lease and not self.ledger.foreign(device.mark)

    def _refuse_foreign(self, spec, device) -> None:
        if device.managed_kind is not None and self.ledger.foreign(device.mark):
            raise PlanError("%s: device %r carries the mark of another registry (lease %r); this registry never "
                            "changes or deletes another registry's devices: manage it with the registry that "
                            "made it, or use another name" % (spec.label(), device.name, device.mark["lease"]))

    def _compatible(self, spec, record: dict) -> bool:
        if record.get("netns") != self.task.netns or record.get("mode") != spec.mode:
            return False
        if record.get("kind", TUNTAP) != spec.kind:
            return False
        if bool(record.get("multi_queue")) != spec.multi_queue:
            return False
        if spec.template is not None:
            return record.get("template") == spec.template
        return record.get("template") is None and record["name"] == spec.name

    def _kind_difference(self, spec, device) -> str | None:
        if device.managed_kind != spec.kind:
            return "is %s, not a %s device" % (describe(device), _kind_words(spec.kind))
        if spec.kind in MACVLAN_KINDS:
            lower = self.world.names_by_index(self.task.netns).get(device.macvlan.link)
            if lower != spec.link:
                return "sits on lower device %r, but link %r was requested" % (lower, spec.link)
            if device.macvlan.mode != spec.macvtap_mode:
                return "is in macvtap_mode %r, but %r was requested" % (device.macvlan.mode, spec.macvtap_mode)
            return None
        if device.tun.mode != spec.mode:
            return "is a %s device, but mode %r was requested" % (device.tun.mode, spec.mode)
        if device.tun.multi_queue != spec.multi_queue:
            return "has multi_queue %s, but multi_queue %s was requested" % (
                str(device.tun.multi_queue).lower(), str(spec.multi_queue).lower())
        return None

    def _bridge(self, spec):
        """(kind, bridge device or name) of the bridge the request names: ("linux", LinkInfo),
        ("ovs", bridge name), ("none", None) for "" (detach), or None when bridge is not given."""
        if spec.bridge is None:
            return None
        if spec.bridge == "":
            return ("none", None)
        where = _where(self.task.netns)
        link = self._device(self.task.netns, spec.bridge)
        if link is not None and link.kind == "bridge":
            if spec.bridge_type == "ovs":
                raise PlanError("%s: bridge %r is a Linux bridge in %s, but bridge_type is 'ovs'"
                                % (spec.label(), spec.bridge, where))
            return ("linux", link)
        if spec.bridge_type == "linux":
            if link is None:
                raise PlanError("%s: bridge %r does not exist in %s; create the bridge first"
                                % (spec.label(), spec.bridge, where))
            raise PlanError("%s: bridge %r is a %s device, not a Linux bridge"
                            % (spec.label(), spec.bridge, link.kind or "non-bridge"))
        if spec.bridge_type == "ovs":
            if self.world.ovs_error:
                raise PlanError("%s: bridge %r: %s" % (spec.label(), spec.bridge, self.world.ovs_error))
            if spec.bridge not in (self.world.ovs or {}).get("bridges", {}):
                raise PlanError("%s: bridge %r is not an Open vSwitch bridge: Open vSwitch has no bridge of that "
                                "name; create it first (ovs-vsctl add-br %s)" % (spec.label(), spec.bridge, spec.bridge))
            return ("ovs", spec.bridge)
        if spec.bridge in (self.world.ovs or {}).get("bridges", {}):
            return ("ovs", spec.bridge)
        if self.world.ovs_error:
            ovs = " (nor, as far as could be asked, an Open vSwitch bridge: %s)" % self.world.ovs_error
        elif self.world.ovs_asked:
            ovs = " (nor an Open vSwitch bridge)"
        else:
            ovs = ""
        if link is None:
            raise PlanError("%s: bridge %r does not exist in %s%s; create the bridge first"
                            % (spec.label(), spec.bridge, where, ovs))
        raise PlanError("%s: bridge %r is a %s device, not a Linux bridge%s"
                        % (spec.label(), spec.bridge, link.kind or "non-bridge", ovs))

    def _filtering(self, spec, bridge) -> dict | None:
        """Turning VLAN filtering on for ``bridge``, when the request needs it and allows it."""
        if not spec.vlans_given or bridge.vlan_filtering:
            return None
        if (bridge.name, "on") in self.filtering_on:
            return None
        if not spec.bridge_vlan_filtering:
            raise PlanError("%s: bridge %r has VLAN filtering off, so vlan and trunk cannot be applied; turn it on "
                            "(ip link set %s type bridge vlan_filtering 1), or set bridge_vlan_filtering: true to "
                            "let this task turn it on" % (spec.label(), bridge.name, bridge.name))
        self.filtering_on.add((bridge.name, "on"))
        return {"bridge": bridge.name, "index": bridge.index}

    def _ovs_record(self, spec, attachment, record: dict | None) -> dict | None:
        if attachment is None:
            return (record or {}).get("ovs")
        if attachment[0] != "ovs":
            return None
        return {"bridge": attachment[1], "db": self.task.ovs_db}

    def _new_port(self, spec, attachment) -> dict | None:
        if attachment is None or attachment[0] == "none":
            return None
        if attachment[0] == "linux":
            return {"kind": "linux", "bridge": attachment[1].name, "index": attachment[1].index,
                    "filtering": self._filtering(spec, attachment[1]), "vlans": _ports.create_vlans(spec)}
        port = self.world.ovs_port(self._pending_name)
        if port is not None:
            self.warnings.append("%s: Open vSwitch had a port row %r%s left from a device that no longer "
                                 "exists; it is replaced by the new device's row"
                                 % (spec.label(), self._pending_name,
                                    " (iface-id %r)" % port["external_ids"]["iface-id"]
                                    if "iface-id" in port["external_ids"] else ""))
        return {"kind": "ovs", "bridge": attachment[1], "settings": _ports.wanted_ovs_settings(spec),
                "external_ids": _ports.wanted_external_ids(spec)}

    def _lower_index(self, spec) -> int | None:
        """The ifindex of a macvtap/macvlan's lower device: it must exist here and be a real one."""
        if spec.kind not in MACVLAN_KINDS:
            return None
        lower = self._device(self.task.netns, spec.link)
        if lower is None:
            raise PlanError("%s: link %r does not exist in %s; give the lower device (such as the host's NIC) "
                            "the %s sends through" % (spec.label(), spec.link, _where(self.task.netns), spec.kind))
        if lower.kind in MACVLAN_KINDS:
            raise PlanError("%s: link %r is itself a %s device; a %s needs a real lower device (a NIC, bond, "
                            "veth or VLAN device), not another macvtap/macvlan"
                            % (spec.label(), spec.link, lower.kind, spec.kind))
        if lower.kind == "tun" or lower.name == "lo":
            raise PlanError("%s: link %r is %s, which cannot carry a %s; give an Ethernet device such as "
                            "a NIC, bond, veth or VLAN device"
                            % (spec.label(), spec.link, describe(lower), spec.kind))
        return lower.index

    def _allocator(self, template: str) -> TemplateAllocator:
        allocator = self.allocators.get(template)
        if allocator is None:
            matcher = TemplateMatcher(template, self.task.max_id)
            netns = self.task.netns
            present = self.world.devices(netns)
            existing = {n for n in map(matcher.number, present) if n is not None}
            blocked = set(existing)
            # The leases as they are now (a copy of the ledger's changes; the store is shared), as a
            # set read now would be. Leased names are asked for one candidate at a time (an index
            # look-up each), not read all: one more device costs the same with 30 000 leases as with 100.
            ledger = self.ledger.copy()
            leased = LeasedNumbers(
                has=lambda n: ledger.name_leased(render(template, n)),
                count=ledger.leased_name_count_like(template),
                numbers=lambda: [n for n in map(matcher.number, ledger.lease_names_like(template)) if n is not None])
            held = self.ledger.held_names(self.task.reuse_delay)
            blocked.update(n for n in map(matcher.number, held) if n is not None)
            # A literal name another item of this task asks for is not free either.
            blocked.update(n for n in (matcher.number(spec.name) for spec in self.task.devices
                                       if spec.name is not None and spec.state == "present")
                           if n is not None)
            last = self.ledger.counter(template)
            if last is None:
                # The first counter is above every matching device: only the whole list says which.
                if not self.world.whole(netns):
                    self.unread.add(netns)
                last = first_counter(existing)
            allocator = TemplateAllocator(template, self.task.max_id, last, blocked, window=self.window,
                                          unknown=lambda n: not self.world.knows(netns, render(template, n)),
                                          leased=leased)
            self.allocators[template] = allocator
        return allocator

    def _new(self, spec, replaces: Removal | None = None, name: str | None = None,
             number: int | None = None) -> Action:
        allocator = None
        if name is None and spec.template is not None:
            allocator = self._allocator(spec.template)
            try:
                number = allocator.take()
            except RangeExhausted:
                raise PlanError(
                    "%s: no free name for template %r: every number from 0 to max_id %d is taken by a device "
                    "in this namespace, leased, or released less than reuse_delay (%d s) ago. Raise max_id, "
                    "lower reuse_delay, or release leases" % (spec.label(), spec.template, self.task.max_id,
                                                              self.task.reuse_delay))
            name = allocator.render(number)
        elif name is None:
            name = spec.name
        attachment = self._bridge(spec)
        self._pending_name = name
        port = self._new_port(spec, attachment)
        master = None
        if attachment is not None:
            # A device on an OVS bridge has no netlink master (ovs-vswitchd opens it itself).
            master = attachment[1].index if attachment[0] == "linux" else (0 if attachment[0] == "none" else None)
        lower = self._lower_index(spec)
        return Action(spec, Kind.CREATE, name, netns=self.task.netns, number=number, template=spec.template,
                      lease=spec.lease, master=master, allocator=allocator, replaces=replaces,
                      lease_changed=spec.lease is not None, port=port, ipv6=bool(spec.ipv6),
                      ovs_record=self._ovs_record(spec, attachment, None), lower=lower,
                      node=self._node_of(self.task.netns, name, spec.kind),
                      identity=self._identity(None))

    def _reconcile(self, spec, device, template: str | None, number: int | None) -> Action:
        changes = {}
        if spec.mtu is not None and device.mtu != spec.mtu:
            changes["mtu"] = spec.mtu
        if spec.mac_address is not None and (device.mac_address or "").lower() != spec.mac_address:
            changes["mac_address"] = spec.mac_address
        attachment = self._bridge(spec)
        self._port_changes(spec, device, attachment, changes)
        if spec.txqueuelen is not None and device.txqueuelen != spec.txqueuelen:
            changes["txqueuelen"] = spec.txqueuelen
        if spec.ipv6 is not None and self.world.ipv6 is not None:
            enabled = self.world.ipv6.get(device.name)
            if enabled is not None and enabled != spec.ipv6:
                changes["ipv6"] = spec.ipv6
        if device.up != spec.up:
            changes["up"] = spec.up
        if device.tun is not None:
            self._reconcile_tun(spec, device, changes)
        elif spec.kind == MACVTAP:
            self._reconcile_node(device, spec, changes)
        if spec.lease is not None or template is not None:
            mark = encode_mark(spec.lease, template, self.ledger.registry_id)
            if device.alias != mark:
                changes["alias"] = mark
        lease_changed = False
        record = None
        if spec.lease is not None:
            record = self.ledger.lease(spec.lease)
            lease_changed = record is None or record["name"] != device.name
        ovs_record = self._ovs_record(spec, attachment, record if record and record["name"] == device.name else None)
        if spec.lease is not None and (record or {}).get("ovs") != ovs_record:
            lease_changed = True
        return Action(spec, Kind.RECONCILE, device.name, netns=self.task.netns, number=number, template=template,
                      lease=spec.lease, device=device, changes=changes, lease_changed=lease_changed,
                      ovs_record=ovs_record,
                      node=self._node_of(self.task.netns, device.name, spec.kind),
                      identity=self._identity(device))

    def _port_changes(self, spec, device, attachment, changes: dict) -> None:
        """Bridge membership, VLANs and the OVS row of an existing device, into ``changes``."""
        if attachment is None:
            return
        kind, bridge = attachment
        ovs_port = self.world.ovs_port(device.name) if self.world.ovs_asked else None
        mine = ovs_port is not None and (_ports.owned_by(ovs_port, spec.lease)
                                         or _ports.LEASE_KEY not in ovs_port["external_ids"])
        master = bridge.index if kind == "linux" else 0
        if (device.master or 0) != master:
            changes["master"] = master
        if kind != "ovs" and mine:
            changes["ovs_detach"] = ovs_port["bridge"]
        if kind == "linux" and spec.vlans_given:
            filtering = self._filtering(spec, bridge)
            if filtering is not None:
                changes["vlan_filtering"] = filtering
            flags = {} if filtering is not None else (self.world.port_vlans or {}).get(device.index, {})
            vlans = _ports.vlan_changes(spec, flags)
            if vlans is not None or "master" in changes:
                changes["vlans"] = vlans or {"untagged": [], "tagged": [], "remove": []}
                changes["vlans"]["default_pvid_goes"] = "master" in changes or filtering is not None
        if kind == "ovs":
            if ovs_port is None or ovs_port["bridge"] != bridge:
                changes["ovs_port"] = {"bridge": bridge, "settings": _ports.wanted_ovs_settings(spec),
                                       "external_ids": _ports.wanted_external_ids(spec), "add": True}
            else:
                update = _ports.ovs_changes(spec, ovs_port)
                if update is not None:
                    changes["ovs_port"] = dict(update, bridge=bridge, add=False)

    def _reconcile_node(self, device, spec, changes: dict) -> None:
        """A macvtap's node: made again when missing or not this device's, owner/group as asked."""
        info = device.macvlan
        if info.chardev is None:
            raise PlanError("%s: the character device of macvtap %r is not in sysfs; it cannot be handed out"
                            % (spec.label(), device.name))
        wanted = wanted_node(info.chardev, spec.owner, spec.group, info.node if _sound(info) else None)
        if info.node != wanted:
            changes["node"] = wanted

    @staticmethod
    def _reconcile_tun(spec, device, changes: dict) -> None:
        if spec.owner is not None and device.tun.owner != spec.owner:
            changes["owner"] = spec.owner
        if spec.group is not None and device.tun.group != spec.group:
            changes["group"] = spec.group
        if ("owner" in changes or "group" in changes) and device.in_use and not device.tun.multi_queue:
            raise PlanError("%s: owner/group of %r cannot be changed while a process holds it: the kernel "
                            "allows that only while no process has a single-queue tap open. Stop the guest, "
                            "or leave owner and group as they are (%s/%s)"
                            % (spec.label(), device.name, device.tun.owner, device.tun.group))


def _sound(info) -> bool:
    """The macvtap's node exists and is this device's (a node with other numbers is made again)."""
    return info.node is not None and info.node.rdev == tuple(info.chardev)


def _kind_words(kind: str) -> str:
    return "tun/tap" if kind == TUNTAP else kind


def take_next_name(action: Action) -> None:
    """After the kernel refused ``action``'s name: block it and take the allocator's next number.

    The applier calls this with the allocator the planner used, so a name taken behind our
    back is skipped by the same rules that chose it.
    """
    allocator = action.allocator
    allocator.block(action.number)
    try:
        action.number = allocator.take()
    except RangeExhausted:
        raise PlanError("no free name left for template %r: the last free one, %r, was taken by a device "
                        "made outside this registry meanwhile" % (action.template, action.name))
    action.name = allocator.render(action.number)
    if action.node is not None:
        action.node = node_path(action.netns, action.name)
