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

from ansible_collections.netdev.tuntap.plugins.module_utils import _store
from ansible_collections.netdev.tuntap.plugins.module_utils._actions import Kind
from ansible_collections.netdev.tuntap.plugins.module_utils._names import (
    InvalidName, TemplateMatcher, validate_template)

# Where a store answers from (a database, or a document in memory): see _store.
SCHEMA_VERSION = _store.SCHEMA_VERSION
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


class Changes:
    """What a ledger changed since its store was read; only these are written (_store.write_changes).

    ``leases`` and ``released`` map to the new record, or None for one removed. A record is
    replaced, never changed in place, so a copy shares records safely.
    """

    def __init__(self):
        self.counters: dict = {}
        self.leases: dict = {}
        self.released: dict = {}
        self.intent_changed = False
        self.intent = None
        self.registry_id = None
        self.bound: dict = {}  # (netns, name) -> keys bound here (checked against ``leases`` when read)

    def copy(self) -> "Changes":
        other = Changes()
        other.counters, other.leases, other.released = dict(self.counters), dict(self.leases), dict(self.released)
        other.intent_changed, other.intent, other.registry_id = self.intent_changed, self.intent, self.registry_id
        other.bound = {where: set(keys) for where, keys in self.bound.items()}
        return other

    def __bool__(self) -> bool:
        return bool(self.counters or self.leases or self.released or self.intent_changed or self.registry_id)


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

    Reads go to the store (the registry's database, or a document in memory: see _store) by
    indexed queries, through the ``changes`` made since it was read; nothing is loaded whole.
    ``Ledger(document, clock)`` reads a document in memory. ``clock`` gives the time that
    release and binding records carry.
    """

    def __init__(self, store, clock, changes: Changes | None = None):
        self.store = _store.DictStore(store) if isinstance(store, dict) else store
        self.clock = clock
        self.changes = changes if changes is not None else Changes()

    def copy(self) -> "Ledger":
        """An independent ledger to plan on: its changes never reach this one (the store is shared:
        neither changes it)."""
        return Ledger(self.store, self.clock, self.changes.copy())

    # -- the whole registry (a full load: for the export and tests, never on a run's path) --------
    @property
    def state(self) -> dict:
        """The registry as the document of docs/registry.md, with this ledger's changes."""
        base = self.store.document()
        document = {"version": SCHEMA_VERSION, "registry_id": self.registry_id, "counters": dict(base["counters"]),
                    "leases": dict(base["leases"]), "released": dict(base["released"]), "intent": self.intent}
        changes = self.changes
        document["counters"].update(changes.counters)
        for table, changed in (("leases", changes.leases), ("released", changes.released)):
            for key, record in changed.items():
                if record is None:
                    document[table].pop(key, None)
                else:
                    document[table][key] = record
        return document

    @property
    def leases(self) -> dict:
        """Every lease (a full load; the planner asks ``lease_names_like`` instead)."""
        return self.state["leases"]

    # -- reading -----------------------------------------------------------
    def lease(self, key: str) -> dict | None:
        if key in self.changes.leases:
            return self.changes.leases[key]
        return self.store.lease(key)

    def leases_under(self, prefix: str) -> list:
        changed = self.changes.leases
        keys = {key for key in self.store.lease_keys_from(prefix) if key not in changed}
        keys.update(key for key, record in changed.items() if record is not None and key.startswith(prefix))
        return sorted(keys)

    def has_lease_in(self, netns: str | None) -> bool:
        """Whether any lease is bound to a device in ``netns``."""
        changed = self.changes.leases
        if any(record is not None and record.get("netns") == netns for record in changed.values()):
            return True
        # Leases this run unbound or moved are in ``changed``: look past as many rows as there are.
        return any(key not in changed for key in self.store.lease_keys_in(netns, len(changed) + 1))

    def holder(self, netns: str | None, name: str) -> str | None:
        """The lease bound to device ``name`` in ``netns``, if any."""
        changed = self.changes.leases
        for key in sorted(self.changes.bound.get((netns, name), ())):
            record = changed.get(key)
            if record is not None and record["name"] == name and record.get("netns") == netns:
                return key
        found = [key for key in self.store.holders(netns, name) if key not in changed]
        return found[0] if found else None

    def lease_names_like(self, template: str) -> list:
        """The names of leased devices (any namespace, any template) that could be rendered from
        ``template``: those that start with its literal prefix. Read by index, not by a full load."""
        prefix = _store.prefix_of(template)
        changed = self.changes.leases
        names = [name for key, name in self.store.lease_names_from(prefix) if key not in changed]
        names += [record["name"] for record in changed.values()
                  if record is not None and record["name"].startswith(prefix)]
        return names

    def leased_name_count_like(self, template: str) -> int:
        """At least how many names ``lease_names_like(template)`` returns (counted by index, without
        reading them): the stored ones, and every lease this run bound under that prefix."""
        prefix = _store.prefix_of(template)
        bound = sum(1 for record in self.changes.leases.values()
                    if record is not None and record["name"].startswith(prefix))
        return self.store.count_lease_names_from(prefix) + bound

    def name_leased(self, name: str) -> bool:
        """Whether a lease (in any namespace) is bound to a device called ``name``."""
        changed = self.changes.leases
        if any(record is not None and record["name"] == name for record in changed.values()):
            return True
        return any(key not in changed for key in self.store.lease_with_name(name))

    def counter(self, template: str) -> int | None:
        if template in self.changes.counters:
            return self.changes.counters[template]
        return self.store.counter(template)

    def released_record(self, name: str) -> dict | None:
        if name in self.changes.released:
            return self.changes.released[name]
        return self.store.released(name)

    def held_names(self, reuse_delay: int) -> set:
        """Names released less than ``reuse_delay`` seconds ago: not to be handed out.

        Records kept longer for tasks with a longer delay (see drop_old_releases) do not count.
        """
        now = self.clock()
        changed = self.changes.released
        names = {name for name in self.store.released_where(now, recent_than=reuse_delay) if name not in changed}
        names.update(name for name, rec in changed.items() if rec is not None and now - rec["at"] < reuse_delay)
        return names

    @property
    def intent(self) -> dict | None:
        return self.changes.intent if self.changes.intent_changed else self.store.intent

    # -- changing ----------------------------------------------------------
    def _put_lease(self, key: str, record: dict | None) -> None:
        self.changes.leases[key] = record
        if record is not None:
            self.changes.bound.setdefault((record.get("netns"), record["name"]), set()).add(key)

    def _put_released(self, name: str, record: dict | None) -> None:
        self.changes.released[name] = record

    def bind(self, lease: str, name: str, template: str | None, number: int | None, netns: str | None,
             mode: str, multi_queue: bool, kind: str = "tuntap", identity: dict | None = None,
             ovs: dict | None = None) -> None:
        """Bind ``lease`` to a device; the binding keeps its age while the name stays the same.

        ``kind`` is recorded for macvtap/macvlan only; a record without it is a tun/tap's.
        ``identity`` (IDENTITY_FIELDS, each optional) says which device it is: removal deletes
        a device only while it still matches. A field not known is left out of the record.
        ``ovs``: the Open vSwitch port row that carries this lease (releasing the lease removes it).
        """
        previous = self.lease(lease)
        since = previous.get("since") if previous and previous["name"] == name else None
        record = {
            "name": name, "template": template, "id": number, "netns": netns, "mode": mode,
            "multi_queue": multi_queue, "since": self.clock() if since is None else since}
        if kind != "tuntap":
            record["kind"] = kind
        record.update((key, value) for key, value in (identity or {}).items()
                      if key in IDENTITY_FIELDS and value is not None)
        if ovs:
            record["ovs"] = dict(ovs)
        self._put_lease(lease, record)

    def unbind(self, lease: str) -> None:
        if self.lease(lease) is not None:
            self._put_lease(lease, None)

    def release(self, name: str, template: str | None, netns: str | None, hold: int,
                lease: str | None = None) -> None:
        """Hold ``name`` back: allocation skips it for ``hold`` seconds (or the task's reuse_delay).

        ``lease``: the lease released with it, remembered so that a leftover device still
        marked with it is never adopted back into the registry while the record is kept.
        """
        record = {"at": self.clock(), "template": template, "netns": netns, "hold": hold}
        if lease is not None:
            record["lease"] = lease
        self._put_released(name, record)

    def reclaim(self, name: str) -> None:
        """``name`` is in use again: its old release record no longer describes it."""
        if self.released_record(name) is not None:
            self._put_released(name, None)

    def drop_old_releases(self, reuse_delay: int) -> None:
        """Forget releases older than reuse_delay and older than the delay they were released with.

        Which records block an allocation is the allocating task's own reuse_delay; a record is
        kept as long as the task that released it asked, so one run with a short reuse_delay
        does not end the hold for later runs with a longer one.
        """
        now = self.clock()
        changed = self.changes.released
        old = [name for name in self.store.released_where(now, expired_for=reuse_delay) if name not in changed]
        old += [name for name, rec in changed.items()
                if rec is not None and now - rec["at"] >= max(reuse_delay, rec.get("hold") or 0)]
        for name in old:
            self._put_released(name, None)

    def set_counter(self, template: str, number: int) -> None:
        """The last number handed out for ``template`` (it wraps to 0 after max_id)."""
        self.changes.counters[template] = number

    def raise_counter(self, template: str, number: int) -> None:
        """Keep the counter at or above ``number`` (a number found in use)."""
        current = self.counter(template)
        if current is None or current < number:
            self.changes.counters[template] = number

    def record_intent(self, netns: str | None, items: list, hold: int = 0) -> None:
        """The devices a run is about to create: lease, name, template, id, netns each.

        An item that replaces a lease's device also says which (``replaces``: the old name),
        so that recovery knows the new device, once it exists, is the lease's current one.
        """
        self.changes.intent_changed = True
        self.changes.intent = {"netns": netns, "started": self.clock(), "hold": hold, "items": items}

    def clear_intent(self) -> None:
        if self.intent is not None:
            self.changes.intent_changed = True
            self.changes.intent = None

    def set_registry_id(self, registry_id: str) -> None:
        self.changes.registry_id = registry_id

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
                      spec.mode, spec.multi_queue, spec.kind, identity=action.identity, ovs=action.ovs_record)
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
        changed = self.changes.released
        if any(rec is not None and rec.get("lease") == lease for rec in changed.values()):
            return True
        return any(name not in changed for name in self.store.released_with_lease(lease))

    # -- whose mark ----------------------------------------------------------
    @property
    def registry_id(self) -> str | None:
        return self.changes.registry_id or self.store.registry_id

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
