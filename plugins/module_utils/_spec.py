# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The task's parameters: the argument spec, and their validation into DeviceSpec/TaskSpec.

Types, choices and unknown keys are checked by Ansible's own ArgumentSpecValidator, with
the same spec for the top-level options and for every item of ``devices`` (its messages
are prefixed with the item's index and lease). What a spec cannot say (names, templates,
MACs, ranges, combinations) is checked here too. Every check that needs no system state
happens before anything is changed.
"""

from __future__ import annotations

import grp
import math
import pwd
from dataclasses import dataclass, field

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError

from ansible_collections.netdev.tuntap.plugins.module_utils._device import (
    DEFAULT_MACVLAN_MODE, KINDS, MACVLAN, MACVLAN_KINDS, MACVLAN_MODES, TUNTAP)
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import MAX_MARK_BYTES, mark_bytes
from ansible_collections.netdev.tuntap.plugins.module_utils._ports import LEASE_KEY as LEASE_EXTERNAL_ID
from ansible_collections.netdev.tuntap.plugins.module_utils._names import (
    InvalidName, is_template, validate_name, validate_template)
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import NetnsError, validate_netns_name
from ansible_collections.netdev.tuntap.plugins.module_utils._values import (
    MTU_RANGE, external_ids_problem, is_utf8_text, lease_problem, mac_problem, normalize_mac, parse_trunk,
    vlan_problem)

DEFAULT_REGISTRY = "/var/lib/netdev_tuntap/registry.json"
DEFAULT_LOCK_TIMEOUT = 60
TXQUEUELEN_RANGE = (1, 2 ** 31 - 1)
ID_LIMIT = 2 ** 31 - 1
MAX_LOCK_TIMEOUT = 86400  # a day: longer is a hang, not a wait

DEVICE_OPTIONS = dict(
    name=dict(type="str"),
    lease=dict(type="str"),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    mode=dict(type="str", default="tap", choices=["tap", "tun"]),
    kind=dict(type="str", default=TUNTAP, choices=list(KINDS)),
    link=dict(type="str"),
    macvtap_mode=dict(type="str", choices=list(MACVLAN_MODES)),
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
    bridge_type=dict(type="str", default="auto", choices=["auto", "linux", "ovs"]),
    # vlan and trunk are checked by _values (raw here), so that "x", 0 and 4095 get one message.
    vlan=dict(type="raw"),
    trunk=dict(type="list", elements="raw"),
    bridge_vlan_filtering=dict(type="bool", default=False),
    external_ids=dict(type="dict"),
    ipv6=dict(type="bool"),
    txqueuelen=dict(type="int"),
)

TASK_OPTIONS = dict(
    netns=dict(type="str"),
    registry=dict(type="path", default=DEFAULT_REGISTRY),
    max_id=dict(type="int", default=99999),
    reuse_delay=dict(type="int", default=3600),
    lock_timeout=dict(type="int", default=DEFAULT_LOCK_TIMEOUT),
    # The items are checked by parse_device, not by AnsibleModule: its messages do not say which
    # item is wrong, and a batch's failure must name the index (the suboptions are documented).
    devices=dict(type="list", elements="dict"),
    prune_prefix=dict(type="str"),
    remove_prefixes=dict(type="list", elements="str"),
    ovs_db=dict(type="str"),
    ovs_timeout=dict(type="int", default=10),
)

ARGUMENT_SPEC = dict(TASK_OPTIONS, **DEVICE_OPTIONS)
MUTUALLY_EXCLUSIVE = [["devices", opt] for opt in DEVICE_OPTIONS if DEVICE_OPTIONS[opt].get("default") is None]

# The items of devices are checked one by one (parse_device), so that a message names the index.
_TASK_VALIDATOR = ArgumentSpecValidator(dict(ARGUMENT_SPEC, devices=dict(type="list", elements="raw")))
_DEVICE_VALIDATOR = ArgumentSpecValidator(DEVICE_OPTIONS)

# The Python type a value must already have for the validator to return it unchanged; a type
# that is not here (path: expanded; a list with typed elements) always goes through the validator.
_PLAIN_TYPES = {"str": str, "bool": bool, "int": int, "dict": dict, "list": list}
_SIMPLE_KEYS = frozenset(("type", "default", "choices", "elements"))


def _plain_options(spec: dict) -> dict | None:
    """{option: (type or None for raw, choices or None, default)} when every option of ``spec`` is
    one that Ansible's validator returns unchanged for a value of the right type; else None."""
    table = {}
    for option, rules in spec.items():
        kind = rules.get("type", "str")
        if set(rules) - _SIMPLE_KEYS or rules.get("elements", "raw") != "raw":
            return None
        if kind != "raw" and kind not in _PLAIN_TYPES:
            return None
        default = rules.get("default")
        if not isinstance(default, (str, bool, int, type(None))):
            return None
        choices = rules.get("choices")
        table[option] = (_PLAIN_TYPES.get(kind), frozenset(choices) if choices else None, default)
    return table


