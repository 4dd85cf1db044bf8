# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the planner decides and the applier carries out: typed actions. Pure data.

One Action per requested device (and one per lease removed by a prefix). Each records
the change it stands for once; the ledger, the results and the diff are all read from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Kind(str, Enum):
    CREATE = "create"          # make a device (a new name, or a leased one made again)
    RECONCILE = "reconcile"    # the device exists: change the settings in ``changes``, if any
    DELETE = "delete"          # delete a device and release its name and lease
    RELEASE = "release"        # the device is already gone (or not ours): release the lease only
    ABSENT = "absent"          # state absent, and there is nothing to remove

    @property
    def removes(self) -> bool:
        return self in (Kind.DELETE, Kind.RELEASE, Kind.ABSENT)


@dataclass
class Removal:
    """A device to delete (``device`` None: nothing to delete) and the lease and name to release."""
    name: str
    netns: str | None
    device: object | None       # the _device.LinkInfo as found before the run
    lease: str | None
    template: str | None
    release_name: bool = True   # False when the name now belongs to another device
    ovs_port: bool = False      # an Open vSwitch port row of ours names it: remove the row too
    node: str | None = None     # a macvtap's device node to remove with it


@dataclass
class Action:
    spec: object | None          # the DeviceSpec; None for a lease removed by a prefix
    kind: Kind
    name: str | None
    netns: str | None = None     # where the device is (or will be)
    number: int | None = None
    template: str | None = None
    lease: str | None = None
    device: object | None = None  # the device as found before the run
    changes: dict = field(default_factory=dict)
    master: int | None = None     # bridge ifindex for a new device
    allocator: object | None = None  # the TemplateAllocator a new name came from
    replaces: Removal | None = None
    removal: Removal | None = None
    lease_changed: bool = False
    origin: str = "pruning"       # for an action without spec: which option asked for it, or "orphan"
    port: dict | None = None      # a new device's bridge port: see Planner._new_port
    ipv6: bool | None = None      # a new device: IPv6 on (True) or off (False) before it first comes up
    ovs_record: dict | None = None  # the lease's Open vSwitch port after this action ({bridge, db}), if any
    lower: int | None = None      # macvtap/macvlan: ifindex of the lower device for a new device
    node: str | None = None       # macvtap: the path of its device node
    # What identifies the device a lease is bound to (ifindex, boot_id, netns_inode): the planner
    # fills in what it knows, the applier the ifindex of a device it made; the ledger records it.
    identity: dict = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        if self.kind in (Kind.CREATE, Kind.DELETE, Kind.RELEASE):
            return True
        return bool(self.changes) or self.replaces is not None or self.lease_changed

    @property
    def allocated(self) -> bool:
        """The name is a fresh number from a template's counter."""
        return self.allocator is not None

    def label(self) -> str:
        if self.spec is not None:
            return self.spec.label()
        if self.origin == "orphan":
            return "deleting the orphaned device %r" % self.name
        return "%s lease %r" % (self.origin, self.removal.lease)
