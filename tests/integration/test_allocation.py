"""Template allocation, names and check/diff mode through the Python API, on real devices."""
from __future__ import annotations

import os
import re
import stat
import time

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root]

T = "vmt%d"
# The planner's wording when a template has no number left (plugins/module_utils/_plan.py).
NO_FREE_NAME = re.compile(r"no free name for template 'vmt%d': every number from 0 to max_id \d+ is taken by a device "
                          r"in this namespace, leased, or released less than reuse_delay \(\d+ s\) ago")


def test_template_gives_increasing_names_matching_the_kernel(api, ns):
    results = [api(name=T) for _run in range(3)]
    assert [r["name"] for r in results] == ["vmt0", "vmt1", "vmt2"]
    for number, result in enumerate(results):
        assert result["changed"] is True
        assert result["id"] == number
        assert result["template"] == T
        assert result["lease"] is None
        assert result["state"] == "present"
        assert result["mode"] == "tap"
        assert result["multi_queue"] is False
        assert "tap" in result["flags"] and "persist" in result["flags"], result["flags"]
        assert "no_pi" in result["flags"], result["flags"]
        assert result["in_use"] is False
        h.assert_matches_kernel(ns, result)
    assert h.tun_names(ns) == {"vmt0", "vmt1", "vmt2"}


def test_defaults_on_a_fresh_tap(api, ns):
    """Defaults: tap, up, no pi, no vnet_hdr, single queue, owner root, group unset."""
    result = api(name=T)
    info = h.tun_info(ns, result["name"])
    assert info["type"] == "tap"
    assert info["pi"] is False and info["vnet_hdr"] is False and info["multi_queue"] is False
    assert info["user"] == 0, "neither owner nor group given: the owner must be root (0)"
    assert info["group"] is None
    assert result["owner"] == 0 and result["group"] is None
    assert h.is_up(h.link(ns, result["name"]))
    assert result["bridge"] is None


def test_creation_flags_vnet_hdr_packet_info_multi_queue_tun(api, ns):
    tap = api(name=T, vnet_hdr=True, packet_info=True, multi_queue=True)
    info = h.tun_info(ns, tap["name"])
    assert (info["vnet_hdr"], info["pi"], info["multi_queue"]) == (True, True, True)
    assert {"vnet_hdr", "multi_queue", "tap"} <= set(tap["flags"]) and "no_pi" not in tap["flags"]
    assert tap["vnet_hdr"] is True and tap["packet_info"] is True
    tun = api(name="tn%d", mode="tun")
    assert tun["name"] == "tn0" and tun["mode"] == "tun"
    assert h.tun_info(ns, "tn0")["type"] == "tun"
    assert "tun" in tun["flags"]
    h.assert_matches_kernel(ns, tap)
    h.assert_matches_kernel(ns, tun)


def test_literal_name(api, ns):
    result = api(name="lit0")
    assert result["name"] == "lit0" and result["changed"] is True
    assert result["id"] is None and result["template"] is None
    h.assert_matches_kernel(ns, result)
    again = api(name="lit0")
    assert again["changed"] is False
    assert again["ifindex"] == result["ifindex"]


def test_delete_then_allocate_never_reuses(api, ns, registry):
    for _run in range(3):
        api(name=T)
    removed = api(name="vmt2", state="absent")
    assert removed["changed"] is True
    h.del_link(ns, "vmt0")  # behind our back: the kernel would pick vmt0 next
    assert h.tun_names(ns) == {"vmt1"}
    nxt = api(name=T)
    assert nxt["name"] == "vmt3", "freed names vmt0/vmt2 must not be reused"
    assert h.tun_names(ns) == {"vmt1", "vmt3"}
    assert h.read_registry(registry)["counters"][T] == 3, "the counter is the last number handed out"


def test_sequence_continues_in_a_new_process(api, ns, registry):
    assert [api(name=T)["name"] for _run in range(2)] == ["vmt0", "vmt1"]
    out = h.api_subprocess([api.params({"name": T}), api.params({"name": T})])
    assert [o.get("result", o)["name"] for o in out] == ["vmt2", "vmt3"], out
    assert api(name=T)["name"] == "vmt4"
    assert h.tun_names(ns) == {"vmt%d" % i for i in range(5)}


