"""5. Hostile input, generated (hypothesis): every option and batch item, against real devices.

Format strings, unicode with lone surrogates, NUL and control bytes, huge and negative numbers,
inf/nan, wrong types and path tricks. Allowed outcomes: a failed task whose message is not an
internal error, or devices that exist in the target namespace with valid names and their marks.
Nothing changes outside the target namespace and the sandbox the registry paths point into.
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ntt_helpers as h
from ntt_figures import record, size

pytestmark = [pytest.mark.root]

LONE_SURROGATES = ["\ud800", "\udfff", "tap\udc80%d"]
FORMATS = ["%d", "%s", "%%", "%x%d", "{0}", "%(x)s", "%n", "%99999999d", "%-d", "%+d", "%05d", "a%db%d"]
CONTROL = ["\0", "\x01", "\x1b[31m", "\x7f", "\n", "\t", "tap\0x"]
PATHS = ["../reg.json", "./a/../../b.json", "//double//slash.json", "dir/", "~", "$HOME/x.json", ".", "..",
         "a" * 300, "nul\0here.json", "\u2028line.json", "\udcff.json", "\ud800.json", "x/" * 60 + "r.json"]
NUMBERS = [0, -1, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 63, -2 ** 63, 10 ** 30, 68, 65535, 65536, 3600]
FLOATS = [float("inf"), float("-inf"), float("nan"), 1e308, -0.0, 1.5]
WORDS = ["inf", "nan", "-1", "0x10", "1e3", "true", "yes", "null", "", " ", "None"]

scalars = st.one_of(
    st.sampled_from(LONE_SURROGATES + FORMATS + CONTROL + WORDS + PATHS),
    st.sampled_from(NUMBERS), st.sampled_from(FLOATS), st.booleans(), st.none(),
    st.text(max_size=20), st.text(alphabet=st.characters(codec="utf-8"), max_size=8),
    st.integers(), st.floats(allow_nan=True, allow_infinity=True),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=3))

names = st.one_of(st.sampled_from(["hz%d", "hz%d", "hzlit", "hz%dx", "h%d" + "é" * 5]), scalars)
DEVICE_KEYS = ["name", "lease", "state", "mode", "owner", "group", "multi_queue", "vnet_hdr", "packet_info",
               "mtu", "mac_address", "bridge", "up", "force"]
GOOD = {"state": st.sampled_from(["present", "absent"]), "mode": st.sampled_from(["tap", "tun"]),
        "mtu": st.sampled_from([1400, 9000, 68]), "mac_address": st.sampled_from(["52:54:00:12:34:56"]),
        "owner": st.sampled_from(["0", "nobody", "root"]), "lease": st.text(min_size=1, max_size=12),
        "multi_queue": st.booleans(), "up": st.booleans()}


def _item():
    fields = {key: st.one_of(GOOD.get(key, values), values) for key in DEVICE_KEYS if key != "name"}
    return st.builds(lambda name, extra, picked: dict({"name": name}, **{k: v for k, v in extra.items() if k in picked}),
                     names, st.fixed_dictionaries(fields), st.sets(st.sampled_from(DEVICE_KEYS[1:]), max_size=4))


def _task():
    top = {"max_id": st.one_of(st.sampled_from([9, 99999]), values),
           "reuse_delay": st.one_of(st.sampled_from([0, 3600]), values),
           "lock_timeout": st.one_of(st.sampled_from([5]), values),
           "prune_prefix": st.one_of(st.sampled_from(["hz", "x"]), values),
           "remove_prefixes": st.one_of(st.lists(st.text(max_size=4), max_size=2), values),
           "netns": values, "registry": st.sampled_from(PATHS + ["reg.json"]),
           "devices": st.one_of(st.lists(_item(), max_size=4), values),
           "unknown_option": values}
    return st.builds(lambda single, extra, picked: dict(single, **{k: v for k, v in extra.items() if k in picked}),
                     _item(), st.fixed_dictionaries(top), st.sets(st.sampled_from(sorted(top)), max_size=4))


def _host_links() -> set:
    return {entry["ifname"] for entry in json.loads(h.sh("ip", "-j", "link", "show").stdout)}


class Hang(Exception):
    pass


def _alarm(_signum, _frame):
    raise Hang()


def test_hostile_input(ns, workdir):
    engine = h.engine()
    sandbox = workdir / "s1" / "s2" / "s3" / "s4"
    sandbox.mkdir(parents=True, mode=0o700)
    outside_before = sorted(os.listdir(workdir))
    host_before = _host_links()
    other_ns_before = h.netns_list()
    tally = {"cases": 0, "failed_cleanly": 0, "succeeded": 0, "devices_checked": 0}
    asked_netns: set = set()   # hostile namespace names given: the module must never create one

    @settings(max_examples=size("hostile_cases"), deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(_task())
    def case(params):
        tally["cases"] += 1
        params = dict(params)
        registry = params.get("registry", "reg.json")
        if isinstance(registry, str):
            params["registry"] = str(sandbox) + "/" + registry
        if params.get("netns") is None or not isinstance(params.get("netns"), str) or tally["cases"] % 3:
            params["netns"] = ns
        else:
            asked_netns.add(params["netns"])
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(60)
        try:
            result = engine.run(params)
        except engine.TapError as exc:
            message = str(exc)
            assert "internal error" not in message and "Traceback" not in message, (params, message)
            assert exc.detail is None, (params, exc.detail)
            tally["failed_cleanly"] += 1
            return
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        tally["succeeded"] += 1
        links = h.links(params["netns"]) if params["netns"] in h.netns_list() else {}
        for device in result.get("devices", [result]):
            if device.get("state") == "absent" or device.get("ifindex") is None:
                continue
            name = device["name"]
            assert isinstance(name, str) and 0 < len(name.encode()) <= 15, device
            assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in name) and "/" not in name, device
            assert name in links, (name, sorted(links))
            if device["lease"] is not None:   # a leased device carries its lease (and this registry's id)
                mark = h.raw_mark(links[name])
                assert mark is not None and mark["lease"] == device["lease"] and mark.get("registry"), (
                    device, links[name].get("ifalias"))
            tally["devices_checked"] += 1
        if len(links) > 200:
            for link_name in [n for n in links if n != "lo"]:
                h.sh("ip", "-n", ns, "link", "del", link_name, check=False)

    started = time.monotonic()
    case()
    assert sorted(os.listdir(workdir)) == outside_before, "something was made beside the sandbox"
    assert _host_links() == host_before, "the host namespace's links changed"
    made = {name for name in asked_netns if name not in other_ns_before} & h.netns_list()
    assert made == set(), "namespaces created by the module: %r" % made
    assert tally["cases"] >= size("hostile_cases")
    record("hostile_input", **tally, seconds=round(time.monotonic() - started, 1),
           strategies="format strings, lone surrogates, NUL/control bytes, huge/negative numbers, inf/nan, "
                      "wrong types, path tricks")
