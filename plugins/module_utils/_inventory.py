# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What tap_device_info reports: the devices present and what the registry believes. Pure.

Fed by a World snapshot (one raw link dump per namespace, holders from /proc when asked)
and a registry state read without its lock; reads nothing itself. A tun/tap device is:

  leased     a lease of the registry is bound to its name in its namespace
  orphan     it carries our mark but no lease is bound to it (its lease was lost, released
             while the device stayed, or it was made from a template without a lease)
  stranger   no mark, but its name matches a template the registry allocates from: a device
             someone else made under a name our counters hand out
  unmanaged  none of these

A lease whose device is not there (or whose name now belongs to another device) is
"missing"; leases in namespaces that were not read are reported with ``device_present`` null.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from ansible_collections.netdev.tuntap.plugins.module_utils._names import (
    InvalidName, TemplateMatcher, validate_template)

# A template's numbers are matched with the widest bound any template can hold (see _ledger).
ID_LIMIT = 2 ** 31 - 1


@dataclass
class Filters:
    names: list | None = None       # shell patterns on device names
    templates: list | None = None   # templates the device name (or the lease's template) must match
    lease_prefix: str | None = None

    def name_ok(self, name: str) -> bool:
        return not self.names or any(fnmatch.fnmatchcase(name, pattern) for pattern in self.names)

    def lease_ok(self, lease: str | None) -> bool:
        return self.lease_prefix is None or (lease is not None and lease.startswith(self.lease_prefix))

    def template_ok(self, name: str, template: str | None, matchers: dict) -> bool:
        if not self.templates:
            return True
        return template in self.templates or any(matchers[t].number(name) is not None for t in self.templates)

    def keep(self, name: str, lease: str | None, template: str | None, matchers: dict) -> bool:
        return self.name_ok(name) and self.lease_ok(lease) and self.template_ok(name, template, matchers)


def _matchers(templates) -> dict:
    found = {}
    for template in templates:
        if template is None or template in found:
            continue
        try:
            validate_template(template, 0)
        except InvalidName:
            continue  # a record written by hand; it matches nothing
        found[template] = TemplateMatcher(template, ID_LIMIT)
    return found


def _flags(tun) -> list:
    names = [tun.mode]
    if tun.multi_queue:
        names.append("multi_queue")
    if tun.vnet_hdr:
        names.append("vnet_hdr")
    names.append("packet_info" if tun.packet_info else "no_pi")
    if tun.persist:
        names.append("persist")
    return names


def _where(netns) -> str:
    return "netns %r" % netns if netns else "the host namespace"


