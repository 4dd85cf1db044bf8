# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lease/template mark in IFLA_IFALIAS, and what a LinkInfo says about a device being in use."""

from __future__ import annotations

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils._device import LinkInfo, TunInfo
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import ALIAS_PREFIX, decode_mark, encode_mark
from ansible_collections.netdev.tuntap.plugins.module_utils._spec import SpecError, parse_task
from ansible_collections.netdev.tuntap.plugins.module_utils._values import MAX_LEASE_LENGTH

# The longest alias the kernel takes through pyroute2: IFALIASZ is 256 with the NUL, and a
# 255-byte alias is refused with ERANGE (checked on a real tap: 254 accepted, 255 refused).
ALIAS_MAX_BYTES = 254


@pytest.mark.parametrize("lease, template, expected", [
    ("web1/net0", "vnet%d", 'netdev.tuntap {"lease":"web1/net0","template":"vnet%d"}'),
    (None, "vnet%d", 'netdev.tuntap {"lease":null,"template":"vnet%d"}'),
    ("k", None, 'netdev.tuntap {"lease":"k","template":null}'),
    (None, None, 'netdev.tuntap {"lease":null,"template":null}'),
    ('a"b\\c', None, 'netdev.tuntap {"lease":"a\\"b\\\\c","template":null}'),
])
def test_encode_mark_is_the_documented_compact_json(lease, template, expected):
    assert encode_mark(lease, template) == expected
    assert encode_mark(lease, template).startswith(ALIAS_PREFIX)


@pytest.mark.parametrize("lease, template", [
    ("web1/net0", "vnet%d"),
    (None, "vnet%d"),
    ("k", None),
    (None, None),
    ("guest é/ü", "tapé%d"),
    ('quote " and \\ backslash', "a%db"),
    ("x" * 200, "%d"),
])
def test_mark_round_trip(lease, template):
    assert decode_mark(encode_mark(lease, template)) == {"lease": lease, "template": template}


@pytest.mark.parametrize("alias", [
    None,
    "",
    "uplink to the core switch",                         # an alias someone else wrote
    'netdev.tuntap{"lease":"k","template":null}',       # no space after the prefix
    'other.thing {"lease":"k","template":null}',
    "netdev.tuntap ",
    "netdev.tuntap {not json",
    'netdev.tuntap ["k", null]',
    'netdev.tuntap "k"',
    "netdev.tuntap null",
    'netdev.tuntap {"lease":5,"template":null}',
    'netdev.tuntap {"lease":"k","template":["vnet%d"]}',
    'netdev.tuntap {"lease":{"a":1}}',
])
def test_decode_mark_ignores_what_is_not_our_mark(alias):
    assert decode_mark(alias) is None


@pytest.mark.parametrize("alias, expected", [
    ('netdev.tuntap {"lease":"k"}', {"lease": "k", "template": None}),
    ('netdev.tuntap {"template":"v%d","lease":"k","extra":1}', {"lease": "k", "template": "v%d"}),
    ('netdev.tuntap { "lease" : "k" , "template" : null }', {"lease": "k", "template": None}),
])
def test_decode_mark_tolerates_spelling(alias, expected):
    assert decode_mark(alias) == expected


@pytest.mark.parametrize("lease, template", [
    pytest.param("x" * MAX_LEASE_LENGTH, "vnet%d", id="176-ascii"),
    pytest.param("x" * MAX_LEASE_LENGTH, "abcdefghijklmn%d", id="longest-with-16-byte-template"),
    pytest.param("\u00e9" * 30, "vnet%d", id="30-e-acute"),   # each escaped to \u00e9: 6 bytes
])
def test_an_accepted_lease_fits_in_the_alias(lease, template):
    spec = parse_task({"name": template, "lease": lease, "max_id": 9, "registry": "/nonexistent/r.json"})
    assert spec.devices[0].lease == lease
    assert len(encode_mark(lease, template, "0123abcd").encode("utf-8")) <= ALIAS_MAX_BYTES


@pytest.mark.parametrize("lease, template", [
    pytest.param("\"" * 100, "abcdefghijklmn%d", id="100-quotes-16-byte-template"),
    pytest.param("\u00e9" * 60, "vnet%d", id="60-e-acute"),
    pytest.param('"' * 120, "vnet%d", id="120-quotes"),   # each escaped to 2 bytes
])
def test_a_lease_that_would_not_fit_in_the_alias_is_refused_before_anything(lease, template):
    assert len(encode_mark(lease, template, "0123abcd").encode("utf-8")) > ALIAS_MAX_BYTES
    with pytest.raises(SpecError) as exc:
        parse_task({"name": template, "lease": lease, "max_id": 9, "registry": "/nonexistent/r.json"})
    assert "lease" in str(exc.value) and "too long" in str(exc.value)
    assert "%d bytes" % ALIAS_MAX_BYTES in str(exc.value)


def _tun(multi_queue=False, queues=None):
    return TunInfo(mode="tap", packet_info=False, vnet_hdr=False, persist=True, multi_queue=multi_queue,
                   owner=0, group=None, queues=queues)


def _link(tun, carrier):
    return LinkInfo(name="t0", index=5, kind="tun" if tun else "veth", mtu=1500, mac_address=None,
                    master=None, up=True, carrier=carrier, alias=None, tun=tun)


@pytest.mark.parametrize("tun, carrier, in_use", [
    (_tun(), False, False),
    (_tun(), True, True),                          # single queue: carrier means a process holds it
    (_tun(multi_queue=True, queues=0), True, False),
    (_tun(multi_queue=True, queues=None), False, False),
    (_tun(multi_queue=True, queues=3), False, True),
    (None, True, False),                           # not a tun/tap: never "in use"
])
def test_in_use(tun, carrier, in_use):
    assert _link(tun, carrier).in_use is in_use
