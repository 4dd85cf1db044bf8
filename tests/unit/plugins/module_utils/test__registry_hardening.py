# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry against a hostile or failing machine: files that are not regular files, wrong
types deep in the document, impossible times, foreign owners along the path, a stuck lock."""

from __future__ import annotations

import fcntl
import json
import math
import multiprocessing
import os
import stat

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils._info import read_registry
from ansible_collections.netdev.tuntap.plugins.module_utils._registry import (
    CorruptRegistry, Registry, RegistryError, derived_registry_id, dump_state, empty_state, lock_holders,
    parse_state)

NOBODY = 65534
NOW = 1_800_000_000.0


@pytest.fixture
def regdir(tmp_path):
    os.chmod(tmp_path, 0o700)
    directory = tmp_path / "reg"
    directory.mkdir(mode=0o700)
    return directory


@pytest.fixture
def path(regdir):
    return str(regdir / "registry.json")


def write(path, text, mode=0o600):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, mode)


def _enter(path, queue):
    try:
        with Registry(path, lock_timeout=5) as reg:
            reg.ledger.set_counter("v%d", 1)
            reg.save()
        queue.put(("ok", None))
    except RegistryError as exc:
        queue.put(("refused", str(exc)))
    except Exception as exc:  # pylint: disable=broad-exception-caught
        queue.put(("error", "%s: %s" % (type(exc).__name__, exc)))


def run_bounded(path, timeout=20.0):
    """Open, write and close the registry in a child process; fail (instead of hanging) after ``timeout``."""
    queue = multiprocessing.Queue()
    child = multiprocessing.Process(target=_enter, args=(path, queue))
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("the registry blocked for more than %s s" % timeout)
    return queue.get(timeout=5)


# -- 3. nothing that is not a regular file is opened --------------------------------------

def _make(kind, where):
    if kind == "fifo":
        os.mkfifo(where, 0o600)
    elif kind == "directory":
        os.mkdir(where, 0o700)
    else:  # a character device node: /dev/null's numbers
        os.mknod(where, 0o600 | stat.S_IFCHR, os.makedev(1, 3))


KIND_WORDS = {"fifo": "a FIFO", "directory": "a directory", "device": "a character device node"}


@pytest.mark.parametrize("suffix", ["", "-journal", ".lock", ".json-v1"])
@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_a_non_regular_file_in_place_of_a_registry_file_is_refused_without_blocking(path, suffix, kind):
    if suffix:
        write(path, "{corrupt")    # recovery runs too: nothing beside the file may block it
    _make(kind, path + suffix)
    outcome, message = run_bounded(path)
    assert outcome == "refused", message
    assert path + suffix in message and KIND_WORDS[kind] in message and "not a regular file" in message
    assert "remove it" in message


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_non_regular_file_under_a_temporary_name_is_removed_not_opened(path, regdir, kind):
    write(path, dump_state(empty_state()).decode())
    for stale in (path + ".tmp-1", path + ".tmp-1-journal", path + ".json-v1.tmp-2"):
        _make(kind, stale)
    outcome, message = run_bounded(path)
    assert outcome == "ok", message
    assert sorted(os.listdir(regdir)) == ["registry.json", "registry.json.json-v1", "registry.json.lock"]


def test_the_own_temporary_name_taken_by_a_fifo_does_not_block_a_save(path):
    with Registry(path) as reg:
        os.mkfifo("%s.tmp-%d" % (path, os.getpid()))
        reg.ledger.set_counter("v%d", 3)
        reg.save()
    assert read_registry(path)[0]["counters"] == {"v%d": 3}


# -- 4. wrong types deep inside the document ---------------------------------------------

def _doc(**overrides):
    state = empty_state()
    state.update(overrides)
    return json.dumps(state)


ITEM = {"lease": "a", "name": "vnet1", "template": "vnet%d", "id": 1, "netns": None}
DEEP = [
    pytest.param(_doc(intent={"items": [dict(ITEM, lease=["x"])]}), id="intent-lease-list"),
    pytest.param(_doc(intent={"items": [dict(ITEM, name=None)]}), id="intent-name-null"),
    pytest.param(_doc(intent={"items": [dict(ITEM, name="x" * 16)]}), id="intent-name-too-long"),
    pytest.param(_doc(intent={"items": [dict(ITEM, id="1")]}), id="intent-id-text"),
    pytest.param(_doc(intent={"items": [dict(ITEM, id=-5)]}), id="intent-id-negative"),
    pytest.param(_doc(intent={"items": [dict(ITEM, netns=["ns"])]}), id="intent-netns-list"),
    pytest.param(_doc(intent={"items": [dict(ITEM, netns="../../etc")]}), id="intent-netns-path"),
    pytest.param(_doc(intent={"items": [dict(ITEM, template={})]}), id="intent-template-object"),
    pytest.param(_doc(intent={"items": [dict(ITEM, replaces=7)]}), id="intent-replaces-number"),
    pytest.param(_doc(intent={"items": [], "netns": 3}), id="intent-netns-number"),
    pytest.param(_doc(intent={"items": [], "hold": "1h"}), id="intent-hold-text"),
    pytest.param(_doc(leases={"k": {"name": "v1", "mode": "bridge"}}), id="lease-mode-unknown"),
    pytest.param(_doc(leases={"k": {"name": "v1", "since": "yesterday"}}), id="lease-since-text"),
    pytest.param(_doc(leases={"k": {"name": "v1", "id": 2 ** 40}}), id="lease-id-huge"),
    pytest.param(_doc(leases={"k": {"name": ""}}), id="lease-name-empty"),
    pytest.param(_doc(released={"v1": {"at": 1, "lease": 5}}), id="released-lease-number"),
    pytest.param(_doc(released={"v1": {"at": 1, "netns": {}}}), id="released-netns-object"),
    pytest.param(_doc(released={"v1": {"at": 1, "hold": -1}}), id="released-hold-negative"),
    pytest.param(_doc(counters={"v%d": 2 ** 40}), id="counter-huge"),
    pytest.param(_doc(registry_id="XYZ"), id="registry-id-not-hex"),
    pytest.param(_doc(registry_id=12345678), id="registry-id-number"),
]


@pytest.mark.parametrize("text", DEEP)
def test_wrong_types_deep_inside_are_corrupt(text):
    with pytest.raises(CorruptRegistry):
        parse_state(text)


@pytest.mark.parametrize("text", DEEP[:3])
def test_a_file_with_wrong_types_deep_inside_is_recovered_like_any_corrupt_one(path, text):
    write(path, text)
    with Registry(path) as reg:
        assert reg.recovered and "was unusable" in reg.warnings[0]
        assert reg.ledger.intent is None
        reg.save()
    with Registry(path) as again:
        assert not again.recovered and again.warnings == []


# -- 8. impossible times --------------------------------------------------------------------

@pytest.mark.parametrize("at", ["Infinity", "NaN", "-Infinity", "1e300", str(NOW + 7200)])
def test_an_impossible_release_time_is_repaired_with_a_warning(path, at):
    write(path, '{"version": 1, "counters": {}, "leases": {}, "intent": null, '
                '"released": {"vnet3": {"at": %s, "hold": 3600, "template": "vnet%%d", "netns": null}}}' % at)
    with Registry(path, clock=lambda: NOW) as reg:
        assert len(reg.warnings) == 1 and "'vnet3'" in reg.warnings[0] and "impossible times" in reg.warnings[0]
        assert reg.ledger.state["released"]["vnet3"]["at"] == NOW
        assert reg.ledger.held_names(3600) == {"vnet3"}       # held for its hold once more ...
        reg.save()
    later = NOW + 3601
    with Registry(path, clock=lambda: later) as reg:          # ... and then free
        assert reg.warnings == []
        assert reg.ledger.held_names(3600) == set()
        reg.ledger.drop_old_releases(3600)
        assert reg.ledger.state["released"] == {}


def test_a_clock_that_stepped_back_a_little_is_not_an_impossible_time(path):
    write(path, dump_state(dict(empty_state(), released={
        "vnet3": {"at": NOW + 30, "hold": 3600, "template": None, "netns": None}})).decode())
    with Registry(path, clock=lambda: NOW) as reg:
        assert reg.warnings == [] and reg.ledger.state["released"]["vnet3"]["at"] == NOW + 30


def test_non_finite_times_are_migrated_as_finite_times(path):
    write(path, '{"version": 1, "counters": {}, "leases": {"k": {"name": "v1", "since": NaN}}, "released": {}}')
    with Registry(path, clock=lambda: NOW) as reg:
        reg.save()
    assert math.isfinite(read_registry(path)[0]["leases"]["k"]["since"])


# -- 9. ownership along the whole path --------------------------------------------------------

def test_a_read_only_file_owned_by_another_user_is_refused(path):
    write(path, dump_state(empty_state()).decode(), 0o400)
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(RegistryError) as exc:
        with Registry(path):
            pass
    assert "registry file %s" % path in str(exc.value) and "owner uid %d" % NOBODY in str(exc.value)
    assert "chown root" in str(exc.value)


def test_a_journal_owned_by_another_user_is_refused(path):
    # SQLite would play a journal into the database: only one root (or we) wrote counts.
    write(path + "-journal", "x", 0o600)
    os.chown(path + "-journal", NOBODY, NOBODY)
    with pytest.raises(RegistryError) as exc:
        with Registry(path):
            pass
    assert "registry journal %s-journal" % path in str(exc.value)


def test_an_ancestor_owned_by_another_user_is_refused(tmp_path):
    os.chmod(tmp_path, 0o755)
    ancestor = tmp_path / "theirs"
    ancestor.mkdir(mode=0o755)
    os.chown(ancestor, NOBODY, NOBODY)
    path = str(ancestor / "mine" / "registry.json")
    with pytest.raises(RegistryError) as exc:
        with Registry(path):
            pass
    assert "directory %s on the registry's path" % ancestor in str(exc.value)
    assert "owner uid %d" % NOBODY in str(exc.value) and "chown root" in str(exc.value)
    assert os.listdir(ancestor) == []        # nothing was made under it


@pytest.mark.parametrize("mode, refused", [(0o777, True), (0o775, True), (0o1777, False), (0o755, False)])
def test_an_ancestor_writable_by_others_is_refused_unless_sticky_and_root_owned(tmp_path, mode, refused):
    ancestor = tmp_path / "shared"
    ancestor.mkdir()
    os.chmod(ancestor, mode)
    path = str(ancestor / "mine" / "registry.json")
    if refused:
        with pytest.raises(RegistryError) as exc:
            with Registry(path):
                pass
        assert "on the registry's path can be changed by someone other than root" in str(exc.value)
    else:
        with Registry(path) as reg:
            assert reg.warnings == []


def test_a_symlinked_ancestor_owned_by_another_user_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    os.symlink(str(real), str(link))
    os.lchown(str(link), NOBODY, NOBODY)
    with pytest.raises(RegistryError) as exc:
        with Registry(str(link / "reg" / "registry.json")):
            pass
    assert "directory %s on the registry's path is a symlink owned by uid %d" % (link, NOBODY) in str(exc.value)
    assert os.listdir(real) == []


def test_a_symlinked_ancestor_is_followed_only_to_a_safe_place(tmp_path):
    unsafe = tmp_path / "unsafe"
    unsafe.mkdir(mode=0o777)
    os.chmod(unsafe, 0o777)
    (unsafe / "inner").mkdir(mode=0o700)
    os.symlink(str(unsafe / "inner"), str(tmp_path / "link"))
    with pytest.raises(RegistryError) as exc:
        with Registry(str(tmp_path / "link" / "reg" / "registry.json")):
            pass
    assert "where the symlink %s leads" % (tmp_path / "link") in str(exc.value)
    os.chmod(unsafe, 0o755)
    with Registry(str(tmp_path / "link" / "reg" / "registry.json")) as reg:
        assert reg.warnings == []


# -- 7. a bounded wait for the lock -------------------------------------------------------------

def test_lock_timeout_names_the_lock_file_and_the_holder(path):
    with Registry(path):
        pass
    with open(path + ".lock", "r+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert lock_holders(os.fstat(held.fileno())) == [os.getpid()]
        for timeout in (0, 1):
            with pytest.raises(RegistryError) as exc:
                with Registry(path, lock_timeout=timeout):
                    pass
            message = str(exc.value)
            assert "registry lock %s.lock is still held" % path in message
            assert "lock_timeout %d s" % timeout in message
            assert "PID %d" % os.getpid() in message
    with Registry(path, lock_timeout=0):     # free again: no wait needed
        pass


def test_lock_holders_reads_proc_locks_format(tmp_path):
    st = os.stat(tmp_path)
    dev = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    locks = tmp_path / "locks"
    locks.write_text("1: FLOCK  ADVISORY  WRITE 4242 %s 0 EOF\n"
                     "1: -> FLOCK  ADVISORY  WRITE 4343 %s 0 EOF\n"
                     "2: POSIX  ADVISORY  READ 99 00:00:1 0 EOF\n" % (dev, dev))
    assert lock_holders(st, str(locks)) == [4242]
    assert lock_holders(st, str(tmp_path / "missing")) == []


# -- 2. the registry's id -------------------------------------------------------------------------

def test_registry_id_is_kept_in_the_file_and_added_to_files_without_one(path):
    write(path, '{"version": 1, "counters": {"v%d": 4}, "leases": {}, "released": {}, "intent": null}')
    with Registry(path) as reg:
        assert reg.ledger.registry_id == derived_registry_id(os.path.abspath(path))
        assert reg.migrated              # a file from before registry ids: migrated with its id
    assert read_registry(path)[0]["registry_id"] == derived_registry_id(os.path.abspath(path))
    moved = path + ".moved"
    os.rename(path, moved)
    with Registry(moved) as reg:          # the file's id counts, not the new path's
        assert reg.ledger.registry_id == derived_registry_id(os.path.abspath(path))
        assert not reg.dirty


def test_a_registry_rebuilt_from_nothing_keeps_its_id(path):
    with Registry(path) as reg:
        first = reg.ledger.registry_id
        reg.ledger.set_counter("v%d", 1)
        reg.save()
    write(path, "{broken")
    with Registry(path) as reg:
        assert reg.recovered and reg.ledger.registry_id == first