def test_counter_is_shared_by_namespaces(make_ns, registry):
    one, two = make_ns(), make_ns()
    assert h.Api(one, registry)(name=T)["name"] == "vmt0"
    assert h.Api(two, registry)(name=T)["name"] == "vmt1"
    assert h.tun_names(one) == {"vmt0"} and h.tun_names(two) == {"vmt1"}


def test_first_use_starts_above_existing_canonical_matches(api, ns):
    h.add_tuntap(ns, "vmt7")
    h.add_tuntap(ns, "vmt3")
    h.add_tuntap(ns, "vmt007")     # not canonical: was not made from vmt%d
    h.add_tuntap(ns, "vmt100000")  # above max_id (99999): does not match
    h.add_foreign(ns, "vmt9x")  # not a match at all
    result = api(name=T)
    assert result["name"] == "vmt8" and result["id"] == 8
    assert h.tun_names(ns) == {"vmt3", "vmt7", "vmt007", "vmt100000", "vmt8"}


@pytest.mark.parametrize("squatter", ["vmt007", "vmt00", "vmt100000"])
def test_non_canonical_or_out_of_range_names_do_not_count(api, ns, squatter):
    h.add_tuntap(ns, squatter)
    assert api(name=T)["name"] == "vmt0"


def test_first_use_counts_any_kind_of_matching_device(api, ns):
    h.add_foreign(ns, "vmt4")
    assert api(name=T)["name"] == "vmt5"


def test_existing_name_is_skipped_later(api, ns):
    assert api(name=T)["name"] == "vmt0"
    h.add_tuntap(ns, "vmt1")
    h.add_foreign(ns, "vmt2")
    assert api(name=T)["name"] == "vmt3"


def test_wraparound_holds_back_recent_releases(api, ns, registry):
    names = [api(name=T, max_id=3)["name"] for _run in range(4)]
    assert names == ["vmt0", "vmt1", "vmt2", "vmt3"]
    api(name="vmt0", state="absent", max_id=3)   # released now: held back for reuse_delay
    h.del_link(ns, "vmt2")                         # gone without a release record
    result = api(name=T, max_id=3)
    assert result["name"] == "vmt2", "wrapped: vmt0 was released < reuse_delay ago, vmt1 exists"
    assert "vmt0" not in h.tun_names(ns)
    released = h.read_registry(registry)["released"]
    assert "vmt0" in released


def test_wraparound_reuses_after_reuse_delay(api, ns, registry):
    for _run in range(3):
        api(name=T, max_id=2)
    api(name="vmt1", state="absent", max_id=2)
    message = api.fails(name=T, max_id=2)  # default reuse_delay 3600 holds vmt1 back
    assert NO_FREE_NAME.search(message) and "reuse_delay (3600 s)" in message, message
    assert h.tun_names(ns) == {"vmt0", "vmt2"}
    time.sleep(1.1)
    result = api(name=T, max_id=2, reuse_delay=1)
    assert result["name"] == "vmt1"
    assert "vmt1" not in h.read_registry(registry).get("released", {}), \
        "a release record older than reuse_delay must be dropped once reused"


def test_a_short_reuse_delay_does_not_end_the_hold_for_later_runs(api, ns, registry):
    for _run in range(3):
        api(name=T, max_id=2)
    api(name="vmt1", state="absent", max_id=2)  # released with the default reuse_delay, 3600 s
    api(name="other%d", reuse_delay=0)          # a run that would drop every record older than 0 s
    assert "vmt1" in h.read_registry(registry)["released"]
    message = api.fails(name=T, max_id=2)
    assert NO_FREE_NAME.search(message) and "reuse_delay (3600 s)" in message, message
    assert h.tun_names(ns) == {"vmt0", "vmt2", "other0"}


