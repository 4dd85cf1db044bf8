# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A read-only snapshot of the namespaces a task touches, taken before planning.

The planner decides from this snapshot alone: the links of the target namespace and of
every other namespace that the task's leases live in (the host's included, reached
through the namespace the process started in), and which of those namespaces exist.
``World`` is plain data; ``gather`` is the one place that reads it from the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from ansible_collections.netdev.tuntap.plugins.module_utils._device import MACVTAP
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _chardev
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._links import Links
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import entered, netns_exists
from ansible_collections.netdev.tuntap.plugins.module_utils._nodes import node_path


@dataclass
class World:
    target: str | None                            # the task's namespace (None: the host's)
    links: dict = field(default_factory=dict)      # netns -> {name: LinkInfo}, for namespaces that exist
    missing: set = field(default_factory=set)      # named namespaces that do not exist
    # Who holds a macvtap is a pass over every process's descriptors: read only when a removal
    # asks (holders), once per run. None: no process holds any character device.
    open_char_devices: Optional[Callable[[], dict]] = None
    _open: Optional[dict] = None

    def holders(self, device) -> int:
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
    with entered(netns), Links() as links:
        found = links.dump()
        macvtaps = [link for link in found.values() if link.kind == MACVTAP and link.macvlan is not None]
        if macvtaps:
            # Their character devices are only in this namespace's sysfs: read inside it.
            numbers = _chardev.read_numbers()
            for link in macvtaps:
                link.macvlan.chardev = numbers.get(link.index)
    for link in macvtaps:
        link.macvlan.node = _chardev.node_state(node_path(netns, link.name))
    return found


def gather(target: str | None, others=()) -> World:
    """The snapshot for a task in ``target`` whose leases also live in ``others``."""
    world = World(target, open_char_devices=_chardev.open_char_devices)
    for netns in dict.fromkeys((target,) + tuple(others)):
        if not netns_exists(netns):
            world.missing.add(netns)
        else:
            world.links[netns] = read_links(netns)
    return world
