# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A read-only snapshot of the namespaces a task touches, taken before planning.

The planner decides from this snapshot alone: links of the target namespace and of every
other namespace that the task's leases live in (the host's included, reached through the
namespace the process started in), and which of those namespaces exist. It also holds what
identifies a device beyond its name (the boot id, each namespace's inode), and, once a plan
is about to remove devices, which processes hold those devices (``add_holders``: read from
/proc only then, never on a run that removes nothing).

A namespace is read whole (``gather``, ``read_whole``: one dump, every link) or in part
(``open_world`` then ``look_up``: only the names a run asks for, and the links those refer
to by ifindex, looked up one by one). Of a namespace read in part the snapshot answers
only for names looked up; asking it about any other name raises LookupError, so a name
nobody looked up never passes for a free one. ``World`` is plain data; the functions
below are the places that read the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from ansible_collections.netdev.tuntap.plugins.module_utils._device import MACVTAP, link_info
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import (
    _brvlan, _chardev, _holders, _hostside, _probe, _rtnl)
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._links import LinkError, Links
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import entered, netns_exists
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._ovs import OvsError
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._system import boot_id
from ansible_collections.netdev.tuntap.plugins.module_utils._nodes import node_path


@dataclass
class World:
    target: str | None                            # the task's namespace (None: the host's)
    links: dict = field(default_factory=dict)      # netns -> {name: LinkInfo}, for namespaces that exist
    # Namespaces read in part: their ``links`` are the names looked up (``asked``) that exist, and
    # the links those refer to (masters, lower devices). Any other namespace of ``links`` is whole.
    partial: set = field(default_factory=set)
    asked: dict = field(default_factory=dict)      # netns -> names looked up (found or not)
    missing: set = field(default_factory=set)      # named namespaces that do not exist
    boot_id: str | None = None                     # this boot's id (None: unknown)
    netns_keys: dict = field(default_factory=dict)  # netns -> (st_dev, st_ino) of its namespace
    holders: dict = field(default_factory=dict)    # (netns, name) -> PIDs, for the tun/taps looked up
    # Read only when the task uses them (see Ports in _plan), for the target namespace:
    port_vlans: dict | None = None   # ifindex -> {vid: bridge VLAN flags}
    ipv6: dict | None = None         # tun/tap name -> IPv6 on (bool), None without IPv6
    ovs: dict | None = None          # _ovs.Ovs.snapshot(), when Open vSwitch answered
    ovs_error: str | None = None     # why it did not, when it was asked
    ovs_asked: bool = False

    def ovs_port(self, name: str) -> dict | None:
        return (self.ovs or {}).get("ports", {}).get(name)

    # Who holds a macvtap is a pass over every process's descriptors: read only when a removal
    # asks (chardev_holders), once per run. None: no process holds any character device.
    open_char_devices: Optional[Callable[[], dict]] = None
    _open: Optional[dict] = None

    def netns_inode(self, netns: str | None) -> int | None:
        key = self.netns_keys.get(netns)
        return key[1] if key else None

    def link_groups(self) -> dict:
        """netns -> the link groups its devices are in, for the namespaces read whole."""
        return {netns: {link.link_group for link in links.values()} for netns, links in self.links.items()
                if self.whole(netns)}

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

    def whole(self, netns: str | None) -> bool:
        """Every link of ``netns`` is in the snapshot (or it does not exist)."""
        return netns in self.missing or (netns in self.links and netns not in self.partial)

    def knows(self, netns: str | None, name: str) -> bool:
        """Whether the snapshot can say if device ``name`` exists in ``netns`` (a namespace never
        opened for the snapshot is an internal error, not one to look names up in)."""
        if netns not in self.links and netns not in self.missing:
            raise LookupError("namespace %r is not in the snapshot" % (netns,))
        return self.whole(netns) or name in self.asked.get(netns, ())

    def devices(self, netns: str | None) -> dict:
        """The links of ``netns`` by name (empty for a namespace that does not exist): every link
        of a namespace read whole, the ones looked up of one read in part."""
        if netns in self.missing:
            return {}
        try:
            return self.links[netns]
        except KeyError:
            # Reading no namespace must never look like an empty one: that would release a lease
            # whose device still exists.
            raise LookupError("namespace %r is not in the snapshot" % (netns,))

    def device(self, netns: str | None, name: str):
        if not self.knows(netns, name):
            # An answer here would be a guess: "absent" could hand out a name that is taken.
            raise LookupError("device %r of namespace %r was not looked up" % (name, netns))
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
        macvtaps = _read_chardevs(found.values())
    _read_nodes(netns, macvtaps)
    return found, key


def _read_chardevs(links) -> list:
    """The macvtaps among ``links``, given their character device numbers (inside their namespace)."""
    macvtaps = [link for link in links if link.kind == MACVTAP and link.macvlan is not None]
    if macvtaps:
        # Their character devices are only in this namespace's sysfs: read inside it.
        numbers = _chardev.read_numbers()
        for link in macvtaps:
            link.macvlan.chardev = numbers.get(link.index)
    return macvtaps


def _read_nodes(netns, macvtaps) -> None:
    for link in macvtaps:
        link.macvlan.node = _chardev.node_state(node_path(netns, link.name))


def gather(target: str | None, others=()) -> World:
    """The snapshot for a task in ``target`` whose leases also live in ``others``, every link read."""
    world = World(target, boot_id=boot_id(), open_char_devices=_chardev.open_char_devices)
    for netns in dict.fromkeys((target,) + tuple(others)):
        if not netns_exists(netns):
            world.missing.add(netns)
        else:
            world.links[netns], world.netns_keys[netns] = _read_namespace(netns)
    return world


def open_world(target: str | None, others=()) -> World:
    """A snapshot of ``target`` and ``others`` with no link read yet (see ``look_up``)."""
    world = World(target, boot_id=boot_id(), open_char_devices=_chardev.open_char_devices)
    add_namespaces(world, (target,) + tuple(others))
    return world


def add_namespaces(world: World, namespaces) -> None:
    """Take namespaces not in ``world`` yet into it, with no link read."""
    for netns in namespaces:
        if netns in world.links or netns in world.missing:
            continue
        if not netns_exists(netns):
            world.missing.add(netns)
            continue
        with entered(netns):
            world.netns_keys[netns] = _holders.namespace_key("/proc/thread-self/ns/net")
        world.links[netns] = {}
        world.partial.add(netns)


def read_whole(world: World, namespaces) -> None:
    """Read every link of ``namespaces`` (one dump each), for the questions only a full list
    answers (see the callers)."""
    add_namespaces(world, namespaces)
    for netns in dict.fromkeys(namespaces):
        if netns in world.partial:
            world.links[netns], world.netns_keys[netns] = _read_namespace(netns)
            world.partial.discard(netns)
            world.asked.pop(netns, None)


def look_up(world: World, wanted: dict) -> list:
    """Look up the names ``wanted`` (netns -> names) that ``world`` does not know yet, and the
    links they refer to by ifindex (masters, lower devices). Returns (netns, link) of the links found."""
    found_all = []
    for netns, names in wanted.items():
        add_namespaces(world, [netns])
        names = [name for name in names if not world.knows(netns, name)]
        if not names:
            continue
        with entered(netns):
            found = _look_up_here(world.links[netns], names)
            macvtaps = _read_chardevs(found)
        _read_nodes(netns, macvtaps)
        world.asked.setdefault(netns, set()).update(names)
        world.asked[netns].update(link.name for link in found)
        found_all.extend((netns, link) for link in found)
    return found_all


def read_link_groups(netns: str | None) -> set:
    """The link groups the devices of ``netns`` are in (one dump: no request asks which groups
    are empty)."""
    with entered(netns):
        try:
            return {raw.get("group") or 0 for raw in _rtnl.dump_links()}
        except OSError as exc:
            raise LinkError("listing network links failed: %s" % (exc.strerror or exc))


def _look_up_here(links: dict, names: list) -> list:
    """Look ``names`` up in the current namespace into ``links``; then the ifindexes the links
    found refer to, until every one is known. Returns the links added."""
    added = []
    asked: set = set()
    keys = names
    while keys:
        asked.update(keys)
        try:
            answers = _probe.look_up(keys)
        except OSError as exc:
            raise LinkError("looking up network links failed: %s" % (exc.strerror or exc))
        for raw in answers.values():
            if raw is not None and raw["name"] not in links:
                # A name asked for may be answered by a link whose alternative name it is: that
                # link is kept under its own name, and the name asked for has no link.
                links[raw["name"]] = info = link_info(raw)
                added.append(info)
        known = {link.index for link in links.values()}
        keys = sorted({index for link in added for index in (link.master, link.macvlan and link.macvlan.link)
                       if index and index not in known and index not in asked})
    return added


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
        # The tun/taps looked up: the planner asks only about devices it looked up.
        names = [link.name for link in world.devices(world.target).values()
                 if link.tun is not None and link.name not in (world.ipv6 or {})]
        world.ipv6 = dict(world.ipv6 or {}, **read_ipv6(world.target, names))
    if "ovs" in needs and ovs_client is not None:
        read_ovs(world, ovs_client)


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
