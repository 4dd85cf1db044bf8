# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters behind the guest_taps role: guests in, one batch of devices out, a fact back.

They run on the controller. Doing this in Jinja would cost seconds for a thousand NICs
and could not be unit-tested; here it is a few milliseconds and plain functions.
The documentation of each filter is in the YAML file of the same name beside this one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.netdev.tuntap.plugins.module_utils._device import (
    DEFAULT_MACVLAN_MODE, MACVLAN_MODES, MACVTAP)
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import MAX_MARK_BYTES, mark_bytes
from ansible_collections.netdev.tuntap.plugins.module_utils._names import (
    InvalidName, is_template, validate_name, validate_template)
from ansible_collections.netdev.tuntap.plugins.module_utils._values import (
    external_ids_problem, has_control_characters, lease_problem, mac_octets, mac_problem, mtu_problem,
    normalize_mac, parse_trunk, vlan_problem)

LEASE_PREFIX = "guest_taps:"
DEFAULT_TEMPLATE = "vmtap%d"
# Not macvtap%d: libvirt allocates from that with a counter of its own on the same host.
DEFAULT_DIRECT_TEMPLATE = "mvtap%d"
# A NIC's type, as libvirt's <interface type=...>: a tap ("ethernet") or a macvtap on a host NIC ("direct").
NIC_TYPES = ("ethernet", "direct")
# What only a tap has: a direct NIC sends through its lower device, and QEMU sets queues and headers.
ETHERNET_ONLY = ("bridge", "host_mac", "vnet_hdr")
DIRECT_ONLY = ("link", "mode")
# The kernel refuses more queues than this on one tap (MAX_TAP_QUEUES).
MAX_QUEUES = 256
STATES = ("present", "absent")
NIC_KEYS = frozenset(("id", "bridge", "mac", "host_mac", "mtu", "queues", "vnet_hdr", "owner", "group", "name",
                      "type", "link", "mode", "vlan", "trunk", "external_ids", "iface_id", "bridge_type"))
BRIDGE_TYPES = ("auto", "linux", "ovs")
PORT_KEYS = ("vlan", "trunk", "external_ids", "iface_id", "bridge_type")
# The module's key for the lease in an OVS row; a NIC may not set it (see _port_problems).
LEASE_EXTERNAL_ID = "netdev-tuntap-lease"
GUEST_KEYS = frozenset(("name", "state", "nics"))


def _plain(value):
    """A copy of a guest list made of built-in dicts and lists.

    From ansible-core 2.19 on, a filter's arguments are lazy containers that template a value on
    every access; the checks and the batch read each NIC's keys many times over. One pass that
    reads every value once costs a fraction of that (at 1000 NICs, tenths of a second per task).
    """
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def host_mac_for(guest_mac):
    """The host side's MAC by libvirt's rule: first octet 0xFE, or 0xFA when the guest's already is 0xFE.

    Two ends of one link with the same address make the bridge (and the guest) see
    "received packet with own address"; libvirt picks these values, we follow it.
    """
    octets = mac_octets(guest_mac)
    if octets is None:
        raise AnsibleFilterError("%r is not a MAC address" % (guest_mac,))
    octets[0] = 0xFA if octets[0] == 0xFE else 0xFE
    return ":".join("%02x" % octet for octet in octets)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _int_value(value):
    """An int from an int or a decimal string (as YAML or --extra-vars may give), else None."""
    if _is_int(value):
        return value
    if isinstance(value, str) and re.match(r"\A-?[0-9]+\Z", value.strip()):
        return int(value)
    return None


def _bool_value(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "true", "on", "1", "y"):
        return True
    if text in ("no", "false", "off", "0", "n"):
        return False
    return None


def _nic_id(nic, index):
    """The NIC's identity as the lease spells it; its index when no id is given."""
    value = nic.get("id") if isinstance(nic, dict) else None
    return index if value is None else value


def _guest_name(guest):
    """The guest's name as a string (a number such as a VM id counts), or None when unusable."""
    name = guest.get("name") if isinstance(guest, dict) else None
    if _is_int(name):
        return str(name)
    return name if isinstance(name, str) else None


