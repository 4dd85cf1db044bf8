"""3. Every kind of broken registry: a clear outcome each, no traceback, no hang.

Broken JSON files (what a migration meets), broken databases (truncated, damaged pages, wrong
types in rows, foreign tables, other versions, a transaction cut short, a garbage journal), and
things that are not files where the registry's files belong. Each case prepares the registry's
directory, then runs the module in a forked child under a time limit. The outcome must be a result (a recovered registry says so in a warning) or a
failed task whose message names the problem; never "unexpected internal error", never a hang.
"""
from __future__ import annotations

import copy
import json
import os
import sqlite3
import stat

import pytest

import ntt_crash as crash
import ntt_helpers as h
import ntt_invariants
from ntt_figures import record, size

pytestmark = [pytest.mark.root]

NOBODY = h.NOBODY_UID
T = "brk%d"
VALID = {
    "version": 1, "registry_id": "0123abcd", "counters": {T: 3},
    "leases": {"k/0": {"name": "brk3", "template": T, "id": 3, "netns": None, "mode": "tap",
                       "multi_queue": False, "since": 1700000000.0}},
    "released": {"brk1": {"at": 1700000000.0, "template": T, "netns": None, "hold": 3600, "lease": "k/9"}},
    "intent": {"netns": None, "started": 1700000000.0, "hold": 3600,
               "items": [{"lease": "k/1", "name": "brk4", "template": T, "id": 4, "netns": None,
                          "replaces": None}]},
}
WRONG = [None, True, -1, 2 ** 70, 1.5, "x", "", "\0", [], [1, "a"], {}, {"a": []}]


