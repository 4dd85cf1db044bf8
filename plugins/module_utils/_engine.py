# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One call of tap_device: parameters -> lock -> world -> plan -> apply -> report.

  1. ``parse_task`` turns parameters into specs (_spec).
  2. Under the registry lock (_registry), the devices the task names are looked up in the
     namespaces it touches (_world: by name, not by listing every link); what an
     interrupted run or a lost registry left is taken into the ledger (_ledger).
  3. The planner (_plan) decides the actions; names it did not know are looked up and it
     plans again. Check mode stops here and reports them.
  4. The applier (_apply) carries them out and records them; the devices it touched are
     read back, and the result and the diff are read from the actions (_results).

Whole namespaces are listed only where no lookup by name answers: a recovery scan (see
``_scan_reason``), a template's first counter, and link groups for a bulk removal. A run
that changes one device among 30 000 costs about what it costs among 100.
"""

from __future__ import annotations

import os
import traceback

from ansible_collections.netdev.tuntap.plugins.module_utils import _world
from ansible_collections.netdev.tuntap.plugins.module_utils._actions import Kind
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _hostside
from ansible_collections.netdev.tuntap.plugins.module_utils._ledger import Recovery
from ansible_collections.netdev.tuntap.plugins.module_utils._apply import Applier, ApplyError
from ansible_collections.netdev.tuntap.plugins.module_utils._device import MACVTAP
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._chardev import CharDevError, sweep_nodes
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._links import LinkError
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import (
    NetnsError, missing_netns_error, netns_exists, remember_host)
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._ovs import Ovs, OvsError
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._tun import TunError
from ansible_collections.netdev.tuntap.plugins.module_utils._plan import (
    Planner, PlanError, lease_namespaces, lookups, ovs_db_of, port_needs)
from ansible_collections.netdev.tuntap.plugins.module_utils._names import InvalidName, validate_name
from ansible_collections.netdev.tuntap.plugins.module_utils._nodes import node_dir
from ansible_collections.netdev.tuntap.plugins.module_utils._registry import Registry, RegistryError
from ansible_collections.netdev.tuntap.plugins.module_utils._results import report
from ansible_collections.netdev.tuntap.plugins.module_utils._spec import SpecError, parse_task

CAP_NET_ADMIN = 12
# How many names after a template's counter are looked up with the names a task gives; a plan
# that needs more asks for them (each round asks for WINDOW_GROWTH times as many).
WINDOW = 64
WINDOW_GROWTH = 4
# After this many rounds of look-ups a namespace is read whole instead (a template whose next
# names are nearly all taken by devices the registry does not know).
MAX_LOOKUP_ROUNDS = 3


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


class _Snapshot:
    """The world of one run and what its recovery took in: read by name, read whole on demand."""

    def __init__(self, task, registry, world, others: set):
        self.task = task
        self.registry = registry
        self.world = world
        self.others = others
        self.recovery = None   # Recovery, once the namespaces were scanned

    @property
    def orphans(self) -> list:
        return self.recovery.orphans if self.recovery is not None else []

    def scan_if_needed(self, found) -> None:
        """Scan (``recover``) when the registry or the links ``found`` call for it."""
        if self.recovery is None and _scan_reason(self.task, self.registry, found) is not None:
            self.recover()

    def recover(self) -> None:
        """Read the namespaces whole and take in what an interrupted run or a lost registry left.

        Adopting marked devices needs every marked device of the namespace, and nothing but a
        full list finds a device by its mark: this is the dump a recovery costs.
        """
        task, ledger, world = self.task, self.registry.ledger, self.world
        _world.read_whole(world, [task.netns] + sorted(self.others, key=str))
        # What recovery looks at besides the target: the namespaces of an interrupted run's devices
        # and of the leases that marked devices here carry.
        extra = ledger.recovery_namespaces(world.devices(task.netns)) - self.others - {task.netns}
        _world.read_whole(world, sorted(extra, key=str))
        self.recovery = ledger.recover(world.devices(task.netns), task.netns, self.registry.recovered,
                                       self.registry.path, hold=task.reuse_delay,
                                       elsewhere=lambda netns: world.devices(netns) if world.whole(netns) else None)

    def look_up(self, unknown, unread, rounds: int) -> None:
        """Look up the names a plan did not know; read whole the namespaces it needs whole."""
        wanted: dict = {}
        for netns, name in unknown:
            wanted.setdefault(netns, set()).add(name)
        unread = set(unread)
        if rounds >= MAX_LOOKUP_ROUNDS:
            unread.update(wanted)   # a dense range: one list answers what many rounds would not
        _world.read_whole(self.world, sorted(unread, key=str))
        found = _world.look_up(self.world, {netns: names for netns, names in wanted.items() if netns not in unread})
        if self.world.ipv6 is not None:
            _world.read_ports(self.world, {"ipv6"}, None)
        self.scan_if_needed(found)


def _scan_reason(task, registry, found) -> str | None:
    """Why this run must list the target namespace whole and recover, or None.

    Marked devices that the registry does not record are left by a run that was interrupted
    (it recorded an intent before creating), or by a registry that was lost: rebuilt (moved
    aside, or missing beside its previous generation), or gone with no previous generation,
    which leaves a registry without any lease in the namespace. Any device looked up that
    carries this registry's mark (or one from before registries had ids) for a lease the
    registry does not bind to it is such a device too. Otherwise the registry knows every
    device it made, and no run needs the list.
    """
    ledger = registry.ledger
    if registry.recovered:
        return "the registry was rebuilt"
    if ledger.intent:
        return "a run was interrupted"
    if not ledger.has_lease_in(task.netns):
        return "the registry holds no lease in this namespace"
    for netns, device in found:
        mark = device.mark
        if mark is None or mark["lease"] is None or device.managed_kind is None or ledger.foreign(mark):
            continue
        record = ledger.lease(mark["lease"])
        if record is None or record.get("netns") != netns or record["name"] != device.name:
            return "device %r carries a lease the registry does not bind to it" % device.name
    return None


def _plan(snapshot: _Snapshot) -> tuple:
    """(planner, actions) from a planner that knows every name it asked about, and has seen the
    holders of every device it deletes.

    Names the planner did not know are looked up (a template's window of next names grows
    each round) and it plans again; planning is pure and cheap. Holders are read from /proc
    only when a plan deletes something, and only for the devices it deletes; when they can
    change the plan (a holder found, or a refusal the planner put off until it knows the PIDs,
    or an error that an assumed deletion may have caused), it is planned again. Each round
    looks up names or devices not looked up before, so this ends.
    """
    task, world = snapshot.task, snapshot.world
    window, rounds = WINDOW, 0
    while True:
        planner = Planner(task, snapshot.registry.ledger, world, orphans=snapshot.orphans, window=window)
        try:
            actions, error = planner.plan(), None
        except PlanError as exc:
            actions, error = None, exc
        if planner.unknown or planner.unread:
            rounds += 1
            snapshot.look_up(planner.unknown, planner.unread, rounds)
            window *= WINDOW_GROWTH
            continue
        if not planner.unchecked:
            break
        _world.add_holders(world, planner.unchecked)
        if (error is None and not planner.refusal_pending
                and not any(world.holders_of(netns, name) for netns, name in planner.unchecked)):
            break
    if error is not None:
        raise error
    return planner, actions


def _deleting(actions) -> list:
    """The namespaces a bulk removal of ``actions`` deletes devices in."""
    return sorted({a.removal.netns for a in actions if a.kind is Kind.DELETE and a.removal is not None
                   and a.removal.device is not None}, key=str)


def _run_task(task, check_mode: bool, diff: bool) -> dict:
    with Registry(task.registry, check_mode=check_mode, lock_timeout=task.lock_timeout) as registry:
        ledger = registry.ledger
        ledger.drop_old_releases(task.reuse_delay)
        others = lease_namespaces(task, ledger)
        world = _world.open_world(task.netns, sorted(others, key=str))
        found = _world.look_up(world, lookups(task, ledger, WINDOW))
        snapshot = _Snapshot(task, registry, world, others)
        snapshot.scan_if_needed(found)
        needs = port_needs(task, ledger, world)
        ovs = Ovs(ovs_db_of(task, ledger), task.ovs_timeout)
        _world.read_ports(world, needs, ovs)
        try:
            planner, actions = _plan(snapshot)
        except PlanError as exc:
            adopted = snapshot.recovery.adopted if snapshot.recovery is not None else []
            if (registry.recovered or adopted) and not check_mode:
                # The bad file is already moved aside, or devices were adopted: keep what was rebuilt.
                registry.save()
            if adopted:
                raise ApplyError("%s (devices adopted from an interrupted run were recorded: %s)"
                                 % (exc, ", ".join(sorted(adopted))), changed=True)
            raise
        recovery = snapshot.recovery or Recovery()
        before = world.devices(task.netns)
        warnings = registry.warnings + recovery.warnings + planner.warnings
        # The host side of the devices the task keeps or makes, for the results and the diff (the plan
        # only needed it when the task gives ipv6).
        present = [a.name for a in actions if a.spec is not None and not a.kind.removes and a.name in before]
        world.ipv6 = dict(_world.read_ipv6(task.netns, present) if present else {}, **(world.ipv6 or {}))
        if check_mode:
            return report(task, actions, before, before, warnings, diff, predicted=True, ports=(world, world),
                          adopted=recovery.adopted)
        applier = Applier(task, ledger, registry.save)
        # A bulk removal puts the devices into a link group no other device is in, and deletes the
        # group: which groups are free only a full list says (a group shared by mistake would take
        # other devices with it). Read only when the plan deletes.
        applier.groups_in_use = {netns: _world.read_link_groups(netns) for netns in _deleting(actions)
                                 if world.exists(netns)}
        try:
            applier.apply(actions)  # raises ApplyError, with what was changed, when an action fails
        except ApplyError as exc:
            if recovery.adopted and not exc.changed:
                raise ApplyError("%s (devices adopted from an interrupted run: %s)"
                                 % (exc, ", ".join(sorted(recovery.adopted))), changed=True, detail=exc.detail)
            raise
        after_world = world
        # The devices the task made or kept, by their final names (a name taken meanwhile moves on).
        made = [a.name for a in actions if a.spec is not None and not a.kind.removes]
        try:
            if applier.changed:
                # Read back only what the run touched (and the links those refer to).
                after_world = _world.open_world(task.netns)
                _world.look_up(after_world, {task.netns: made})
                _world.read_ports(after_world, needs, ovs)
                # The host side of every device the task made or kept, read back for the results.
                after_world.ipv6 = dict(after_world.ipv6 or {}, **_world.read_ipv6(task.netns, made))
            warnings += _sweep_stale_nodes(task.netns, after_world)
        except (LinkError, NetnsError, CharDevError, OSError) as exc:
            raise ApplyError("the devices were changed and recorded, but reading them back failed: %s"
                             % exc, changed=True)
        after = after_world.devices(task.netns)
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


def _sweep_stale_nodes(netns, world) -> list:
    """Remove the target namespace's macvtap nodes whose device is gone or has other numbers.

    The nodes there are ours, one per macvtap: their names are looked up, not the namespace
    listed, to learn which still belong to a present macvtap with the same numbers.
    """
    directory = node_dir(netns)
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        return ["listing the macvtap device nodes in %s failed: %s; the devices themselves were changed and "
                "recorded" % (directory, exc.strerror or exc)]
    # Only a valid interface name can be a device's: anything else there is no macvtap's node.
    names = [entry for entry in entries if _valid_name(entry)]
    keep = {}
    if names:
        _world.look_up(world, {netns: names})
        links = world.devices(netns)
        keep = {name: links[name].macvlan.chardev for name in names
                if name in links and links[name].kind == MACVTAP and links[name].macvlan is not None
                and links[name].macvlan.chardev is not None}
    try:
        removed = sweep_nodes(directory, keep)
    except CharDevError as exc:
        return ["%s; the devices themselves were changed and recorded" % exc]
    if not removed:
        return []
    return ["removed %d stale macvtap device node(s) in %s whose device was deleted outside this module: %s"
            % (len(removed), directory, ", ".join(removed))]


def _valid_name(name: str) -> bool:
    try:
        validate_name(name)
    except InvalidName:
        return False
    return True