def lease_for(guest_name, nic_id):
    return "%s%s/%s" % (LEASE_PREFIX, guest_name, nic_id)


def _guest_label(index, guest):
    name = _guest_name(guest)
    if name:
        return "guest %r (guest_taps_guests[%d])" % (name, index)
    return "guest_taps_guests[%d]" % index


def _name_problem(value, what):
    """Kernel name rules for a name or template (the module checks the rest, e.g. against max_id)."""
    if not isinstance(value, str) or not value:
        return "%s must be a non-empty string (an interface name or a template such as 'vmtap%%d')" % what
    try:
        if is_template(value):
            # max_id 0 checks the shape only: the module knows the real max_id and checks the length.
            validate_template(value, 0, what)
        else:
            validate_name(value, what)
    except InvalidName as exc:
        return str(exc)
    return None


def _owner_problem(value):
    if value is None or _is_int(value) and value >= 0:
        return None
    if isinstance(value, str) and value and not any(ch.isspace() or ch == ":" for ch in value):
        return None
    return "must be a user/group name or a non-negative numeric id, got %r" % (value,)


def _nic_type(nic):
    value = nic.get("type") if isinstance(nic, dict) else None
    return "ethernet" if value is None else value


def _direct_problems(where, nic):
    """What is wrong with the type/link/mode of one NIC (either type)."""
    problems = []
    nic_type = _nic_type(nic)
    if nic_type not in NIC_TYPES:
        return ["%s: type %r is not allowed; choose ethernet (a tap) or direct (a macvtap on a host NIC)"
                % (where, nic_type)]
    if nic_type == "ethernet":
        for key in DIRECT_ONLY:
            if nic.get(key) is not None:
                problems.append("%s: %s is only for type: direct (a macvtap on a host NIC)" % (where, key))
        return problems
    for key in ETHERNET_ONLY:
        if nic.get(key) is not None:
            problems.append("%s: %s is not allowed with type: direct; a macvtap sends through its link, and its "
                            "MAC is the guest's mac" % (where, key))
    if nic.get("queues") is not None and _int_value(nic["queues"]) != 1:
        problems.append("%s: queues %r is not allowed with type: direct; QEMU opens a macvtap once per queue "
                        "itself" % (where, nic["queues"]))
    link = nic.get("link")
    if link is None:
        problems.append("%s: link is required with type: direct: the host NIC the macvtap sends through" % where)
    else:
        why = _name_problem(link, where + ": link")
        if why is None and "%" in link:
            why = "%s: link %r must be the name of an existing device, not a template" % (where, link)
        if why:
            problems.append(why)
    mode = nic.get("mode")
    if mode is not None and mode not in MACVLAN_MODES:
        problems.append("%s: mode %r is not allowed; choose %s" % (where, mode, ", ".join(MACVLAN_MODES)))
    return problems


