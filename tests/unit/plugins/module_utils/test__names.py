# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel name rules (byte-wise), templates, canonical matching."""

from __future__ import annotations

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils._names import (
    MAX_NAME_BYTES, InvalidName, TemplateMatcher, is_template, render, validate_name, validate_template)


# -- literal names ----------------------------------------------------------

@pytest.mark.parametrize("name", [
    "a",
    "tap0",
    "x" * 15,                 # exactly 15 bytes
    "tapé",                   # é = C3 A9: no whitespace byte in it
    "é" * 7 + "x",            # 15 bytes from 8 characters
    "...",                    # only '.' and '..' are special
    ".a",
    "a.",
    "br-lan_1",
    "ta\u2000",              # U+2000 (a Unicode space) = E2 80 80: no byte the kernel refuses
])
def test_valid_names(name):
    assert validate_name(name) is None


@pytest.mark.parametrize("name, expected", [
    ("x" * 16, ["16 bytes long", "1 to 15 bytes"]),
    ("é" * 8, ["16 bytes long"]),                     # 8 characters, 16 bytes
    ("tap" + "é" * 6 + "x", ["16 bytes long"]),      # 10 characters, 16 bytes
    ("x" * 40, ["40 bytes long"]),
])
def test_too_long_names_are_counted_in_bytes(name, expected):
    with pytest.raises(InvalidName) as exc:
        validate_name(name)
    message = str(exc.value)
    assert repr(name) in message
    for text in expected:
        assert text in message


def test_fifteen_bytes_is_the_limit():
    assert MAX_NAME_BYTES == 15
    validate_name("é" * 7 + "x")  # 15 bytes: fine
    with pytest.raises(InvalidName):
        validate_name("é" * 7 + "xy")  # 16 bytes


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_and_dotdot_are_refused(name):
    with pytest.raises(InvalidName) as exc:
        validate_name(name)
    assert "'.' and '..'" in str(exc.value)
    assert repr(name) in str(exc.value)


@pytest.mark.parametrize("name, shown", [
    ("a/b", "'/'"),
    ("/", "'/'"),
    ("tap:0", "':'"),
    (":", "':'"),
    ("tap\t0", "0x09"),
    ("tap\n0", "0x0A"),
    ("tap\x0b0", "0x0B"),
    ("tap\x0c0", "0x0C"),
    ("tap\r0", "0x0D"),
    ("tap 0", "a space"),
    (" ", "a space"),
    ("tapà", "0xA0"),         # à = C3 A0; the kernel's isspace() accepts 0xA0
    ("\xa0", "0xA0"),         # U+00A0 = C2 A0
])
def test_forbidden_bytes(name, shown):
    with pytest.raises(InvalidName) as exc:
        validate_name(name)
    message = str(exc.value)
    assert shown in message
    assert repr(name) in message
    assert "may not contain" in message


@pytest.mark.parametrize("byte", [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20])
def test_each_isspace_byte_is_refused(byte):
    with pytest.raises(InvalidName):
        validate_name("ta%sp" % chr(byte))


@pytest.mark.parametrize("byte", [0x21, 0x7E, 0x80])
def test_printable_neighbours_are_accepted(byte):
    # The kernel's rule is narrow (isspace(), '/' and ':'); ours adds only the control bytes.
    validate_name("ta%sp" % chr(byte))


@pytest.mark.parametrize("byte", [0x08, 0x0E, 0x1F, 0x7F])
def test_neighbours_of_isspace_bytes_are_control_bytes_and_refused(byte):
    with pytest.raises(InvalidName):
        validate_name("ta%sp" % chr(byte))


def test_utf8_a_grave_vs_e_acute():
    assert "tapà".encode() == b"tap\xc3\xa0"
    assert "tapé".encode() == b"tap\xc3\xa9"
    with pytest.raises(InvalidName):
        validate_name("tapà")
    validate_name("tapé")


@pytest.mark.parametrize("value", ["", None, 5])
def test_empty_or_not_a_string(value):
    with pytest.raises(InvalidName) as exc:
        validate_name(value)
    assert "non-empty string of 1 to 15 bytes" in str(exc.value)


@pytest.mark.parametrize("name", ["tap%", "tap%%", "50%off"])
def test_literal_name_with_percent_is_refused(name):
    with pytest.raises(InvalidName) as exc:
        validate_name(name)
    assert "'%'" in str(exc.value)
    assert repr(name) in str(exc.value)


def test_message_uses_the_option_label():
    with pytest.raises(InvalidName) as exc:
        validate_name("a/b", "devices[2].bridge")
    assert str(exc.value).startswith("devices[2].bridge 'a/b'")


# -- templates --------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("vnet%d", True), ("%d", True), ("tap%", True), ("tap0", False), ("", False), (None, False),
])
def test_is_template(value, expected):
    assert is_template(value) is expected


@pytest.mark.parametrize("template, max_id", [
    ("vnet%d", 99999),
    ("%d", 10 ** 15 - 1),             # 15 digits
    ("%dvnet", 99999),                # the number may be anywhere
    ("a%db", 0),
    ("x" * 14 + "%d", 9),             # one byte left for the number
    ("tapé%d", 99999),
    ("x" * 10 + "%d", 99999),         # exactly 15 bytes at max_id
])
def test_valid_templates(template, max_id):
    assert validate_template(template, max_id) is None
    assert len(render(template, max_id).encode()) <= 15


@pytest.mark.parametrize("template", [
    "vnet%s",
    "vnet%%d",
    "vnet%d%d",
    "%d-%d",
    "vnet%",
    "vnet%i",
    "v%dx%",
    "vnet%D",
])
def test_templates_need_exactly_one_percent_d_and_no_other_percent(template):
    with pytest.raises(InvalidName) as exc:
        validate_template(template, 99999)
    message = str(exc.value)
    assert repr(template) in message
    assert "exactly one '%d'" in message


