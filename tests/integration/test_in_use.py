"""Devices held by a process: a small TUNSETIFF holder, and a real QEMU as an unprivileged user."""
from __future__ import annotations

import re
import subprocess

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root]

T = "vmt%d"


def in_use_refusal(name: str) -> re.Pattern:
    """The planner's refusal to remove or replace a held device (plugins/module_utils/_plan.py)."""
    return re.compile(r"device %s is in use \(.+\); stop the process holding it, or set force: true to delete it "
                      r"anyway" % re.escape(repr(name)))


def test_held_tap_blocks_absent_and_force_deletes_it(api, ns, registry, hold_tap):
    made = api(name=T, lease="vm/0")
    name = made["name"]
    hold_tap(ns, name)
    assert h.attached(ns, name)
    again = api(name=T, lease="vm/0")
    assert again["changed"] is False and again["in_use"] is True
    message = api.fails(lease="vm/0", state="absent")
    assert in_use_refusal(name).search(message), message
    assert name in h.links(ns)
    assert "vm/0" in h.read_registry(registry)["leases"]
    forced = api(lease="vm/0", state="absent", force=True)
    assert forced["changed"] is True
    assert name not in h.links(ns)
    assert "vm/0" not in h.read_registry(registry)["leases"]


def test_held_literal_tap_blocks_absent(api, ns, hold_tap):
    api(name="lit0")
    hold_tap(ns, "lit0")
    message = api.fails(name="lit0", state="absent")
    assert in_use_refusal("lit0").search(message), message
    assert "lit0" in h.links(ns)
    assert api(name="lit0", state="absent", force=True)["changed"] is True
    assert "lit0" not in h.links(ns)


def test_held_multi_queue_tap_blocks_absent(api, ns, hold_tap):
    made = api(name=T, lease="mq", multi_queue=True)
    hold_tap(ns, made["name"], multi_queue=True)
    assert h.tun_info(ns, made["name"])["numqueues"] == 1
    message = api.fails(lease="mq", state="absent")
    assert in_use_refusal(made["name"]).search(message), message
    assert made["name"] in h.links(ns)


def test_multi_queue_tap_with_a_detached_queue_is_still_in_use(api, ns, hold_tap):
    made = api(name=T, lease="mq", multi_queue=True)
    hold_tap(ns, made["name"], multi_queue=True, detach=True)
    info = h.tun_info(ns, made["name"])
    assert info["numqueues"] == 0 and info["numdisabled"] == 1, info
    assert api(name=T, lease="mq", multi_queue=True)["in_use"] is True
    message = api.fails(lease="mq", state="absent")
    assert in_use_refusal(made["name"]).search(message), message
    assert made["name"] in h.links(ns)


def test_owner_change_on_held_single_queue_tap_fails_saying_so(api, ns, hold_tap):
    made = api(name=T, lease="vm/0")
    name = made["name"]
    hold_tap(ns, name)
    message = api.fails(name=T, lease="vm/0", owner=h.NOBODY)
    assert ("owner/group of %r cannot be changed while a process holds it" % name) in message, message
    assert h.tun_info(ns, name)["user"] == 0
    assert h.link(ns, name)["ifindex"] == made["ifindex"], "a held device must not be replaced"


def test_settings_other_than_owner_still_reconcile_while_held(api, ns, hold_tap):
    made = api(name=T, lease="vm/0")
    hold_tap(ns, made["name"])
    changed = api(name=T, lease="vm/0", mtu=1400)
    assert changed["changed"] is True and changed["in_use"] is True
    assert h.link(ns, made["name"])["mtu"] == 1400


def test_owner_change_on_held_multi_queue_tap_works(api, ns, hold_tap):
    made = api(name=T, lease="mq", multi_queue=True)
    hold_tap(ns, made["name"], multi_queue=True)
    changed = api(name=T, lease="mq", multi_queue=True, owner=h.NOBODY)
    assert changed["changed"] is True
    assert h.tun_info(ns, made["name"])["user"] == h.NOBODY_UID
    assert h.tun_info(ns, made["name"])["numqueues"] == 1


def test_incompatible_change_of_a_held_leased_device_is_refused(api, ns, hold_tap):
    made = api(name=T, lease="vm/0")
    hold_tap(ns, made["name"])
    message = api.fails(name=T, lease="vm/0", mode="tun")
    assert in_use_refusal(made["name"]).search(message), message
    assert h.tun_info(ns, made["name"])["type"] == "tap"
    assert h.tun_names(ns) == {made["name"]}


def test_vnet_hdr_and_packet_info_rewritten_by_an_attacher_are_never_compared(api, ns, hold_tap):
    made = api(name=T, lease="vm/0", vnet_hdr=False, packet_info=True)
    assert h.tun_info(ns, made["name"])["pi"] is True
    holder = hold_tap(ns, made["name"], extra_flags=h.IFF_VNET_HDR)  # + IFF_NO_PI: pi off
    hold_tap.release(holder)
    info = h.tun_info(ns, made["name"])
    assert (info["vnet_hdr"], info["pi"]) == (True, False), "the attacher rewrote the flags"
    again = api(name=T, lease="vm/0", vnet_hdr=False, packet_info=True)
    assert again["changed"] is False and again["name"] == made["name"]
    assert again["ifindex"] == made["ifindex"]


# ----------------------------------------------------------------------------- QEMU

@pytest.mark.qemu
@pytest.mark.slow
def test_qemu_as_unprivileged_user(api, ns, qemu, tun_world_openable):
    """QEMU as nobody attaches to a tap owned by nobody (single and multi-queue, queues=2)
    and is refused on one owned by root (what the module sets when no owner is given)."""
    mine = api(name=T, lease="q/own", owner=h.NOBODY)["name"]
    multi = api(name=T, lease="q/mq", owner=h.NOBODY, multi_queue=True)["name"]
    roots = api(name=T, lease="q/root")["name"]

    refused = qemu(ns, roots)
    ok = qemu(ns, mine)
    mq = qemu(ns, multi, queues=2)

    try:
        err = refused.communicate(timeout=20)[1]
    except subprocess.TimeoutExpired:
        pytest.fail("QEMU as nobody was not refused on a root-owned tap (still running)")
    assert refused.returncode != 0
    assert "Operation not permitted" in err or "permission" in err.lower(), err
    assert not h.attached(ns, roots)

    def both_attached():
        for proc in (ok, mq):
            if proc.poll() is not None:
                pytest.fail("QEMU exited rc=%s: %s" % (proc.returncode, proc.stderr.read()))
        return h.attached(ns, mine) and h.tun_info(ns, multi).get("numqueues") == 2

    h.wait_for(both_attached, timeout=20, what="QEMU to attach to %s and %s" % (mine, multi))

    # the module sees them in use and leaves them alone
    seen = api(name=T, lease="q/own", owner=h.NOBODY)
    assert seen["changed"] is False and seen["in_use"] is True
    message = api.fails(lease="q/mq", state="absent")
    assert in_use_refusal(multi).search(message), message
    message = api.fails(lease="q/own", state="absent")
    assert in_use_refusal(mine).search(message), message
    assert {mine, multi, roots} <= h.tun_names(ns)