def _guest_problems(index, guest, seen_guests, seen_names, template, direct_template=DEFAULT_DIRECT_TEMPLATE):
    problems = []
    label = _guest_label(index, guest)
    if not isinstance(guest, dict):
        return ["%s must be a dict with name, state and nics, got %r" % (label, guest)]
    unknown = sorted(str(key) for key in set(guest) - GUEST_KEYS)
    if unknown:
        problems.append("%s: unknown key %s; a guest takes name, state and nics" % (label, ", ".join(unknown)))
    name = _guest_name(guest)
    if not name:
        problems.append("%s: name is required and must be a non-empty string" % label)
    elif "/" in name:
        problems.append("%s: name must not contain '/': it separates guest and NIC id in the lease "
                        "'guest_taps:<guest>/<nic id>'" % label)
    elif has_control_characters(name):
        problems.append("%s: name must not contain control characters" % label)
    elif name in seen_guests:
        problems.append("%s: name is also used by guest_taps_guests[%d]; guest names must be unique"
                        % (label, seen_guests[name]))
    else:
        seen_guests[name] = index
    state = guest.get("state", "present")
    if state is None:
        state = "present"
    if state not in STATES:
        problems.append("%s: state %r is not allowed; choose present or absent" % (label, state))
    nics = guest.get("nics")
    if nics is None:
        nics = []
    if not isinstance(nics, list):
        problems.append("%s: nics must be a list, got %r" % (label, nics))
        return problems
    if state == "absent":
        # Removal goes by the lease prefix guest_taps:<guest>/: the NICs' settings no longer matter.
        return problems
    seen_ids = {}
    for nic_index, nic in enumerate(nics):
        where = "%s nics[%d]" % (label, nic_index)
        if not isinstance(nic, dict):
            problems.append("%s must be a dict, got %r" % (where, nic))
            continue
        nic_id = _nic_id(nic, nic_index)
        if _is_int(nic_id):
            if nic_id < 0:
                problems.append("%s: id %r must not be negative" % (where, nic_id))
        elif not isinstance(nic_id, str) or not nic_id.strip():
            problems.append("%s: id must be a non-empty string or an integer, got %r" % (where, nic_id))
            continue
        elif has_control_characters(nic_id):
            problems.append("%s: id %r must not contain control characters" % (where, nic_id))
        key = str(nic_id)
        if key in seen_ids:
            hint = "" if "id" in nic and nics[seen_ids[key]].get("id") is not None else \
                " (a NIC without id takes its index as id)"
            problems.append("%s: id %r is also the id of nics[%d]; NIC ids must be unique within a guest%s"
                            % (where, nic_id, seen_ids[key], hint))
        else:
            seen_ids[key] = nic_index
        if isinstance(name, str) and name and "/" not in name:
            lease = lease_for(name, key)
            own = nic.get("name")
            default = direct_template if _nic_type(nic) == "direct" else template
            nic_template = (own if is_template(own) else None) if isinstance(own, str) and own else default
            why = lease_problem(lease)
            if why:
                problems.append("%s: its lease %r %s; use a shorter guest name or id"
                                % (where, lease[:40] + "..." if len(lease) > 40 else lease, why))
            elif isinstance(nic_template, (str, type(None))) and mark_bytes(lease, nic_template) > MAX_MARK_BYTES:
                # The device's alias carries lease and template (JSON-escaped) in at most 254 bytes.
                problems.append("%s: its lease %r is too long to be carried in the device's alias with template "
                                "%r (%d bytes, at most %d); use a shorter guest name or id"
                                % (where, lease[:40] + "...", nic_template, mark_bytes(lease, nic_template),
                                   MAX_MARK_BYTES))
        unknown = sorted(str(k) for k in set(nic) - NIC_KEYS)
        if unknown:
            problems.append("%s: unknown key %s; a NIC takes %s"
                            % (where, ", ".join(unknown), ", ".join(sorted(NIC_KEYS))))
        problems.extend(_direct_problems(where, nic))
        for mac_key in ("mac", "host_mac"):
            value = nic.get(mac_key)
            if value is not None:
                why = mac_problem(value)
                if why:
                    problems.append("%s: %s %r %s" % (where, mac_key, value, why))
        bridge = nic.get("bridge")
        if bridge is not None and bridge != "":
            why = _name_problem(bridge, where + ": bridge")
            if why is None and "%" in bridge:
                why = "%s: bridge %r must be the name of an existing bridge, not a template" % (where, bridge)
            if why:
                problems.append(why)
        mtu = nic.get("mtu")
        if mtu is not None:
            number = _int_value(mtu)
            why = "is not an integer" if number is None else mtu_problem(number)
            if why:
                problems.append("%s: mtu %r %s" % (where, mtu, why))
        queues = nic.get("queues")
        if queues is not None:
            number = _int_value(queues)
            if number is None or not 1 <= number <= MAX_QUEUES:
                problems.append("%s: queues %r must be an integer from 1 to %d" % (where, queues, MAX_QUEUES))
        if nic.get("vnet_hdr") is not None and _bool_value(nic["vnet_hdr"]) is None:
            problems.append("%s: vnet_hdr %r must be a boolean" % (where, nic["vnet_hdr"]))
        problems.extend(_port_problems(nic, where))
        for who in ("owner", "group"):
            why = _owner_problem(nic.get(who))
            if why:
                problems.append("%s: %s %s" % (where, who, why))
        dev_name = nic.get("name")
        if dev_name is not None:
            why = _name_problem(dev_name, where + ": name")
            if why:
                problems.append(why)
            elif not is_template(dev_name):
                if dev_name in seen_names:
                    problems.append("%s: name %r is also given to %s; a literal device name can serve one NIC"
                                    % (where, dev_name, seen_names[dev_name]))
                else:
                    seen_names[dev_name] = where
    return problems


