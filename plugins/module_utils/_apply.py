# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Carrying out a plan: actions -> kernel + ledger, under the registry lock.

Actions run in input order. Each one changes the kernel first and then records its
effect in the ledger with the same ledger code the planner used; the ledger is saved
once at the end, also when an action fails, so what was done is never lost. Before
devices are created an intent is saved, so a run killed half way is recognised.

Consecutive deletions are one kernel batch (Links.delete_many): deleting devices one by one
costs an RCU grace period each. What the batch really removed is read back, and only those
deletions are recorded, whatever part of the batch failed.

Consecutive creations of tun/tap devices in one namespace are one batch too (_create_tuns):
each device is made and held by its descriptor (TUNSETIFF, exclusive, owner/group), all of
them are configured and marked with one batch of netlink requests, made persistent, let go,
and only then brought up, with one more batch. A tap brought up while our descriptor holds it
has carrier, and the kernel's IPv6 code then adds routes that every later link event walks:
creation would get slower with every device. Until a device is persistent, closing its
descriptor (or the process dying) destroys it, so none survives unmarked or half-made.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import traceback

from ansible_collections.netdev.tuntap.plugins.module_utils._actions import Kind
from ansible_collections.netdev.tuntap.plugins.module_utils import _ports
from ansible_collections.netdev.tuntap.plugins.module_utils._device import MACVLAN_KINDS, MACVTAP
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _brvlan, _chardev, _hostside, _macv, _tun
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._links import (
    BulkDeleteError, LinkError, Links, link_settings)
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._ovs import Ovs, OvsError
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import NetnsError, entered
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import encode_mark
from ansible_collections.netdev.tuntap.plugins.module_utils._nodes import wanted_node
from ansible_collections.netdev.tuntap.plugins.module_utils._plan import PlanError, take_next_name

# What a failing action may raise that says what went wrong in words a user can act on.
EXPECTED_ERRORS = (LinkError, _tun.TunError, _macv.MacvError, _chardev.CharDevError, NetnsError, PlanError,
                   OvsError, OSError)
LINK_SETTINGS = {"mtu", "mac_address", "master", "up", "alias", "txqueuelen"}


class ApplyError(Exception):
    """An action failed; ``changed`` says whether anything was changed before it."""

    def __init__(self, message: str, changed: bool, detail: str | None = None):
        super().__init__(message)
        self.changed = changed
        self.detail = detail