def test_exhaustion_fails_with_a_clear_message_and_changes_nothing(api, ns, registry):
    for _run in range(3):
        api(name=T, max_id=2)
    before = h.read_registry(registry)
    message = api.fails(name=T, max_id=2)
    assert NO_FREE_NAME.search(message) and "max_id 2" in message, message
    assert h.tun_names(ns) == {"vmt0", "vmt1", "vmt2"}
    assert h.read_registry(registry)["counters"] == before["counters"]


def test_exhaustion_by_leases_in_another_namespace(make_ns, registry):
    """Names leased to others count as unusable even when their device is elsewhere."""
    one, two = make_ns(), make_ns()
    for index in range(2):
        h.Api(one, registry)(name=T, max_id=1, lease="other/%d" % index)
    message = h.Api(two, registry).fails(name=T, max_id=1)
    assert NO_FREE_NAME.search(message) and "max_id 1" in message, message
    assert h.tun_names(two) == set()


BAD_NAMES = [
    "abcdefghijklmnop",  # 16 bytes
    ".", "..", "ta/p", "ta:p", "ta p", "tab\tx", "tap\u00e0",  # 'tapà' = 74 61 70 C3 A0
    "vm%dx%d", "tap%s", "tap%%d", "tap%", "",
    "\u00e0\u00e0\u00e0\u00e0\u00e0\u00e0\u00e0\u00e0",  # 8 chars, 16 bytes
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n) for n in BAD_NAMES])
def test_bad_names_fail_naming_the_value_and_change_nothing(api, ns, registry, name):
    message = api.fails(name=name)
    if name:
        assert repr(name) in message, message
    else:
        assert "name must be a non-empty string" in message, message
    assert h.non_lo(ns) == set()
    assert not os.path.exists(os.path.dirname(registry)), "nothing may be written for bad input"


def test_template_that_cannot_hold_max_id_is_refused(api, ns, registry):
    ok = api(name="abcdefghij%d")  # 10 + 5 digits of 99999 = 15 bytes
    assert ok["name"] == "abcdefghij0"
    message = api.fails(name="abcdefghijk%d")  # 11 + 5 = 16
    assert "abcdefghijk%d" in message and re.search(r"\b9999\b", message), message
    assert api(name="abcdefghijk%d", max_id=9999)["name"] == "abcdefghijk0"
    message = api.fails(name="abcdefghijklm%d", max_id=100)  # 13 + 3 digits
    assert re.search(r"\b99\b", message), message
    assert h.tun_names(ns) == {"abcdefghij0", "abcdefghijk0"}


@pytest.mark.parametrize("option", [{"mac_address": "02:00:00:00:00:01"}, {"bridge": "br0"}])
def test_tun_refuses_mac_and_bridge(api, ns, registry, option):
    h.add_link(ns, "br0", "bridge")
    message = api.fails(name=T, mode="tun", **option)
    assert next(iter(option)) in message, message
    assert h.tun_names(ns) == set()
    assert not os.path.exists(registry)


def test_bridge_must_exist(api, ns, registry):
    message = api.fails(name=T, bridge="nobr0")
    assert "nobr0" in message
    assert h.tun_names(ns) == set()
    assert not os.path.exists(os.path.dirname(registry)), h.siblings(registry)


def test_netns_must_exist_and_is_never_created(make_ns, registry):
    missing = make_ns.reserve()
    message = h.Api(missing, registry).fails(name=T)
    assert missing in message
    assert missing not in h.netns_list(), "the module created the missing namespace"
    assert not os.path.exists(os.path.dirname(registry)), h.siblings(registry)


