# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a device's bridge port should be: Linux bridge VLANs and Open vSwitch port rows. Pure.

The planner asks this module which kind of bridge a request names, what the port's VLANs
and OVS columns are now (from the world snapshot) and what has to change; the applier
carries the answer out. The same VLAN vocabulary serves both bridge kinds: ``vlan`` is the
untagged VLAN (a Linux bridge's PVID, OVS's tag) and ``trunk`` the tagged ones.
"""

from __future__ import annotations

from ansible_collections.netdev.tuntap.plugins.module_utils._values import compress_vlans, format_vlans, vlan_set

LEASE_KEY = "netdev-tuntap-lease"   # the OVS Interface external_ids key that carries the lease
# include/uapi/linux/if_bridge.h, struct bridge_vlan_info flags
BRIDGE_VLAN_INFO_PVID = 1 << 1
BRIDGE_VLAN_INFO_UNTAGGED = 1 << 2


def port_settings(vlan, trunk) -> dict:
    """The Port columns for an untagged VLAN (``vlan``) and tagged ones (``trunk``, a list of ids).

    The same meaning as on a Linux bridge port: ``vlan`` alone is an access port; ``vlan`` and
    ``trunk`` a trunk whose untagged frames belong to ``vlan`` (native-untagged); ``trunk`` alone a
    trunk, which drops untagged frames (VLAN 0 is never in a trunk list here).
    """
    trunks = sorted(trunk or [])
    if vlan is not None and trunks:
        mode = "native-untagged"
    elif vlan is not None:
        mode = "access"
    elif trunks:
        mode = "trunk"
    else:
        mode = None
    return {"tag": vlan, "trunks": trunks, "vlan_mode": mode}


def wanted_vlans(spec) -> dict:
    """{vid: untagged-PVID?} that the request asks for (omitted vlan or trunk: none of that kind)."""
    wanted = {vid: False for vid in vlan_set(spec.trunk or [])}
    if spec.vlan is not None:
        wanted[spec.vlan] = True
    return wanted


def current_vlans(flags_by_vid: dict) -> dict:
    """{vid: untagged-PVID?} of a Linux bridge port as the kernel lists it."""
    both = BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED
    return {vid: flags & both == both for vid, flags in flags_by_vid.items()}


def vlan_changes(spec, flags_by_vid: dict) -> dict | None:
    """The VLAN requests that turn a port's membership into what ``spec`` asks; None if it already is."""
    want, have = wanted_vlans(spec), current_vlans(flags_by_vid)
    if want == have:
        return None
    untagged = [vid for vid, pvid in want.items() if pvid and have.get(vid) is not True]
    tagged = [vid for vid, pvid in want.items() if not pvid and have.get(vid) is not False]
    return {"untagged": compress_vlans(untagged), "tagged": compress_vlans(tagged),
            "remove": compress_vlans(set(have) - set(want))}


def create_vlans(spec) -> dict | None:
    """The VLAN requests for a new port (the kernel gives a new port the bridge's default PVID, 1,
    which is removed unless asked for)."""
    if not spec.vlans_given:
        return None
    changes = vlan_changes(spec, {}) or {"untagged": [], "tagged": [], "remove": []}
    return dict(changes, default_pvid_goes=True)


def linux_view(flags_by_vid: dict | None) -> dict:
    """The vlan/trunk a Linux bridge port has, as results report them."""
    if flags_by_vid is None:
        return {"vlan": None, "trunk": None}
    have = current_vlans(flags_by_vid)
    pvid = [vid for vid, untagged in have.items() if untagged]
    return {"vlan": pvid[0] if pvid else None,
            "trunk": format_vlans(compress_vlans(vid for vid, untagged in have.items() if not untagged))}


def ovs_view(port: dict | None) -> dict:
    """The vlan/trunk/external_ids of an OVS port row, as results report them."""
    if port is None:
        return {"vlan": None, "trunk": None, "external_ids": None}
    return {"vlan": port["tag"], "trunk": format_vlans(compress_vlans(port["trunks"])),
            "external_ids": dict(port["external_ids"])}


def wanted_external_ids(spec) -> dict:
    ids = dict(spec.external_ids or {})
    if spec.lease is not None:
        ids[LEASE_KEY] = spec.lease
    return ids


def wanted_ovs_settings(spec) -> dict:
    """The Port columns the request sets ({} when it gives neither vlan nor trunk: left alone)."""
    if not spec.vlans_given:
        return {}
    return port_settings(spec.vlan, sorted(vlan_set(spec.trunk or [])))


def ovs_changes(spec, port: dict) -> dict | None:
    """What differs between an existing OVS port row and the request; None when nothing does."""
    settings = {key: value for key, value in wanted_ovs_settings(spec).items() if port.get(key) != value}
    ids = {key: value for key, value in wanted_external_ids(spec).items()
           if port["external_ids"].get(key) != value}
    if not settings and not ids:
        return None
    return {"settings": settings, "external_ids": ids}


def owned_by(port: dict | None, lease: str | None) -> bool:
    """An OVS row that carries ``lease`` (a row without our key is not ours to remove)."""
    return port is not None and lease is not None and port["external_ids"].get(LEASE_KEY) == lease
