# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The task's parameters: the argument spec, and their validation into DeviceSpec/TaskSpec.

Every check that needs no system state happens here, for every item, before
anything is changed; each message names the option (and the item's index in
batch mode) and what is allowed.
"""

from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass

from ansible_collections.netdev.tuntap.plugins.module_utils._marks import MAX_MARK_BYTES, mark_bytes
from ansible_collections.netdev.tuntap.plugins.module_utils._names import (
    InvalidName, is_template, validate_name, validate_template)
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import NetnsError, validate_netns_name
from ansible_collections.netdev.tuntap.plugins.module_utils._values import (
    MAX_LEASE_LENGTH, MTU_RANGE, lease_problem, mac_problem, normalize_mac)

DEFAULT_REGISTRY = "/var/lib/netdev_tuntap/registry.json"
ID_LIMIT = 2 ** 31 - 1

DEVICE_OPTIONS = dict(
    name=dict(type="str"),
    lease=dict(type="str"),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    mode=dict(type="str", default="tap", choices=["tap", "tun"]),
    owner=dict(type="str"),
    group=dict(type="str"),
    multi_queue=dict(type="bool", default=False),
    vnet_hdr=dict(type="bool", default=False),
    packet_info=dict(type="bool", default=False),
    mtu=dict(type="int"),
    mac_address=dict(type="str"),
    bridge=dict(type="str"),
    up=dict(type="bool", default=True),
    force=dict(type="bool", default=False),
)

TASK_OPTIONS = dict(
    netns=dict(type="str"),
    registry=dict(type="path", default=DEFAULT_REGISTRY),
    max_id=dict(type="int", default=99999),
    reuse_delay=dict(type="int", default=3600),
    # The items are checked by parse_device, not by AnsibleModule: its messages do not say which
    # item is wrong, and a batch's failure must name the index (the suboptions are documented).
    devices=dict(type="list", elements="dict"),
    prune_prefix=dict(type="str"),
)

ARGUMENT_SPEC = dict(TASK_OPTIONS, **DEVICE_OPTIONS)
MUTUALLY_EXCLUSIVE = [["devices", opt] for opt in DEVICE_OPTIONS if DEVICE_OPTIONS[opt].get("default") is None]


class SpecError(ValueError):
    """Bad input (message is user-facing)."""


@dataclass
class DeviceSpec:
    where: str                 # "" in the single form, "devices[3]." in batch mode
    name: str | None           # a literal name, or None when a template or only a lease is given
    template: str | None
    lease: str | None
    state: str
    mode: str
    owner: int | None
    group: int | None
    multi_queue: bool
    vnet_hdr: bool
    packet_info: bool
    mtu: int | None
    mac_address: str | None
    bridge: str | None         # "" detaches from any bridge
    up: bool
    force: bool

    def label(self) -> str:
        """How messages refer to this device request."""
        what = self.name or self.template or ""
        if self.lease:
            what = "%s (lease %r)" % (what, self.lease) if what else "lease %r" % self.lease
        return ("%s %s" % (self.where.rstrip("."), what)).strip()


@dataclass
class TaskSpec:
    netns: str | None
    registry: str
    max_id: int
    reuse_delay: int
    prune_prefix: str | None
    devices: list
    batch: bool


def _int(value, where: str, low: int, high: int, what: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value), 10)
        except ValueError:
            raise SpecError("%s must be an integer, got %r" % (where, value))
    if not low <= value <= high:
        raise SpecError("%s %d is out of range; allowed: %d to %d%s" % (where, value, low, high, what))
    return value


def _bool(value, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("yes", "true", "on", "1"):
        return True
    if text in ("no", "false", "off", "0"):
        return False
    raise SpecError("%s must be a boolean, got %r" % (where, value))


def _choice(value, where: str, choices) -> str:
    if value not in choices:
        raise SpecError("%s %r is not allowed; choose one of %s" % (where, value, ", ".join(choices)))
    return value


def resolve_user(value, where: str) -> int | None:
    if value is None:
        return None
    text = str(value)
    if text.isascii() and text.isdigit():
        return _int(text, where, 0, 2 ** 32 - 2)
    try:
        return pwd.getpwnam(text).pw_uid
    except (KeyError, ValueError, UnicodeError):  # ValueError: an embedded NUL
        raise SpecError("%s %r is not a user on this host; give a user name or a numeric uid" % (where, text))


def resolve_group(value, where: str) -> int | None:
    if value is None:
        return None
    text = str(value)
    if text.isascii() and text.isdigit():
        return _int(text, where, 0, 2 ** 32 - 2)
    try:
        return grp.getgrnam(text).gr_gid
    except (KeyError, ValueError, UnicodeError):  # ValueError: an embedded NUL
        raise SpecError("%s %r is not a group on this host; give a group name or a numeric gid" % (where, text))


def _mac(value, where: str) -> str:
    text = str(value) if not isinstance(value, int) or isinstance(value, bool) else value
    why = mac_problem(text)
    if why:
        raise SpecError("%s %r %s" % (where, text, why))
    return normalize_mac(text)


def _lease(value, where: str) -> str | None:
    if value is None:
        return None
    text = str(value)
    why = lease_problem(text)
    if why:
        raise SpecError("%s %r %s" % (where, text, why))
    return text


def parse_device(raw: dict, where: str, max_id: int) -> DeviceSpec:
    values = {key: raw.get(key, opt.get("default")) for key, opt in DEVICE_OPTIONS.items()}
    unknown = sorted(set(raw) - set(DEVICE_OPTIONS))
    if unknown:
        raise SpecError("%s%s is not a device option; allowed: %s"
                        % (where, unknown[0], ", ".join(sorted(DEVICE_OPTIONS))))
    state = _choice(values["state"], where + "state", ("present", "absent"))
    mode = _choice(values["mode"], where + "mode", ("tap", "tun"))
    lease = _lease(values["lease"], where + "lease")
    name = values["name"]
    template = None
    try:
        if name is not None and is_template(str(name)):
            template, name = str(name), None
            validate_template(template, max_id, where + "name")
        elif name is not None:
            name = str(name)
            validate_name(name, where + "name")
    except InvalidName as exc:
        raise SpecError(str(exc))
    if name is None and template is None:
        if state == "present":
            raise SpecError("%sname is required to create a device: give an interface name or a template "
                            "such as 'vnet%%d'" % where)
        if lease is None:
            raise SpecError("%sname or lease is required with state 'absent'" % where)
    if state == "absent" and template is not None and lease is None:
        raise SpecError("%sname %r is a template; removing by template alone is ambiguous: give the lease "
                        "that holds the device, or the device's own name" % (where, template))
    if lease is not None and mark_bytes(lease, template) > MAX_MARK_BYTES:
        raise SpecError("%slease %r is too long: the device's alias carries the lease and template in at most "
                        "%d bytes, and with this template it would take %d; use a shorter lease"
                        % (where, lease, MAX_MARK_BYTES, mark_bytes(lease, template)))
    mac = values["mac_address"]
    bridge = values["bridge"]
    if mode == "tun" and mac is not None:
        raise SpecError("%smac_address is not allowed with mode 'tun': a tun device has no link-layer "
                        "address" % where)
    if mode == "tun" and bridge:
        raise SpecError("%sbridge %r is not allowed with mode 'tun': only tap devices carry Ethernet "
                        "frames a bridge can forward" % (where, bridge))
    if bridge:
        try:
            validate_name(str(bridge), where + "bridge")
        except InvalidName as exc:
            raise SpecError(str(exc))
    return DeviceSpec(
        where=where, name=name, template=template, lease=lease, state=state, mode=mode,
        owner=resolve_user(values["owner"], where + "owner"),
        group=resolve_group(values["group"], where + "group"),
        multi_queue=_bool(values["multi_queue"], where + "multi_queue"),
        vnet_hdr=_bool(values["vnet_hdr"], where + "vnet_hdr"),
        packet_info=_bool(values["packet_info"], where + "packet_info"),
        mtu=None if values["mtu"] is None else _int(values["mtu"], where + "mtu", *MTU_RANGE),
        mac_address=None if mac is None else _mac(mac, where + "mac_address"),
        bridge=None if bridge is None else str(bridge),
        up=_bool(values["up"], where + "up"),
        force=_bool(values["force"], where + "force"),
    )


def _check_duplicates(devices: list) -> None:
    seen: dict = {}
    for index, spec in enumerate(devices):
        keys = []
        if spec.lease is not None:
            keys.append(("lease", spec.lease))
        if spec.name is not None:
            keys.append(("name", spec.name))
        for key in keys:
            if key in seen:
                raise SpecError("devices[%d].%s and devices[%d].%s are both %r; each lease and each literal "
                                "name may appear once per task" % (seen[key], key[0], index, key[0], key[1]))
            seen[key] = index


def parse_task(params: dict) -> TaskSpec:
    """Validate the task's parameters (module options; omitted ones take their defaults)."""
    unknown = sorted(set(params) - set(ARGUMENT_SPEC))
    if unknown:
        raise SpecError("%s is not an option of tap_device; allowed: %s"
                        % (unknown[0], ", ".join(sorted(ARGUMENT_SPEC))))
    max_id = _int(params.get("max_id", 99999) if params.get("max_id") is not None else 99999,
                  "max_id", 0, ID_LIMIT)
    reuse_delay = params.get("reuse_delay")
    reuse_delay = _int(3600 if reuse_delay is None else reuse_delay, "reuse_delay", 0, ID_LIMIT)
    netns = params.get("netns")
    if netns is not None:
        try:
            validate_netns_name(str(netns))
        except NetnsError as exc:
            raise SpecError(str(exc))
        netns = str(netns)
    registry = str(params.get("registry") or DEFAULT_REGISTRY)
    prune_prefix = params.get("prune_prefix")
    if prune_prefix is not None and not str(prune_prefix):
        raise SpecError("prune_prefix must not be empty: it would prune every lease in the registry")
    devices = params.get("devices")
    if devices is not None:
        given = [opt for opt in DEVICE_OPTIONS if params.get(opt) is not None
                 and params.get(opt) != DEVICE_OPTIONS[opt].get("default")]
        if given:
            raise SpecError("devices and %s are mutually exclusive: in batch mode give per-device options "
                            "inside each item of devices" % given[0])
        if not isinstance(devices, list):
            raise SpecError("devices must be a list of device dicts")
        specs = []
        for index, item in enumerate(devices):
            if not isinstance(item, dict):
                raise SpecError("devices[%d] must be a dict of device options, got %r" % (index, item))
            try:
                specs.append(parse_device(item, "devices[%d]." % index, max_id))
            except SpecError as exc:
                lease = item.get("lease")
                if lease is None:
                    raise
                # A role user knows the lease (guest and NIC), not the item's index.
                raise SpecError("%s (the item with lease %r)" % (exc, str(lease)))
        _check_duplicates(specs)
        batch = True
    else:
        specs = [parse_device({k: params[k] for k in DEVICE_OPTIONS if k in params}, "", max_id)]
        batch = False
    if prune_prefix is not None and not batch:
        raise SpecError("prune_prefix needs the batch form: list the devices to keep in devices")
    return TaskSpec(netns=netns, registry=registry, max_id=max_id, reuse_delay=reuse_delay,
                    prune_prefix=None if prune_prefix is None else str(prune_prefix),
                    devices=specs, batch=batch)
