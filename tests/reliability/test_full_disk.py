"""4. A registry on a tiny tmpfs whose space or inodes run out at each write, and on read-only storage.

Each scenario runs in a child with a private mount namespace: the tmpfs and the read-only
bind mount vanish with it, whatever happens to the test.
"""
from __future__ import annotations

import os

import pytest

import ntt_crash as crash
import ntt_helpers as h
import ntt_invariants
from ntt_figures import record

pytestmark = [pytest.mark.root]

T = "dsk%d"
# (where the file system fills up, the task); whether devices changed before the failing write is
# read from the kernel, and the failed run's "changed" must say the same.
POINTS = [
    (("save", 1), "create"),      # before the intent: nothing may be made
    (("create", 1), "create"),    # after the first device: the final write fails
    (("save", 2), "create"),      # just before the result is written
    (("delete", 1), "release"),   # a release: the device is gone, the write fails
    (("save", 1), "release"),     # a release writes once, after deleting
]


def _params(ns, registry, task):
    if task == "create":
        return dict(netns=ns, registry=registry, devices=[dict(name=T, lease="d/%d" % i) for i in range(3)])
    return dict(netns=ns, registry=registry, devices=[], remove_prefixes=["d/"])


@pytest.mark.parametrize("what", ["space", "inodes"])
def test_a_full_file_system_at_each_write(ns, workdir, what):
    regdir = str(workdir / "full")
    os.mkdir(regdir, 0o700)
    registry = os.path.join(regdir, "registry.json")

    def scenario():
        crash.mount_tmpfs(regdir, size="256k", inodes=64)  # room for the database and its journal, then filled
        seen = []
        for point, task in POINTS:
            # Start from the opposite state, so that the run under test really makes or deletes devices.
            setup = crash.run_forked(_params(ns, registry, "create" if task == "release" else "release"))
            assert "result" in setup, setup
            before = h.tun_names(ns)
            failed = crash.run_forked(_params(ns, registry, task), fill_at=point, fill_dir=regdir, fill_what=what)
            after_fail = h.tun_names(ns)
            crash.unfill(regdir)
            again = crash.run_forked(_params(ns, registry, task))
            expected = {} if task == "release" else {"d/%d" % i: {"template": T} for i in range(3)}
            ntt_invariants.check(registry, ns, expected)
            seen.append({"point": point, "task": task, "failed": failed, "again": again,
                         "changed_kernel": before != after_fail})
        return seen

    seen = crash.in_private_mount_namespace(scenario)
    failures = 0
    for entry in seen:
        failed, again = entry["failed"], entry["again"]
        if "error" in failed:
            failures += 1
            assert "No space left on device" in failed["error"] or "registry" in failed["error"], entry
            # A run that made or deleted devices says so even though it failed.
            assert failed["changed"] is entry["changed_kernel"], entry
            if entry["changed_kernel"]:
                assert again["result"]["changed"] is True, entry
        else:
            assert not entry["changed_kernel"] or failed["result"]["changed"], entry
        assert "result" in again, entry
    assert failures == len(POINTS), seen       # every scenario meets the full file system
    assert sum(1 for e in seen if e["changed_kernel"]) == 4, seen
    assert not os.path.ismount(regdir) and os.listdir(regdir) == []
    record("full_disk_%s" % what, scenarios=len(seen), failed_cleanly=failures,
           changed_reported_when_devices_changed=sum(1 for e in seen if e["changed_kernel"]))


def test_read_only_storage(ns, workdir):
    regdir = str(workdir / "ro")
    os.mkdir(regdir, 0o700)
    registry = os.path.join(regdir, "registry.json")
    params = dict(netns=ns, registry=registry, name=T, lease="ro/0")
    assert "result" in crash.run_forked(params)

    def scenario():
        crash.mount_readonly(regdir)
        real = crash.run_forked(dict(params, lease="ro/1"))
        check = crash.run_forked(dict(params, lease="ro/1"), check_mode=True)
        same = crash.run_forked(params)
        return real, check, same, sorted(h.tun_names(ns))

    real, check, same, names = crash.in_private_mount_namespace(scenario)
    assert "error" in real and "Read-only file system" in real["error"] and real["changed"] is False, real
    assert registry in real["error"], real
    assert check["result"]["changed"] is True, check            # check mode reads only
    assert "error" in same and same["changed"] is False, same   # the lock cannot even be opened for writing
    assert names == ["dsk0"]                                    # nothing was made
    ntt_invariants.check(registry, ns, {"ro/0": {"template": T}})
    record("read_only", real_run="failed cleanly, changed false", check_mode="works", devices_made=0)
