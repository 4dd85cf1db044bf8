# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry: saves, migration from JSON, recovery, refusals, check mode, the lock."""

from __future__ import annotations

import contextlib
import glob
import json
import multiprocessing
import os
import stat
import threading

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils._info import read_registry
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import is_registry_id
from ansible_collections.netdev.tuntap.plugins.module_utils import _registry as registry_module
from ansible_collections.netdev.tuntap.plugins.module_utils._registry import (
    SCHEMA_VERSION, CorruptRegistry, Registry, RegistryError, dump_state, empty_state, parse_state)

NOBODY = 65534
STAMP_CLOCK = 1700000000.0          # 2023-11-14T22:13:20Z
STAMP = "20231114T221320"


def doc(**overrides) -> dict:
    state = empty_state()
    state.update(overrides)
    return state


def on_disk(path) -> dict:
    """The registry at ``path`` as a document, read as tap_device_info reads it."""
    state, facts, _warnings = read_registry(str(path))
    assert facts["readable"], facts
    return state


def same_state(state: dict, expected: dict) -> bool:
    """Equal but for the registry id (derived from each test's own path, see test_registry_id_*)."""
    assert is_registry_id(state.get("registry_id")), state
    return dict(state, registry_id=None) == dict(expected, registry_id=None)