def _port_problems(nic, where):
    """vlan, trunk, external_ids, iface_id and bridge_type of one NIC, by the module's own rules."""
    problems = []
    if nic.get("vlan") is not None:
        why = vlan_problem(nic["vlan"])
        if why:
            problems.append("%s: vlan %r %s" % (where, nic["vlan"], why))
    if nic.get("trunk") is not None:
        ranges, why = parse_trunk(nic["trunk"])
        if why:
            problems.append("%s: trunk %s" % (where, why))
        elif nic.get("vlan") is not None and not vlan_problem(nic["vlan"]) and any(
                low <= int(nic["vlan"]) <= high for low, high in ranges):
            problems.append("%s: trunk contains vlan %s, the untagged VLAN of the port" % (where, nic["vlan"]))
    ids = nic.get("external_ids")
    if ids is not None:
        why = external_ids_problem(ids)
        if why:
            problems.append("%s: external_ids %s" % (where, why))
        elif LEASE_EXTERNAL_ID in ids:
            problems.append("%s: external_ids key %r is set by the module from the lease; leave it out"
                            % (where, LEASE_EXTERNAL_ID))
    iface_id = nic.get("iface_id")
    if iface_id is not None and (not isinstance(iface_id, str) or not iface_id.strip()
                                 or has_control_characters(iface_id)):
        problems.append("%s: iface_id must be a non-empty string (the OVS logical port id), got %r"
                        % (where, iface_id))
    bridge_type = nic.get("bridge_type")
    if bridge_type is not None and bridge_type not in BRIDGE_TYPES:
        problems.append("%s: bridge_type %r is not allowed; choose %s" % (where, bridge_type, ", ".join(BRIDGE_TYPES)))
    port_keys = [key for key in ("vlan", "trunk", "external_ids", "iface_id") if nic.get(key) is not None]
    if port_keys and not nic.get("bridge"):
        problems.append("%s: %s needs bridge: VLANs and port ids belong to the port of a bridge"
                        % (where, port_keys[0]))
    ovs_keys = [key for key in ("external_ids", "iface_id") if nic.get(key) is not None]
    if ovs_keys and bridge_type == "linux":
        problems.append("%s: %s needs an Open vSwitch bridge, but bridge_type is 'linux'" % (where, ovs_keys[0]))
    return problems


def _port_item(nic):
    """The module options of a NIC's bridge port: VLANs, OVS external_ids (iface_id and the guest's MAC
    as attached-mac, as libvirt writes them, unless external_ids gives its own), bridge_type."""
    item = {}
    for key in ("vlan", "trunk", "bridge_type"):
        if nic.get(key) is not None:
            item[key] = nic[key]
    if nic.get("external_ids") is not None or nic.get("iface_id") is not None:
        ids = {}
        if nic.get("iface_id") is not None:
            ids["iface-id"] = nic["iface_id"]
        if nic.get("mac") is not None:
            ids["attached-mac"] = normalize_mac(nic["mac"])
        ids.update({str(key): str(value) for key, value in (nic.get("external_ids") or {}).items()})
        item["external_ids"] = ids
    return item


def _template_problem(template, option, example):
    why = _name_problem(template, option)
    if why is None and not is_template(template):
        why = ("%s %r must be a template with one '%%d' (e.g. %r): it names every NIC that has no name of "
               "its own" % (option, template, example))
    return why


def guest_tap_problems(guests, template=DEFAULT_TEMPLATE, direct_template=DEFAULT_DIRECT_TEMPLATE):
    """Everything wrong with a guest list, one message per problem naming the guest and NIC."""
    return _problems(_plain(guests), template, direct_template)