class Applier:
    def __init__(self, task, ledger, save):
        self.task = task
        self.ledger = ledger
        self.save = save               # writes the ledger to the registry file
        self.changed = False           # the kernel was changed (a device made, changed or deleted)
        self.replaced_for = None       # the action whose old device was removed before it failed
        self._links: dict = {}         # netns -> Links, each made (and used) inside its namespace
        self.ovs = Ovs(task.ovs_db, task.ovs_timeout)
        self.groups_in_use: dict = {}  # netns -> link groups of its devices (a bulk delete avoids them)

    def apply(self, actions: list) -> None:
        creating = [a for a in actions if a.kind is Kind.CREATE]
        if creating:
            self.ledger.record_intent(self.task.netns, [
                {"lease": a.lease, "name": a.name, "template": a.template, "id": a.number, "netns": a.netns,
                 "replaces": a.replaces.name if a.replaces is not None else None}
                for a in creating], hold=self.task.reuse_delay)
            self.save()
        failed = None
        try:
            for run, batch in self._steps(actions):
                try:
                    run(batch)
                except EXPECTED_ERRORS as exc:
                    # A batch names the action that failed (the ones before it are recorded).
                    failed = (getattr(exc, "action", None) or batch[0], exc, None)
                    break
                except Exception as exc:  # pylint: disable=broad-exception-caught
                    # Whatever went wrong, what the earlier items did must reach the registry.
                    failed = (getattr(exc, "action", None) or batch[0], exc, traceback.format_exc())
                    break
        finally:
            self._close()
        self.ledger.clear_intent()
        try:
            self.save()
        except OSError as exc:
            if failed is None:
                raise ApplyError("recording the result in the registry failed: %s. The devices were changed; "
                                 "run the task again to record them" % (exc.strerror or exc), self.changed)
            # The action's own error is the one to report; the registry is repaired by the next run.
        if failed:
            raise self._failure(*failed)

    def _steps(self, actions: list):
        """(function, actions) to carry out, in order: a run of consecutive deletions, or of
        consecutive tun/tap creations in one namespace, is one batch; anything else one action."""
        batch, batch_key = [], None
        for action in actions:
            if not action.changed:
                if action.kind is Kind.RECONCILE and action.lease is not None:
                    # Nothing to change, but the record may lack the device's identity (a file
                    # from before it was recorded, or a device adopted): record what it is now.
                    self.ledger.record(action, self.task.reuse_delay)
                continue
            key = _batch_key(action)
            if batch and key != batch_key:
                yield self._batch_runner(batch_key), batch
                batch = []
            if key is None:
                yield self._execute_one, [action]
                continue
            batch.append(action)
            batch_key = key
        if batch:
            yield self._batch_runner(batch_key), batch

    def _batch_runner(self, key):
        return self._delete_batch if key[0] == "delete" else self._create_tuns

    def _execute_one(self, actions: list) -> None:
        self._execute(actions[0])

    def _delete_batch(self, actions: list) -> None:
        """Delete the devices of ``actions`` as one kernel batch per namespace; record those gone."""
        by_netns: dict = {}
        for action in actions:
            by_netns.setdefault(action.removal.netns, []).append(action)
            if action.removal.ovs_port:
                # The Open vSwitch row first, so that no row ever names a device that is gone.
                self.ovs.del_port(action.removal.name)
                self.changed = True
        gone: set = set()
        error = None
        for netns, group in by_netns.items():
            try:
                with entered(netns):
                    gone.update((netns, index) for index in self._links_in(netns).delete_many(
                        [(a.removal.name, a.removal.device.index, a.removal.device.link_group) for a in group],
                        self.groups_in_use.get(netns, ())))
            except BulkDeleteError as exc:
                gone.update((netns, index) for index in exc.gone)
                error = error or exc
            except EXPECTED_ERRORS as exc:
                # This namespace's devices stay; what other namespaces removed is still recorded.
                error = error or exc
        hold = self.task.reuse_delay
        left = []
        for action in actions:
            if (action.removal.netns, action.removal.device.index) in gone:
                self._remove_node(action.removal)
                self.ledger.record(action, hold)
                self.changed = True
            else:
                left.append(action)
        if left:
            failure = BulkDeleteError("%s (%d of %d device(s) removed and released; the others keep their "
                                      "leases)" % (error or "the devices are still present",
                                                   len(actions) - len(left), len(actions)), set())
            failure.action = left[0]
            raise failure

    def _failure(self, action, exc, trace) -> ApplyError:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if trace is not None:
            detail = "unexpected internal error (%s: %s)" % (type(exc).__name__, detail)
        done = "; the items before it were applied and recorded" if self.task.batch else ""
        return ApplyError("%s failed: %s. %s%s" % (action.label(), detail, self._left_behind(action), done),
                          self.changed, trace)

    def _left_behind(self, action) -> str:
        """What a failed action leaves, in words (the ledger already records it)."""
        if action.kind is Kind.CREATE:
            if self.replaced_for is action:
                return ("The device it replaces was removed and its lease released; no new device was "
                        "left behind")
            return "No device was left behind for it"
        if action.kind is Kind.RECONCILE:
            return "The device is kept; some of its settings may already be changed: run the task again"
        return "The device was not removed and its lease is kept"

    # -- kernel access, per namespace ---------------------------------------------------------
    def _links_in(self, netns):
        """The Links of ``netns``; call only inside ``entered(netns)``."""
        links = self._links.get(netns)
        if links is None:
            links = self._links[netns] = Links()
        return links

    def _close(self) -> None:
        for links in self._links.values():
            links.close()
        self._links.clear()

    # -- one action ------------------------------------------------------------------------------
    def _execute(self, action) -> None:
        hold = self.task.reuse_delay
        if action.replaces is not None:
            self._delete(action.replaces)
            self.ledger.forget(action.replaces, hold, lease_released=False)
            self.replaced_for = action
        if action.kind is Kind.CREATE and action.spec.kind not in MACVLAN_KINDS:
            self._create_tuns([action])  # records it
            return
        if action.kind is Kind.CREATE:
            self._create_macvlan(action)
            self.changed = True
        elif action.kind is Kind.RECONCILE:
            self._reconcile(action)
        elif action.kind in (Kind.DELETE, Kind.RELEASE):
            self._delete(action.removal)  # RELEASE: the device is gone; its OVS row or macvtap node may not be
        self.ledger.record(action, hold)

    def _create_macvlan(self, action) -> None:
        """A macvtap/macvlan: made down, then marked, configured and (macvtap) given its node.

        The kernel ignores an alias in the request that creates a link, so the mark follows at
        once, while the device is still down; if anything after the create fails, the device
        (and its node) is deleted again, so no unmarked or half-made device is left.
        """
        spec = action.spec
        with entered(action.netns):
            links = self._links_in(action.netns)
            while True:
                try:
                    _macv.create(action.name, spec.kind, action.lower, spec.macvtap_mode, mtu=spec.mtu,
                                 mac_address=spec.mac_address)
                    break
                except _macv.NameTaken:
                    if not action.allocated:
                        raise
                    take_next_name(action)  # made outside this registry since the snapshot
            index = action.identity["ifindex"] = socket.if_nametoindex(action.name)
            try:
                links.configure(action.name, index, alias=encode_mark(action.lease, action.template,
                                                                      self.ledger.registry_id))
                if spec.kind == MACVTAP:
                    chardev = _chardev.read_numbers().get(index)
                    if chardev is None:
                        raise _chardev.CharDevError("macvtap %r has no character device in sysfs" % action.name)
                    _chardev.make_node(action.node, wanted_node(chardev, spec.owner, spec.group, None))
                if spec.up:
                    links.configure(action.name, index, up=True)
            except BaseException:
                if action.node is not None:
                    _remove_node_quietly(action.node)
                links.delete(action.name, index)
                raise

    # -- tun/tap devices, made in batches ----------------------------------------------------
    def _create_tuns(self, actions: list) -> None:
        """Create the tun/tap devices of ``actions`` (one namespace), in batches as large as the
        descriptor limit allows, and record each one made. On a failure, the devices before the
        failing one are made and recorded, the failing one and those after it are not made; the
        error raised names the failing action (``exc.action``)."""
        with entered(actions[0].netns):
            links = self._links_in(actions[0].netns)
            room = _tun.descriptors_available()
            for start in range(0, len(actions), room):
                self._create_tun_batch(links, actions[start:start + room])

    def _create_tun_batch(self, links, actions: list) -> None:
        batch = _TunBatch()
        try:
            self._make_held(batch, actions)
            self._configure_held(batch, links)
            self._add_ports(batch)
            for number, (action, fd) in enumerate(batch.held):
                try:
                    _tun.persist(fd, action.name)
                except _tun.TunError as exc:
                    batch.fail(number, action, exc)
                    break
        finally:
            batch.let_go()
        # Let go of by now: up without our descriptor, the devices have no carrier (see the top).
        self._bring_up(batch, links)
        hold = self.task.reuse_delay
        for action, _fd in batch.held:
            self.ledger.record(action, hold)
            self.changed = True
        if batch.failure is not None:
            raise batch.failure

    def _make_held(self, batch, actions: list) -> None:
        """Make each device, held by its descriptor, with its IPv6 set before it first comes up."""
        for action in actions:
            spec = action.spec
            flags = _tun.tun_flags(spec.mode, spec.multi_queue, spec.vnet_hdr, spec.packet_info)
            owner, group = spec.owner, spec.group
            if owner is None and group is None:
                owner = 0  # an ownerless tap can be attached by any local user: default to root
            try:
                while True:
                    try:
                        fd, action.name = _tun.open_new(action.name, flags, owner, group)
                        break
                    except _tun.NameTaken:
                        if not action.allocated:
                            raise
                        # Someone outside this registry made that name since the snapshot: take the next.
                        take_next_name(action)
                batch.held.append((action, fd))
                # No link-local address, no router advertisement (or on, when asked, whatever the
                # namespace's default for new devices is).
                _hostside.set_ipv6(action.name, bool(action.ipv6))
                action.identity["ifindex"] = socket.if_nametoindex(action.name)
            except EXPECTED_ERRORS as exc:
                held = bool(batch.held) and batch.held[-1][0] is action
                batch.fail(len(batch.held) - 1 if held else len(batch.held), action, exc)
                return

    def _configure_held(self, batch, links) -> None:
        """Mark and configure the held devices (everything but up) with one batch of requests."""
        filtering_done = set()
        for number, (action, _fd) in enumerate(batch.held):
            filtering = (action.port or {}).get("filtering")
            if filtering and filtering["index"] not in filtering_done:
                try:
                    self._vlan_filtering(filtering)
                except EXPECTED_ERRORS as exc:
                    batch.fail(number, action, exc)
                    break
                filtering_done.add(filtering["index"])
        changes = []
        for action, _fd in batch.held:
            spec = action.spec
            changes.append((action.name, action.identity["ifindex"], link_settings(
                mtu=spec.mtu, mac_address=spec.mac_address, master=action.master, txqueuelen=spec.txqueuelen,
                alias=encode_mark(action.lease, action.template, self.ledger.registry_id))))
        if not changes:
            return
        try:
            errors = links.configure_many(changes)
        except LinkError as exc:
            batch.fail(0, batch.held[0][0], exc)
            return
        for number, error in enumerate(errors):
            if error is not None:
                batch.fail(number, batch.held[number][0], error)
                return

    def _add_ports(self, batch) -> None:
        """Bridge VLANs and Open vSwitch ports of the held devices, one device after the other."""
        for number, (action, _fd) in enumerate(batch.held):
            port = action.port or {}
            try:
                if port.get("kind") == "linux" and port.get("vlans") is not None:
                    self._set_vlans(action.spec, action.name, action.identity["ifindex"])
                if port.get("kind") == "ovs":
                    self._add_ovs_port(port["bridge"], action.name, port["settings"], port["external_ids"])
            except EXPECTED_ERRORS as exc:
                batch.fail(number, action, exc)
                return

    def _bring_up(self, batch, links) -> None:
        """One batch of requests bringing up the devices that ask for it. A device the kernel
        refuses to bring up is deleted again, and so are those after it (never recorded)."""
        wanted = [(number, action) for number, (action, _fd) in enumerate(batch.held) if action.spec.up]
        if not wanted:
            return
        try:
            errors = links.configure_many([(action.name, action.identity["ifindex"], link_settings(up=True))
                                           for _number, action in wanted])
        except LinkError as exc:
            errors = [exc] * len(wanted)
        refused = next(((number, action, error) for (number, action), error in zip(wanted, errors)
                        if error is not None), None)
        if refused is None:
            return
        number, action, error = refused
        for later, _fd in batch.held[number:]:
            with contextlib.suppress(*EXPECTED_ERRORS):
                if (later.port or {}).get("kind") == "ovs":
                    self.ovs.del_port(later.name, wait=False)
                links.delete(later.name, later.identity["ifindex"])
        batch.fail(number, action, error)

    def _reconcile(self, action) -> None:
        changes = action.changes
        device = action.device
        with entered(action.netns):
            if "owner" in changes or "group" in changes:
                tun = device.tun
                flags = _tun.tun_flags(tun.mode, tun.multi_queue, tun.vnet_hdr, tun.packet_info)
                _tun.set_owner_group(device.name, flags, changes.get("owner"), changes.get("group"))
                self.changed = True
            if "ovs_detach" in changes:
                self.ovs.del_port(device.name)
                self.changed = True
            if "vlan_filtering" in changes:
                self._vlan_filtering(changes["vlan_filtering"])
                self.changed = True
            if "node" in changes:
                self._set_node(action.node, device, changes["node"])
                self.changed = True
            if changes.keys() & LINK_SETTINGS:
                self._links_in(action.netns).configure(
                    device.name, device.index, mtu=changes.get("mtu"), mac_address=changes.get("mac_address"),
                    master=changes.get("master"), up=changes.get("up"), alias=changes.get("alias"),
                    txqueuelen=changes.get("txqueuelen"))
                self.changed = True
            if "vlans" in changes:
                self._set_vlans(action.spec, device.name, device.index)
                self.changed = True
            if "ovs_port" in changes:
                port = changes["ovs_port"]
                if port["add"]:
                    self._add_ovs_port(port["bridge"], device.name, port["settings"], port["external_ids"])
                else:
                    self.ovs.update_port(device.name, port["settings"], port["external_ids"])
                self.changed = True
            if "ipv6" in changes:
                _hostside.set_ipv6(device.name, changes["ipv6"])
                self.changed = True

    @staticmethod
    def _set_node(path: str, device, wanted) -> None:
        found = device.macvlan.node
        if found is not None and found.rdev == wanted.rdev:
            _chardev.set_node(path, wanted)
        else:
            _chardev.make_node(path, wanted)

    def _delete(self, removal) -> None:
        """Delete the device of ``removal`` in whatever namespace it lives (if there is one), its Open
        vSwitch port row first (so that no row ever names a device that is gone), and its node."""
        if removal.ovs_port:
            self.ovs.del_port(removal.name)
            self.changed = True
        if removal.device is not None:
            with entered(removal.netns):
                self._links_in(removal.netns).delete(removal.name, removal.device.index)
            self.changed = True
        self._remove_node(removal)

    def _remove_node(self, removal) -> None:
        """A macvtap's node goes with its device (or its lease, when the device is already gone)."""
        if removal.node is not None and _chardev.node_state(removal.node) is not None:
            _chardev.remove_node(removal.node)
            self.changed = True

    # -- bridge ports (inside entered(netns)) -------------------------------------------------
    @staticmethod
    def _vlan_filtering(filtering: dict) -> None:
        try:
            _brvlan.set_vlan_filtering(filtering["index"], True)
        except OSError as exc:
            raise LinkError("turning VLAN filtering on for bridge %r failed: %s%s"
                            % (filtering["bridge"], exc.strerror or exc, _no_vlan_support(exc)))

    @staticmethod
    def _set_vlans(spec, name: str, index: int) -> None:
        """Make the port's VLANs exactly what ``spec`` asks, from what the kernel lists now (a port
        that just joined a bridge carries the bridge's default PVID, which goes unless asked for)."""
        try:
            current = _brvlan.dump_port_vlans().get(index, {})
            changes = _ports.vlan_changes(spec, current)
            if changes is None:
                return
            _brvlan.add_vlans(index, changes["untagged"], _brvlan.UNTAGGED_PVID)
            _brvlan.add_vlans(index, changes["tagged"], 0)
            _brvlan.remove_vlans(index, changes["remove"])
        except OSError as exc:
            raise LinkError("setting the VLANs of %r on bridge %r failed: %s%s"
                            % (name, spec.bridge, exc.strerror or exc, _no_vlan_support(exc)))

    def _add_ovs_port(self, bridge: str, name: str, settings: dict, external_ids: dict) -> None:
        try:
            state = self.ovs.add_port(bridge, name, settings, external_ids)
        except OvsError:
            # The row may be in the database already (ovs-vswitchd did not confirm it): take it out.
            with contextlib.suppress(OvsError):
                self.ovs.del_port(name, wait=False)
            raise
        ofport, error = state["ofport"], state["error"]
        if error or not isinstance(ofport, int) or ofport < 0:
            # add-port succeeds even for a device OVS cannot open: never leave such a row behind.
            self.ovs.del_port(name, wait=False)
            raise OvsError("Open vSwitch could not open %r as a port of bridge %r (ofport %s, error %r); the "
                           "port row was removed. The device must be in the network namespace ovs-vswitchd "
                           "runs in" % (name, bridge, ofport, error))


