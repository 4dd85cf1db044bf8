# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a macvtap's private character device node lives, and what it should look like. Pure.

QEMU attaches to a macvtap by opening its character device. devtmpfs makes ``/dev/tapN``
(N = the ifindex), but /dev is global while ifindexes are per namespace: a macvtap in a
second namespace with the same ifindex gets no node, and the first one's vanishes with
it. So each managed macvtap gets a node of its own, made from the device's own
major:minor, under a directory per namespace that only this module writes to.
"""

from __future__ import annotations

from dataclasses import dataclass

NODE_ROOT = "/run/netdev_tuntap"
DIR_MODE = 0o755      # traversable, so that the node's owner can reach the node
OWNER_MODE = 0o600
GROUP_MODE = 0o660    # with a group given: its members may attach too, as with a tap's TUNSETGROUP


@dataclass(frozen=True)
class NodeState:
    """A node as found (or as it should be)."""
    rdev: tuple | None   # (major, minor); None: not a character device
    owner: int
    group: int
    mode: int            # permission bits


def node_dir(netns: str | None) -> str:
    """The directory of the nodes of one namespace (``host`` for the host's)."""
    if netns is None:
        return NODE_ROOT + "/host"
    return "%s/netns/%s" % (NODE_ROOT, netns)


def node_path(netns: str | None, name: str) -> str:
    """The node of macvtap ``name`` in ``netns``: keyed by the device name, which is never
    handed to another guest while its lease's hold lasts."""
    return "%s/%s" % (node_dir(netns), name)


def node_mode(group: int | None) -> int:
    return GROUP_MODE if group is not None else OWNER_MODE


def wanted_node(chardev: tuple, owner: int | None, group: int | None, found: NodeState | None) -> NodeState:
    """The node a macvtap should have: owner and group as asked, else as found, else root's.

    Mode 0600, or 0660 once a group was asked for (its members may attach, as with a tap's group).
    """
    if found is None:
        return NodeState(tuple(chardev), 0 if owner is None else owner, 0 if group is None else group,
                         node_mode(group))
    grouped = group is not None or found.mode == GROUP_MODE
    return NodeState(tuple(chardev), found.owner if owner is None else owner,
                     found.group if group is None else group, GROUP_MODE if grouped else OWNER_MODE)