def _problems(guests, template, direct_template):
    if not isinstance(guests, list):
        return ["guest_taps_guests must be a list of guests, got %r" % (guests,)]
    problems = []
    if template is None:
        template = DEFAULT_TEMPLATE
    if direct_template is None:
        direct_template = DEFAULT_DIRECT_TEMPLATE
    for value, option, example in ((template, "guest_taps_template", "vmtap%d"),
                                   (direct_template, "guest_taps_direct_template", "mvtap%d")):
        why = _template_problem(value, option, example)
        if why:
            problems.append(why)
    seen_guests = {}
    seen_names = {}
    for index, guest in enumerate(guests):
        problems.extend(_guest_problems(index, guest, seen_guests, seen_names, template, direct_template))
    return problems


def _refuse_problems(guests, template, direct_template=DEFAULT_DIRECT_TEMPLATE):
    problems = _problems(guests, template, direct_template)
    if problems:
        raise AnsibleFilterError("guest_taps_guests has %d problem(s): %s" % (len(problems), "; ".join(problems)))


def _absent(guest):
    return (guest.get("state") or "present") == "absent"


def _direct_item(nic, name, lease, direct_template):
    """The tap_device item of a type: direct NIC: a macvtap on ``link`` whose MAC is the guest's own."""
    item = {
        "name": nic.get("name") if nic.get("name") is not None else direct_template,
        "lease": lease,
        "state": "present",
        "kind": MACVTAP,
        "link": nic["link"],
        "macvtap_mode": nic.get("mode") or DEFAULT_MACVLAN_MODE,
    }
    if nic.get("mac") is not None:
        # A macvtap is the guest's end on the wire (libvirt does the same): no host-side MAC of its own.
        item["mac_address"] = normalize_mac(nic["mac"])
    return item


def guest_tap_devices(guests, template=DEFAULT_TEMPLATE, owner=None, group=None,
                      direct_template=DEFAULT_DIRECT_TEMPLATE):
    """The tap_device module's ``devices`` list for a guest list: one item per NIC of each
    present guest, in input order. Absent guests give none: see guest_tap_remove_prefixes."""
    if direct_template is None:
        direct_template = DEFAULT_DIRECT_TEMPLATE
    guests = _plain(guests)
    _refuse_problems(guests, template, direct_template)
    if template is None:
        template = DEFAULT_TEMPLATE
    devices = []
    for guest in guests or []:
        if _absent(guest):
            continue
        name = _guest_name(guest)
        nics = guest.get("nics") or []
        for index, nic in enumerate(nics):
            if _nic_type(nic) == "direct":
                item = _direct_item(nic, name, lease_for(name, _nic_id(nic, index)), direct_template)
                if nic.get("mtu") is not None:
                    item["mtu"] = _int_value(nic["mtu"])
                _set_owner_group(item, nic, owner, group)
                devices.append(item)
                continue
            queues = _int_value(nic.get("queues", 1) if nic.get("queues") is not None else 1)
            vnet_hdr = True if nic.get("vnet_hdr") is None else _bool_value(nic["vnet_hdr"])
            item = {
                "name": nic.get("name") if nic.get("name") is not None else template,
                "lease": lease_for(name, _nic_id(nic, index)),
                "state": "present",
                "multi_queue": queues > 1,
                "vnet_hdr": vnet_hdr,
            }
            if nic.get("host_mac") is not None:
                item["mac_address"] = normalize_mac(nic["host_mac"])
            elif nic.get("mac") is not None:
                item["mac_address"] = host_mac_for(nic["mac"])
            if nic.get("bridge") is not None:
                item["bridge"] = nic["bridge"]
            if nic.get("mtu") is not None:
                item["mtu"] = _int_value(nic["mtu"])
            item.update(_port_item(nic))
            _set_owner_group(item, nic, owner, group)
            devices.append(item)
    return devices


def _set_owner_group(item, nic, owner, group):
    nic_owner = nic.get("owner") if nic.get("owner") is not None else owner
    nic_group = nic.get("group") if nic.get("group") is not None else group
    # The module's owner/group are strings (a name or a number); an int would be converted with a warning.
    if nic_owner is not None and nic_owner != "":
        item["owner"] = str(nic_owner)
    if nic_group is not None and nic_group != "":
        item["group"] = str(nic_group)