@pytest.mark.parametrize("template, max_id, longest", [
    ("x" * 11 + "%d", 99999, 9999),           # 11 fixed bytes: 4 digits fit
    ("x" * 14 + "%d", 10, 9),                 # 14 fixed bytes: 1 digit fits
    ("é" * 6 + "%d", 10 ** 6, 999),           # 12 fixed bytes (6 characters): 3 digits
    ("vnet%d", 10 ** 11, 10 ** 11 - 1),       # 4 fixed bytes: 11 digits
])
def test_template_too_long_for_max_id_says_the_longest_that_fits(template, max_id, longest):
    with pytest.raises(InvalidName) as exc:
        validate_template(template, max_id)
    message = str(exc.value)
    assert repr(template) in message
    assert "max_id %d" % max_id in message
    assert "the longest max_id that fits is %d" % longest in message
    # and the value the message offers is accepted
    validate_template(template, longest)
    assert len(render(template, longest).encode()) == 15
    with pytest.raises(InvalidName):
        validate_template(template, longest + 1)


@pytest.mark.parametrize("template, bad", [
    ("a/%d", "'/'"),
    ("tap:%d", "':'"),
    ("tap %d", "a space"),
    ("tapà%d", "0xA0"),
    ("x" * 15 + "%d", "no max_id fits"),
])
def test_template_with_bad_fixed_part_is_refused(template, bad):
    with pytest.raises(InvalidName) as exc:
        validate_template(template, 9)
    assert bad in str(exc.value)


@pytest.mark.parametrize("template", ["a/%d", "tap %d", "tapà%d"])
def test_template_error_names_the_template_as_written(template):
    # The message must name the value the user wrote, not an internal rendering of it
    # ('a/0' is not what the user gave).
    with pytest.raises(InvalidName) as exc:
        validate_template(template, 9)
    assert repr(template) in str(exc.value)


@pytest.mark.parametrize("template", ["x" * 15 + "%d", "é" * 8 + "%d"])
def test_template_with_no_room_for_any_number(template):
    # 15 fixed bytes: no max_id fits at all, and the message should say so about the template.
    with pytest.raises(InvalidName) as exc:
        validate_template(template, 0)
    message = str(exc.value)
    assert repr(template) in message
    assert "no room for a number" in message


@pytest.mark.parametrize("template, number, expected", [
    ("vnet%d", 0, "vnet0"),
    ("vnet%d", 12, "vnet12"),
    ("%d-x", 7, "7-x"),
    ("tap%d.v", 99999, "tap99999.v"),
])
def test_render(template, number, expected):
    assert render(template, number) == expected


# -- canonical matching -----------------------------------------------------

@pytest.mark.parametrize("template, max_id, name, number", [
    ("vnet%d", 99999, "vnet0", 0),
    ("vnet%d", 99999, "vnet7", 7),
    ("vnet%d", 99999, "vnet10", 10),
    ("vnet%d", 99999, "vnet99999", 99999),
    ("vnet%d", 99999, "vnet007", None),       # leading zeros: not made from the template
    ("vnet%d", 99999, "vnet00", None),
    ("vnet%d", 99999, "vnet01", None),
    ("vnet%d", 99999, "vnet100000", None),    # above max_id
    ("vnet%d", 5, "vnet5", 5),
    ("vnet%d", 5, "vnet6", None),
    ("vnet%d", 99999, "vnet", None),
    ("vnet%d", 99999, "vnet-1", None),
    ("vnet%d", 99999, "vnet+1", None),
    ("vnet%d", 99999, "vnet 1", None),
    ("vnet%d", 99999, "vnet1a", None),
    ("vnet%d", 99999, "xvnet1", None),
    ("vnet%d", 99999, "VNET1", None),
    ("vnet%d", 99999, "vnet١", None),         # Arabic-Indic digit one: not a kernel digit
    ("vnet%d", 99999, "vnet1\n", None),
    ("v.%d", 99999, "vx1", None),             # the fixed part is literal, not a regex
    ("v.%d", 99999, "v.1", 1),
    ("a%db", 99, "a3b", 3),
    ("a%db", 99, "a3", None),
    ("a%db", 99, "a03b", None),
    ("br0-%d", 99, "br0-0", 0),
])
def test_template_matcher(template, max_id, name, number):
    assert TemplateMatcher(template, max_id).number(name) == number


# Control characters: the kernel accepts them, but they break `ip -j link` and other JSON readers.
@pytest.mark.parametrize("name, shown", [
    ("tap\x7f", "the control byte 0x7F"),
    ("tap\x01", "the control byte 0x01"),
    ("\x1b[31m", "the control byte 0x1B"),
    ("tap\x1f0", "the control byte 0x1F"),
    ("tap\x00", "a NUL byte"),
])
def test_control_characters_are_refused_in_names(name, shown):
    with pytest.raises(InvalidName) as exc:
        validate_name(name)
    assert shown in str(exc.value) and "control characters" in str(exc.value)


@pytest.mark.parametrize("template", ["t\x7f%d", "\x01tap%d", "tap%d\x1b"])
def test_control_characters_are_refused_in_templates(template):
    with pytest.raises(InvalidName) as exc:
        validate_template(template, 99)
    assert "control byte" in str(exc.value) and repr(template) in str(exc.value)


@pytest.mark.parametrize("name", ["\ud800", "tap\udc80", "t\udfff%d"])
def test_lone_surrogates_are_refused_not_a_crash(name):
    with pytest.raises(InvalidName) as exc:
        (validate_template if "%" in name else validate_name)(name, *([99] if "%" in name else []))
    assert "lone surrogate" in str(exc.value)