def write(path, content, mode=0o600):
    data = content if isinstance(content, bytes) else content.encode()
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def mode_of(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@contextlib.contextmanager
def umask(value):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def regdir(tmp_path):
    directory = tmp_path / "reg"
    directory.mkdir(mode=0o700)
    os.chmod(directory, 0o700)
    return directory


@pytest.fixture
def path(regdir):
    return str(regdir / "registry.json")


GOOD = doc(counters={"vnet%d": 12},
           leases={"web1/net0": {"name": "vnet12", "template": "vnet%d", "id": 12, "netns": None,
                                 "mode": "tap", "multi_queue": False, "since": 1.5}},
           released={"vnet3": {"at": 100.0, "template": "vnet%d", "netns": None}})


# -- parse_state --------------------------------------------------------------

def test_parse_state_round_trip():
    assert parse_state(dump_state(GOOD).decode()) == GOOD
    assert parse_state(json.dumps(empty_state())) == empty_state()


def test_parse_state_fills_a_missing_intent():
    text = json.dumps({"version": 1, "counters": {}, "leases": {}, "released": {}})
    assert parse_state(text)["intent"] is None


@pytest.mark.parametrize("text, reason", [
    ("", "the file is empty"),
    ("  \n\t", "the file is empty"),
    ('{"version": 1, "count', "not valid JSON"),
    ("this is not json", "not valid JSON"),
    ("[1, 2]", "the top level is not an object"),
    ('"x"', "the top level is not an object"),
    ("{}", "no integer 'version'"),
    ('{"version": "1"}', "no integer 'version'"),
    # JSON true is not the integer 1 (counters already refuse booleans)
    ('{"version": true, "counters": {}, "leases": {}, "released": {}}', "version"),
    ('{"version": 0, "counters": {}, "leases": {}, "released": {}}', "unknown schema version 0"),
    ('{"version": 1, "leases": {}, "released": {}}', "'counters'"),
    ('{"version": 1, "counters": [], "leases": {}, "released": {}}', "'counters'"),
    ('{"version": 1, "counters": {"v%d": "3"}, "leases": {}, "released": {}}', "'counters'"),
    ('{"version": 1, "counters": {"v%d": true}, "leases": {}, "released": {}}', "'counters'"),
    ('{"version": 1, "counters": {"v%d": 1.5}, "leases": {}, "released": {}}', "'counters'"),
    ('{"version": 1, "counters": {}, "leases": [], "released": {}}', "'leases' is not an object"),
    ('{"version": 1, "counters": {}, "leases": {"k": {}}, "released": {}}', "lease 'k' has no device name"),
    ('{"version": 1, "counters": {}, "leases": {"k": "vnet1"}, "released": {}}', "lease 'k'"),
    ('{"version": 1, "counters": {}, "leases": {"k": {"name": 5}}, "released": {}}', "lease 'k'"),
    ('{"version": 1, "counters": {}, "leases": {}}', "'released'"),
    ('{"version": 1, "counters": {}, "leases": {}, "released": {"v1": {}}}', "released name 'v1'"),
    ('{"version": 1, "counters": {}, "leases": {}, "released": {"v1": {"at": "now"}}}', "released name 'v1'"),
    ('{"version": 1, "counters": {}, "leases": {}, "released": {}, "intent": []}', "'intent'"),
    ('{"version": 1, "counters": {}, "leases": {}, "released": {}, "intent": {}}', "'intent'"),
    ('{"version": 1, "counters": {}, "leases": {}, "released": {}, "intent": {"items": [1]}}', "'intent'"),
    ('{"version": 1, "counters": {}, "leases": {"k": {"name": "v1", "id": "3"}}, "released": {}}',
     "lease 'k' has a field of the wrong type"),
    ('{"version": 1, "counters": {}, "leases": {"k": {"name": "v1", "netns": 7}}, "released": {}}',
     "lease 'k' has a field of the wrong type"),
    ('{"version": 1, "counters": {}, "leases": {"k": {"name": "v1", "multi_queue": "no"}}, "released": {}}',
     "lease 'k' has a field of the wrong type"),
    ('{"version": 1, "counters": {}, "leases": {}, "released": {"v1": {"at": true}}}', "released name 'v1'"),
    ('{"version": 1, "counters": {}, "leases": {}, "released": {"v1": {"at": 1, "hold": "1h"}}}', "released name 'v1'"),
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
])
def test_parse_state_refuses_what_is_not_a_registry(text, reason):
    with pytest.raises(CorruptRegistry) as exc:
        parse_state(text)
    assert reason in str(exc.value)


def test_parse_state_newer_version_is_not_corrupt():
    text = json.dumps(dict(empty_state(), version=SCHEMA_VERSION + 1))
    with pytest.raises(RegistryError) as exc:
        parse_state(text)
    assert not isinstance(exc.value, CorruptRegistry)
    assert "version 2 is newer" in str(exc.value)
    assert "upgrade" in str(exc.value)


# -- saving -------------------------------------------------------------------

def test_new_registry_is_empty_and_writes_nothing_until_changed(path):
    with Registry(path) as reg:
        assert same_state(reg.ledger.state, empty_state())
        assert reg.warnings == []
        assert not reg.dirty
        reg.save()
        assert reg.writes == 0
    assert not os.path.exists(path)
    assert os.path.exists(path + ".lock")   # the lock file stays (never unlinked)


def test_save_then_reload_round_trip(path):
    with Registry(path) as reg:
        reg.ledger.set_counter("vnet%d", 12)
        reg.ledger._put_lease("web1/net0", dict(GOOD["leases"]["web1/net0"]))
        reg.ledger._put_released("vnet3", dict(GOOD["released"]["vnet3"]))
        assert reg.dirty
        reg.save()
        assert not reg.dirty
        assert reg.writes == 1
    with Registry(path) as again:
        assert same_state(again.ledger.state, GOOD)
        assert again.warnings == []
        assert again.recovered is False
    assert same_state(on_disk(path), GOOD)
    assert sorted(os.listdir(os.path.dirname(path))) == ["registry.json", "registry.json.lock"]


def test_two_saves_in_one_run_write_each_change_once(path):
    # The first save is a run's intent, the second its result; a save without changes writes nothing.
    with Registry(path) as reg:
        reg.ledger.set_counter("a%d", 0)
        reg.save()
    with Registry(path) as reg:
        reg.ledger.set_counter("a%d", 1)
        reg.save()
        reg.ledger.set_counter("a%d", 2)
        reg.save()
        reg.save()          # unchanged: no write
        assert reg.writes == 2
    assert on_disk(path)["counters"] == {"a%d": 2}


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_file_is_0600_and_new_directories_0700(tmp_path, mask):
    path = tmp_path / "a" / "b" / "c" / "registry.json"
    with umask(mask):
        for number in (1, 2):
            with Registry(str(path)) as reg:
                reg.ledger.set_counter("x%d", number)
                reg.save()
    assert mode_of(tmp_path) == 0o700   # pytest's own: untouched
    for directory in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert mode_of(directory) == 0o700, directory
    assert mode_of(path) == 0o600
    assert mode_of(str(path) + ".lock") == 0o600


def test_new_directory_mode_is_exact_even_with_a_strict_umask(tmp_path):
    path = tmp_path / "new" / "registry.json"
    with umask(0o777):
        with Registry(str(path)) as reg:
            reg.ledger.set_counter("x%d", 1)
            reg.save()
    assert mode_of(tmp_path / "new") == 0o700


@pytest.mark.parametrize("existing_mode", [0o755, 0o711, 0o750, 0o500 | 0o200])
def test_existing_directory_mode_is_never_changed(tmp_path, existing_mode):
    directory = tmp_path / "existing"
    directory.mkdir()
    os.chmod(directory, existing_mode)
    with Registry(str(directory / "registry.json")) as reg:
        reg.ledger.set_counter("x%d", 1)
        reg.save()
    assert mode_of(directory) == existing_mode


# -- refusals -------------------------------------------------------------------

@pytest.mark.parametrize("dir_mode, reason", [
    (0o777, "mode 0777"),
    (0o770, "mode 0770"),
    (0o1777, "mode 1777"),
    (0o720, "mode 0720"),
    (0o702, "mode 0702"),
])
def test_directory_writable_by_others_is_refused(tmp_path, dir_mode, reason):
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, dir_mode)
    with pytest.raises(RegistryError) as exc:
        with Registry(str(directory / "registry.json")):
            pass
    message = str(exc.value)
    assert "registry directory %s" % directory in message
    assert "writable by someone other than root" in message
    assert reason in message
    assert os.listdir(directory) == []           # no lock file made in a refused directory
    assert mode_of(directory) == dir_mode        # and it was not "fixed" either


