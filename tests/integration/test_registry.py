"""The registry under pressure: refusals, corruption recovery, concurrency, SIGKILL."""
from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import textwrap
import time

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root]

T = "vmt%d"
# The registry's refusals, by their wording (plugins/module_utils/_registry.py).
WRITABLE = ("registry {kind} {path} is writable by someone other than root (mode {mode:04o}, owner uid {uid}); "
            "refusing it because another user could forge allocations")
SYMLINK = "registry {kind} {path} is a symlink; refusing to follow it"


# ----------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("mode, owner", [(0o770, 0), (0o707, 0), (0o777, 0), (0o700, h.NOBODY_UID)],
                         ids=["group-w", "other-w", "world-w", "owned-by-nobody"])
def test_registry_directory_writable_by_others_is_refused(ns, tmp_path, mode, owner):
    directory = tmp_path / "reg"
    directory.mkdir()
    os.chmod(directory, mode)
    os.chown(directory, owner, -1)
    message = h.Api(ns, directory / "registry.json").fails(name=T)
    assert WRITABLE.format(kind="directory", path=directory, mode=mode, uid=owner) in message, message
    assert os.listdir(directory) == []
    assert h.non_lo(ns) == set()


@pytest.mark.parametrize("mode, owner", [(0o660, 0), (0o606, 0), (0o600, h.NOBODY_UID)],
                         ids=["group-w", "other-w", "owned-by-nobody"])
def test_registry_file_writable_by_others_is_refused(api, ns, registry, mode, owner):
    api(name=T, lease="a")
    os.chmod(registry, mode)
    os.chown(registry, owner, -1)
    before = h.tree_snapshot(os.path.dirname(registry))
    message = api.fails(name=T, lease="b")
    assert WRITABLE.format(kind="file", path=registry, mode=mode, uid=owner) in message, message
    assert h.tree_snapshot(os.path.dirname(registry)) == before
    assert h.tun_names(ns) == {"vmt0"}


def test_registry_file_symlink_is_refused(api, ns, registry):
    api(name=T, lease="a")
    real = str(registry) + ".real"
    os.rename(registry, real)
    os.symlink(real, registry)
    message = api.fails(name=T, lease="b")
    assert SYMLINK.format(kind="file", path=registry) in message, message
    assert os.path.islink(registry)
    assert h.tun_names(ns) == {"vmt0"}


