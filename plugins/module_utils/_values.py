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


def has_control_characters(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


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
