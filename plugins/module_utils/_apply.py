# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Carrying out a plan: actions -> kernel + ledger, under the registry lock.

Actions run in input order. Each one changes the kernel first and then records its
effect in the ledger with the same ledger code the planner used; the ledger is saved
once at the end, also when an action fails, so what was done is never lost. Before
devices are created an intent is saved, so a run killed half way is recognised.
"""

from __future__ import annotations

import socket
import traceback

from ansible_collections.netdev.tuntap.plugins.module_utils._actions import Kind
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _tun
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._links import LinkError, Links
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import NetnsError, entered
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import encode_mark
from ansible_collections.netdev.tuntap.plugins.module_utils._plan import PlanError, take_next_name

# What a failing action may raise that says what went wrong in words a user can act on.
EXPECTED_ERRORS = (LinkError, _tun.TunError, NetnsError, PlanError, OSError)


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
            for action in actions:
                if not action.changed:
                    continue
                try:
                    self._execute(action)
                except EXPECTED_ERRORS as exc:
                    failed = (action, exc, None)
                    break
                except Exception as exc:  # pylint: disable=broad-exception-caught
                    # Whatever went wrong, what the earlier items did must reach the registry.
                    failed = (action, exc, traceback.format_exc())
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
        if action.kind is Kind.CREATE:
            self._create(action)
        elif action.kind is Kind.RECONCILE:
            self._reconcile(action)
        elif action.kind is Kind.DELETE:
            self._delete(action.removal)
        self.ledger.record(action, hold)

    def _create(self, action) -> None:
        spec = action.spec
        flags = _tun.tun_flags(spec.mode, spec.multi_queue, spec.vnet_hdr, spec.packet_info)
        owner, group = spec.owner, spec.group
        if owner is None and group is None:
            owner = 0  # an ownerless tap can be attached by any local user: default to root
        with entered(action.netns):
            links = self._links_in(action.netns)

            def configure(confirmed: str) -> None:
                # Runs before TUNSETPERSIST: a device that survives always carries its mark.
                links.configure(confirmed, socket.if_nametoindex(confirmed), mtu=spec.mtu,
                                mac_address=spec.mac_address, master=action.master, up=spec.up,
                                alias=encode_mark(action.lease, action.template, self.ledger.registry_id))

            while True:
                try:
                    action.name = _tun.create(action.name, flags, owner, group, configure)
                    break
                except _tun.NameTaken:
                    if not action.allocated:
                        raise
                    # Someone outside this registry made that name since the snapshot: take the next.
                    take_next_name(action)
        self.changed = True

    def _reconcile(self, action) -> None:
        changes = action.changes
        device = action.device
        with entered(action.netns):
            if "owner" in changes or "group" in changes:
                tun = device.tun
                flags = _tun.tun_flags(tun.mode, tun.multi_queue, tun.vnet_hdr, tun.packet_info)
                _tun.set_owner_group(device.name, flags, changes.get("owner"), changes.get("group"))
                self.changed = True
            if changes.keys() - {"owner", "group"}:
                self._links_in(action.netns).configure(
                    device.name, device.index, mtu=changes.get("mtu"), mac_address=changes.get("mac_address"),
                    master=changes.get("master"), up=changes.get("up"), alias=changes.get("alias"))
                self.changed = True

    def _delete(self, removal) -> None:
        """Delete the device of ``removal`` in whatever namespace it lives (if there is one)."""
        if removal.device is None:
            return
        with entered(removal.netns):
            self._links_in(removal.netns).delete(removal.name, removal.device.index)
        self.changed = True