_PLAIN_DEVICE_OPTIONS = _plain_options(DEVICE_OPTIONS)


def _already_valid(table: dict | None, raw: dict) -> dict | None:
    """What the validator would return for ``raw``, when it would return every value unchanged
    (known option, of the option's type, an allowed choice) and add only the defaults; else
    None, and the validator decides (and words any message).

    A batch of a thousand devices from the guest_taps role is all of this kind; the validator
    costs about a quarter of a millisecond per item (a deep copy and a check per option).
    """
    if table is None:
        return None
    values = {}
    for key, value in raw.items():
        rules = table.get(key)
        if rules is None:
            return None
        if value is None:
            continue
        kind, choices, _default = rules
        # The validator returns an instance of the type as it is; a bool is no int to it.
        if kind is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            return None
        if choices is not None and value not in choices:
            return None
        values[key] = value
    for key, (_kind, _choices, default) in table.items():
        if key not in values:
            values[key] = default
    return values


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
    bridge_type: str = "auto"          # "auto", "linux" or "ovs"
    vlan: int | None = None            # untagged PVID (OVS: tag)
    trunk: list | None = None          # tagged VLANs as (low, high) ranges (OVS: trunks)
    bridge_vlan_filtering: bool = False
    external_ids: dict | None = None   # OVS Interface external_ids the task gives
    ipv6: bool | None = None           # None: off for a new device, left alone on an existing one
    txqueuelen: int | None = None

    @property
    def vlans_given(self) -> bool:
        return self.vlan is not None or self.trunk is not None
    kind: str = TUNTAP
    link: str | None = None          # the lower device of a macvtap/macvlan
    macvtap_mode: str | None = None  # its macvlan mode (set for those kinds, None for tuntap)

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
    remove_prefixes: list = field(default_factory=list)
    ovs_db: str | None = None
    ovs_timeout: int = 10
    lock_timeout: int = DEFAULT_LOCK_TIMEOUT

    def prefixes(self) -> list:
        """(origin, prefix) of every lease prefix whose leases this task removes."""
        pruning = [("pruning", self.prune_prefix)] if self.prune_prefix is not None else []
        return pruning + [("removing", prefix) for prefix in self.remove_prefixes]


