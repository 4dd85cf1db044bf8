# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a registry holds on disk, read by indexed queries: the base a _ledger.Ledger reads through.

Two stores answer the same questions: ``SqliteStore`` (the registry's database, opened by
_registry) and ``DictStore`` (a registry document in memory: a JSON file read in check mode,
an empty registry, the unit tests). A store is never changed by the ledger; _registry writes
a ledger's changes into the database in one transaction (``write_changes``), or a whole new
database (``create_database``) for a new, migrated or rebuilt registry.

The schema (docs/registry.md): ``PRAGMA user_version`` is the schema version; ``meta`` holds
registry_id and the intent (JSON text); ``counters``, ``leases`` and ``released`` one row per
entry, with the fields every record has as columns and any other field of a record (such as a
lease's ``ovs``) kept in ``extra`` (a JSON object), so that no field of a migrated file is lost.
"""

from __future__ import annotations

import json
import sqlite3

SCHEMA_VERSION = 1


class RegistryError(Exception):
    """A registry the module must refuse to use (message is user-facing)."""


SQLITE_MAGIC = b"SQLite format 3\x00"

LEASE_COLUMNS = ("name", "template", "id", "netns", "mode", "multi_queue", "since")
# Written only when known (absent in the document otherwise; see _ledger.bind).
LEASE_OPTIONAL = ("kind", "ifindex", "boot_id", "netns_inode")
RELEASED_COLUMNS = ("at", "template", "netns", "hold")
RELEASED_OPTIONAL = ("lease",)

SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT)",
    "CREATE TABLE counters (template TEXT PRIMARY KEY NOT NULL, last INTEGER NOT NULL)",
    "CREATE TABLE leases (key TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL, template TEXT, id INTEGER, "
    "netns TEXT, mode TEXT, multi_queue INTEGER, since REAL, kind TEXT, ifindex INTEGER, boot_id TEXT, "
    "netns_inode INTEGER, extra TEXT)",
    # By name first: serves both holder(netns, name) and the names that start with a template's prefix.
    "CREATE INDEX leases_by_name ON leases (name, netns)",
    "CREATE INDEX leases_by_template ON leases (template)",
    "CREATE TABLE released (name TEXT PRIMARY KEY NOT NULL, at REAL NOT NULL, template TEXT, netns TEXT, "
    "hold INTEGER, lease TEXT, extra TEXT)",
    "CREATE INDEX released_by_lease ON released (lease)",
)
# (type, name) of each SCHEMA statement, in order: a database holding anything else is not a registry.
SCHEMA_ORDER = (("table", "meta"), ("table", "counters"), ("table", "leases"), ("index", "leases_by_name"),
                ("index", "leases_by_template"), ("table", "released"), ("index", "released_by_lease"))


def prefix_of(template: str) -> str:
    """The literal text before a template's number: every name it renders starts with it."""
    return template.split("%d", 1)[0]


def _upper_bound(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (None: there is none)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF and not 0xD7FF <= last < 0xE000:
            return prefix[:-1] + chr(last + 1)
        if 0xD7FF <= last < 0xE000:
            return prefix[:-1] + chr(0xE000)
        prefix = prefix[:-1]
    return None


def _range(column: str, prefix: str) -> tuple:
    """A WHERE clause (and its parameters) for ``column`` starting with ``prefix``, by index range."""
    upper = _upper_bound(prefix)
    if upper is None:
        return "%s >= ?" % column, (prefix,)
    return "%s >= ? AND %s < ?" % (column, column), (prefix, upper)


def lease_row(key: str, record: dict) -> tuple:
    extra = {k: v for k, v in record.items() if k not in LEASE_COLUMNS and k not in LEASE_OPTIONAL}
    multi_queue = record.get("multi_queue")
    return ((key,) + tuple(record.get(c) for c in LEASE_COLUMNS[:5])
            + (None if multi_queue is None else int(multi_queue), record.get("since"))
            + tuple(record.get(c) for c in LEASE_OPTIONAL)
            + (json.dumps(extra, sort_keys=True) if extra else None,))


def lease_record(row) -> dict:
    """A leases row (key first) as the document's record."""
    record = dict(zip(LEASE_COLUMNS, row[1:8]))
    if record["multi_queue"] is not None:
        record["multi_queue"] = bool(record["multi_queue"])
    record.update((c, v) for c, v in zip(LEASE_OPTIONAL, row[8:12]) if v is not None)
    if row[12] is not None:
        record.update(json.loads(row[12]))
    return record


def released_row(name: str, record: dict) -> tuple:
    extra = {k: v for k, v in record.items() if k not in RELEASED_COLUMNS and k not in RELEASED_OPTIONAL}
    return ((name,) + tuple(record.get(c) for c in RELEASED_COLUMNS) + (record.get("lease"),)
            + (json.dumps(extra, sort_keys=True) if extra else None,))


def released_record(row) -> dict:
    record = dict(zip(RELEASED_COLUMNS, row[1:5]))
    if record["hold"] is None:
        del record["hold"]  # a record from before holds existed (read as 0)
    if row[5] is not None:
        record["lease"] = row[5]
    if row[6] is not None:
        record.update(json.loads(row[6]))
    return record


LEASE_SELECT = "SELECT key, %s, %s, extra FROM leases" % (", ".join(LEASE_COLUMNS), ", ".join(LEASE_OPTIONAL))
RELEASED_SELECT = "SELECT name, %s, lease, extra FROM released" % ", ".join(RELEASED_COLUMNS)


class DictStore:
    """A registry document in memory, answering as a SqliteStore does."""

    def __init__(self, state: dict):
        self.state = state

    def document(self) -> dict:
        return self.state

    @property
    def registry_id(self):
        return self.state.get("registry_id")

    @property
    def intent(self):
        return self.state.get("intent")

    def lease(self, key: str):
        return self.state["leases"].get(key)

    def lease_keys_from(self, prefix: str):
        return sorted(key for key in self.state["leases"] if key.startswith(prefix))

    def holders(self, netns, name: str) -> list:
        return [key for key, rec in self.state["leases"].items() if rec["name"] == name and rec.get("netns") == netns]

    def lease_names_from(self, prefix: str) -> list:
        return [(key, rec["name"]) for key, rec in self.state["leases"].items() if rec["name"].startswith(prefix)]

    def count_lease_names_from(self, prefix: str) -> int:
        return len(self.lease_names_from(prefix))

    def leases_of_template(self, template) -> list:
        return [(key, rec) for key, rec in self.state["leases"].items() if rec.get("template") == template]

    def lease_with_name(self, name: str) -> list:
        return [key for key, rec in self.state["leases"].items() if rec["name"] == name]

    def lease_keys_in(self, netns, limit: int) -> list:
        return [key for key, rec in self.state["leases"].items() if rec.get("netns") == netns][:limit]

    def counter(self, template: str):
        return self.state["counters"].get(template)

    def released(self, name: str):
        return self.state["released"].get(name)

    def released_where(self, now: float, recent_than: int | None = None, expired_for: int | None = None) -> list:
        """Names released less than ``recent_than`` seconds ago, or whose record is older than both
        ``expired_for`` and its own hold."""
        found = []
        for name, rec in self.state["released"].items():
            age = now - rec["at"]
            if recent_than is not None and age < recent_than:
                found.append(name)
            elif expired_for is not None and age >= max(expired_for, rec.get("hold") or 0):
                found.append(name)
        return found

    def released_with_lease(self, lease: str) -> list:
        return [name for name, rec in self.state["released"].items() if rec.get("lease") == lease]


class _Reader:
    """The connection's execute, with a failed read (a damaged page SQLite found) turned into the
    user-facing error ``damaged(exc)`` makes."""

    def __init__(self, conn: sqlite3.Connection, damaged):
        self.conn = conn
        self.damaged = damaged

    def execute(self, sql: str, args=()):
        try:
            return list(self.conn.execute(sql, args))
        except UnicodeEncodeError:
            return []  # a value that is not UTF-8 text (a lone surrogate) cannot be in the database
        except sqlite3.DatabaseError as exc:
            raise self.damaged(exc)


def _unreadable(exc: Exception) -> RegistryError:
    return RegistryError("the registry could not be read (%s)" % exc)


class SqliteStore:
    """The registry's database, read by indexed queries (``conn`` is opened by _registry).

    ``damaged(exc)`` makes the error a failed read raises."""

    def __init__(self, conn: sqlite3.Connection, damaged=_unreadable):
        self.conn = _Reader(conn, damaged)
        self._meta = dict(self.conn.execute("SELECT key, value FROM meta"))
        intent = self._meta.get("intent")
        self._intent = json.loads(intent) if intent is not None else None

    def document(self) -> dict:
        """The whole registry as the document of docs/registry.md (a full load: export and info only)."""
        conn = self.conn
        return {
            "version": SCHEMA_VERSION, "registry_id": self.registry_id,
            "counters": dict(conn.execute("SELECT template, last FROM counters ORDER BY template")),
            "leases": {row[0]: lease_record(row) for row in conn.execute(LEASE_SELECT + " ORDER BY key")},
            "released": {row[0]: released_record(row) for row in conn.execute(RELEASED_SELECT + " ORDER BY name")},
            "intent": self.intent,
        }

    @property
    def registry_id(self):
        return self._meta.get("registry_id")

    @property
    def intent(self):
        return self._intent

    def lease(self, key: str):
        rows = self.conn.execute(LEASE_SELECT + " WHERE key = ?", (key,))
        return lease_record(rows[0]) if rows else None

    def lease_keys_from(self, prefix: str) -> list:
        where, args = _range("key", prefix)
        return [row[0] for row in self.conn.execute("SELECT key FROM leases WHERE %s ORDER BY key" % where, args)]

    def holders(self, netns, name: str) -> list:
        return [row[0] for row in self.conn.execute("SELECT key FROM leases WHERE name = ? AND netns IS ?",
                                                    (name, netns))]

    def lease_names_from(self, prefix: str) -> list:
        where, args = _range("name", prefix)
        return list(self.conn.execute("SELECT key, name FROM leases WHERE %s" % where, args))

    def count_lease_names_from(self, prefix: str) -> int:
        where, args = _range("name", prefix)
        rows = self.conn.execute("SELECT count(*) FROM leases WHERE %s" % where, args)
        return rows[0][0] if rows else 0

    def leases_of_template(self, template) -> list:
        rows = self.conn.execute(LEASE_SELECT + " WHERE template IS ?", (template,))
        return [(row[0], lease_record(row)) for row in rows]

    def lease_with_name(self, name: str) -> list:
        return [row[0] for row in self.conn.execute("SELECT key FROM leases WHERE name = ?", (name,))]

    def lease_keys_in(self, netns, limit: int) -> list:
        # No index on netns alone: the scan stops at the first ``limit`` rows found, which in the
        # common case (the namespace has leases) is at once.
        return [row[0] for row in self.conn.execute("SELECT key FROM leases WHERE netns IS ? LIMIT ?",
                                                    (netns, limit))]

    def counter(self, template: str):
        rows = self.conn.execute("SELECT last FROM counters WHERE template = ?", (template,))
        return rows[0][0] if rows else None

    def released(self, name: str):
        rows = self.conn.execute(RELEASED_SELECT + " WHERE name = ?", (name,))
        return released_record(rows[0]) if rows else None

    def released_where(self, now: float, recent_than: int | None = None, expired_for: int | None = None) -> list:
        found = []
        if recent_than is not None:
            found += [row[0] for row in self.conn.execute("SELECT name FROM released WHERE ? - at < ?",
                                                          (now, recent_than))]
        if expired_for is not None:
            found += [row[0] for row in self.conn.execute(
                "SELECT name FROM released WHERE ? - at >= max(?, coalesce(hold, 0))", (now, expired_for))]
        return found

    def released_with_lease(self, lease: str) -> list:
        return [row[0] for row in self.conn.execute("SELECT name FROM released WHERE lease = ?", (lease,))]


# -- checks of what is read ----------------------------------------------------------

def _text(column: str) -> str:
    return "typeof(%s) = 'text'" % column


def _maybe(column: str, kind: str) -> str:
    return "typeof(%s) IN ('null', '%s')" % (column, kind)


def _netns(column: str) -> str:
    return ("(%s IS NULL OR (typeof(%s) = 'text' AND %s NOT IN ('', '.', '..') AND instr(%s, '/') = 0 "
            "AND instr(%s, char(0)) = 0))" % ((column,) * 5))


def _number(column: str, limit: int, nullable: bool = True) -> str:
    test = "(typeof(%s) = 'integer' AND %s BETWEEN 0 AND %d)" % (column, column, limit)
    return "(%s IS NULL OR %s)" % (column, test) if nullable else test


def _extra(column: str) -> str:
    return "(%s IS NULL OR (typeof(%s) = 'text' AND json_valid(%s) AND json_type(%s) = 'object'))" % ((column,) * 4)


def row_checks(id_limit: int) -> list:
    """(what, query counting the rows that break it): every field the code relies on, checked in SQL."""
    name = "(typeof(name) = 'text' AND length(CAST(name AS BLOB)) BETWEEN 1 AND 15)"
    return [
        ("'counters' holds a template that is not text or a number that is not an integer from -1 to %d" % id_limit,
         "SELECT count(*) FROM counters WHERE NOT (%s AND typeof(last) = 'integer' AND last BETWEEN -1 AND %d)"
         % (_text("template"), id_limit)),
        ("a lease has no device name, or a field of the wrong type",
         "SELECT count(*) FROM leases WHERE NOT (%s AND %s AND %s AND %s AND (mode IS NULL OR mode IN ('tap', 'tun')) "
         "AND %s AND %s AND (multi_queue IS NULL OR (typeof(multi_queue) = 'integer' AND multi_queue IN (0, 1))) "
         "AND %s AND %s AND %s AND %s AND %s AND %s)"
         % (_text("key"), name, _maybe("template", "text"), _maybe("mode", "text"), _netns("netns"),
            _number("id", id_limit), "typeof(since) IN ('null', 'integer', 'real')", _maybe("kind", "text"),
            _maybe("ifindex", "integer"), _maybe("boot_id", "text"), _maybe("netns_inode", "integer"),
            _extra("extra"))),
        ("a released name is not a record of {at: time, hold, template, netns, lease}",
         "SELECT count(*) FROM released WHERE NOT (%s AND typeof(at) IN ('integer', 'real') AND %s AND %s AND %s "
         "AND %s AND %s)"
         % (_text("name"), _number("hold", id_limit), _maybe("template", "text"), _netns("netns"),
            _maybe("lease", "text"), _extra("extra"))),
        ("'meta' holds a key or value that is not text",
         "SELECT count(*) FROM meta WHERE NOT (%s AND %s)" % (_text("key"), _maybe("value", "text"))),
    ]


def impossible_times(conn: sqlite3.Connection, now: float) -> tuple:
    """(released names, lease keys) whose time cannot be right (see _registry.check_times)."""
    released = [(row[0], row[1]) for row in conn.execute(
        "SELECT name, at FROM released WHERE at > ? + coalesce(hold, 0) OR at < -1e300", (now,))]
    leases = [(row[0], row[1]) for row in conn.execute(
        "SELECT key, since FROM leases WHERE since > ? OR since < -1e300", (now + 86400,))]
    return released, leases


# -- writing ----------------------------------------------------------------------------

LEASE_INSERT = "INSERT OR REPLACE INTO leases VALUES (%s)" % ", ".join("?" * 13)
RELEASED_INSERT = "INSERT OR REPLACE INTO released VALUES (%s)" % ", ".join("?" * 7)


def _meta_rows(registry_id, intent) -> list:
    return [("registry_id", registry_id), ("intent", json.dumps(intent, sort_keys=True) if intent is not None else None)]


def create_database(conn: sqlite3.Connection, state: dict) -> None:
    """Make the schema in an empty database and fill it with ``state`` (a whole document), in one transaction."""
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = %d" % SCHEMA_VERSION)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", _meta_rows(state.get("registry_id"), state.get("intent")))
        conn.executemany("INSERT INTO counters VALUES (?, ?)", sorted(state["counters"].items()))
        conn.executemany(LEASE_INSERT, (lease_row(k, r) for k, r in state["leases"].items()))
        conn.executemany(RELEASED_INSERT, (released_row(n, r) for n, r in state["released"].items()))


def write_changes(conn: sqlite3.Connection, changes) -> None:
    """Apply a ledger's ``changes`` (_ledger.Changes) in one transaction: only the rows that changed."""
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR REPLACE INTO counters VALUES (?, ?)", sorted(changes.counters.items()))
        conn.executemany("DELETE FROM leases WHERE key = ?", [(k,) for k, r in changes.leases.items() if r is None])
        conn.executemany(LEASE_INSERT, [lease_row(k, r) for k, r in changes.leases.items() if r is not None])
        conn.executemany("DELETE FROM released WHERE name = ?",
                         [(n,) for n, r in changes.released.items() if r is None])
        conn.executemany(RELEASED_INSERT, [released_row(n, r) for n, r in changes.released.items() if r is not None])
        meta = []
        if changes.registry_id is not None:
            meta.append(("registry_id", changes.registry_id))
        if changes.intent_changed:
            meta.append(_meta_rows(None, changes.intent)[1])
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta)
