# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Link requests packed by hand (the same bytes as pyroute2's), answers mapped to their requests,
and pyroute2's message classes imported without its package __init__."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _nl

MARK = 'netdev.tuntap {"lease":"g7/n0","registry":"0123abcd","template":"vnet%d"}'
SETTINGS = [
    {},
    {"mtu": 1400},
    {"address": "fe:54:00:12:34:56"},
    {"master": 7},
    {"master": 0},
    {"txqlen": 500},
    {"alias": MARK},
    {"alias": "abc"},          # 3 bytes and its NUL: no padding
    {"alias": "abcd"},         # padded to 8
    {"group": 0x4E540001},
    {"up": True},
    {"up": False},
    {"mtu": 9000, "address": "02:00:00:00:00:01", "master": 3, "txqlen": 1000, "alias": MARK},
    {"mtu": 1500, "up": True, "alias": "\u00e9t\u00e9"},
]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("kind", [_nl.RTM_NEWLINK, _nl.RTM_DELLINK])
def test_packed_by_hand_is_byte_for_byte_what_pyroute2_encodes(kind, settings):
    assert _nl.pack(kind, 41, 12, settings) == _nl.encode(kind, 41, 12, settings)


def test_a_packed_request_decodes_with_pyroute2_to_what_was_asked():
    ifinfmsg = _nl.messages()[0]
    data = _nl.pack(_nl.RTM_NEWLINK, 9, 33, {"mtu": 1400, "address": "fe:54:00:00:00:01", "master": 4,
                                             "txqlen": 200, "alias": MARK, "up": True})
    msg = ifinfmsg(data)
    msg.decode()
    assert msg["header"]["type"] == _nl.RTM_NEWLINK and msg["header"]["sequence_number"] == 9
    assert msg["header"]["flags"] == _nl.NLM_F_REQUEST | _nl.NLM_F_ACK and msg["header"]["length"] == len(data)
    assert (msg["index"], msg["flags"], msg["change"]) == (33, _nl.IFF_UP, _nl.IFF_UP)
    assert msg.get_attr("IFLA_MTU") == 1400 and msg.get_attr("IFLA_MASTER") == 4
    assert msg.get_attr("IFLA_TXQLEN") == 200 and msg.get_attr("IFLA_IFALIAS") == MARK
    assert msg.get_attr("IFLA_ADDRESS") == "fe:54:00:00:00:01"


def answer(seq: int, code: int, request: bytes = b"") -> bytes:
    """An NLMSG_ERROR as the kernel sends it: -errno, then the request's header (CAP_ACK)."""
    body = struct.pack("=i", -code) + (request or struct.pack("=IHHII", 16, _nl.RTM_NEWLINK, 5, seq, 0))
    return struct.pack("=IHHII", 16 + len(body), _nl.NLMSG_ERROR, 0x100, seq, 0) + body


def test_answers_are_mapped_to_their_requests_by_sequence_number():
    data = answer(3, 0) + answer(1, 22) + answer(99, 1) + answer(2, 0)
    pending, answers = {1, 2, 3, 4}, {}
    _nl.read_answers(data, pending, answers)
    assert answers == {1: 22, 2: 0, 3: 0}           # 99 is not ours; 4 not answered yet
    assert pending == {4}
    _nl.read_answers(answer(4, 19), pending, answers)
    assert answers[4] == 19 and not pending


def test_an_answer_carrying_the_whole_request_is_read_past():
    request = _nl.pack(_nl.RTM_NEWLINK, 1, 5, {"alias": MARK})
    pending, answers = {1, 2}, {}
    _nl.read_answers(answer(1, 95, request) + answer(2, 0), pending, answers)
    assert answers == {1: 95, 2: 0}


def test_a_malformed_answer_is_an_error_not_a_hang():
    with pytest.raises(OSError):
        _nl.read_answers(struct.pack("=IHHII", 4, _nl.NLMSG_ERROR, 0, 1, 0), {1}, {})


def _child(code: str) -> dict:
    root = os.environ.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path + [root])))
    return json.loads(proc.stdout.strip().splitlines()[-1])


NL = "ansible_collections.netdev.tuntap.plugins.module_utils._kernel._nl"


def test_the_light_import_leaves_pyroute2s_package_init_out_and_it_still_works_when_asked_for():
    seen = _child("""
import json, sys
from %s import messages
messages()
light = sorted(name for name in sys.modules if name.startswith("pyroute2"))
from pyroute2 import IPRoute
print(json.dumps({"light": light, "full": "pyroute2.iproute" in sys.modules, "ipr": IPRoute.__name__}))
""" % NL)
    assert "pyroute2.netlink.rtnl.ifinfmsg" in seen["light"]
    heavy = ("pyroute2.ndb", "pyroute2.iproute", "pyroute2.ipdb")
    assert not [name for name in seen["light"] if name.startswith(heavy)], seen["light"]
    assert seen["full"] is True and seen["ipr"] == "IPRoute"


def test_without_pyroute2_the_message_names_it_and_the_version_needed():
    seen = _child("""
import json, sys
sys.modules["pyroute2"] = None      # as if it were not installed
from %s import messages, NetlinkUnavailable
try:
    messages()
    print(json.dumps({"error": None}))
except NetlinkUnavailable as exc:
    print(json.dumps({"error": str(exc)}))
""" % NL)
    assert seen["error"].startswith("pyroute2 cannot be imported (")
    assert seen["error"].endswith("the module needs pyroute2 >= %s" % _nl.MIN_PYROUTE2)


def test_requests_go_in_runs_bounded_by_count_and_bytes():
    sock = _nl.Rtnl.__new__(_nl.Rtnl)   # no socket: only the splitting is tested
    sock._chunk = 3                     # pylint: disable=protected-access
    small = [(seq, b"x" * 100) for seq in range(7)]
    assert [len(run) for run in sock._chunks(small)] == [3, 3, 1]   # pylint: disable=protected-access
    large = [(seq, b"x" * (_nl.SEND_BYTES // 2)) for seq in range(3)]
    sock._chunk = 100                   # pylint: disable=protected-access
    assert [len(run) for run in sock._chunks(large)] == [2, 1]      # pylint: disable=protected-access
    assert [seq for run in sock._chunks(small) for seq, _m in run] == list(range(7))  # pylint: disable=protected-access
