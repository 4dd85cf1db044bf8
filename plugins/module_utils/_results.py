# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a task returns: per device what the kernel confirmed (or check mode predicts), and the diff.

Everything is read from the actions (what each one changed) and the links before and
after the run; nothing here decides or changes anything.
"""

from __future__ import annotations

from ansible_collections.netdev.tuntap.plugins.module_utils import _ports
from ansible_collections.netdev.tuntap.plugins.module_utils._actions import Kind
from ansible_collections.netdev.tuntap.plugins.module_utils._values import format_vlans
from ansible_collections.netdev.tuntap.plugins.module_utils._device import MACVLAN_KINDS, MACVTAP
from ansible_collections.netdev.tuntap.plugins.module_utils._nodes import node_path


def tun_flag_names(mode: str, multi_queue: bool, vnet_hdr: bool, packet_info: bool, persist: bool) -> list:
    names = [mode]
    if multi_queue:
        names.append("multi_queue")
    if vnet_hdr:
        names.append("vnet_hdr")
    names.append("packet_info" if packet_info else "no_pi")
    if persist:
        names.append("persist")
    return names


def _empty(action, netns) -> dict:
    spec = action.spec
    return {
        "name": action.name, "id": action.number, "template": action.template, "lease": action.lease,
        "state": spec.state if spec is not None else "absent", "changed": action.changed,
        "ifindex": None, "mac_address": None, "mtu": None, "owner": None, "group": None, "flags": [],
        "bridge": None, "netns": netns, "mode": spec.mode if spec is not None else None,
        "multi_queue": None, "vnet_hdr": None, "packet_info": None, "up": None, "in_use": False,
        "bridge_type": None, "vlan": None, "trunk": None, "external_ids": None, "txqueuelen": None, "ipv6": None,
        "kind": _kind_of(action), "link": None, "macvtap_mode": None, "char_device": None,
    }


def port_view(world, device, by_index: dict) -> dict:
    """The bridge port and host side of ``device`` as ``world`` shows it (None: not read)."""
    view = {"bridge": by_index.get(device.master) if device.master else None, "bridge_type": None,
            "vlan": None, "trunk": None, "external_ids": None, "txqueuelen": device.txqueuelen,
            "ipv6": (world.ipv6 or {}).get(device.name) if world is not None else None}
    if world is None:
        return view
    ovs_port = world.ovs_port(device.name)
    if ovs_port is not None and ovs_port["bridge"]:
        view.update(_ports.ovs_view(ovs_port), bridge=ovs_port["bridge"], bridge_type="ovs")
    elif device.master:
        view["bridge_type"] = "linux"
        if world.port_vlans is not None:
            view.update(_ports.linux_view(world.port_vlans.get(device.index, {})))
    return view


def _kind_of(action) -> str | None:
    """The kind the item is about: the device's, for a removal (the task's kind is for creating)."""
    if action.kind.removes:
        return action.device.managed_kind if action.device is not None else None
    return action.spec.kind


def _macvlan_result(result: dict, action, device, by_index: dict) -> None:
    """The result entry of an existing macvtap/macvlan."""
    info = device.macvlan
    node = info.node if device.kind == MACVTAP else None
    result.update(
        name=device.name, ifindex=device.index, mac_address=device.mac_address, mtu=device.mtu,
        owner=node.owner if node else None, group=node.group if node else None, bridge=None, mode="tap",
        multi_queue=False, vnet_hdr=None, packet_info=None, up=device.up, flags=[],
        # Who holds a macvtap takes a scan of every process; done only when removing one.
        in_use=None if device.kind == MACVTAP else False,
        kind=device.kind, link=by_index.get(info.link), macvtap_mode=info.mode,
        char_device=action.node if node is not None and node.rdev == info.chardev else None)


def device_result(action, device, by_index: dict, netns, predicted: bool, world=None) -> dict:
    """The result entry for one item; ``device`` is the link after the run (None if gone), ``world``
    the snapshot its port and host side are read from."""
    result = _empty(action, netns)
    if action.kind.removes:
        return result
    if (device is not None and device.managed_kind in MACVLAN_KINDS
            and not (predicted and action.kind is Kind.CREATE)):
        _macvlan_result(result, action, device, by_index)
        if predicted and action.changes:
            _apply_predicted_changes(result, action.changes, by_index)
            if "node" in action.changes:
                result.update(owner=action.changes["node"].owner, group=action.changes["node"].group,
                              char_device=action.node)
        return result
    if device is not None and device.tun is not None and not (predicted and action.kind is Kind.CREATE):
        tun = device.tun
        result.update(
            name=device.name, ifindex=device.index, mac_address=device.mac_address, mtu=device.mtu,
            owner=tun.owner, group=tun.group, bridge=by_index.get(device.master) if device.master else None,
            mode=tun.mode, multi_queue=tun.multi_queue, vnet_hdr=tun.vnet_hdr, packet_info=tun.packet_info,
            up=device.up, in_use=device.in_use,
            flags=tun_flag_names(tun.mode, tun.multi_queue, tun.vnet_hdr, tun.packet_info, tun.persist))
        result.update(port_view(world, device, by_index))
        if predicted and action.changes:
            _apply_predicted_changes(result, action.changes, by_index)
            _predict_port(result, action.spec, action.changes)
        return result
    # A device check mode would create: report what the request and defaults would give.
    spec = action.spec
    owner = spec.owner if spec.owner is not None or spec.group is not None else 0
    if spec.kind in MACVLAN_KINDS:
        macvtap = spec.kind == MACVTAP
        result.update(
            mac_address=spec.mac_address, mtu=spec.mtu, owner=owner if macvtap else None,
            group=(spec.group or 0) if macvtap else None, mode="tap", multi_queue=False, up=spec.up,
            in_use=None if macvtap else False, link=spec.link, macvtap_mode=spec.macvtap_mode,
            char_device=action.node)
        return result
    master = action.master
    result.update(
        mac_address=spec.mac_address, mtu=spec.mtu, owner=owner, group=spec.group,
        bridge=by_index.get(master) if master else None, multi_queue=spec.multi_queue,
        vnet_hdr=spec.vnet_hdr, packet_info=spec.packet_info, up=spec.up,
        flags=tun_flag_names(spec.mode, spec.multi_queue, spec.vnet_hdr, spec.packet_info, True),
        txqueuelen=spec.txqueuelen, ipv6=bool(action.ipv6))
    port = action.port or {}
    if port:
        result["bridge"] = port["bridge"]
        result["bridge_type"] = port["kind"]
        _predict_port(result, spec, {"ovs_port" if port["kind"] == "ovs" else "vlans": port})
    return result


def _predict_port(result: dict, spec, changes: dict) -> None:
    if "vlans" in changes or ("ovs_port" in changes and spec.vlans_given):
        result["vlan"] = spec.vlan
        result["trunk"] = format_vlans(spec.trunk or [])
    if "ovs_port" in changes:
        result["bridge"] = changes["ovs_port"]["bridge"]
        result["bridge_type"] = "ovs"
        result["external_ids"] = dict(result.get("external_ids") or {}, **_ports.wanted_external_ids(spec))
    if "ovs_detach" in changes:
        result.update(bridge_type="linux" if changes.get("master") else None, external_ids=None)
    for key in ("txqueuelen", "ipv6"):
        if key in changes:
            result[key] = changes[key]


def _apply_predicted_changes(result: dict, changes: dict, by_index: dict) -> None:
    for key in ("mtu", "mac_address", "owner", "group", "up"):
        if key in changes:
            result[key] = changes[key]
    if "master" in changes:
        result["bridge"] = by_index.get(changes["master"]) if changes["master"] else None


SETTINGS = ("name", "lease", "netns", "mode", "multi_queue", "mtu", "mac_address", "bridge", "up",
            "owner", "group", "bridge_type", "vlan", "trunk", "external_ids", "txqueuelen", "ipv6")
# A macvtap/macvlan's diff says what it is and where it sends (its node's owner for a macvtap).
MACVLAN_SETTINGS = ("name", "lease", "netns", "kind", "link", "macvtap_mode", "mtu", "mac_address", "up",
                    "owner", "group", "char_device")


def _macvlan_before(device, netns, by_index: dict) -> dict:
    node = device.macvlan.node if device.kind == MACVTAP else None
    return {"name": device.name, "lease": device.mark["lease"] if device.mark else None, "netns": netns,
            "kind": device.kind, "link": by_index.get(device.macvlan.link), "macvtap_mode": device.macvlan.mode,
            "mtu": device.mtu, "mac_address": device.mac_address, "up": device.up,
            "owner": node.owner if node else None, "group": node.group if node else None,
            "char_device": node_path(netns, device.name) if node and node.rdev == device.macvlan.chardev else None}


def settings_diff(action, before_device, before_by_index: dict, after: dict, world=None) -> dict:
    """Ansible diff of one device's settings: before the run and after (or as predicted)."""
    label = action.name or action.lease or "device"
    macvlan = action.spec is not None and action.spec.kind in MACVLAN_KINDS
    if before_device is None or action.replaces is not None:
        before = {}
    elif before_device.tun is None:
        before = _macvlan_before(before_device, after["netns"], before_by_index)
    else:
        tun = before_device.tun
        # The lease the device carries now (its mark), not the one the task asks for.
        carried = before_device.mark["lease"] if before_device.mark else None
        before = {"name": before_device.name, "lease": carried, "netns": after["netns"],
                  "mode": tun.mode, "multi_queue": tun.multi_queue, "mtu": before_device.mtu,
                  "mac_address": before_device.mac_address,
                  "bridge": before_by_index.get(before_device.master) if before_device.master else None,
                  "up": before_device.up, "owner": tun.owner, "group": tun.group}
        before.update(port_view(world, before_device, before_by_index))
    if action.kind.removes:
        after_state = {}
    else:
        after_state = {key: after.get(key) for key in (MACVLAN_SETTINGS if macvlan else SETTINGS)}
    return {"before": before, "after": after_state,
            "before_header": "%s (before)" % label, "after_header": "%s (after)" % label}


