# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry's database: migration from JSON, writes of only what changed, damaged databases."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils import _registry, _store
from ansible_collections.netdev.tuntap.plugins.module_utils._info import read_registry
from ansible_collections.netdev.tuntap.plugins.module_utils._registry import Registry, RegistryError, dump_state

NOW = 1700000000.0
FULL = {
    "version": 1, "registry_id": "0123abcd", "counters": {"vmtap%d": 41, "ovs%d": 2},
    "leases": {
        "guest_taps:web1/0": {"name": "vmtap40", "template": "vmtap%d", "id": 40, "netns": None, "mode": "tap",
                              "multi_queue": False, "since": 1699999000.5, "ifindex": 17,
                              "boot_id": "9c0a3f0e-5b5d-4c43-9d3c-5d8f8f0c7a11", "netns_inode": 4026531840},
        "web2/0": {"name": "mv0", "template": None, "id": None, "netns": "lab", "mode": "tap", "multi_queue": True,
                   "since": 1699999001.0, "kind": "macvtap"},
        "ovs/0": {"name": "ovs2", "template": "ovs%d", "id": 2, "netns": None, "mode": "tap", "multi_queue": False,
                  "since": 1699999002.0, "ovs": {"bridge": "br-int", "db": "unix:/run/ovs.sock", "uuid": "u-1"}},
    },
    "released": {"vmtap12": {"at": 1699999500.0, "template": "vmtap%d", "netns": None, "hold": 3600,
                             "lease": "guest_taps:db1/0"},
                 "vmtap3": {"at": 1699999400.0, "template": "vmtap%d", "netns": "lab"}},
    "intent": {"netns": None, "started": 1699999600.0, "hold": 60,
               "items": [{"lease": "guest_taps:web3/0", "name": "vmtap41", "template": "vmtap%d", "id": 41,
                          "netns": None, "replaces": None}]},
}


@pytest.fixture
def path(tmp_path):
    directory = tmp_path / "reg"
    directory.mkdir(mode=0o700)
    return str(directory / "registry.json")


def write_json(path, state) -> bytes:
    data = json.dumps(state).encode()
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)
    return data


