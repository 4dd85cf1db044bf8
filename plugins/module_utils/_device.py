# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a network device is, as the rest of the module sees it: plain facts, no system calls.

The kernel layer fills these from an rtnetlink dump; the planner, the ledger's adoption and
the results read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.netdev.tuntap.plugins.module_utils._marks import decode_mark

IFF_UP = 0x1

# The kinds tap_device manages: tun/tap devices (made through /dev/net/tun), and macvtap and
# macvlan devices (made over rtnetlink on a lower device).
TUNTAP, MACVTAP, MACVLAN = "tuntap", "macvtap", "macvlan"
KINDS = (TUNTAP, MACVTAP, MACVLAN)
MACVLAN_KINDS = (MACVTAP, MACVLAN)
# include/uapi/linux/if_link.h, enum macvlan_mode
MACVLAN_MODES = {"bridge": 4, "vepa": 2, "private": 1, "passthru": 8, "source": 16}
DEFAULT_MACVLAN_MODE = "vepa"   # the kernel's, iproute2's and libvirt's default


@dataclass
class TunInfo:
    mode: str            # "tap" or "tun"
    packet_info: bool
    vnet_hdr: bool
    persist: bool
    multi_queue: bool
    owner: int | None    # None: unset
    group: int | None
    queues: int | None   # queues held by processes (enabled + disabled); multi_queue devices only


@dataclass
class MacvlanInfo:
    mode: str | None                 # a key of MACVLAN_MODES (None: a mode this module does not know)
    link: int | None                 # ifindex of the lower device
    chardev: tuple | None = None     # macvtap only: (major, minor) of its /dev/tapN, read from sysfs
    node: object | None = None       # macvtap only: the _nodes.NodeState of the node we hand out


@dataclass
class LinkInfo:
    name: str
    index: int
    kind: str | None
    mtu: int
    mac_address: str | None
    master: int | None
    up: bool
    carrier: bool
    alias: str | None
    tun: TunInfo | None = None
    mark: dict | None = field(default=None)  # our lease/template marker, parsed from the alias
    macvlan: MacvlanInfo | None = None       # for kind macvtap and macvlan
    operstate: str | None = None   # RFC 2863 operational state: "up", "down", "lowerlayerdown", ...
    link_group: int = 0            # the link group (0: the default group of every link)

    @property
    def managed_kind(self) -> str | None:
        """The tap_device kind this device is (TUNTAP, MACVTAP, MACVLAN), or None for any other."""
        if self.tun is not None:
            return TUNTAP
        if self.macvlan is not None and self.kind in MACVLAN_KINDS:
            return self.kind
        return None

    @property
    def in_use(self) -> bool:
        """The kernel's own signs that a process (QEMU, libvirt) holds a tun/tap device.

        True is certain; False is not proof of the opposite for a single-queue device: its
        carrier follows the attached file descriptor, but root can force it off while the fd
        stays (`ip link set X carrier off`). Before a removal the holders are looked up in
        /proc as well (_kernel._holders). A macvtap's holders are the processes that have its
        character device open: that takes a scan of /proc (World.chardev_holders).
        """
        if self.tun is None:
            return False
        if self.tun.multi_queue:
            return bool(self.tun.queues)
        return self.carrier


def tun_info(attrs: dict) -> TunInfo:
    """A TunInfo from the IFLA_TUN_* attributes of one link (owner/group absent: unset)."""
    multi_queue = bool(attrs.get("multi_queue"))
    return TunInfo(
        mode="tun" if attrs.get("type") == 1 else "tap",
        packet_info=bool(attrs.get("pi")),
        vnet_hdr=bool(attrs.get("vnet_hdr")),
        persist=bool(attrs.get("persist")),
        multi_queue=multi_queue,
        owner=attrs.get("owner"),
        group=attrs.get("group"),
        # A queue detached with TUNSETQUEUE is still held by its process: count it too.
        queues=(attrs.get("num_queues") or 0) + (attrs.get("num_disabled_queues") or 0) if multi_queue else None,
    )


def macvlan_mode_name(number: int | None) -> str | None:
    for name, value in MACVLAN_MODES.items():
        if value == number:
            return name
    return None


# include/uapi/linux/if.h, IF_OPER_*
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")


def link_info(raw: dict) -> LinkInfo:
    """A LinkInfo from one link of _rtnl.dump_links()."""
    tun = None
    if raw["kind"] == "tun" and raw["tun"] is not None:
        tun = tun_info(raw["tun"])
    macvlan = None
    if raw["kind"] in MACVLAN_KINDS and raw.get("macvlan") is not None:
        macvlan = MacvlanInfo(mode=macvlan_mode_name(raw["macvlan"].get("mode")), link=raw.get("link") or None)
    return LinkInfo(
        name=raw["name"],
        index=raw["index"],
        kind=raw["kind"],
        mtu=raw["mtu"],
        mac_address=raw["address"],
        master=raw["master"] or None,
        up=bool(raw["flags"] & IFF_UP),
        carrier=bool(raw["carrier"]),
        alias=raw["alias"],
        tun=tun,
        macvlan=macvlan,
        mark=decode_mark(raw["alias"]),
        operstate=_operstate(raw.get("operstate")),
        link_group=raw.get("group") or 0,
    )


def _operstate(value: int | None) -> str | None:
    if value is None:
        return None
    return OPERSTATES[value] if value < len(OPERSTATES) else str(value)
