# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Interface names and templates, validated by the kernel's own rules.

The kernel checks names byte-wise (dev_valid_name) and the tun ioctl silently
truncates a 16-byte name, so everything here works on the UTF-8 bytes.
"""

from __future__ import annotations

import re

IFNAMSIZ = 16
MAX_NAME_BYTES = IFNAMSIZ - 1

# Bytes the kernel's isspace() accepts: \t \n \v \f \r, space, and 0xA0 (its
# Latin-1 ctype table marks NBSP as space, so e.g. 'tapà' = 74 61 70 C3 A0 is invalid).
_SPACE_BYTES = frozenset(b"\t\n\x0b\x0c\r \xa0")
_FORBIDDEN_BYTES = frozenset(b"/:") | _SPACE_BYTES

TEMPLATE_MARK = "%d"


class InvalidName(ValueError):
    """A name or template the kernel would refuse (message is user-facing)."""


def _is_control(byte: int) -> bool:
    # The kernel accepts them, but `ip -j link` and other tools' JSON output break on them.
    return byte < 0x20 or byte == 0x7F


def _describe_byte(byte: int) -> str:
    if byte == 0x20:
        return "a space"
    if byte == 0:
        return "a NUL byte"
    if byte in _SPACE_BYTES:
        return "the whitespace byte 0x%02X" % byte
    if _is_control(byte):
        return "the control byte 0x%02X" % byte
    return "'%s'" % chr(byte)


def validate_name(name: str, what: str = "name") -> None:
    """Raise InvalidName unless ``name`` is a valid literal interface name."""
    _require_text(name, what)
    if "%" in name:
        raise InvalidName("%s %r contains '%%'; a literal interface name may not, "
                          "and a template needs exactly one '%%d' and no other '%%'" % (what, name))
    if name in (".", ".."):
        raise InvalidName("%s %r is not allowed: the kernel refuses '.' and '..'" % (what, name))
    raw = _check_bytes(name, name, what)
    if len(raw) > MAX_NAME_BYTES:
        raise InvalidName("%s %r is %d bytes long; interface names are 1 to %d bytes"
                          % (what, name, len(raw), MAX_NAME_BYTES))


def _require_text(text, what: str) -> None:
    if not isinstance(text, str) or text == "":
        raise InvalidName("%s must be a non-empty string of 1 to %d bytes" % (what, MAX_NAME_BYTES))


def _check_bytes(text: str, shown: str, what: str) -> bytes:
    """The UTF-8 bytes of ``text``; refuse the bytes the kernel refuses, naming ``shown``."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidName("%s %r is not valid UTF-8 text (it holds a lone surrogate); interface names are "
                          "UTF-8 text" % (what, shown))
    for byte in raw:
        if byte in _FORBIDDEN_BYTES or _is_control(byte):
            raise InvalidName("%s %r contains %s; interface names may not contain '/', ':', "
                              "whitespace or control characters (bytes below 0x20, 0x7F)"
                              % (what, shown, _describe_byte(byte)))
    return raw


def is_template(name: str) -> bool:
    """True when ``name`` asks for a number to be chosen (it holds a '%')."""
    return isinstance(name, str) and "%" in name


def validate_template(template: str, max_id: int, what: str = "name") -> None:
    """Raise InvalidName unless ``template`` is valid and renders ``max_id`` within 15 bytes."""
    _require_text(template, what)
    if template.count("%") != 1 or template.count(TEMPLATE_MARK) != 1:
        raise InvalidName("%s %r is not a valid template: it needs exactly one '%%d' "
                          "and no other '%%'" % (what, template))
    fixed_bytes = len(_check_bytes(template.replace(TEMPLATE_MARK, ""), template, what))
    room = MAX_NAME_BYTES - fixed_bytes
    if room < 1:
        raise InvalidName("%s %r has %d bytes besides '%%d', which leaves no room for a number within "
                          "%d bytes; no max_id fits" % (what, template, fixed_bytes, MAX_NAME_BYTES))
    if len(str(max_id)) > room:
        longest = 10 ** room - 1
        raise InvalidName("%s %r cannot hold max_id %d within %d bytes; the longest max_id "
                          "that fits is %d" % (what, template, max_id, MAX_NAME_BYTES, longest))


def render(template: str, number: int) -> str:
    return template.replace(TEMPLATE_MARK, str(number))


class TemplateMatcher:
    """Recognise names rendered from one template, as the kernel writes them.

    Only canonical numbers count: ``vnet007`` was not made from ``vnet%d``.
    """

    def __init__(self, template: str, max_id: int):
        prefix, suffix = template.split(TEMPLATE_MARK)
        self._pattern = re.compile(r"\A%s(0|[1-9][0-9]*)%s\Z" % (re.escape(prefix), re.escape(suffix)))
        self._max_id = max_id

    def number(self, name: str) -> int | None:
        """The number in ``name`` if it matches the template canonically, else None."""
        found = self._pattern.match(name)
        if not found:
            return None
        number = int(found.group(1))
        return number if number <= self._max_id else None