def test_registry_directory_symlink_is_refused(ns, tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    os.symlink(real, tmp_path / "reg")
    message = h.Api(ns, tmp_path / "reg" / "registry.json").fails(name=T)
    assert SYMLINK.format(kind="directory", path=tmp_path / "reg") in message, message
    assert os.listdir(real) == []
    assert h.non_lo(ns) == set()


# ----------------------------------------------------------------------------- corruption

def _corrupt(kind: str, good: bytes) -> bytes:
    return {"empty": b"", "truncated": good[: len(good) // 2], "not-a-database": b"not json \x00\xff{",
            "damaged": good[:100] + b"\xff" * (len(good) - 100)}[kind]


@pytest.mark.parametrize("kind", ["empty", "truncated", "not-a-database", "damaged"])
def test_corrupt_registry_is_recovered_with_a_warning(api, ns, registry, kind):
    first = api(devices=[{"name": T, "lease": "a"}, {"name": T, "lease": "b", "mtu": 1400}])
    assert [d["name"] for d in first["devices"]] == ["vmt0", "vmt1"]
    api(name=T, lease="c")                       # vmt2
    api(name=T)                                  # vmt3, no lease: only the counter and its mark know it
    h.del_link(ns, "vmt1")                       # b now lives only in the registry
    with open(registry, "rb") as handle:
        good = handle.read()
    bad = _corrupt(kind, good)
    with open(registry, "wb") as handle:
        handle.write(bad)

    result = api(devices=[{"name": T, "lease": "a"}, {"name": T, "lease": "b", "mtu": 1400},
                          {"name": T, "lease": "c"}])
    names = [d["name"] for d in result["devices"]]
    assert names[0] == "vmt0" and names[2] == "vmt2", "a and c come back from the devices' marks"
    # b's record went with the damaged database and its device is gone: it is made again, above
    # every marked device (the counter is rebuilt from the marks).
    assert names[1] not in ("vmt0", "vmt1", "vmt2", "vmt3"), names
    assert [d["changed"] for d in result["devices"]] == [False, True, False]
    h.assert_warnings(result, h.registry_rebuilt_warning(registry), h.adopted_warning(["vmt0", "vmt2"]))
    moved = glob.glob(str(registry) + ".corrupt-*")
    assert len(moved) == 1, h.siblings(registry)
    assert re.search(r"\.corrupt-\d{8}T\d{6}(\.\d+)?$", moved[0]), moved
    with open(moved[0], "rb") as handle:
        assert handle.read() == bad, "the bad copy must be kept as it was"
    data = h.read_registry(registry)
    assert data["version"] == 1
    assert {k: v["name"] for k, v in data["leases"].items()} == {"a": "vmt0", "b": names[1], "c": "vmt2"}
    assert data["counters"][T] >= 3, "counters never below the marked devices"
    assert api(name=T)["name"] not in set(names) | {"vmt3"}
    h.assert_matches_kernel(ns, result["devices"][1])


def test_corrupt_registry_rebuilt_from_aliases(api, ns, registry):
    api(devices=[{"name": T, "lease": "a"}, {"name": "lit0", "lease": "b"}])
    with open(registry, "w", encoding="utf-8") as handle:
        handle.write("[]")  # valid JSON, wrong schema
    result = api(name=T, lease="a")
    # Taking devices back into the registry is a change, reported with their names.
    assert result["name"] == "vmt0" and result["changed"] is True and result["adopted"] == ["lit0", "vmt0"]
    h.assert_warnings(result, h.registry_rebuilt_warning(registry), h.adopted_warning(["lit0", "vmt0"]))
    assert glob.glob(str(registry) + ".corrupt-*")
    data = h.read_registry(registry)
    assert {k: v["name"] for k, v in data["leases"].items()} == {"a": "vmt0", "b": "lit0"}
    assert api(name=T)["name"] == "vmt1"


def test_recovery_from_the_marks_does_not_claim_an_interrupted_run(api, ns, registry):
    api(name=T, lease="a")  # finished normally
    api(name=T, lease="b")  # finished normally
    with open(registry, "w", encoding="utf-8") as handle:
        handle.write("{not json")
    result = api(name=T, lease="a")
    assert (result["changed"], result["name"], sorted(result["adopted"])) == (True, "vmt0", ["vmt0", "vmt1"]), result
    interrupted = [w for w in result["warnings"] if re.fullmatch(h.interrupted_run_warning(registry), w)]
    assert interrupted == [], "no run was interrupted, yet: %r" % interrupted


# ----------------------------------------------------------------------------- concurrency

_WORKER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, %(root)r)
    from %(engine)s import run, TapError
    params = json.loads(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    names = []
    for lease in params.pop("leases"):
        names.append(run(dict(params, lease=lease))["name"])
    print(json.dumps(names), flush=True)
""") % {"root": h.COLLECTIONS_ROOT, "engine": h.ENGINE_MODULE}


@pytest.mark.slow
def test_concurrent_processes_get_distinct_names_and_all_leases_are_recorded(ns, registry):
    procs, per_proc, workers = [], 10, 8
    expected = {}
    try:
        for worker in range(workers):
            leases = ["w%d/n%d" % (worker, n) for n in range(per_proc)]
            params = {"name": T, "netns": ns, "registry": str(registry), "leases": leases}
            proc = subprocess.Popen([h.PYTHON, "-c", _WORKER, json.dumps(params)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, cwd="/")
            procs.append((proc, leases))
        for proc, _lease in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc, _lease in procs:  # start them all at (nearly) the same moment
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc, leases in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, "worker failed rc=%s\n%s" % (proc.returncode, err)
            names = json.loads(out.strip().splitlines()[-1])
            expected.update(zip(leases, names))
    finally:
        for proc, _lease in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    names = list(expected.values())
    assert len(names) == workers * per_proc
    assert len(set(names)) == len(names), "two processes got the same name"
    assert h.tun_names(ns) == set(names)
    data = h.read_registry(registry)
    assert {k: v["name"] for k, v in data["leases"].items()} == expected
    assert data["counters"][T] >= max(int(n[3:]) for n in names)
    assert data.get("intent") is None
    marks = h.aliases(ns)
    assert {name: mark["lease"] for name, mark in marks.items()} == {v: k for k, v in expected.items()}


# ----------------------------------------------------------------------------- SIGKILL

_KILLER = textwrap.dedent("""
    import os, signal, sys, time
    pid, threshold = int(sys.argv[1]), int(sys.argv[2])
    deadline = time.monotonic() + 60
    print("ready", flush=True)
    while time.monotonic() < deadline:
        # `ip netns exec` mounted this namespace's sysfs: listdir sees its devices
        if len(os.listdir("/sys/class/net")) >= threshold:
            os.kill(pid, signal.SIGKILL)
            print("killed %d" % len(os.listdir("/sys/class/net")), flush=True)
            sys.exit(0)
    print("timeout", flush=True)
""")


@pytest.mark.slow
def test_sigkill_mid_batch_then_next_run_adopts(ns, registry):
    count = 400
    devices = [{"name": T, "lease": "k/%03d" % i} for i in range(count)]
    params = {"devices": devices, "netns": ns, "registry": str(registry)}
    batch = subprocess.Popen(h.api_subprocess_argv([params]), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        killer = subprocess.run(["ip", "netns", "exec", ns, h.PYTHON, "-c", _KILLER,
                                 str(batch.pid), "31"],  # lo + 30 devices
                                capture_output=True, text=True, timeout=90, check=False)
        out, err = batch.communicate(timeout=60)
    finally:
        if batch.poll() is None:
            batch.kill()
            batch.wait()
    assert batch.returncode == -signal.SIGKILL, (
        "the batch was not killed part way (rc=%s, killer: %s %s)\n%s"
        % (batch.returncode, killer.stdout, killer.stderr, err[-2000:]))
    left = h.aliases(ns)
    # A batch holds its devices by descriptors until all are marked and configured, then makes
    # them persistent: killed while holding them, none is left; killed later, some may be. Either
    # way every device left is marked (none unmarked, none half made).
    assert len(left) < count, "kill should land part way: %d devices" % len(left)
    assert h.tun_names(ns) == set(left), "a device without its mark survived the kill"
    counter_before = None
    if os.path.exists(registry):
        counter_before = h.read_registry(registry).get("counters", {}).get(T)

    started = time.monotonic()
    result = h.Api(ns, registry)(devices=devices)
    elapsed = time.monotonic() - started
    interrupted = [w for w in result["warnings"] if re.fullmatch(h.interrupted_run_warning(registry), w)]
    assert len(interrupted) == 1, "the recovery run must say a run was interrupted: %r" % result["warnings"]
    items = result["devices"]
    by_lease = {d["lease"]: d["name"] for d in items}
    assert len(by_lease) == count and len(set(by_lease.values())) == count, "duplicates"
    for name, mark in left.items():
        assert by_lease[mark["lease"]] == name, "lease %s: killed run made %s, next run says %s" % (
            mark["lease"], name, by_lease[mark["lease"]])
    assert h.tun_names(ns) == set(by_lease.values()), "device count must equal lease count"
    data = h.read_registry(registry)
    assert {k: v["name"] for k, v in data["leases"].items()} == by_lease
    assert data.get("intent") is None
    highest = max(int(n[3:]) for n in by_lease.values())
    assert data["counters"][T] >= highest
    if counter_before is not None:
        assert data["counters"][T] >= counter_before, "counter went backwards"
    again = h.Api(ns, registry)(devices=devices)
    assert again["changed"] is False
    print("killed with %d of %d devices made; recovery run %.2fs" % (len(left), count, elapsed))