def test_directory_owned_by_another_user_is_refused(tmp_path):
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, NOBODY, NOBODY)
    with pytest.raises(RegistryError) as exc:
        with Registry(str(directory / "registry.json")):
            pass
    assert "owner uid %d" % NOBODY in str(exc.value)
    assert "writable by someone other than root" in str(exc.value)


@pytest.mark.parametrize("file_mode, owner, reason", [
    (0o666, 0, "mode 0666"),
    (0o620, 0, "mode 0620"),
    (0o602, 0, "mode 0602"),
    (0o600, NOBODY, "owner uid %d" % NOBODY),
])
def test_file_writable_by_others_is_refused(path, file_mode, owner, reason):
    write(path, dump_state(GOOD), file_mode)
    os.chown(path, owner, owner)
    with pytest.raises(RegistryError) as exc:
        with Registry(path):
            pass
    message = str(exc.value)
    assert "registry file %s" % path in message
    assert reason in message
    assert "writable by someone other than root" in message


@pytest.mark.parametrize("file_mode", [0o644, 0o400, 0o640])
def test_file_readable_by_others_but_writable_only_by_root_is_accepted(path, file_mode):
    write(path, dump_state(GOOD), file_mode)
    with Registry(path) as reg:
        assert same_state(reg.ledger.state, GOOD)