def report(task, actions: list, before: dict, after: dict, warnings: list, diff: bool, predicted: bool,
           ports=(None, None), adopted=()) -> dict:
    """The task's result. ``before``/``after``: the target namespace's links by name, before the
    run and after it (the same for check mode, whose changes are predicted from the actions);
    ``ports``: the snapshots (_world.World) their bridge ports are read from, before and after.
    ``adopted``: devices the registry took in from their marks (a change of the registry)."""
    world_before, world_after = ports
    by_index = {link.index: link.name for link in after.values()}
    before_by_index = {link.index: link.name for link in before.values()}
    devices = []
    diffs = []
    for action in actions:
        if action.spec is None:
            continue  # leases removed by a prefix are reported in 'pruned', not as items
        devices.append(device_result(action, after.get(action.name), by_index, task.netns, predicted, world_after))
        if diff:
            old = before.get(action.device.name) if action.device is not None else None
            diffs.append(settings_diff(action, old, before_by_index, devices[-1], world_before))
    pruned = [a.removal.lease for a in actions if a.spec is None and a.origin != "orphan"]
    if predicted and any(a.allocated and a.kind is Kind.CREATE for a in actions):
        warnings = warnings + ["check mode: predicted names may differ in a real run if another run allocates "
                               "from the same registry in the meantime"]
    result = {}
    if task.batch:
        result["devices"] = devices
        result["pruned"] = pruned
        if diff:
            result["diff"] = diffs
    else:
        result.update(devices[0])
        if diff:
            result["diff"] = diffs[0]
    # The task changed if any action did, orphans deleted included, or the registry took devices in.
    result.update(changed=bool(adopted) or any(a.changed for a in actions), warnings=warnings,
                  adopted=sorted(adopted))
    return result