def _batch_key(action):
    """Which batch ``action`` may join: ("delete",), ("create", netns) or None (on its own)."""
    if (action.kind is Kind.DELETE and action.replaces is None and action.removal is not None
            and action.removal.device is not None):
        return ("delete",)
    if action.kind is Kind.CREATE and action.replaces is None and action.spec.kind not in MACVLAN_KINDS:
        return ("create", action.netns)
    return None


class _TunBatch:
    """The devices of one creation batch, in order: (action, descriptor) of each held or made."""

    def __init__(self):
        self.held: list = []
        self.failure = None
        self._open: list = []

    def fail(self, number: int, action, exc) -> None:
        """``action`` (held as device ``number``, or the next to be made) failed: it and the devices
        after it are dropped (destroyed when let go, not being persistent yet)."""
        exc.action = action
        self.failure = exc
        self._open.extend(fd for _action, fd in self.held[number:])
        del self.held[number:]

    def let_go(self) -> None:
        """Close every descriptor: the persistent devices stay, the others are destroyed."""
        for fd in self._open + [fd for _action, fd in self.held]:
            with contextlib.suppress(OSError):
                _tun.close(fd)
        self._open = []


def _remove_node_quietly(path: str) -> None:
    try:
        _chardev.remove_node(path)
    except _chardev.CharDevError:
        pass  # the error being raised is the one to report


def _no_vlan_support(exc: OSError) -> str:
    if exc.errno == errno.EOPNOTSUPP:
        return (" (this kernel has no bridge VLAN filtering: it is built without CONFIG_BRIDGE_VLAN_FILTERING; "
                "use a kernel that has it, or leave vlan and trunk out)")
    return ""