def test_symlinked_file_is_refused(path, tmp_path):
    target = tmp_path / "elsewhere.json"
    write(str(target), dump_state(GOOD))
    os.symlink(str(target), path)
    with pytest.raises(RegistryError) as exc:
        with Registry(path):
            pass
    assert "registry file %s is a symlink" % path in str(exc.value)
    assert os.path.islink(path)
    assert open(target).read() == dump_state(GOOD).decode()


def test_dangling_symlinked_file_is_refused(path, tmp_path):
    os.symlink(str(tmp_path / "nothing-here.json"), path)
    with pytest.raises(RegistryError) as exc:
        with Registry(path):
            pass
    assert "is a symlink" in str(exc.value)
    assert not os.path.exists(tmp_path / "nothing-here.json")


def test_symlinked_directory_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    os.symlink(str(real), str(tmp_path / "link"))
    path = str(tmp_path / "link" / "registry.json")
    with pytest.raises(RegistryError) as exc:
        with Registry(path):
            pass
    assert "registry directory %s is a symlink" % (tmp_path / "link") in str(exc.value)
    assert os.listdir(real) == []


def test_symlinked_lock_is_refused(path, tmp_path):
    os.symlink(str(tmp_path / "victim"), path + ".lock")
    with pytest.raises(RegistryError) as exc:
        with Registry(path):
            pass
    assert "lock" in str(exc.value) and "symlink" in str(exc.value)
    assert not os.path.exists(tmp_path / "victim")


def test_directory_in_place_of_the_file_is_refused(path):
    os.mkdir(path, 0o700)
    with pytest.raises(RegistryError) as exc:
        with Registry(path):
            pass
    assert "not a regular file" in str(exc.value)
    assert os.path.isdir(path)


def test_file_in_place_of_the_directory_is_refused(tmp_path):
    write(str(tmp_path / "plain"), "x")
    with pytest.raises(RegistryError) as exc:
        with Registry(str(tmp_path / "plain" / "registry.json")):
            pass
    assert "not a directory" in str(exc.value)


def test_lock_that_cannot_be_opened_is_refused(path):
    os.mkdir(path + ".lock", 0o700)
    with pytest.raises(RegistryError) as exc:
        with Registry(path):
            pass
    assert "registry lock %s.lock is a directory, not a regular file" % path in str(exc.value)


def test_newer_schema_is_refused_and_left_in_place(path):
    newer = json.dumps(dict(empty_state(), version=SCHEMA_VERSION + 1, future={"x": 1}))
    write(path, newer)
    with pytest.raises(RegistryError) as exc:
        with Registry(path):
            pass
    assert "newer than this module understands" in str(exc.value)
    assert open(path).read() == newer
    assert glob.glob(path + ".corrupt-*") == []
    # and the lock was let go: a second open does not hang (and is refused the same way)
    with pytest.raises(RegistryError):
        with Registry(path):
            pass


# -- recovery ----------------------------------------------------------------------

BAD_FILES = [
    pytest.param(b"", "the file is empty", id="empty"),
    pytest.param(dump_state(GOOD)[:37], "not valid JSON", id="truncated"),
    pytest.param(b"\x00\x00\x00\x00", "not valid JSON", id="nul-bytes"),
    pytest.param(b"<html>oops</html>", "not valid JSON", id="not-json"),
    pytest.param(b"[]", "the top level is not an object", id="list"),
    pytest.param(b'{"version": 1, "counters": {"v%d": "x"}, "leases": {}, "released": {}}', "'counters'",
                 id="wrong-structure"),
    pytest.param(b"SQLite format 3\x00" + b"\xff" * 200, "not a registry database", id="database-header-only"),
]


@pytest.mark.parametrize("content, reason", BAD_FILES)
def test_corrupt_file_is_moved_aside_and_rebuilt_empty(path, content, reason):
    write(path, content)
    with Registry(path, clock=lambda: STAMP_CLOCK) as reg:
        assert reg.recovered is True
        assert same_state(reg.ledger.state, empty_state())
        assert len(reg.warnings) == 1
        warning = reg.warnings[0]
    corrupt = path + ".corrupt-" + STAMP
    assert open(corrupt, "rb").read() == content          # the bad copy is kept, byte for byte
    assert not os.path.exists(path)
    assert reason in warning
    assert "was unusable" in warning
    assert "moved aside to %s" % corrupt in warning
    assert "rebuilt from the devices present" in warning


