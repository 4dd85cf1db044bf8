# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A read-only snapshot of the namespaces a task touches, taken before planning.

The planner decides from this snapshot alone: the links of the target namespace and of
every other namespace that the task's leases live in (the host's included, reached
through the namespace the process started in), and which of those namespaces exist.
It also holds what identifies a device beyond its name (the boot id, each namespace's
inode), and, once a plan is about to remove devices, which processes hold those devices
(``add_holders``: read from /proc only then, never on a run that removes nothing).
``World`` is plain data; ``gather`` and ``add_holders`` are the places that read the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from ansible_collections.netdev.tuntap.plugins.module_utils._device import MACVTAP
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _chardev, _holders
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._links import Links
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import entered, netns_exists
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._system import boot_id
from ansible_collections.netdev.tuntap.plugins.module_utils._nodes import node_path


@dataclass
class World:
    target: str | None                            # the task's namespace (None: the host's)
    links: dict = field(default_factory=dict)      # netns -> {name: LinkInfo}, for namespaces that exist
    missing: set = field(default_factory=set)      # named namespaces that do not exist
    boot_id: str | None = None                     # this boot's id (None: unknown)
    netns_keys: dict = field(default_factory=dict)  # netns -> (st_dev, st_ino) of its namespace
    holders: dict = field(default_factory=dict)    # (netns, name) -> PIDs, for the tun/taps looked up
    # Who holds a macvtap is a pass over every process's descriptors: read only when a removal
    # asks (chardev_holders), once per run. None: no process holds any character device.
    open_char_devices: Optional[Callable[[], dict]] = None
    _open: Optional[dict] = None

    def netns_inode(self, netns: str | None) -> int | None:
        key = self.netns_keys.get(netns)
        return key[1] if key else None

    def link_groups(self) -> dict:
        """netns -> the link groups its devices are in."""
        return {netns: {link.link_group for link in links.values()} for netns, links in self.links.items()}

    def holders_of(self, netns: str | None, name: str) -> list | None:
        """The PIDs that hold tun/tap ``name`` (None: not looked up)."""
        return self.holders.get((netns, name))

    def chardev_holders(self, device) -> int:
        """Open descriptors of a macvtap's character device (0 for any other kind)."""
        if device.kind != MACVTAP or device.macvlan is None or device.macvlan.chardev is None:
            return 0
        if self._open is None:
            self._open = self.open_char_devices() if self.open_char_devices is not None else {}
        return self._open.get(tuple(device.macvlan.chardev), 0)

    def exists(self, netns: str | None) -> bool:
        return netns not in self.missing

    def devices(self, netns: str | None) -> dict:
        """The links of ``netns`` by name (empty for a namespace that does not exist)."""
        if netns in self.missing:
            return {}
        try:
            return self.links[netns]
        except KeyError:
            # Reading no namespace must never look like an empty one: that would release a lease
            # whose device still exists.
            raise LookupError("namespace %r is not in the snapshot" % (netns,))

    def device(self, netns: str | None, name: str):
        return self.devices(netns).get(name)

    def names_by_index(self, netns: str | None) -> dict:
        return {link.index: link.name for link in self.devices(netns).values()}


def read_links(netns: str | None) -> dict:
    """Every link of ``netns`` by name (one raw netlink dump inside it)."""
    return _read_namespace(netns)[0]


def _read_namespace(netns: str | None) -> tuple:
    """(links by name, namespace key) of ``netns``, from inside it."""
    with entered(netns), Links() as links:
        found = links.dump()
        key = _holders.namespace_key("/proc/thread-self/ns/net")
        macvtaps = [link for link in found.values() if link.kind == MACVTAP and link.macvlan is not None]
        if macvtaps:
            # Their character devices are only in this namespace's sysfs: read inside it.
            numbers = _chardev.read_numbers()
            for link in macvtaps:
                link.macvlan.chardev = numbers.get(link.index)
    for link in macvtaps:
        link.macvlan.node = _chardev.node_state(node_path(netns, link.name))
    return found, key


def gather(target: str | None, others=()) -> World:
    """The snapshot for a task in ``target`` whose leases also live in ``others``."""
    world = World(target, boot_id=boot_id(), open_char_devices=_chardev.open_char_devices)
    for netns in dict.fromkeys((target,) + tuple(others)):
        if not netns_exists(netns):
            world.missing.add(netns)
        else:
            world.links[netns], world.netns_keys[netns] = _read_namespace(netns)
    return world


def add_holders(world: World, wanted) -> None:
    """Look up in /proc which processes hold the devices ``wanted`` ((netns, name) pairs)."""
    by_key: dict = {}
    for netns, name in wanted:
        key = world.netns_keys.get(netns)
        if key is not None:
            by_key.setdefault(key, set()).add(name)
    found = _holders.holders(by_key)
    netns_of = {key: netns for netns, key in world.netns_keys.items()}
    for (key, name), pids in found.items():
        world.holders[(netns_of[key], name)] = pids
    for where in wanted:
        # A device of a namespace that was not read has no processes to look at: looked up, none.
        world.holders.setdefault(where, [])
