# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One call of tap_device: parameters -> plan -> apply -> result.

The data flow:
  1. ``parse_task`` turns parameters into DeviceSpecs (all validation that needs no
     system state, for every item, before anything changes).
  2. Under the registry lock, inside the target namespace, one netlink dump gives the
     devices present. Devices left by an interrupted run are adopted.
  3. ``Planner`` decides an Action per item (create / reconcile / delete / nothing),
     allocating numbers in memory. Check mode stops here and reports the plan.
  4. ``Applier`` records an intent in the registry when devices will be created, runs
     the actions in input order, and commits the registry once at the end — also
     when an item fails, so what was done is never lost.
"""

from __future__ import annotations

import contextlib
import os
import socket
import traceback

from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _tun
from ansible_collections.netdev.tuntap.plugins.module_utils._allocator import RangeExhausted
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._links import Links, LinkError
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import encode_mark
from ansible_collections.netdev.tuntap.plugins.module_utils._names import (
    InvalidName, TemplateMatcher, validate_template)
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import (
    NetnsError, entered, missing_netns_error, netns_exists)
from ansible_collections.netdev.tuntap.plugins.module_utils._plan import Planner, PlanError
from ansible_collections.netdev.tuntap.plugins.module_utils._registry import Registry, RegistryError
from ansible_collections.netdev.tuntap.plugins.module_utils._results import device_result, settings_diff
from ansible_collections.netdev.tuntap.plugins.module_utils._spec import ID_LIMIT, SpecError, parse_task

CAP_NET_ADMIN = 12


class TapError(Exception):
    """Any failure the user can cause; str() is the message for failed: true.

    ``changed`` is true when a batch failed part way, after earlier items were applied.
    """

    def __init__(self, message: str, changed: bool = False, detail: str | None = None):
        super().__init__(message)
        self.changed = changed
        self.detail = detail  # a traceback, for an error nobody foresaw (shown with -vvv)


def _has_net_admin() -> bool:
    # Root without CAP_NET_ADMIN (a container, a dropped bounding set) exists: ask for the capability.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def run(params: dict, check_mode: bool = False, diff: bool = False) -> dict:
    """Run one tap_device task; raises TapError for anything the user can cause."""
    try:
        task = parse_task(params)
        if not _has_net_admin():
            raise TapError("tap_device needs root or CAP_NET_ADMIN to create and change tun/tap devices "
                           "(running as uid %d without CAP_NET_ADMIN); use become: true" % os.geteuid())
        netns_gone = task.netns is not None and not netns_exists(task.netns)
        if netns_gone and not all(spec.state == "absent" and spec.lease for spec in task.devices):
            raise missing_netns_error(task.netns)
        if not check_mode and not os.path.isdir(os.path.dirname(os.path.abspath(task.registry))):
            # First use of this registry: plan once without touching the disk, so a request that
            # fails leaves no directory or lock file behind.
            _run_task(task, check_mode=True, diff=False, netns_gone=netns_gone)
        return _run_task(task, check_mode, diff, netns_gone)
    except (SpecError, PlanError, RegistryError, NetnsError, LinkError, _tun.TunError) as exc:
        raise TapError(str(exc))
    except OSError as exc:
        # The registry's disk (full, read-only, I/O error) or a system call we did not expect to fail.
        where = " (%s)" % exc.filename if exc.filename else ""
        raise TapError("system error%s: %s" % (where, exc.strerror or exc))
    except TapError:
        raise
    except Exception as exc:  # pylint: disable=broad-exception-caught
        # A defect, not a user error: still a failed task with a message, never a bare traceback.
        raise TapError("unexpected internal error (%s: %s); please report it with the task's arguments"
                       % (type(exc).__name__, exc), detail=traceback.format_exc())


@contextlib.contextmanager
def _device_session(netns: str | None, netns_gone: bool):
    """Links in the target namespace; none when it is gone (only leases are released then)."""
    if netns_gone:
        yield None
        return
    with entered(netns), Links() as links:
        yield links


def _run_task(task, check_mode: bool, diff: bool, netns_gone: bool) -> dict:
    with Registry(task.registry, check_mode=check_mode) as registry:
        registry.drop_old_releases(task.reuse_delay)
        with _device_session(task.netns, netns_gone) as links:
            present = links.dump() if links is not None else {}
            warnings = list(registry.warnings)
            warnings += adopt_orphans(registry, present, task.netns)
            planner = Planner(task, registry.state, present, registry.clock)
            try:
                actions = planner.plan()
            except PlanError:
                if registry.recovered and not check_mode:
                    # The bad file is already moved aside: keep what was rebuilt from it.
                    registry.save()
                raise
            warnings += planner.warnings
            if check_mode:
                return _report(task, actions, present, warnings, diff, predicted=True)
            applier = Applier(task, registry, links, planner)
            try:
                applier.apply(actions)
            finally:
                after = links.dump() if applier.executed and links is not None else present
            return _report(task, actions, after, warnings + applier.warnings, diff, predicted=False,
                           before=present)


def adopt_orphans(registry: Registry, present: dict, netns: str | None) -> list:
    """Take into the registry the devices an interrupted run made, and repair after recovery.

    Two sources: the intent an interrupted run recorded before making devices, and the
    mark every managed device carries in its alias. After a recovery the marks are
    newer than the previous generation, so they win; otherwise only unknown leases
    are adopted, and counters only ever go up.
    """
    state = registry.state
    leases = state["leases"]
    held = {(rec.get("netns"), rec["name"]): key for key, rec in leases.items()}
    adopted = []

    def adopt(lease, name, template, number, device):
        # The planner trusts only devices marked with their lease; an unmarked device named in
        # an interrupted run's intent is ours (made by an older release that marked after
        # TUNSETPERSIST) and gets its mark now.
        device.mark = {"lease": lease, "template": template}
        if template is not None and number is not None:
            registry.raise_counter(template, number)
        leases[lease] = {"name": name, "template": template, "id": number, "netns": netns,
                         "mode": device.tun.mode, "multi_queue": device.tun.multi_queue,
                         "since": registry.clock()}
        held[(netns, name)] = lease
        adopted.append(name)

    warnings = []
    intent = state.get("intent")
    if intent:
        for item in intent.get("items", []):
            template, number = item.get("template"), item.get("id")
            if isinstance(template, str) and isinstance(number, int):
                registry.raise_counter(template, number)
            lease, name = item.get("lease"), item.get("name")
            device = present.get(name) if isinstance(name, str) else None
            if (lease and item.get("netns") == netns and lease not in leases and device is not None
                    and device.tun is not None and (device.mark is None or device.mark["lease"] == lease)
                    and (netns, name) not in held):
                adopt(lease, name, template, number, device)
        state["intent"] = None
        warnings.append("registry %s records a run that was interrupted before it finished; its devices "
                        "were checked and counters kept above the numbers it used" % registry.path)
    for device in present.values():
        mark = device.mark
        if mark is None or device.tun is None:
            continue
        template = mark["template"]
        number = _number_in(template, device.name)
        if registry.recovered and number is not None:
            registry.raise_counter(template, number)
        lease = mark["lease"]
        if lease is None:
            continue
        record = leases.get(lease)
        stale = (record is not None and registry.recovered and record.get("netns") == netns
                 and record["name"] != device.name)
        if (record is None or stale) and held.get((netns, device.name), lease) == lease:
            adopt(lease, device.name, template, number, device)
    if adopted:
        warnings.append("adopted %d device(s) that the registry did not record (left by an interrupted "
                        "run or a lost registry): %s" % (len(adopted), ", ".join(sorted(adopted))))
    return warnings


def _number_in(template: str | None, name: str) -> int | None:
    if template is None:
        return None
    try:
        validate_template(template, 0)
    except InvalidName:
        return None
    return TemplateMatcher(template, ID_LIMIT).number(name)


class Applier:
    """Carries out a plan under the registry lock."""

    def __init__(self, task, registry: Registry, links: Links, planner: Planner):
        self.task = task
        self.registry = registry
        self.links = links
        self.planner = planner
        self.executed = False
        self.executed_any = False
        self.replaced_for = None  # the action whose old device was removed before it failed
        self.warnings: list = []

    def apply(self, actions: list) -> None:
        creating = [a for a in actions if a.kind == "create"]
        self.planner.store_counters()
        if creating:
            self.registry.state["intent"] = {
                "netns": self.task.netns, "started": self.registry.clock(),
                "items": [{"lease": a.lease, "name": a.name, "template": a.template, "id": a.number,
                           "netns": self.task.netns} for a in creating]}
            self.registry.save()
        failed = None
        for action in actions:
            if not action.changed:
                continue
            try:
                self.executed = True
                self._execute(action)
                self.executed_any = True
            except (LinkError, _tun.TunError, NetnsError, OSError) as exc:
                failed = (action, exc, None)
                break
            except Exception as exc:  # pylint: disable=broad-exception-caught
                # Whatever went wrong, what the earlier items did must reach the registry.
                failed = (action, exc, traceback.format_exc())
                break
        self.registry.state["intent"] = None
        self.planner.store_counters()
        self.registry.save()
        if failed:
            action, exc, trace = failed
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if trace is not None:
                detail = "unexpected internal error (%s: %s)" % (type(exc).__name__, detail)
            done = "; the items before it were applied and recorded" if self.task.batch else ""
            raise TapError("%s failed: %s. %s%s" % (action.label(), detail, self._left_behind(action), done),
                           changed=self.executed_any, detail=trace)

    def _left_behind(self, action) -> str:
        """What a failed action leaves, in words (the registry already records it)."""
        if action.kind == "create":
            if self.replaced_for is action:
                return ("The device it replaces was removed and its lease released; no new device was "
                        "left behind")
            return "No device was left behind for it"
        if action.kind == "reconcile":
            return "The device is kept; some of its settings may already be changed: run the task again"
        return "The device was not removed and its lease is kept"

    # -- one action ------------------------------------------------------
    def _execute(self, action) -> None:
        if action.replaces is not None:
            self._remove(action.replaces)
            self.replaced_for = action
            self.executed_any = True
        if action.kind == "create":
            self._create(action)
        elif action.kind == "reconcile":
            self._reconcile(action)
        elif action.kind == "delete":
            self._remove(action.removal)
        elif action.kind == "release":
            self._forget(action.removal)

    def _create(self, action) -> None:
        spec = action.spec
        flags = _tun.tun_flags(spec.mode, spec.multi_queue, spec.vnet_hdr, spec.packet_info)
        owner, group = spec.owner, spec.group
        if owner is None and group is None:
            owner = 0  # an ownerless tap can be attached by any local user: default to root

        def configure(confirmed: str) -> None:
            # Runs before TUNSETPERSIST: a device that survives always carries its mark.
            self.links.configure(confirmed, socket.if_nametoindex(confirmed), mtu=spec.mtu,
                                 mac_address=spec.mac_address, master=action.master, up=spec.up,
                                 alias=encode_mark(action.lease, action.template))

        while True:
            try:
                action.name = _tun.create(action.name, flags, owner, group, configure)
                break
            except _tun.NameTaken:
                if action.allocator is None:
                    raise
                # Someone outside this registry made that name since our dump: take the next.
                action.allocator.block(action.number)
                try:
                    action.number = action.allocator.take()
                except RangeExhausted:
                    raise _tun.TunError("no free name left for template %r: the last free one, %r, was "
                                        "taken by a device made outside this registry meanwhile"
                                        % (action.template, action.name))
                action.name = action.allocator.render(action.number)
        # In use again: its old release record no longer describes it.
        self.registry.state["released"].pop(action.name, None)
        if action.lease is not None:
            self.planner.record_lease(action)

    def _reconcile(self, action) -> None:
        changes = action.changes
        device = action.device
        if "owner" in changes or "group" in changes:
            tun = device.tun
            flags = _tun.tun_flags(tun.mode, tun.multi_queue, tun.vnet_hdr, tun.packet_info)
            _tun.set_owner_group(device.name, flags, changes.get("owner"), changes.get("group"))
        self.links.configure(device.name, device.index, mtu=changes.get("mtu"),
                             mac_address=changes.get("mac_address"), master=changes.get("master"),
                             up=changes.get("up"), alias=changes.get("alias"))
        if action.lease is not None:
            self.planner.record_lease(action)

    def _remove(self, removal) -> None:
        """Delete a device (in whatever namespace it lives) and release its name and lease."""
        if removal.device is not None:
            if removal.netns == self.task.netns:
                self.links.delete(removal.name, removal.device.index)
            else:
                with entered(removal.netns), Links() as links:
                    links.delete(removal.name, removal.device.index)
        self._forget(removal)

    def _forget(self, removal) -> None:
        if removal.release_name:
            self.registry.release(removal.name, removal.template, removal.netns, self.task.reuse_delay)
        if removal.lease is not None:
            self.registry.state["leases"].pop(removal.lease, None)


def _report(task, actions, present, warnings, diff, predicted, before=None) -> dict:
    by_index = {link.index: link.name for link in present.values()}
    before = before or present
    before_by_index = {link.index: link.name for link in before.values()}
    devices = []
    diffs = []
    for action in actions:
        if action.spec is None:
            continue  # prune actions are reported in 'pruned', not as items
        device = present.get(action.name)
        devices.append(device_result(action, device, by_index, task.netns, predicted))
        if diff:
            old = before.get(action.device.name) if action.device is not None else None
            diffs.append(settings_diff(action, old, before_by_index, devices[-1]))
    pruned = [a.removal.lease for a in actions if a.spec is None]
    changed = any(a.changed for a in actions)
    if predicted and any(a.allocator is not None and a.kind == "create" for a in actions):
        warnings.append("check mode: predicted names may differ in a real run if another run allocates "
                        "from the same registry in the meantime")
    result = {"changed": changed, "warnings": warnings}
    if task.batch:
        result["devices"] = devices
        result["pruned"] = pruned
        if diff:
            result["diff"] = diffs
    else:
        result.update(devices[0])
        if diff:
            result["diff"] = diffs[0]
    return result