def test_unreadable_file_is_recovered(path, monkeypatch):
    write(path, dump_state(GOOD))
    real_sniff = registry_module.sniff

    def failing_sniff(target, kind="file"):
        if target == path:
            raise OSError(5, "Input/output error")
        return real_sniff(target, kind)

    monkeypatch.setattr(registry_module, "sniff", failing_sniff)
    with Registry(path, clock=lambda: STAMP_CLOCK) as reg:
        assert same_state(reg.ledger.state, empty_state())
        assert "it could not be read (Input/output error)" in reg.warnings[0]
    assert os.path.exists(path + ".corrupt-" + STAMP)


@pytest.mark.parametrize("left", [".json-v1", ".prev"])
def test_missing_file_beside_a_migrated_or_old_copy_is_recovered_without_moving(path, left):
    write(path + left, dump_state(GOOD))
    with Registry(path) as reg:
        assert reg.recovered
        assert "the file is missing" in reg.warnings[0]
        assert "moved aside" not in reg.warnings[0]
    assert glob.glob(path + ".corrupt-*") == []


def test_two_corrupt_files_in_one_second_do_not_overwrite_each_other(path):
    def clock():
        return STAMP_CLOCK

    write(path, b"first")
    with Registry(path, clock=clock):
        pass
    write(path, b"second")
    with Registry(path, clock=clock) as reg:
        assert path + ".corrupt-" + STAMP + ".1" in reg.warnings[0]
    assert open(path + ".corrupt-" + STAMP, "rb").read() == b"first"
    assert open(path + ".corrupt-" + STAMP + ".1", "rb").read() == b"second"


def test_recovered_registry_is_written_back_on_save(path):
    # "rebuilt": after a recovery the registry must exist again once the run saves,
    # otherwise every later run finds it broken and warns again.
    write(path, b"")
    with Registry(path) as reg:
        reg.save()
    assert os.path.exists(path), "the rebuilt registry was not written"
    with Registry(path) as again:
        assert same_state(again.ledger.state, empty_state())
        assert again.warnings == []


def test_recovered_state_is_written_once_changed(path):
    write(path, b"garbage")
    with Registry(path) as reg:
        reg.ledger.set_counter("vnet%d", 8)
        reg.save()
    with Registry(path) as again:
        assert again.warnings == []
        assert again.ledger.state["counters"] == {"vnet%d": 8}


# -- check mode ---------------------------------------------------------------------

def test_check_mode_creates_no_directory_and_no_lock(tmp_path):
    path = tmp_path / "not" / "yet" / "registry.json"
    with Registry(str(path), check_mode=True) as reg:
        assert same_state(reg.ledger.state, empty_state())
        reg.ledger.set_counter("x%d", 5)
        with pytest.raises(RuntimeError):
            reg.save()
    assert not os.path.exists(tmp_path / "not")
    assert os.listdir(tmp_path) == []


def test_check_mode_in_an_existing_directory_leaves_it_alone(path, regdir):
    write(path, dump_state(GOOD))
    before = sorted(os.listdir(regdir))
    with Registry(path, check_mode=True) as reg:
        assert same_state(reg.ledger.state, GOOD)
    assert sorted(os.listdir(regdir)) == before == ["registry.json"]
    assert open(path, "rb").read() == dump_state(GOOD), "check mode does not migrate a JSON registry"