def guest_tap_remove_prefixes(guests, template=DEFAULT_TEMPLATE, direct_template=DEFAULT_DIRECT_TEMPLATE):
    """The tap_device module's ``remove_prefixes``: ``guest_taps:<guest>/`` of each absent guest.

    The module removes every lease under these prefixes, the NICs a guest still lists and
    those it no longer does alike, so the role never needs to read the registry itself.
    """
    guests = _plain(guests)
    _refuse_problems(guests, template, direct_template)
    return [lease_for(_guest_name(guest), "") for guest in guests or [] if _absent(guest)]


def guest_tap_fact(result, guests):
    """The ``guest_taps_devices`` fact: guest name -> list of NICs as the module made (or would make) them."""
    if isinstance(result, dict):
        if "devices" not in result:
            raise AnsibleFilterError("guest_tap_fact needs the tap_device batch result (a dict with 'devices'), "
                                     "got a dict with keys %s" % ", ".join(sorted(str(k) for k in result)))
        items = result["devices"]
    else:
        items = result
    if not isinstance(items, list):
        raise AnsibleFilterError("guest_tap_fact needs a list of device results, got %r" % (items,))
    guests = _plain(guests)
    by_lease = {}
    for item in items:
        if isinstance(item, dict) and item.get("lease"):
            by_lease[item["lease"]] = item
    fact = {}
    for guest in guests or []:
        if _absent(guest):
            continue
        name = _guest_name(guest)
        nics = []
        for index, nic in enumerate(guest.get("nics") or []):
            nic_id = _nic_id(nic, index)
            lease = lease_for(name, nic_id)
            made = by_lease.get(lease)
            if made is None:
                raise AnsibleFilterError("the tap_device result has no device for lease %r (guest %r, NIC %r)"
                                         % (lease, name, nic_id))
            queues = _int_value(nic.get("queues")) if nic.get("queues") is not None else 1
            if _nic_type(nic) == "direct":
                nics.append(_direct_fact(nic_id, lease, nic, made))
                continue
            nics.append({
                "id": nic_id,
                "device": made.get("name"),
                "lease": lease,
                "mac": normalize_mac(nic["mac"]) if nic.get("mac") is not None else None,
                "host_mac": made.get("mac_address"),
                "bridge": made.get("bridge"),
                "mtu": made.get("mtu"),
                "queues": queues,
                "multi_queue": bool(made.get("multi_queue", queues > 1)),
            })
            if any(nic.get(key) is not None for key in PORT_KEYS):
                # Only for NICs that ask for a port: the fact of every other NIC stays as it was.
                nics[-1].update(bridge_type=made.get("bridge_type"), vlan=made.get("vlan"), trunk=made.get("trunk"),
                                external_ids=made.get("external_ids"),
                                iface_id=(made.get("external_ids") or {}).get("iface-id"))
        fact[name] = nics
    return fact


def _direct_fact(nic_id, lease, nic, made):
    """A type: direct NIC's entry: the keys of a tap's, and what libvirt's <interface type='direct'>
    and QEMU's -netdev tap,fd=N need (type, link, mode, char_device)."""
    return {
        "id": nic_id,
        "device": made.get("name"),
        "lease": lease,
        "mac": normalize_mac(nic["mac"]) if nic.get("mac") is not None else None,
        "host_mac": made.get("mac_address"),
        "bridge": None,
        "mtu": made.get("mtu"),
        "queues": 1,
        "multi_queue": False,
        "type": "direct",
        "link": made.get("link") or nic.get("link"),
        "mode": made.get("macvtap_mode") or nic.get("mode") or DEFAULT_MACVLAN_MODE,
        "char_device": made.get("char_device"),
    }


class FilterModule:
    """netdev.tuntap guest_taps filters."""

    def filters(self):
        return {
            "guest_tap_devices": guest_tap_devices,
            "guest_tap_fact": guest_tap_fact,
            "guest_tap_problems": guest_tap_problems,
            "guest_tap_remove_prefixes": guest_tap_remove_prefixes,
        }
