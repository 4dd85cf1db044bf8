# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rules for the values a device is given: MAC addresses, MTU, leases. Pure.

Shared by the module's argument checks and the guest_taps role's filters, so that both
refuse the same values with the same words. Each ``*_problem`` returns None for a good
value, or the end of a sentence ("is not a MAC address; ...") that the caller prefixes
with what it was checking.
"""

from __future__ import annotations

import re

MTU_RANGE = (68, 65535)
MAX_LEASE_LENGTH = 176  # the longest that fits in the mark (with its registry id) with any template

_MAC = re.compile(r"\A[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}\Z")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def mac_octets(value) -> list | None:
    """The six octets of a MAC address written as text, or None."""
    if not isinstance(value, str) or not _MAC.match(value):
        return None
    return [int(part, 16) for part in re.split("[:-]", value)]


def mac_problem(value) -> str | None:
    octets = mac_octets(value)
    if octets is None and _is_int(value):
        # YAML 1.1 reads an unquoted 52:54:00:12:34:56 as a base-60 integer.
        return "is not a MAC address; quote MAC addresses in YAML (\"52:54:00:12:34:56\")"
    if octets is None:
        return "is not a MAC address; write six hex octets such as 52:54:00:12:34:56"
    if octets[0] & 1:
        return "is a multicast address (lowest bit of the first octet set); a device needs a unicast address"
    if not any(octets):
        return "is all zeros; a device needs a non-zero unicast address"
    return None


def normalize_mac(value) -> str:
    """Lower-case, colon-separated form of a MAC address that passed ``mac_problem``."""
    return ":".join("%02x" % octet for octet in mac_octets(value))


def mtu_problem(value: int) -> str | None:
    if not MTU_RANGE[0] <= value <= MTU_RANGE[1]:
        return "is out of range; allowed: %d to %d" % MTU_RANGE
    return None


# One regex search instead of a Python loop per character: the role checks every lease of every
# guest with it (57 000 calls for 1000 NICs).
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


def has_control_characters(text: str) -> bool:
    return _CONTROL_CHARACTER.search(text) is not None


def is_utf8_text(text: str) -> bool:
    """False for text holding lone surrogates, which no file, alias or JSON reader takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def lease_problem(text: str) -> str | None:
    if not text or len(text) > MAX_LEASE_LENGTH or has_control_characters(text) or not is_utf8_text(text):
        return ("is not a valid lease: use 1 to %d printable characters (e.g. 'web1/net0')"
                % MAX_LEASE_LENGTH)
    return None


VLAN_RANGE = (1, 4094)   # 0 and 4095 are reserved by 802.1Q


def _vlan_id(text: str) -> int | None:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def vlan_problem(value) -> str | None:
    """For a single VLAN id (an access port's untagged PVID)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return "is not a VLAN id; give a number from %d to %d" % VLAN_RANGE
    number = value if isinstance(value, int) else _vlan_id(value)
    if number is None:
        return "is not a VLAN id; give a number from %d to %d" % VLAN_RANGE
    if not VLAN_RANGE[0] <= number <= VLAN_RANGE[1]:
        return "is out of range; allowed VLAN ids: %d to %d (0 and 4095 are reserved)" % VLAN_RANGE
    return None


def parse_trunk(items) -> tuple:
    """A trunk list (ids and "a-b" ranges) as sorted (low, high) ranges, and None; or None and a
    problem (the end of a sentence naming the bad item). Overlapping items are refused: they
    usually mean a typo, and the kernel would report the VLAN only once."""
    if isinstance(items, (str, int)) and not isinstance(items, bool):
        items = [items]
    if not isinstance(items, (list, tuple)):
        return None, "is not a list of VLAN ids and ranges such as [100, \"200-210\"]"
    ranges = []
    for item in items:
        if isinstance(item, str) and "-" in item.strip()[1:]:
            low_text, high_text = item.split("-", 1)
            low, high = _vlan_id(low_text), _vlan_id(high_text)
            if low is None or high is None:
                return None, "item %r is not a VLAN id or a range such as \"200-210\"" % (item,)
        elif isinstance(item, bool) or not isinstance(item, (int, str)):
            return None, "item %r is not a VLAN id or a range such as \"200-210\"" % (item,)
        else:
            low = item if isinstance(item, int) else _vlan_id(item)
            if low is None:
                return None, "item %r is not a VLAN id or a range such as \"200-210\"" % (item,)
            high = low
        for number in (low, high):
            if not VLAN_RANGE[0] <= number <= VLAN_RANGE[1]:
                return None, ("item %r is out of range; allowed VLAN ids: %d to %d (0 and 4095 are reserved)"
                              % (item, VLAN_RANGE[0], VLAN_RANGE[1]))
        if low > high:
            return None, "item %r is a range whose start is above its end" % (item,)
        ranges.append((low, high, item))
    ranges.sort()
    for (low_a, high_a, item_a), (low_b, _high_b, item_b) in zip(ranges, ranges[1:]):
        if low_b <= high_a:
            return None, "items %r and %r overlap; give each VLAN once" % (item_a, item_b)
    return [(low, high) for low, high, _item in ranges], None


def vlan_set(ranges) -> set:
    """Every VLAN id of (low, high) ranges."""
    return {vid for low, high in ranges for vid in range(low, high + 1)}


def compress_vlans(vids) -> list:
    """Sorted ids as (low, high) ranges of consecutive ids."""
    ranges = []
    for vid in sorted(vids):
        if ranges and ranges[-1][1] == vid - 1:
            ranges[-1] = (ranges[-1][0], vid)
        else:
            ranges.append((vid, vid))
    return ranges


def format_vlans(ranges) -> list:
    """(low, high) ranges as the module reports them: ints and "a-b" strings."""
    return [low if low == high else "%d-%d" % (low, high) for low, high in ranges]


_EXTERNAL_ID_KEY = re.compile(r"\A[A-Za-z0-9_.:-]{1,64}\Z")


def external_ids_problem(value) -> str | None:
    """For OVS external_ids given by a task (keys as OVS and its controllers write them)."""
    if not isinstance(value, dict):
        return "is not a dict of strings, such as {iface-id: PORT-UUID}"
    for key, item in value.items():
        if not isinstance(key, str) or not _EXTERNAL_ID_KEY.match(key):
            return ("key %r is not allowed; use 1 to 64 letters, digits and '_.:-', such as 'iface-id'"
                    % (key,))
        if isinstance(item, (dict, list)) or item is None:
            return "value of %r is not a string" % key
        if has_control_characters(str(item)):
            return "value of %r contains control characters" % key
    return None