def build(state: dict, world, namespaces: list, filters: Filters, now: float) -> dict:
    """The module's result (without ``changed``) for the ``namespaces`` read into ``world``."""
    leases = state.get("leases", {})
    bound = {(rec.get("netns"), rec["name"]): key for key, rec in leases.items()}
    known_templates = set(state.get("counters", {})) | {rec.get("template") for rec in leases.values()}
    matchers = _matchers(known_templates | set(filters.templates or ()))
    registry_templates = [t for t in sorted(matchers) if t in known_templates]

    devices, orphans, strangers = [], [], []
    for netns in namespaces:
        if not world.exists(netns):
            continue
        links = world.devices(netns)
        by_index = {link.index: link.name for link in links.values()}
        for name in sorted(links):
            link = links[name]
            if link.tun is None:
                continue
            entry = _device(link, netns, by_index, bound.get((netns, name)), leases, world, registry_templates,
                            matchers)
            if not filters.keep(name, entry["lease"], entry["template"], matchers):
                continue
            devices.append(entry)
            if entry["status"] == "orphan":
                orphans.append({"name": name, "netns": netns, "ifindex": link.index, "lease": entry["lease"],
                                "template": entry["template"], "reason": entry["reason"]})
            elif entry["status"] == "stranger":
                strangers.append({"name": name, "netns": netns, "ifindex": link.index,
                                  "template": entry["template"]})

    lease_list, missing = [], []
    for key in sorted(leases):
        record = leases[key]
        netns, name = record.get("netns"), record["name"]
        if not filters.keep(name, key, record.get("template"), matchers):
            continue
        present, reason = _lease_device(world, namespaces, netns, name, key)
        entry = {"lease": key, "name": name, "template": record.get("template"), "id": record.get("id"),
                 "netns": netns, "mode": record.get("mode"), "multi_queue": record.get("multi_queue"),
                 "since": record.get("since"), "ifindex": record.get("ifindex"), "boot_id": record.get("boot_id"),
                 "netns_inode": record.get("netns_inode"), "device_present": present}
        lease_list.append(entry)
        if present is False:
            missing.append({"lease": key, "name": name, "netns": netns, "reason": reason})

    held = []
    for name in sorted(state.get("released", {})):
        rec = state["released"][name]
        if not filters.keep(name, None, rec.get("template"), matchers):  # a released name has no lease
            continue
        hold = rec.get("hold") or 0
        held.append({"name": name, "template": rec.get("template"), "netns": rec.get("netns"),
                     "released_at": rec["at"], "hold": hold, "held_until": rec["at"] + hold,
                     "held": now < rec["at"] + hold})

    counters = [{"template": t, "last": n} for t, n in sorted(state.get("counters", {}).items())
                if not filters.templates or t in filters.templates]
    return {
        "devices": devices, "leases": lease_list, "counters": counters, "held_names": held,
        "missing": missing, "orphans": orphans, "strangers": strangers,
        "namespaces": [{"netns": netns, "exists": world.exists(netns)} for netns in namespaces],
    }


def _device(link, netns, by_index: dict, binding, leases: dict, world, registry_templates, matchers) -> dict:
    tun = link.tun
    mark = link.mark
    pids = world.holders_of(netns, link.name)
    record = leases.get(binding) if binding else None
    if record is not None:
        status, reason = "leased", None
        lease, template, number = binding, record.get("template"), record.get("id")
    elif mark is not None:
        lease, template = mark["lease"], mark["template"]
        number = matchers[template].number(link.name) if template in matchers else None
        status = "orphan"
        if lease is None:
            reason = "made from a template without a lease"
        elif lease in leases:
            reason = "its lease %r is bound to %r in %s" % (lease, leases[lease]["name"],
                                                            _where(leases[lease].get("netns")))
        else:
            reason = "the registry holds no lease %r" % lease
    else:
        lease = None
        template = next((t for t in registry_templates if matchers[t].number(link.name) is not None), None)
        number = matchers[template].number(link.name) if template else None
        status, reason = ("stranger", None) if template else ("unmanaged", None)
    return {
        "name": link.name, "netns": netns, "ifindex": link.index, "mode": tun.mode, "flags": _flags(tun),
        "owner": tun.owner, "group": tun.group, "mtu": link.mtu, "mac_address": link.mac_address,
        "bridge": by_index.get(link.master) if link.master else None, "operstate": link.operstate,
        "up": link.up, "carrier": link.carrier, "multi_queue": tun.multi_queue, "queues": tun.queues,
        "in_use": link.in_use or bool(pids), "holders": pids,
        "status": status, "reason": reason, "lease": lease, "template": template, "id": number,
        "mark": mark,
    }


def _lease_device(world, namespaces: list, netns, name: str, lease: str) -> tuple:
    """(device_present, reason it is missing): present None when ``netns`` was not read."""
    if netns not in namespaces:
        return None, None
    if not world.exists(netns):
        return False, "%s does not exist" % _where(netns)
    link = world.device(netns, name)
    if link is None:
        return False, "no device %r in %s" % (name, _where(netns))
    if link.tun is None or link.mark is None or link.mark["lease"] != lease:
        return False, "%r in %s is another device (%s)" % (
            name, _where(netns), "not a tun/tap" if link.tun is None else
            "unmarked" if link.mark is None else "marked for lease %r" % link.mark["lease"])
    return True, None