def is_database(path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(16) == _store.SQLITE_MAGIC


# -- migration -----------------------------------------------------------------------------

def test_a_json_registry_is_migrated_with_every_field(path):
    original = write_json(path, FULL)
    with Registry(path, clock=lambda: NOW) as reg:
        assert reg.migrated and reg.warnings == []
        assert reg.ledger.state == FULL
    assert is_database(path)
    assert read_registry(path)[0] == FULL
    with open(path + ".json-v1", "rb") as kept:
        assert kept.read() == original, "the JSON is kept as it was, for a rollback"
    with Registry(path, clock=lambda: NOW) as again:   # read from the database now
        assert not again.migrated and again.ledger.state == FULL


def test_check_mode_reads_a_json_registry_without_migrating_it(path):
    original = write_json(path, FULL)
    with Registry(path, check_mode=True, clock=lambda: NOW) as reg:
        assert reg.ledger.state == FULL
    assert sorted(os.listdir(os.path.dirname(path))) == ["registry.json"]
    with open(path, "rb") as handle:
        assert handle.read() == original


@pytest.mark.parametrize("point", ["create_database", "replace"])
def test_a_run_killed_during_the_migration_loses_nothing(path, point):
    original = write_json(path, FULL)
    pid = os.fork()
    if pid == 0:  # the run that is killed: it dies the way SIGKILL would, no cleanup
        try:
            if point == "create_database":
                real = _store.create_database

                def dying(conn, state):
                    real(conn, state)
                    os._exit(9)
                _store.create_database = dying
            else:
                def dying_replace(_src, _dst):
                    os._exit(9)
                _registry.os.replace = dying_replace
            with Registry(path, clock=lambda: NOW):
                pass
        finally:
            os._exit(1)
    _pid, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 9
    with open(path, "rb") as handle:
        assert handle.read() == original, "the JSON stays in place until the complete database replaces it"
    with Registry(path, clock=lambda: NOW) as reg:  # the next run migrates it, from the start
        assert reg.migrated and reg.ledger.state == FULL
    assert sorted(os.listdir(os.path.dirname(path))) == ["registry.json", "registry.json.json-v1",
                                                         "registry.json.lock"]


def test_the_export_is_the_json_layout_older_releases_read(path):
    write_json(path, FULL)
    with Registry(path, clock=lambda: NOW):
        pass
    exported = dump_state(read_registry(path)[0])
    assert json.loads(exported) == FULL
    other = os.path.join(os.path.dirname(path), "rolled-back.json")
    with open(other, "wb") as handle:
        handle.write(exported)
    assert _registry.parse_state(exported.decode()) == FULL


# -- what a run reads and writes --------------------------------------------------------------

def many(path, count=2000):
    with Registry(path, clock=lambda: NOW) as reg:
        for number in range(count):
            reg.ledger.bind("k/%d" % number, "vt%d" % number, "vt%d" % number, number, None, "tap", False)
        reg.ledger.set_counter("vt%d", count - 1)
        reg.save()


def test_a_save_writes_only_the_rows_that_changed(path):
    many(path)
    with Registry(path, clock=lambda: NOW) as reg:
        statements = []
        reg.ledger.bind("k/new", "vt2000", "vt%d", 2000, None, "tap", False)
        reg.ledger.set_counter("vt%d", 2000)
        reg._conn.set_trace_callback(statements.append)  # pylint: disable=protected-access
        reg.save()
    writes = [s for s in statements if s.split()[0] in ("INSERT", "DELETE", "UPDATE")]
    assert len(writes) == 2, writes       # one lease row, one counter row: no rewrite of the rest
    assert statements[0].startswith("BEGIN") and "COMMIT" in statements


def test_reads_are_queries_and_the_planner_copy_leaves_the_store_alone(path):
    many(path)
    with Registry(path, clock=lambda: NOW) as reg:
        ledger = reg.ledger
        assert isinstance(ledger.store, _store.SqliteStore)
        scratch = ledger.copy()
        assert scratch.store is ledger.store          # shared, never copied
        scratch.bind("k/5", "other5", None, None, None, "tap", False)
        scratch.unbind("k/6")
        assert ledger.lease("k/5")["name"] == "vt5" and ledger.lease("k/6") is not None
        assert scratch.lease("k/5")["name"] == "other5" and scratch.lease("k/6") is None
        assert scratch.holder(None, "vt5") is None and scratch.holder(None, "other5") == "k/5"
        assert ledger.holder(None, "vt5") == "k/5"
        assert scratch.leases_under("k/1") == sorted(["k/1"] + ["k/1%d" % n for n in range(10)]
                                                     + ["k/1%02d" % n for n in range(100)]
                                                     + ["k/1%03d" % n for n in range(1000)])
        assert "vt6" not in scratch.lease_names_like("vt%d") and "vt6" in ledger.lease_names_like("vt%d")
        assert len(ledger.lease_names_like("vt%d")) == 2000
        assert ledger.name_leased("vt1999") and not scratch.name_leased("vt6")
        assert not reg.dirty, "reading and planning change nothing"


def test_whether_a_namespace_has_leases_counts_the_changes_of_the_run(path):
    many(path, count=3)
    with Registry(path, clock=lambda: NOW) as reg:
        ledger = reg.ledger
        assert ledger.has_lease_in(None) and not ledger.has_lease_in("lab")
        scratch = ledger.copy()
        for number in range(3):
            scratch.unbind("k/%d" % number)
        assert not scratch.has_lease_in(None) and ledger.has_lease_in(None)
        scratch.bind("k/lab", "vt9", "vt%d", 9, "lab", "tap", False)
        assert scratch.has_lease_in("lab") and not ledger.has_lease_in("lab")
        scratch = ledger.copy()
        scratch.unbind("k/0")
        assert scratch.has_lease_in(None), "two leases are left in the host namespace"


def test_a_database_written_by_this_module_is_not_checked_in_full_again(path, monkeypatch):
    many(path, 10)
    checks = []
    real = _registry.check_database
    monkeypatch.setattr(_registry, "check_database", lambda conn, full=True: (checks.append(full), real(conn, full)))
    with Registry(path, clock=lambda: NOW):
        pass
    assert checks == [False]
    conn = sqlite3.connect(path)                   # someone else writes it: checked in full
    with conn:
        conn.execute("UPDATE counters SET last = last + 1")
    conn.close()
    with Registry(path, clock=lambda: NOW):
        pass
    assert checks == [False, True]


# -- damaged databases ---------------------------------------------------------------------

def tamper(path, *statements):
    conn = sqlite3.connect(path)
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


@pytest.mark.parametrize("statement, reason", [
    ("UPDATE leases SET id = 'x' WHERE key = 'k/1'", "a field of the wrong type"),
    ("UPDATE leases SET name = 'a-name-much-too-long' WHERE key = 'k/1'", "no device name"),
    ("UPDATE leases SET netns = '../x' WHERE key = 'k/1'", "a field of the wrong type"),
    ("UPDATE leases SET extra = '[1]' WHERE key = 'k/1'", "a field of the wrong type"),
    ("UPDATE counters SET last = 1.5", "'counters'"),
    ("INSERT INTO released VALUES ('n', 'soon', NULL, NULL, NULL, NULL, NULL)", "released name"),
    ("UPDATE meta SET value = 'XYZ' WHERE key = 'registry_id'", "registry_id"),
    ("UPDATE meta SET value = '{\"items\": 5}' WHERE key = 'intent'", "'intent'"),
    ("CREATE TABLE surprise (x)", "its tables are not those of a registry"),
    ("PRAGMA user_version = 0", "unknown schema version"),
])
def test_a_database_with_wrong_rows_is_moved_aside_and_rebuilt(path, statement, reason):
    many(path, 3)
    tamper(path, statement)
    with Registry(path, clock=lambda: NOW) as reg:
        assert reg.recovered and reason in reg.warnings[0], reg.warnings
        assert reg.ledger.lease("k/1") is None
        reg.save()
    assert len([n for n in os.listdir(os.path.dirname(path)) if ".corrupt-" in n]) == 1
    assert is_database(path) and read_registry(path)[1]["readable"]


def test_a_newer_schema_is_refused_and_left_in_place(path):
    many(path, 3)
    tamper(path, "PRAGMA user_version = 2")
    with pytest.raises(RegistryError, match="newer than this module understands"):
        with Registry(path):
            pass
    assert sorted(os.listdir(os.path.dirname(path))) == ["registry.json", "registry.json.lock"]


def test_a_damaged_page_is_found_and_the_database_moved_aside(path):
    many(path, 2000)
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:           # garbage over pages in the middle of the file
        handle.seek(size // 2)
        handle.write(os.urandom(8192))
    os.truncate(path + ".lock", 0)              # as after a run that never checked it
    with Registry(path, clock=lambda: NOW) as reg:
        assert reg.recovered and "was unusable" in reg.warnings[0], reg.warnings
        reg.save()
    assert read_registry(path)[1]["readable"]


def test_a_transaction_cut_short_is_rolled_back_by_the_next_run(path):
    many(path, 10)
    pid = os.fork()
    if pid == 0:
        try:
            conn = _registry.open_database(path, readonly=False)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM leases")
            conn.execute("PRAGMA cache_size = 0")      # make it spill into the database file
            conn.execute("UPDATE counters SET last = 999")
            os._exit(9)                                  # killed before COMMIT: a hot journal stays
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    with Registry(path, clock=lambda: NOW) as reg:
        assert not reg.recovered and reg.warnings == []
        assert reg.ledger.counter("vt%d") == 9 and reg.ledger.lease("k/3")["name"] == "vt3"
    assert not os.path.exists(path + "-journal")


def test_tap_device_info_reads_a_damaged_database_as_unreadable(path):
    many(path, 3)
    tamper(path, "UPDATE leases SET id = 'x'")
    state, facts, warnings = read_registry(path)
    assert state["leases"] == {} and facts["readable"] is False and "wrong type" in facts["error"]
    assert "the next tap_device run will rebuild it" in warnings[0]