def test_registry_directory_and_file_modes(api, ns, registry):
    api(name=T)
    assert stat.S_IMODE(os.stat(os.path.dirname(registry)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(registry).st_mode) == 0o600
    api(name=T)
    # The database and its lock; SQLite's journal exists only while a transaction commits.
    assert h.siblings(registry) == ["registry.json", "registry.json.lock"]
    with open(registry, "rb") as handle:
        assert handle.read(16) == b"SQLite format 3\x00"
    data = h.read_registry(registry)
    assert data["version"] == 1 and set(data["counters"]) == {T}
    assert data["counters"][T] == 1, "the counter is the last number handed out"


def test_existing_registry_directory_is_not_chmodded(ns, tmp_path):
    directory = tmp_path / "existing"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    h.Api(ns, directory / "registry.json")(name=T)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o755


# ----------------------------------------------------------------------------- check mode

def test_check_mode_on_a_fresh_host_changes_nothing(api, ns, registry):
    result = api(check_mode=True, name=T, lease="web1/net0")
    assert result["changed"] is True
    assert result["name"] == "vmt0" and result["id"] == 0
    assert result["ifindex"] is None
    h.assert_warnings(result, h.CHECK_MODE_WARNING)
    assert h.non_lo(ns) == set()
    assert not os.path.exists(os.path.dirname(registry)), \
        "check mode must not create the registry directory, file or lock"


def test_check_mode_predicts_the_next_name_and_changes_nothing(api, ns, registry):
    api(name=T)
    api(name=T, lease="a")
    before = h.tree_snapshot(os.path.dirname(registry))
    links_before = h.stable_links(ns)
    predicted = api(check_mode=True, name=T, lease="b")
    assert (predicted["changed"], predicted["name"], predicted["id"]) == (True, "vmt2", 2)
    assert predicted["ifindex"] is None
    h.assert_warnings(predicted, h.CHECK_MODE_WARNING)
    assert h.tree_snapshot(os.path.dirname(registry)) == before
    assert h.stable_links(ns) == links_before
    real = api(name=T, lease="b")
    assert real["name"] == predicted["name"]


def test_check_mode_on_existing_lease_and_settings(api, ns, registry):
    made = api(name=T, lease="a", mtu=1400)
    before = h.tree_snapshot(os.path.dirname(registry))
    same = api(check_mode=True, name=T, lease="a", mtu=1400)
    assert same["changed"] is False and same["name"] == made["name"]
    h.assert_warnings(same)  # nothing is allocated: no prediction to warn about
    assert same["ifindex"] == made["ifindex"]
    change = api(check_mode=True, name=T, lease="a", mtu=1300, up=False)
    assert change["changed"] is True and change["name"] == made["name"]
    entry = h.link(ns, made["name"])
    assert entry["mtu"] == 1400 and h.is_up(entry)
    gone = api(check_mode=True, lease="a", state="absent")
    assert gone["changed"] is True
    assert made["name"] in h.tun_names(ns)
    assert h.tree_snapshot(os.path.dirname(registry)) == before


def test_check_mode_does_not_move_a_corrupt_registry_aside(api, ns, registry):
    api(name=T, lease="a")
    with open(registry, "w", encoding="utf-8") as handle:
        handle.write("{not json")
    before = h.tree_snapshot(os.path.dirname(registry))
    result = api(check_mode=True, name=T, lease="b")
    # The registry's first run left no previous generation: rebuilt in memory from the marked
    # vmt0 alone, lease a is adopted, so b gets the next number.
    assert (result["changed"], result["name"]) == (True, "vmt1"), result
    h.assert_warnings(result, h.registry_check_mode_warning(registry),
                      h.adopted_warning(["vmt0"]), h.CHECK_MODE_WARNING)
    assert h.tree_snapshot(os.path.dirname(registry)) == before
    assert h.tun_names(ns) == {"vmt0"}


# ----------------------------------------------------------------------------- diff mode

def test_diff_mode_reports_before_and_after(api, ns):
    created = api(diff=True, name=T, lease="a", mtu=1400)
    assert "diff" in created and {"before", "after"} <= set(created["diff"]), created.get("diff")
    assert created["diff"]["after"].get("mtu") == 1400, created["diff"]
    assert created["diff"]["before"].get("mtu") is None, created["diff"]
    changed = api(diff=True, name=T, lease="a", mtu=1300)
    before, after = changed["diff"]["before"], changed["diff"]["after"]
    assert before.get("mtu") == 1400 and after.get("mtu") == 1300, changed["diff"]
    same = api(diff=True, name=T, lease="a", mtu=1300)
    assert same["changed"] is False
    assert same["diff"]["before"] == same["diff"]["after"]
    assert h.link(ns, "vmt0")["mtu"] == 1300
