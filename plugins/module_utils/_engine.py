# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One call of tap_device: parameters -> lock -> world -> plan -> apply -> report.

  1. ``parse_task`` turns parameters into specs (_spec).
  2. Under the registry lock (_registry), a snapshot of the namespaces the task touches
     (_world) is taken; what an interrupted run or a lost registry left is taken into
     the ledger (_ledger).
  3. The planner (_plan) decides the actions. Check mode stops here and reports them.
  4. The applier (_apply) carries them out and records them; the result and the diff
     are read from the actions (_results).
"""

from __future__ import annotations

import os
import traceback

from ansible_collections.netdev.tuntap.plugins.module_utils import _world
from ansible_collections.netdev.tuntap.plugins.module_utils._actions import Kind
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _hostside
from ansible_collections.netdev.tuntap.plugins.module_utils._apply import Applier, ApplyError
from ansible_collections.netdev.tuntap.plugins.module_utils._device import MACVTAP
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._chardev import CharDevError, sweep_nodes
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._links import LinkError
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import (
    NetnsError, missing_netns_error, netns_exists, remember_host)
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._ovs import Ovs, OvsError
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._tun import TunError
from ansible_collections.netdev.tuntap.plugins.module_utils._plan import (
    Planner, PlanError, lease_namespaces, ovs_db_of, port_needs)
from ansible_collections.netdev.tuntap.plugins.module_utils._nodes import node_dir
from ansible_collections.netdev.tuntap.plugins.module_utils._registry import Registry, RegistryError
from ansible_collections.netdev.tuntap.plugins.module_utils._results import report
from ansible_collections.netdev.tuntap.plugins.module_utils._spec import SpecError, parse_task

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
    remember_host()  # before anything enters another namespace
    try:
        task = parse_task(params)
        if not _has_net_admin():
            raise TapError("tap_device needs root or CAP_NET_ADMIN to create and change tun/tap devices "
                           "(running as uid %d without CAP_NET_ADMIN); use become: true" % os.geteuid())
        if not netns_exists(task.netns) and not all(s.state == "absent" and s.lease for s in task.devices):
            raise missing_netns_error(task.netns)
        if not check_mode and not os.path.isdir(os.path.dirname(os.path.abspath(task.registry))):
            # First use of this registry: plan once without touching the disk, so a request that
            # fails leaves no directory or lock file behind.
            _run_task(task, check_mode=True, diff=False)
        return _run_task(task, check_mode, diff)
    except ApplyError as exc:
        raise TapError(str(exc), changed=exc.changed, detail=exc.detail)
    except (SpecError, PlanError, RegistryError, NetnsError, LinkError, TunError, CharDevError, OvsError) as exc:
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


def _plan(task, ledger, world, orphans=()) -> tuple:
    """(planner, actions) from a planner that has seen the holders of every device it deletes.

    Holders are read from /proc only when a plan deletes something, and only for the devices
    it deletes; when they can change the plan (a holder found, or a refusal the planner put
    off until it knows the PIDs, or an error that an assumed deletion may have caused), it is
    planned again (planning is pure and cheap). Each round looks up devices not looked up
    before, so this ends.
    """
    while True:
        planner = Planner(task, ledger, world, orphans=orphans)
        try:
            actions, error = planner.plan(), None
        except PlanError as exc:
            actions, error = None, exc
        if not planner.unchecked:
            break
        _world.add_holders(world, planner.unchecked)
        if (error is None and not planner.refusal_pending
                and not any(world.holders_of(netns, name) for netns, name in planner.unchecked)):
            break
    if error is not None:
        raise error
    return planner, actions


def _run_task(task, check_mode: bool, diff: bool) -> dict:
    with Registry(task.registry, check_mode=check_mode, lock_timeout=task.lock_timeout) as registry:
        ledger = registry.ledger
        ledger.drop_old_releases(task.reuse_delay)
        others = lease_namespaces(task, ledger)
        world = _world.gather(task.netns, sorted(others, key=str))
        # What recovery looks at besides the target: the namespaces of an interrupted run's devices
        # and of the leases that marked devices here carry.
        extra = ledger.recovery_namespaces(world.devices(task.netns)) - others - {task.netns}
        if extra:
            world = _world.gather(task.netns, sorted(others | extra, key=str))
        needs = port_needs(task, ledger, world)
        ovs = Ovs(ovs_db_of(task, ledger), task.ovs_timeout)
        _world.read_ports(world, needs, ovs)
        before = world.devices(task.netns)
        recovery = ledger.recover(before, task.netns, registry.recovered, registry.path, hold=task.reuse_delay,
                                  elsewhere=lambda netns: world.devices(netns) if netns in world.links else None)
        warnings = registry.warnings + recovery.warnings
        try:
            planner, actions = _plan(task, ledger, world, recovery.orphans)
        except PlanError as exc:
            if (registry.recovered or recovery.adopted) and not check_mode:
                # The bad file is already moved aside, or devices were adopted: keep what was rebuilt.
                registry.save()
            if recovery.adopted:
                raise ApplyError("%s (devices adopted from an interrupted run were recorded: %s)"
                                 % (exc, ", ".join(sorted(recovery.adopted))), changed=True)
            raise
        warnings += planner.warnings
        # The host side of the devices the task keeps or makes, for the results and the diff (the plan
        # only needed it when the task gives ipv6).
        present = [a.name for a in actions if a.spec is not None and not a.kind.removes and a.name in before]
        world.ipv6 = dict(_world.read_ipv6(task.netns, present) if present else {}, **(world.ipv6 or {}))
        if check_mode:
            return report(task, actions, before, before, warnings, diff, predicted=True, ports=(world, world),
                          adopted=recovery.adopted)
        applier = Applier(task, ledger, registry.save)
        applier.groups_in_use = world.link_groups()
        try:
            applier.apply(actions)  # raises ApplyError, with what was changed, when an action fails
        except ApplyError as exc:
            if recovery.adopted and not exc.changed:
                raise ApplyError("%s (devices adopted from an interrupted run: %s)"
                                 % (exc, ", ".join(sorted(recovery.adopted))), changed=True, detail=exc.detail)
            raise
        after_world = world
        try:
            if applier.changed:
                after_world = _world.World(task.netns, links={task.netns: _world.read_links(task.netns)})
                _world.read_ports(after_world, needs, ovs)
                # The host side of every device the task made or kept, read back for the results.
                made = [a.name for a in actions if a.spec is not None and not a.kind.removes]
                after_world.ipv6 = dict(after_world.ipv6 or {}, **_world.read_ipv6(task.netns, made))
        except (LinkError, NetnsError, CharDevError, OSError) as exc:
            raise ApplyError("the devices were changed and recorded, but reading them back failed: %s"
                             % exc, changed=True)
        after = after_world.devices(task.netns)
        warnings += _sweep_stale_nodes(task.netns, after)
        warnings += confirm_macs(task, actions, after)
        return report(task, actions, before, after, warnings, diff, predicted=False, ports=(world, after_world),
                      adopted=recovery.adopted)


def confirm_macs(task, actions, after: dict) -> list:
    """Warnings for MACs that did not stay as set: something on the host (udev's MACAddressPolicy,
    a network manager) rewrote the address, or the kernel does not mark it as set by userspace."""
    warnings = []
    for action in actions:
        spec = action.spec
        if spec is None or spec.mac_address is None or action.kind.removes:
            continue
        if action.kind is not Kind.CREATE and "mac_address" not in action.changes:
            continue
        device = after.get(action.name)
        if device is None:
            continue
        if (device.mac_address or "").lower() != spec.mac_address:
            warnings.append("%s: the MAC address was set to %s, but the device now has %s: something on the host "
                            "(udev's MACAddressPolicy, a network manager) rewrote it; the next run sets it again"
                            % (action.label(), spec.mac_address, device.mac_address))
            continue
        if task.netns is None:
            # sysfs shows only the namespace the module started in.
            assigned = _hostside.addr_assign_type(device.name, device.index)
            if assigned is not None and assigned != _hostside.NET_ADDR_SET:
                warnings.append("%s: the kernel does not record the MAC address %s of %r as set by userspace "
                                "(addr_assign_type %d), so udev may rewrite it" % (
                                    action.label(), spec.mac_address, device.name, assigned))
    return warnings


def _sweep_stale_nodes(netns, links: dict) -> list:
    """Remove the target namespace's macvtap nodes whose device is gone or has other numbers."""
    keep = {name: link.macvlan.chardev for name, link in links.items()
            if link.kind == MACVTAP and link.macvlan is not None and link.macvlan.chardev is not None}
    try:
        removed = sweep_nodes(node_dir(netns), keep)
    except CharDevError as exc:
        return ["%s; the devices themselves were changed and recorded" % exc]
    if not removed:
        return []
    return ["removed %d stale macvtap device node(s) in %s whose device was deleted outside this module: %s"
            % (len(removed), node_dir(netns), ", ".join(removed))]
