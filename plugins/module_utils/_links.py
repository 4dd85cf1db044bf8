# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Netlink through pyroute2: list links, change link settings, delete links.

All calls talk to the namespace the thread was in when ``Links`` was made, so make
it inside ``_netns.entered(...)``. One dump per run is read into ``LinkInfo``
records; everything else is one request per device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ansible_collections.netdev.tuntap.plugins.module_utils._marks import decode_mark

PYROUTE2_IMPORT_ERROR = None
try:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
except ImportError as _exc:  # reported by the module with missing_required_lib
    IPRoute = None
    NetlinkError = OSError
    PYROUTE2_IMPORT_ERROR = _exc

MIN_PYROUTE2 = "0.7.2"

IFF_UP = 0x1


class LinkError(Exception):
    """A netlink request failed (message is user-facing)."""


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

    @property
    def in_use(self) -> bool:
        """A process (QEMU, libvirt) holds the device."""
        if self.tun is None:
            return False
        if self.tun.multi_queue:
            return bool(self.tun.queues)
        # A single-queue tap has carrier exactly while a file descriptor is attached.
        return self.carrier


def _tun_info(info_data) -> TunInfo:
    attr = info_data.get_attr
    return TunInfo(
        mode="tun" if attr("IFLA_TUN_TYPE") == 1 else "tap",
        packet_info=bool(attr("IFLA_TUN_PI")),
        vnet_hdr=bool(attr("IFLA_TUN_VNET_HDR")),
        persist=bool(attr("IFLA_TUN_PERSIST")),
        multi_queue=bool(attr("IFLA_TUN_MULTI_QUEUE")),
        owner=attr("IFLA_TUN_OWNER"),
        group=attr("IFLA_TUN_GROUP"),
        # A queue detached with TUNSETQUEUE is still held by its process: count it too.
        queues=(attr("IFLA_TUN_NUM_QUEUES") or 0) + (attr("IFLA_TUN_NUM_DISABLED_QUEUES") or 0)
        if attr("IFLA_TUN_MULTI_QUEUE") else None,
    )


def _link_info(msg) -> LinkInfo:
    attr = msg.get_attr
    kind = None
    tun = None
    linkinfo = attr("IFLA_LINKINFO")
    if linkinfo is not None:
        kind = linkinfo.get_attr("IFLA_INFO_KIND")
        data = linkinfo.get_attr("IFLA_INFO_DATA")
        if kind == "tun" and data is not None:
            tun = _tun_info(data)
    alias = attr("IFLA_IFALIAS")
    return LinkInfo(
        name=attr("IFLA_IFNAME"),
        index=msg["index"],
        kind=kind,
        mtu=attr("IFLA_MTU"),
        mac_address=attr("IFLA_ADDRESS"),
        master=attr("IFLA_MASTER") or None,
        up=bool(msg["flags"] & IFF_UP),
        carrier=bool(attr("IFLA_CARRIER")),
        alias=alias,
        tun=tun,
        mark=decode_mark(alias),
    )


class Links:
    """A netlink session in the current namespace."""

    def __init__(self):
        self._ipr = IPRoute()

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> "Links":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def dump(self) -> dict[str, LinkInfo]:
        """Every link in the namespace, by name."""
        try:
            return {info.name: info for info in map(_link_info, self._ipr.get_links())}
        except NetlinkError as exc:
            raise LinkError("listing network links failed: %s" % exc)

    def get(self, name: str) -> LinkInfo | None:
        try:
            found = self._ipr.get_links(ifname=name)
        except NetlinkError as exc:
            if exc.code == 19:  # ENODEV
                return None
            raise LinkError("looking up %r failed: %s" % (name, exc))
        return _link_info(found[0]) if found else None

    def configure(self, name: str, index: int, mtu: int | None = None, mac_address: str | None = None,
                  master: int | None = None, up: bool | None = None, alias: str | None = None) -> None:
        """Apply the given settings in one request; None leaves a setting alone (master 0 detaches)."""
        changes = {}
        if mtu is not None:
            changes["mtu"] = mtu
        if mac_address is not None:
            changes["address"] = mac_address
        if master is not None:
            changes["master"] = master
        if alias is not None:
            changes["ifalias"] = alias
        if up is not None:
            changes["state"] = "up" if up else "down"
        if not changes:
            return
        try:
            self._ipr.link("set", index=index, **changes)
        except NetlinkError as exc:
            shown = ", ".join("%s=%s" % (k, v) for k, v in sorted(changes.items()) if k != "ifalias")
            raise LinkError("the kernel refused to set %s on %r: %s" % (shown or "the alias", name, exc))

    def delete(self, name: str, index: int) -> None:
        try:
            self._ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code == 19:  # already gone
                return
            raise LinkError("deleting %r failed: %s" % (name, exc))