def _in_range(value: int, where: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise SpecError("%s %d is out of range; allowed: %d to %d" % (where, value, low, high))
    return value


_INT_OPTIONS: dict = {}


def _int_options(validator) -> frozenset:
    """The options of type int in ``validator``'s spec (looked up once per validator)."""
    options = _INT_OPTIONS.get(validator)
    if options is None:
        options = _INT_OPTIONS[validator] = frozenset(
            key for key, rules in validator.argument_spec.items() if rules.get("type") == "int")
    return options


def _validated(validator, raw: dict, where: str, allowed_what: str) -> dict:
    """``raw`` checked and converted by Ansible's validator; its first error as a SpecError.

    An option given as None counts as not given (it takes its default), as in a role that
    passes ``omit``-less nulls through.
    """
    int_options = _int_options(validator)
    for key, value in raw.items():
        number = value
        if isinstance(value, str):
            if key not in int_options:
                continue
            try:
                number = float(value)
            except ValueError:
                continue
        if isinstance(number, float) and not math.isfinite(number):
            kind = validator.argument_spec.get(key, {}).get("type", "raw")
            # Ansible's int conversion raises OverflowError on these ("inf", 1e400) instead of a message.
            raise SpecError("%s%s is %r, which is not a finite number; allowed: a value of type %s"
                            % (where, key, value, kind))
    if validator is _DEVICE_VALIDATOR:
        values = _already_valid(_PLAIN_DEVICE_OPTIONS, raw)
        if values is not None:
            return values
    try:
        result = validator.validate({key: value for key, value in raw.items() if value is not None})
    except (OverflowError, ValueError) as exc:
        raise SpecError("%sa value could not be converted to its option's type (%s); allowed: the types in "
                        "ansible-doc netdev.tuntap.tap_device" % (where, exc))
    for error in result.errors:
        if isinstance(error, UnsupportedError):
            unknown = sorted(set(raw) - set(validator.argument_spec))
            raise SpecError("%s%s is not %s; allowed: %s"
                            % (where, unknown[0], allowed_what, ", ".join(sorted(validator.argument_spec))))
        if getattr(error, "msg", "").startswith("argument 'devices' is of type"):
            raise SpecError("devices must be a list of device dicts, got %r" % (raw.get("devices"),))
        raise SpecError("%s%s" % (where.rstrip(".") + ": " if where else "", error))
    return result.validated_parameters


def resolve_user(value, where: str) -> int | None:
    if value is None:
        return None
    text = str(value)
    if text.isascii() and text.isdigit():
        return _in_range(int(text), where, 0, 2 ** 32 - 2)
    try:
        return pwd.getpwnam(text).pw_uid
    except (KeyError, ValueError, UnicodeError):  # ValueError: an embedded NUL
        raise SpecError("%s %r is not a user on this host; give a user name or a numeric uid" % (where, text))


def resolve_group(value, where: str) -> int | None:
    if value is None:
        return None
    text = str(value)
    if text.isascii() and text.isdigit():
        return _in_range(int(text), where, 0, 2 ** 32 - 2)
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
    values = _validated(_DEVICE_VALIDATOR, raw, where, "a device option")
    state, mode = values["state"], values["mode"]
    lease = _lease(values["lease"], where + "lease")
    name = values["name"]
    template = None
    try:
        if name is not None and is_template(name):
            template, name = name, None
            validate_template(template, max_id, where + "name")
        elif name is not None:
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
    mac, bridge = values["mac_address"], values["bridge"]
    kind = values["kind"]
    _check_kind_options(values, kind, where)
    if mode == "tun" and mac is not None:
        raise SpecError("%smac_address is not allowed with mode 'tun': a tun device has no link-layer "
                        "address" % where)
    if mode == "tun" and bridge:
        raise SpecError("%sbridge %r is not allowed with mode 'tun': only tap devices carry Ethernet "
                        "frames a bridge can forward" % (where, bridge))
    if bridge:
        try:
            validate_name(bridge, where + "bridge")
        except InvalidName as exc:
            raise SpecError(str(exc))
    mtu = values["mtu"]
    port = _port_options(values, where, mode, bridge, lease)
    txqueuelen = values["txqueuelen"]
    return DeviceSpec(
        where=where, name=name, template=template, lease=lease, state=state, mode=mode,
        owner=resolve_user(values["owner"], where + "owner"),
        group=resolve_group(values["group"], where + "group"),
        multi_queue=values["multi_queue"], vnet_hdr=values["vnet_hdr"], packet_info=values["packet_info"],
        mtu=None if mtu is None else _in_range(mtu, where + "mtu", *MTU_RANGE),
        mac_address=None if mac is None else _mac(mac, where + "mac_address"),
        bridge=bridge, up=values["up"], force=values["force"], ipv6=values["ipv6"],
        txqueuelen=None if txqueuelen is None else _in_range(txqueuelen, where + "txqueuelen", *TXQUEUELEN_RANGE),
        kind=kind, link=values["link"],
        macvtap_mode=(values["macvtap_mode"] or DEFAULT_MACVLAN_MODE) if kind in MACVLAN_KINDS else None,
        **port)


def _port_options(values: dict, where: str, mode: str, bridge: str | None, lease: str | None) -> dict:
    """vlan, trunk, external_ids and the bridge kind, checked against each other and the bridge."""
    vlan, trunk, external_ids = values["vlan"], values["trunk"], values["external_ids"]
    bridge_type = values["bridge_type"]
    if vlan is not None:
        why = vlan_problem(vlan)
        if why:
            raise SpecError("%svlan %r %s" % (where, vlan, why))
        vlan = int(vlan)
    ranges = None
    if trunk is not None:
        ranges, why = parse_trunk(trunk)
        if why:
            raise SpecError("%strunk %s" % (where, why))
        if vlan is not None and any(low <= vlan <= high for low, high in ranges):
            raise SpecError("%strunk contains vlan %d, the untagged VLAN of the port; a VLAN is either the "
                            "untagged one or in the trunk" % (where, vlan))
    if external_ids is not None:
        why = external_ids_problem(external_ids)
        if why:
            raise SpecError("%sexternal_ids %s" % (where, why))
        if LEASE_EXTERNAL_ID in external_ids:
            raise SpecError("%sexternal_ids key %r is set by the module from the lease; leave it out"
                            % (where, LEASE_EXTERNAL_ID))
        external_ids = {key: str(value) for key, value in external_ids.items()}
    needs_bridge = [opt for opt, value in (("vlan", vlan), ("trunk", ranges), ("external_ids", external_ids),
                                           ("bridge_vlan_filtering", values["bridge_vlan_filtering"] or None))
                    if value is not None]
    if needs_bridge and not bridge:
        raise SpecError("%s%s needs bridge: VLANs and port ids belong to the port of a bridge; give the "
                        "bridge the device joins" % (where, needs_bridge[0]))
    if mode == "tun" and needs_bridge:
        raise SpecError("%s%s is not allowed with mode 'tun'" % (where, needs_bridge[0]))
    if external_ids is not None and bridge_type == "linux":
        raise SpecError("%sexternal_ids needs an Open vSwitch bridge, but bridge_type is 'linux'" % where)
    if external_ids is not None and lease is None:
        raise SpecError("%sexternal_ids needs a lease: the port row carries it, so that releasing the lease "
                        "removes the row" % where)
    return dict(bridge_type=bridge_type, vlan=vlan, trunk=ranges,
                bridge_vlan_filtering=values["bridge_vlan_filtering"], external_ids=external_ids)


# The options that mean nothing for a macvtap or macvlan, and why (given as true or non-null).
_TUNTAP_ONLY = (
    ("multi_queue", "a macvtap has as many queues as times its character device is opened"),
    ("vnet_hdr", "the process that opens a macvtap's character device sets it"),
    ("packet_info", "the process that opens a macvtap's character device sets it"),
    ("bridge", "it sends its frames out through its lower device (link), not through a Linux bridge"),
)


def _check_kind_options(values: dict, kind: str, where: str) -> None:
    """Refuse options that do not apply to ``kind``, naming the option and the kind."""
    if kind == TUNTAP:
        for option in ("link", "macvtap_mode"):
            if values[option] is not None:
                raise SpecError("%s%s is not allowed with kind 'tuntap': it applies to kind 'macvtap' and "
                                "'macvlan' only" % (where, option))
        return
    if values["mode"] != "tap":
        raise SpecError("%smode %r is not allowed with kind %r: a %s device is always an Ethernet (tap-like) "
                        "device; leave mode out" % (where, values["mode"], kind, kind))
    for option, why in _TUNTAP_ONLY:
        if values[option]:
            raise SpecError("%s%s is not allowed with kind %r: %s" % (where, option, kind, why))
    if kind == MACVLAN:
        for option in ("owner", "group"):
            if values[option] is not None:
                raise SpecError("%s%s is not allowed with kind 'macvlan': a macvlan has no character device "
                                "for a process to open; use kind 'macvtap' for a guest's NIC" % (where, option))
    if values["state"] == "present" and values["link"] is None and values["name"] is not None:
        raise SpecError("%slink is required with kind %r: name the lower device (for example the host's "
                        "physical NIC) the %s sends through" % (where, kind, kind))
    if values["link"] is not None:
        try:
            validate_name(values["link"], where + "link")
        except InvalidName as exc:
            raise SpecError(str(exc))


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


def _parse_item(item, index: int, max_id: int) -> DeviceSpec:
    if not isinstance(item, dict):
        raise SpecError("devices[%d] must be a dict of device options, got %r" % (index, item))
    try:
        return parse_device(item, "devices[%d]." % index, max_id)
    except SpecError as exc:
        lease = item.get("lease")
        if lease is None:
            raise
        # A role user knows the lease (guest and NIC), not the item's index.
        raise SpecError("%s (the item with lease %r)" % (exc, str(lease)))


def _prefix(value, option: str) -> str:
    if not value:
        raise SpecError("%s must not be empty: it would remove every lease in the registry" % option)
    if "\0" in value or not is_utf8_text(value):
        raise SpecError("%s %r contains a NUL byte or a lone surrogate; no lease can contain one" % (option, value))
    return value


def _registry_path(value) -> str:
    if not value:
        return DEFAULT_REGISTRY
    if "\0" in value:
        raise SpecError("registry %r contains a NUL byte, which no file path can hold; give a path such as %s"
                        % (value, DEFAULT_REGISTRY))
    if not is_utf8_text(value):
        raise SpecError("registry %r is not valid UTF-8 text (it holds a lone surrogate); give a path such as %s"
                        % (value, DEFAULT_REGISTRY))
    return value


def parse_task(params: dict) -> TaskSpec:
    """Validate the task's parameters (module options; omitted ones take their defaults)."""
    devices = params.get("devices")
    if isinstance(devices, list):
        # A list passes the validator's list check unchanged (its elements are raw): validate the
        # others without it, or the validator deep-copies every item of a large batch.
        values = _validated(_TASK_VALIDATOR, dict(params, devices=[]), "", "an option of tap_device")
        values["devices"] = devices
    else:
        values = _validated(_TASK_VALIDATOR, params, "", "an option of tap_device")
    max_id = _in_range(values["max_id"], "max_id", 0, ID_LIMIT)
    reuse_delay = _in_range(values["reuse_delay"], "reuse_delay", 0, ID_LIMIT)
    lock_timeout = _in_range(values["lock_timeout"], "lock_timeout", 0, MAX_LOCK_TIMEOUT)
    registry = _registry_path(values["registry"])
    netns = values["netns"]
    if netns is not None:
        try:
            validate_netns_name(netns)
        except NetnsError as exc:
            raise SpecError(str(exc))
    prune_prefix = values["prune_prefix"]
    if prune_prefix is not None:
        _prefix(prune_prefix, "prune_prefix")
    remove_prefixes = [_prefix(p, "remove_prefixes[%d]" % i) for i, p in enumerate(values["remove_prefixes"] or [])]
    devices = values["devices"]
    given = [opt for opt in DEVICE_OPTIONS if params.get(opt) is not None
             and params.get(opt) != DEVICE_OPTIONS[opt].get("default")]
    if devices is None and remove_prefixes and not given:
        devices = []  # only removing leases by prefix: a batch of no items
    if devices is not None:
        if given:
            raise SpecError("devices and %s are mutually exclusive: in batch mode give per-device options "
                            "inside each item of devices" % given[0])
        specs = [_parse_item(item, index, max_id) for index, item in enumerate(devices)]
        _check_duplicates(specs)
        for spec in specs:
            under = [p for p in remove_prefixes if spec.lease is not None and spec.lease.startswith(p)]
            if under and spec.state == "present":
                raise SpecError("%slease %r is under remove_prefixes %r, which removes it; drop the item or the "
                                "prefix" % (spec.where, spec.lease, under[0]))
        batch = True
    else:
        specs = [parse_device({k: params[k] for k in DEVICE_OPTIONS if k in params}, "", max_id)]
        batch = False
    if prune_prefix is not None and not batch:
        raise SpecError("prune_prefix needs the batch form: list the devices to keep in devices")
    if remove_prefixes and not batch:
        raise SpecError("remove_prefixes needs the batch form: give it alone, or with devices instead of %s"
                        % given[0])
    ovs_timeout = _in_range(values["ovs_timeout"], "ovs_timeout", 1, 3600)
    return TaskSpec(netns=netns, registry=registry, max_id=max_id,
                    reuse_delay=reuse_delay, prune_prefix=prune_prefix, devices=specs, batch=batch,
                    remove_prefixes=remove_prefixes, ovs_db=values["ovs_db"] or None, ovs_timeout=ovs_timeout,
                    lock_timeout=lock_timeout)
