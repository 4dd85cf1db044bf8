# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry's content, as an object that keeps its own invariants. Pure.

This is the only code that changes registry state: binding and unbinding leases,
releasing names with their hold, moving counters, recording and clearing an intent,
and adopting devices that carry our mark. The file around it (lock, load, recovery,
atomic save) is _registry's concern; the planner runs these same operations on a
scratch copy to see what each item leaves for the next, and the applier runs them on
the real ledger once the kernel has done its part.
"""

from __future__ import annotations

import copy

from ansible_collections.netdev.tuntap.plugins.module_utils._actions import Kind
from ansible_collections.netdev.tuntap.plugins.module_utils._names import (
    InvalidName, TemplateMatcher, validate_template)

SCHEMA_VERSION = 1
# What a lease records about its device besides the name: the ifindex, the boot it was made or
# last seen in (/proc/sys/kernel/random/boot_id) and its namespace's inode. Files written before
# these existed lack them: unknown, and then the device's mark alone decides.
IDENTITY_FIELDS = ("ifindex", "boot_id", "netns_inode")
# The largest number any template can hold in 15 bytes (a one-byte prefix leaves 14 digits);
# a mark's number is read with this bound, whatever max_id the task has.
ID_LIMIT = 2 ** 31 - 1


def empty_state(registry_id: str | None = None) -> dict:
    return {"version": SCHEMA_VERSION, "registry_id": registry_id, "counters": {}, "leases": {}, "released": {},
            "intent": None}


def _where(netns) -> str:
    return "netns %r" % netns if netns else "the host namespace"


class Recovery:
    """What ``Ledger.recover`` found: warnings, the devices it adopted, the orphans to delete."""

    def __init__(self):
        self.warnings: list = []
        self.adopted: list = []        # names of the devices bound to leases from their marks
        self.orphans: list = []        # (netns, device, why) of devices carrying this registry's mark
        self.unexplained: list = []    # legacy-marked devices that would be orphans: only reported
        self._seen: set = set()

    def adopt(self, netns, name: str) -> None:
        self.adopted.append(name)
        self._seen.discard((netns, name))
        self.orphans = [o for o in self.orphans if (o[0], o[1].name) != (netns, name)]

    def orphan(self, netns, device, mine: bool, why: str) -> None:
        if (netns, device.name) in self._seen:
            return
        self._seen.add((netns, device.name))
        (self.orphans if mine else self.unexplained).append((netns, device, why))


def number_in(template: str | None, name: str) -> int | None:
    """The number ``name`` carries for ``template`` (as the kernel writes it), or None."""
    if template is None:
        return None
    try:
        validate_template(template, 0)
    except InvalidName:
        return None
    return TemplateMatcher(template, ID_LIMIT).number(name)


class Ledger:
    """Counters, leases, released names and the intent of one registry.

    ``state`` is the document _registry reads and writes (docs/registry.md); ``clock``
    gives the time that release and binding records carry.
    """

    def __init__(self, state: dict, clock):
        self.state = state
        self.clock = clock
        self._holders = None  # (netns, name) -> lease, built on first use, dropped on every change

    def copy(self) -> "Ledger":
        """An independent ledger to plan on: its changes never reach this one."""
        return Ledger(copy.deepcopy(self.state), self.clock)

    # -- reading -----------------------------------------------------------
    @property
    def leases(self) -> dict:
        return self.state["leases"]

    def lease(self, key: str) -> dict | None:
        return self.state["leases"].get(key)

    def leases_under(self, prefix: str) -> list:
        return sorted(key for key in self.state["leases"] if key.startswith(prefix))

    def holder(self, netns: str | None, name: str) -> str | None:
        """The lease bound to device ``name`` in ``netns``, if any."""
        if self._holders is None:
            self._holders = {(rec.get("netns"), rec["name"]): key for key, rec in self.state["leases"].items()}
        return self._holders.get((netns, name))

    def counter(self, template: str) -> int | None:
        return self.state["counters"].get(template)

    def held_names(self, reuse_delay: int) -> set:
        """Names released less than ``reuse_delay`` seconds ago: not to be handed out.

        Records kept longer for tasks with a longer delay (see drop_old_releases) do not count.
        """
        now = self.clock()
        return {name for name, rec in self.state["released"].items() if now - rec["at"] < reuse_delay}

    @property
    def intent(self) -> dict | None:
        return self.state.get("intent")

    # -- changing ----------------------------------------------------------
    def bind(self, lease: str, name: str, template: str | None, number: int | None, netns: str | None,
             mode: str, multi_queue: bool, kind: str = "tuntap", identity: dict | None = None) -> None:
        """Bind ``lease`` to a device; the binding keeps its age while the name stays the same.

        ``kind`` is recorded for macvtap/macvlan only; a record without it is a tun/tap's.
        ``identity`` (IDENTITY_FIELDS, each optional) says which device it is: removal deletes
        a device only while it still matches. A field not known is left out of the record.
        """
        self._holders = None
        previous = self.state["leases"].get(lease)
        since = previous.get("since") if previous and previous["name"] == name else None
        record = {
            "name": name, "template": template, "id": number, "netns": netns, "mode": mode,
            "multi_queue": multi_queue, "since": self.clock() if since is None else since}
        if kind != "tuntap":
            record["kind"] = kind
        record.update((key, value) for key, value in (identity or {}).items()
                      if key in IDENTITY_FIELDS and value is not None)
        self.state["leases"][lease] = record

    def unbind(self, lease: str) -> None:
        self._holders = None
        self.state["leases"].pop(lease, None)

    def release(self, name: str, template: str | None, netns: str | None, hold: int,
                lease: str | None = None) -> None:
        """Hold ``name`` back: allocation skips it for ``hold`` seconds (or the task's reuse_delay).

        ``lease``: the lease released with it, remembered so that a leftover device still
        marked with it is never adopted back into the registry while the record is kept.
        """
        record = {"at": self.clock(), "template": template, "netns": netns, "hold": hold}
        if lease is not None:
            record["lease"] = lease
        self.state["released"][name] = record

    def reclaim(self, name: str) -> None:
        """``name`` is in use again: its old release record no longer describes it."""
        self.state["released"].pop(name, None)

    def drop_old_releases(self, reuse_delay: int) -> None:
        """Forget releases older than reuse_delay and older than the delay they were released with.

        Which records block an allocation is the allocating task's own reuse_delay; a record is
        kept as long as the task that released it asked, so one run with a short reuse_delay
        does not end the hold for later runs with a longer one.
        """
        now = self.clock()
        released = self.state["released"]
        for name in [n for n, rec in released.items() if now - rec["at"] >= max(reuse_delay, rec.get("hold") or 0)]:
            del released[name]

    def set_counter(self, template: str, number: int) -> None:
        """The last number handed out for ``template`` (it wraps to 0 after max_id)."""
        self.state["counters"][template] = number

    def raise_counter(self, template: str, number: int) -> None:
        """Keep the counter at or above ``number`` (a number found in use)."""
        counters = self.state["counters"]
        if counters.get(template, -1) < number:
            counters[template] = number

    def record_intent(self, netns: str | None, items: list, hold: int = 0) -> None:
        """The devices a run is about to create: lease, name, template, id, netns each.

        An item that replaces a lease's device also says which (``replaces``: the old name),
        so that recovery knows the new device, once it exists, is the lease's current one.
        """
        self.state["intent"] = {"netns": netns, "started": self.clock(), "hold": hold, "items": items}

    def clear_intent(self) -> None:
        self.state["intent"] = None

    # -- what a planned action leaves behind ----------------------------------
    def record(self, action, hold: int) -> None:
        """Record the effect of ``action`` (done, or planned on a copy): one place for both.

        ``hold`` is the task's reuse_delay, kept with every name it releases.
        """
        if action.replaces is not None:
            self.forget(action.replaces, hold, lease_released=False)
        if action.kind is Kind.CREATE:
            self.reclaim(action.name)
            if action.allocated:
                # The allocator's latest number, not this action's: a retry after a name taken
                # behind our back may have moved past numbers that later items hold.
                self.set_counter(action.template, action.allocator.last)
        if action.kind in (Kind.CREATE, Kind.RECONCILE) and action.lease is not None:
            spec = action.spec
            self.bind(action.lease, action.name, action.template, action.number, action.netns,
                      spec.mode, spec.multi_queue, spec.kind, identity=action.identity)
            if action.ovs_record:
                # Which Open vSwitch port row carries this lease: releasing the lease removes it.
                self.state["leases"][action.lease]["ovs"] = dict(action.ovs_record)
        if action.kind in (Kind.DELETE, Kind.RELEASE):
            self.forget(action.removal, hold)

    def forget(self, removal, hold: int, lease_released: bool = True) -> None:
        """A device removed (or found gone): hold its name back and drop its lease.

        ``lease_released`` is False when the lease moves to a device replacing this one.
        """
        if removal.release_name:
            self.release(removal.name, removal.template, removal.netns, hold,
                         lease=removal.lease if lease_released else None)
        if removal.lease is not None:
            self.unbind(removal.lease)

    # -- after a crash or a lost registry ------------------------------------
    def recover(self, devices: dict, netns: str | None, recovered: bool, path: str, hold: int = 0,
                elsewhere=None) -> "Recovery":
        """Take in what an interrupted run or a lost registry left.

        ``devices`` are the links of ``netns`` by name; ``elsewhere(ns)`` gives the links of
        another namespace (None when they were not read). An intent left by an interrupted
        run raises counters above the numbers it used, and binds each lease to the device
        the run made for it, also when the registry still maps the lease to the device it
        was replacing. Every tun/tap carrying this registry's mark (or a legacy mark, when
        no device of another registry shares the namespace) with a lease this registry does
        not hold is adopted; one whose recorded device is gone is taken as the lease's
        current device. A marked device the registry cannot explain (its lease is bound to
        another device that exists, or was released) is an orphan, for the planner to
        delete. After a recovery (``recovered``) the marks are newer than the previous
        generation, so they also win over its records, and counters are raised above every
        marked device. ``hold`` is the task's reuse_delay, for the names given up here.
        """
        result = Recovery()

        def look(where):
            if where == netns:
                return devices
            return elsewhere(where) if elsewhere is not None else None

        intent = self.intent
        if intent:
            hold = max(hold, intent.get("hold") or 0)
            for item in intent.get("items", []):
                template, number = item.get("template"), item.get("id")
                if isinstance(template, str) and isinstance(number, int) and not isinstance(number, bool):
                    self.raise_counter(template, number)
                self._recover_item(item, look, hold, result)
            self.clear_intent()
            result.warnings.append("registry %s records a run that was interrupted before it finished; its "
                                   "devices were checked and counters kept above the numbers it used" % path)
        foreign = sorted(d.name for d in devices.values()
                         if d.managed_kind is not None and d.mark and self.foreign(d.mark))
        legacy_skipped = []
        # Newest first: of two devices marked for one unrecorded lease, the later one is current.
        for device in sorted(devices.values(), key=lambda d: -d.index):
            mark = device.mark
            if mark is None or device.managed_kind is None or self.foreign(mark):
                continue
            if mark.get("registry") is None and foreign:
                legacy_skipped.append(device.name)
                continue
            template = mark["template"]
            number = number_in(template, device.name)
            if recovered and number is not None:
                self.raise_counter(template, number)
            if mark["lease"] is not None:
                self._recover_marked(device, netns, look, recovered, hold, result)
        if result.adopted:
            result.warnings.append("adopted %d device(s) that the registry did not record (left by an interrupted "
                                   "run or a lost registry): %s"
                                   % (len(result.adopted), ", ".join(sorted(result.adopted))))
        if foreign:
            result.warnings.append("device(s) %s in %s carry the mark of another registry, not of registry %s (id "
                                   "%s); they were left alone: a registry never adopts, changes or deletes another "
                                   "registry's devices. Manage them with the registry that made them"
                                   % (", ".join(foreign), _where(netns), path, self.registry_id))
        for where, device, why in result.unexplained:
            result.warnings.append("device %r in %s carries lease %r in a mark without a registry id, but %s; it "
                                   "was left alone: delete it if no guest uses it"
                                   % (device.name, _where(where), device.mark["lease"], why))
        if legacy_skipped:
            result.warnings.append("device(s) %s in %s carry a mark without a registry id, and devices of another "
                                   "registry share that namespace, so they were not adopted; manage them with "
                                   "the registry that made them" % (", ".join(sorted(legacy_skipped)), _where(netns)))
        return result

    def recovery_namespaces(self, devices: dict) -> set:
        """The namespaces ``recover`` needs to see besides the target's (whose links are ``devices``)."""
        found = set()
        if self.intent:
            found.update(item.get("netns") for item in self.intent.get("items", []))
        for device in devices.values():
            record = self.lease(device.mark["lease"]) if device.mark and device.mark["lease"] is not None else None
            if record is not None:
                found.add(record.get("netns"))
        return found

    def _recover_item(self, item: dict, look, hold: int, result: "Recovery") -> None:
        """An intent item whose device exists carrying its lease's mark: that device is the lease's."""
        lease, name, where = item.get("lease"), item.get("name"), item.get("netns")
        devices = look(where)
        if lease is None or devices is None:
            return
        device = devices.get(name)
        if device is None or device.managed_kind is None or not self._marked_for(device, lease):
            return
        record = self.lease(lease)
        if record is not None and record.get("netns") == where and record["name"] == name:
            return
        if record is not None:
            self._give_up(lease, record, look, hold, result)
        self.adopt(lease, device, item.get("template"), number_in(item.get("template"), name), where)
        result.adopt(where, name)

    def _recover_marked(self, device, netns, look, recovered: bool, hold: int, result: "Recovery") -> None:
        lease = device.mark["lease"]
        record = self.lease(lease)
        if record is not None and record.get("netns") == netns and record["name"] == device.name:
            return
        if record is None and self.released_lease(lease):
            result.orphan(netns, device, self.mine(device.mark), "its lease %r was released" % lease)
            return
        if self.holder(netns, device.name) not in (None, lease):
            return  # the name is bound to another lease: not this device's to claim
        current = self._recorded_device(lease, record, look) if record is not None else None
        if current is not None and not (recovered and current is not device and device.index > current.index
                                        and record.get("netns") == netns):
            result.orphan(netns, device, self.mine(device.mark),
                          "its lease %r is bound to %r" % (lease, record["name"]))
            return
        if record is not None:
            self._give_up(lease, record, look, hold, result)
        template = device.mark["template"]
        self.adopt(lease, device, template, number_in(template, device.name), netns)
        result.adopt(netns, device.name)

    def _give_up(self, lease: str, record: dict, look, hold: int, result: "Recovery") -> None:
        """``lease`` moves off ``record``'s device: hold its name back; a survivor is an orphan."""
        old = self._recorded_device(lease, record, look)
        if old is not None:
            result.orphan(record.get("netns"), old, self.mine(old.mark),
                          "its lease %r moved to the device made to replace it" % lease)
        self.release(record["name"], record.get("template"), record.get("netns"), hold, lease=None)
        self.unbind(lease)

    def _recorded_device(self, lease: str, record: dict, look):
        """The device ``record`` names, if it exists and still carries ``lease``'s mark."""
        devices = look(record.get("netns"))
        device = devices.get(record["name"]) if devices is not None else None
        if device is None or device.managed_kind is None:
            return None
        return device if self._marked_for(device, lease) else None

    def _marked_for(self, device, lease: str) -> bool:
        mark = device.mark
        return mark is not None and mark["lease"] == lease and not self.foreign(mark)

    def released_lease(self, lease: str) -> bool:
        return any(rec.get("lease") == lease for rec in self.state["released"].values())

    # -- whose mark ----------------------------------------------------------
    @property
    def registry_id(self) -> str | None:
        return self.state.get("registry_id")

    def mine(self, mark: dict | None) -> bool:
        return mark is not None and mark.get("registry") is not None and mark["registry"] == self.registry_id

    def foreign(self, mark: dict | None) -> bool:
        """A mark another registry wrote (a legacy mark, without an id, is not foreign)."""
        return mark is not None and mark.get("registry") is not None and mark["registry"] != self.registry_id

    def adopt(self, lease: str, device, template: str | None, number: int | None, netns: str | None) -> None:
        """Bind ``lease`` to a device found carrying its mark."""
        if template is not None and number is not None:
            self.raise_counter(template, number)
        if device.tun is not None:
            self.bind(lease, device.name, template, number, netns, device.tun.mode, device.tun.multi_queue)
        else:
            self.bind(lease, device.name, template, number, netns, "tap", False, device.managed_kind)