def _paths(node, prefix=()):
    """Every path (tuple of keys/indices) inside ``node``."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


def _replaced(doc, path, value):
    doc = copy.deepcopy(doc)
    if not path:
        return value
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def wrong_type_cases(per_path: int = len(WRONG)):
    """Each path of the document with ``per_path`` wrong values (rotating, so that every value is used)."""
    for number, path in enumerate(_paths(VALID)):
        for value in [WRONG[(number + k) % len(WRONG)] for k in range(per_path)]:
            yield "wrong type at %s: %s" % ("/".join(map(str, path)) or "top", json.dumps(value)[:20]), \
                json.dumps(_replaced(VALID, path, value)).encode()


TEXT_CASES = [
    ("empty", b""),
    ("truncated", json.dumps(VALID).encode()[:40]),
    ("not JSON", b"<html>this is not a registry</html>"),
    ("binary", bytes(range(256)) * 4),
    ("nested deep", b"[" * 200000 + b"]" * 200000),
    ("version 0", json.dumps(dict(VALID, version=0)).encode()),
    ("version 2 (newer)", json.dumps(dict(VALID, version=2)).encode()),
    ("NaN and Infinity times", json.dumps(VALID).replace("1700000000.0", "NaN", 1).replace(
        "1700000000.0", "Infinity").encode()),
    ("huge (100k released names)", json.dumps(dict(VALID, released={
        "n%d" % i: {"at": 1.0, "hold": 1, "template": None, "netns": None} for i in range(100000)})).encode()),
    ("huge padding (20 MB)", json.dumps(VALID).encode() + b" " * (20 << 20)),
]


# Each column of each table, with values of the wrong type or out of range (bound as parameters).
COLUMNS = {
    "leases": ["key", "name", "template", "id", "netns", "mode", "multi_queue", "since", "kind", "ifindex",
               "boot_id", "netns_inode", "extra"],
    "released": ["name", "at", "template", "netns", "hold", "lease", "extra"],
    "counters": ["template", "last"],
    "meta": ["value"],
}
WRONG_SQL = [None, -1, 2 ** 62, 1.5, "x", "", "a\0b", b"\x00\xff", "[1]", "../x", "x" * 300]


def make_database(registry) -> None:
    """A valid registry database holding VALID (through the module's own storage code)."""
    registry_module = crash._mods()["_registry"]  # pylint: disable=protected-access
    with open(registry, "w") as out:
        out.write(json.dumps(VALID))
    os.chmod(registry, 0o600)
    with registry_module.Registry(registry):
        pass   # migrated


def _sql(registry, *statements, args=()):
    conn = sqlite3.connect(registry)
    try:
        with conn:
            for statement in statements:
                conn.execute(statement, args if "?" in statement else ())
    finally:
        conn.close()


def _cut_short(registry):
    """A run killed inside a transaction: rows written, no COMMIT; its journal stays."""
    pid = os.fork()
    if pid == 0:
        try:
            conn = sqlite3.connect(registry, isolation_level=None)
            conn.execute("PRAGMA cache_size = 1")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM leases")
            conn.execute("UPDATE counters SET last = 0")
            conn.execute("INSERT INTO counters VALUES ('junk%d', 5)")
        finally:
            os._exit(9)
    os.waitpid(pid, 0)


def _overwrite(registry, offset_fraction, data):
    with open(registry, "r+b") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(int(size * offset_fraction))
        handle.write(data)


def database_cases(per_column: int):
    cases = [
        ("database truncated to its header", lambda r: os.truncate(r, 100)),
        ("database truncated by half", lambda r: os.truncate(r, os.path.getsize(r) // 2)),
        ("database pages overwritten with garbage", lambda r: _overwrite(r, 0.5, os.urandom(4096))),
        ("database header overwritten", lambda r: _overwrite(r, 0, b"\xff" * 100)),
        ("database of a newer version", lambda r: _sql(r, "PRAGMA user_version = 2")),
        ("database of version 0", lambda r: _sql(r, "PRAGMA user_version = 0")),
        ("database with a foreign table", lambda r: _sql(r, "CREATE TABLE surprise (x)")),
        ("database with a trigger", lambda r: _sql(
            r, "CREATE TRIGGER t AFTER INSERT ON counters BEGIN DELETE FROM leases; END")),
        ("database without its leases table", lambda r: _sql(r, "DROP TABLE leases")),
        ("database in WAL mode", lambda r: _sql(r, "PRAGMA journal_mode = WAL")),
        ("a transaction cut short (hot journal)", _cut_short),
        ("a garbage journal beside the database", lambda r: open(r + "-journal", "wb").write(os.urandom(2048))),
        ("registry_id of the wrong form", lambda r: _sql(r, "UPDATE meta SET value = 'XYZ' WHERE key = 'registry_id'")),
        ("intent that is not JSON", lambda r: _sql(r, "UPDATE meta SET value = '{[' WHERE key = 'intent'")),
        ("intent of the wrong shape", lambda r: _sql(r, "UPDATE meta SET value = '{\"items\": 3}' WHERE key = 'intent'")),
    ]
    number = 0
    for table, columns in COLUMNS.items():
        for column in columns:
            for value in [WRONG_SQL[(number + k) % len(WRONG_SQL)] for k in range(per_column)]:
                number += 1
                cases.append(("wrong value in %s.%s: %r" % (table, column, value)[:60],
                              lambda r, t=table, c=column, v=value: _sql(
                                  r, "UPDATE OR IGNORE %s SET %s = ?" % (t, c), args=(v,))))
    return cases


def _special(kind, where):
    if os.path.lexists(where):
        os.unlink(where)
    if kind == "FIFO":
        os.mkfifo(where, 0o600)
    elif kind == "directory":
        os.mkdir(where, 0o700)
    elif kind == "device node":
        os.mknod(where, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    elif kind == "symlink":
        os.symlink("/etc/hostname", where)


def file_cases(registry):
    directory = os.path.dirname(registry)
    cases = []
    for suffix in ("", "-journal", ".lock", ".json-v1", ".tmp-1"):
        for kind in ("FIFO", "directory", "device node", "symlink"):
            cases.append(("%s in place of registry.json%s" % (kind, suffix),
                          lambda s=suffix, k=kind: _special(k, registry + s)))
    cases += [
        ("symlinked directory", lambda: (os.rename(directory, directory + ".real"),
                                         os.symlink(directory + ".real", directory))),
        ("file owned by nobody, 0400", lambda: (os.chown(registry, NOBODY, NOBODY), os.chmod(registry, 0o400))),
        ("file world-writable", lambda: os.chmod(registry, 0o666)),
        ("directory owned by nobody", lambda: os.chown(directory, NOBODY, NOBODY)),
        ("directory world-writable", lambda: os.chmod(directory, 0o777)),
        ("directory world-writable and sticky", lambda: os.chmod(directory, 0o1777)),
        ("ancestor owned by nobody", lambda: os.chown(os.path.dirname(directory), NOBODY, NOBODY)),
    ]
    return cases


def _outcome(case, ns, registry):
    outcome = crash.run_forked({"netns": ns, "registry": registry, "name": T, "lease": "probe"}, timeout=60)
    text = outcome.get("error") or " ".join(outcome["result"]["warnings"])
    assert "internal error" not in text and "Traceback" not in text, (case, outcome)
    return outcome


def _clear(ns) -> None:
    for name in h.tun_names(ns):
        h.sh("ip", "-n", ns, "link", "del", name, check=False)


def _fresh(workdir, index) -> str:
    base = workdir / ("c%04d" % index)
    base.mkdir(mode=0o700)
    directory = base / "reg"
    directory.mkdir(mode=0o700)
    return str(directory / "registry.json")


def test_every_kind_of_broken_registry_has_a_clear_outcome(ns, workdir):
    tally = {"recovered": 0, "refused": 0, "accepted": 0}
    failures = []
    index = 0

    def classify(case, outcome, registry):
        if "error" in outcome:
            tally["refused"] += 1
            if "NUL" in outcome["error"] or "registry" not in outcome["error"]:
                failures.append((case, outcome["error"]))
            return
        warnings = " ".join(outcome["result"]["warnings"])
        tally["recovered" if "unusable" in warnings or "impossible" in warnings else "accepted"] += 1
        ntt_invariants.check(registry, ns)

    for case, content in TEXT_CASES + list(wrong_type_cases(size("wrong_values_per_path"))):
        index += 1
        registry = _fresh(workdir, index)
        with open(registry, "wb") as out:
            out.write(content)
        os.chmod(registry, 0o600)
        classify(case, _outcome(case, ns, registry), registry)
        _clear(ns)
    for case, prepare in database_cases(size("wrong_values_per_path")):
        index += 1
        registry = _fresh(workdir, index)
        make_database(registry)
        prepare(registry)
        outcome = _outcome(case, ns, registry)
        if case.startswith("database of a newer") and "newer than this module" not in outcome.get("error", ""):
            failures.append((case, "not refused as newer: %r" % outcome))
        classify(case, outcome, registry)
        _clear(ns)
    for case, prepare in file_cases("PLACEHOLDER"):
        index += 1
        registry = _fresh(workdir, index)
        with open(registry, "w") as out:
            out.write(json.dumps(dict(VALID, intent=None, leases={})))
        os.chmod(registry, 0o600)
        [prep for name, prep in file_cases(registry) if name == case][0]()
        outcome = _outcome(case, ns, registry)
        if case.endswith(".tmp-1"):
            # A temporary name of a killed run: removed unless a directory (never opened either way).
            left = os.path.lexists(registry + ".tmp-1")
            if "error" in outcome or left != case.startswith("directory"):
                failures.append((case, "outcome %r, still there: %s" % (outcome, left)))
        elif "error" not in outcome:   # each of these is refused, naming the path and what to do
            failures.append((case, "was accepted: %r" % outcome["result"]["warnings"]))
        classify(case, outcome, registry)
        _clear(ns)
    assert failures == [], failures
    database = len(database_cases(size("wrong_values_per_path")))
    record("broken_registries", cases=index, **tally, text_cases=len(TEXT_CASES),
           wrong_type_cases=index - len(TEXT_CASES) - len(file_cases("x")) - database,
           database_cases=database, file_cases=len(file_cases("x")), failures=len(failures))
