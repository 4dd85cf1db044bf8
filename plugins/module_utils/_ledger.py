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


def empty_state() -> dict:
    return {"version": SCHEMA_VERSION, "counters": {}, "leases": {}, "released": {}, "intent": None}


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

    def release(self, name: str, template: str | None, netns: str | None, hold: int) -> None:
        """Hold ``name`` back: allocation skips it for ``hold`` seconds (or the task's reuse_delay)."""
        self.state["released"][name] = {"at": self.clock(), "template": template, "netns": netns, "hold": hold}

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

    def record_intent(self, netns: str | None, items: list) -> None:
        """The devices a run is about to create: lease, name, template, id, netns each."""
        self.state["intent"] = {"netns": netns, "started": self.clock(), "items": items}

    def clear_intent(self) -> None:
        self.state["intent"] = None

    # -- what a planned action leaves behind ----------------------------------
    def record(self, action, hold: int) -> None:
        """Record the effect of ``action`` (done, or planned on a copy): one place for both.

        ``hold`` is the task's reuse_delay, kept with every name it releases.
        """
        if action.replaces is not None:
            self.forget(action.replaces, hold)
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

    def forget(self, removal, hold: int) -> None:
        """A device removed (or found gone): hold its name back and drop its lease."""
        if removal.release_name:
            self.release(removal.name, removal.template, removal.netns, hold)
        if removal.lease is not None:
            self.unbind(removal.lease)

    # -- after a crash or a lost registry ------------------------------------
    def recover(self, devices: dict, netns: str | None, recovered: bool, path: str) -> list:
        """Take in what an interrupted run or a lost registry left; return the warnings.

        ``devices`` are the links of ``netns`` by name. An intent left by an interrupted run
        raises counters above the numbers it used. Every tun/tap carrying our mark with a
        lease this registry does not hold is adopted; after a recovery (``recovered``) the
        marks are newer than the previous generation, so they also win over its records,
        and counters are raised above every marked device.
        """
        warnings = []
        intent = self.intent
        if intent:
            for item in intent.get("items", []):
                template, number = item.get("template"), item.get("id")
                if isinstance(template, str) and isinstance(number, int) and not isinstance(number, bool):
                    self.raise_counter(template, number)
            self.clear_intent()
            warnings.append("registry %s records a run that was interrupted before it finished; its devices "
                            "were checked and counters kept above the numbers it used" % path)
        adopted = []
        for device in devices.values():
            mark = device.mark
            if mark is None or device.managed_kind is None:
                continue
            template = mark["template"]
            number = number_in(template, device.name)
            if recovered and number is not None:
                self.raise_counter(template, number)
            lease = mark["lease"]
            if lease is None:
                continue
            record = self.lease(lease)
            stale = (record is not None and recovered and record.get("netns") == netns
                     and record["name"] != device.name)
            if (record is None or stale) and self.holder(netns, device.name) in (None, lease):
                self.adopt(lease, device, template, number, netns)
                adopted.append(device.name)
        if adopted:
            warnings.append("adopted %d device(s) that the registry did not record (left by an interrupted "
                            "run or a lost registry): %s" % (len(adopted), ", ".join(sorted(adopted))))
        return warnings

    def adopt(self, lease: str, device, template: str | None, number: int | None, netns: str | None) -> None:
        """Bind ``lease`` to a device found carrying its mark."""
        if template is not None and number is not None:
            self.raise_counter(template, number)
        if device.tun is not None:
            self.bind(lease, device.name, template, number, netns, device.tun.mode, device.tun.multi_queue)
        else:
            self.bind(lease, device.name, template, number, netns, "tap", False, device.managed_kind)
