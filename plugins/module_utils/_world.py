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
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _brvlan, _chardev, _hostside
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._links import LinkError, Links
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import entered, netns_exists
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._ovs import OvsError
from ansible_collections.netdev.tuntap.plugins.module_utils._nodes import node_path


@dataclass
class World:
    target: str | None                            # the task's namespace (None: the host's)
    links: dict = field(default_factory=dict)      # netns -> {name: LinkInfo}, for namespaces that exist
    missing: set = field(default_factory=set)      # named namespaces that do not exist
    # Read only when the task uses them (see Ports in _plan), for the target namespace:
    port_vlans: dict | None = None   # ifindex -> {vid: bridge VLAN flags}
    ipv6: dict | None = None         # tun/tap name -> IPv6 on (bool), None without IPv6
    ovs: dict | None = None          # _ovs.Ovs.snapshot(), when Open vSwitch answered
    ovs_error: str | None = None     # why it did not, when it was asked
    ovs_asked: bool = False

    def ovs_port(self, name: str) -> dict | None:
        return (self.ovs or {}).get("ports", {}).get(name)

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


def read_port_vlans(netns: str | None) -> dict:
    with entered(netns):
        try:
            return _brvlan.dump_port_vlans()
        except OSError as exc:
            raise LinkError("reading the bridge VLANs failed: %s" % (exc.strerror or exc))


def read_ipv6(netns: str | None, names) -> dict:
    with entered(netns):
        return {name: _hostside.ipv6_enabled(name) for name in names}


def read_ovs(world: World, client) -> None:
    """Ask Open vSwitch for its bridges and ports; a failure is kept for the planner to judge
    (it matters only if the task really needs OVS)."""
    world.ovs_asked = True
    try:
        world.ovs = client.snapshot()
    except OvsError as exc:
        world.ovs_error = str(exc)


def read_ports(world: World, needs: set, ovs_client) -> None:
    """The parts of the target namespace a task with bridge ports needs, named by ``needs``."""
    if not world.exists(world.target):
        return
    if "vlans" in needs:
        world.port_vlans = read_port_vlans(world.target)
    if "ipv6" in needs:
        names = [link.name for link in world.devices(world.target).values() if link.tun is not None]
        world.ipv6 = read_ipv6(world.target, names)
    if "ovs" in needs and ovs_client is not None:
        read_ovs(world, ovs_client)