def test_temporaries_of_killed_runs_are_removed_under_the_lock(path, regdir):
    write(path, dump_state(GOOD))
    for leftover in ("registry.json.tmp-4242", "registry.json.tmp-4242-journal", "registry.json.json-v1.tmp-4242"):
        write(str(regdir / leftover), b"half written")
    write(str(regdir / "other.json.tmp-1"), b"not ours")
    with Registry(path, check_mode=True):
        pass
    assert "registry.json.tmp-4242" in os.listdir(regdir), "check mode removes nothing"
    with Registry(path) as reg:
        assert same_state(reg.ledger.state, GOOD)
    assert sorted(os.listdir(regdir)) == ["other.json.tmp-1", "registry.json", "registry.json.json-v1",
                                          "registry.json.lock"]


@pytest.mark.parametrize("content, reason", BAD_FILES)
def test_check_mode_moves_nothing_aside(path, regdir, content, reason):
    write(path, content)
    with Registry(path, check_mode=True) as reg:
        assert same_state(reg.ledger.state, empty_state())
        assert reason in reg.warnings[0]
        assert "A real run would move it aside" in reg.warnings[0]
    assert sorted(os.listdir(regdir)) == ["registry.json"]
    assert open(path, "rb").read() == content


def test_check_mode_still_refuses_unsafe_paths(tmp_path):
    directory = tmp_path / "open"
    directory.mkdir()
    os.chmod(directory, 0o777)
    with pytest.raises(RegistryError):
        with Registry(str(directory / "registry.json"), check_mode=True):
            pass


# -- the lock ---------------------------------------------------------------------------

def _hold_lock(path, locked, release):
    with Registry(path) as reg:
        reg.ledger.set_counter("vnet%d", 41)
        reg.save()
        locked.set()
        release.wait(20)
        reg.ledger.set_counter("vnet%d", 42)
        reg.save()


def test_a_second_run_waits_for_the_lock(path):
    ctx = multiprocessing.get_context("fork")
    locked, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(path, locked, release))
    holder.start()
    try:
        assert locked.wait(20), "the holder never took the lock"
        seen = {}
        entered = threading.Event()

        def second_run():
            with Registry(path) as reg:
                seen["counter"] = reg.ledger.state["counters"].get("vnet%d")
                entered.set()

        thread = threading.Thread(target=second_run, daemon=True)
        thread.start()
        assert not entered.wait(0.7), "the second run got in while another process held the lock"
        release.set()
        assert entered.wait(20), "the second run never got the lock"
        thread.join(20)
        # it read the state only after the holder's last save
        assert seen["counter"] == 42
    finally:
        release.set()
        holder.join(20)
    assert holder.exitcode == 0


def _increment(path, times):
    for _run in range(times):
        with Registry(path) as reg:
            current = reg.ledger.counter("n%d")
            reg.ledger.set_counter("n%d", (-1 if current is None else current) + 1)
            reg.save()


def test_concurrent_read_modify_write_loses_nothing(path):
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_increment, args=(path, 25)) for _run in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0] * 6
    with Registry(path) as reg:
        assert reg.ledger.state["counters"]["n%d"] == 6 * 25 - 1
        assert reg.warnings == []


@pytest.mark.parametrize("field, value", [("ifindex", "7"), ("boot_id", 5), ("netns_inode", True)])
def test_lease_identity_fields_of_the_wrong_type_are_corrupt(field, value):
    lease = {"name": "vmtap1", "template": "vmtap%d", "id": 1, field: value}
    text = json.dumps({"version": 1, "counters": {}, "leases": {"k": lease}, "released": {}, "intent": None})
    with pytest.raises(CorruptRegistry, match="lease 'k' has a field of the wrong type"):
        parse_state(text)


def test_lease_without_identity_fields_is_read_as_it_is():
    lease = {"name": "vmtap1", "template": "vmtap%d", "id": 1, "netns": None, "mode": "tap"}
    text = json.dumps({"version": 1, "counters": {}, "leases": {"k": lease}, "released": {}, "intent": None})
    assert parse_state(text)["leases"]["k"] == lease
