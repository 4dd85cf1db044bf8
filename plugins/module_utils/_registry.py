# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry file: lock, open, migrate, recover, save. Its content is a _ledger.Ledger.

The registry is an SQLite database at the path the task gives (docs/registry.md has the
schema; _store reads and writes it). Beside it:
  registry.json.lock             flock'ed for the whole run, never unlinked (SQLite's own locks
                                 cover one transaction, not a run's read-plan-apply)
  registry.json-journal          SQLite's rollback journal while a transaction commits
  registry.json.json-v1          a JSON registry of version 1 found at the path, kept as it was
                                 when it was migrated (for a rollback to an older release)
  registry.json.corrupt-STAMP    a file that could not be read, moved aside
  registry.json.tmp-PID          a new database being written (a new, migrated or rebuilt
                                 registry), renamed into place once complete
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import signal
import sqlite3
import stat
import threading
import time
from urllib.parse import quote

from ansible_collections.netdev.tuntap.plugins.module_utils import _store
from ansible_collections.netdev.tuntap.plugins.module_utils._ledger import (
    ID_LIMIT, SCHEMA_VERSION, Changes, Ledger, empty_state)
from ansible_collections.netdev.tuntap.plugins.module_utils._marks import REGISTRY_ID_LENGTH, is_registry_id

DEFAULT_LOCK_TIMEOUT = 60


RegistryError = _store.RegistryError
# A new database waits this long for tap_device_info's reads (which take SQLite's shared lock
# for a moment) before it commits; runs themselves are serialised by the lock file.
BUSY_TIMEOUT = 30
JSON_KEPT = ".json-v1"


class CorruptRegistry(ValueError):
    """The file's content is not a registry this module can read."""


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise CorruptRegistry(what)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _optional(value, kind: type) -> bool:
    """None, or a value of ``kind`` (a bool is not an int here)."""
    if value is None:
        return True
    if kind is int and isinstance(value, bool):
        return False
    return isinstance(value, kind)


def _netns_field(value) -> bool:
    """None (the host's) or a name that can be an entry of /run/netns."""
    return value is None or (isinstance(value, str) and value not in ("", ".", "..") and "/" not in value
                             and "\0" not in value)


def _name_field(value) -> bool:
    return isinstance(value, str) and 0 < len(value.encode("utf-8", "surrogateescape")) <= 15


def _id_field(value) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= ID_LIMIT)


def _check_lease(key, lease) -> None:
    _require(isinstance(lease, dict) and _name_field(lease.get("name")), "lease %r has no device name" % key)
    _require(all(_optional(lease.get(field), str) for field in ("template", "mode"))
             and lease.get("mode") in (None, "tap", "tun") and _netns_field(lease.get("netns"))
             and _id_field(lease.get("id")) and _optional(lease.get("multi_queue"), bool)
             and (lease.get("since") is None or _is_number(lease.get("since")))
             and _optional(lease.get("ifindex"), int) and _optional(lease.get("boot_id"), str)
             and _optional(lease.get("netns_inode"), int),
             "lease %r has a field of the wrong type" % key)


def _check_released(name, record) -> None:
    _require(isinstance(record, dict) and _is_number(record.get("at")) and _id_field(record.get("hold"))
             and _optional(record.get("template"), str) and _netns_field(record.get("netns"))
             and _optional(record.get("lease"), str),
             "released name %r is not an object of {at: time, hold, template, netns, lease}" % name)


def _check_intent(intent) -> None:
    shape = ("'intent' is neither null nor an object with a list of 'items' (lease, name, template, id, "
             "netns, replaces)")
    if intent is None:
        return
    _require(isinstance(intent, dict) and isinstance(intent.get("items"), list), shape)
    _require(_netns_field(intent.get("netns")) and _id_field(intent.get("hold"))
             and (intent.get("started") is None or _is_number(intent.get("started"))), shape)
    for item in intent["items"]:
        _require(isinstance(item, dict) and _optional(item.get("lease"), str) and _name_field(item.get("name"))
                 and _optional(item.get("template"), str) and _id_field(item.get("id"))
                 and _netns_field(item.get("netns")) and _optional(item.get("replaces"), str), shape)


def parse_state(text: str) -> dict:
    """Parse and check every field of a registry document the code relies on; raise
    CorruptRegistry if it is not one (times are checked against the clock by ``check_times``)."""
    if not text.strip():
        raise CorruptRegistry("the file is empty")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CorruptRegistry("not valid JSON (%s)" % exc)
    except RecursionError:
        raise CorruptRegistry("not a registry: its JSON is nested too deeply")
    _require(isinstance(data, dict), "the top level is not an object")
    version = data.get("version")
    _require(isinstance(version, int) and not isinstance(version, bool), "it has no integer 'version'")
    if version > SCHEMA_VERSION:
        # Not corrupt: written by a newer release. Moving it aside would lose its data.
        raise RegistryError("registry schema version %d is newer than this module understands (%d); "
                            "upgrade the netdev.tuntap collection" % (version, SCHEMA_VERSION))
    _require(version == SCHEMA_VERSION, "unknown schema version %r" % version)
    registry_id = data.get("registry_id")
    _require(registry_id is None or is_registry_id(registry_id),
             "'registry_id' is not %d lower-case hex digits" % REGISTRY_ID_LENGTH)
    counters = data.get("counters")
    _require(isinstance(counters, dict) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and -1 <= v <= ID_LIMIT
        for k, v in counters.items()),
        "'counters' is not an object of template -> integer")
    leases = data.get("leases")
    _require(isinstance(leases, dict), "'leases' is not an object")
    for key, lease in leases.items():
        _check_lease(key, lease)
    released = data.get("released")
    _require(isinstance(released, dict), "'released' is not an object of name -> {at: time}")
    for name, record in released.items():
        _check_released(name, record)
    intent = data.get("intent")
    _check_intent(intent)
    return {"version": SCHEMA_VERSION, "registry_id": registry_id, "counters": counters, "leases": leases,
            "released": released, "intent": intent}


def check_times(state: dict, now: float) -> list:
    """Repair times that cannot be right, in place; return what was repaired, in words.

    A release time that is not finite, or later than now by more than its hold (clocks step
    back a little, never by the hold), would hold a name forever: it is taken as now, so the
    name is held once more for its hold and then freed. A binding's age (``since``) and an
    intent's start only inform: a bad one is dropped.
    """
    repaired = []
    for name, record in sorted(state["released"].items()):
        at = record["at"]
        if not math.isfinite(at) or at - now > (record.get("hold") or 0):
            repaired.append("the release time of %r (%r) is %s; it was reset to now, so the name is held for its "
                            "hold once more" % (name, at, "not finite" if not math.isfinite(at) else "in the future"))
            record["at"] = now
    for key, lease in sorted(state["leases"].items()):
        since = lease.get("since")
        if since is not None and (not math.isfinite(since) or since > now + 86400):
            repaired.append("the binding time of lease %r (%r) is impossible; it was reset to now" % (key, since))
            lease["since"] = now
    intent = state.get("intent")
    if intent and intent.get("started") is not None and not math.isfinite(intent["started"]):
        intent["started"] = now
    return repaired


def dump_state(state: dict) -> bytes:
    """A registry document as the JSON of schema 1 (the export, and what older releases read)."""
    return (json.dumps(state, indent=1, sort_keys=True) + "\n").encode("utf-8")


def derived_registry_id(path: str) -> str:
    """The id a registry at ``path`` starts with (then it is what the file says).

    Derived from the path, not random: a registry lost with its previous generation and
    rebuilt at the same path must still recognise its own devices by their marks.
    """
    digest = hashlib.sha256(("netdev.tuntap registry " + path).encode("utf-8", "surrogateescape")).hexdigest()
    return digest[:REGISTRY_ID_LENGTH]


def _trusted_uids() -> set:
    return {0, os.geteuid()}


def _file_type(st: os.stat_result) -> str:
    mode = st.st_mode
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device node"), (stat.S_ISBLK, "a block device node"),
                       (stat.S_ISLNK, "a symlink"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return what
    return "not a regular file"


def _shared(st: os.stat_result, sticky_ok: bool = False) -> bool:
    """Someone other than root (or the user running the module) owns it or can write to it."""
    if st.st_uid not in _trusted_uids():
        return True
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        # /tmp-like: others may add entries, but only the owner can rename or remove ours.
        return not (sticky_ok and st.st_mode & stat.S_ISVTX and st.st_uid == 0)
    return False


def _refuse_shared(kind: str, path: str, st: os.stat_result) -> RegistryError:
    return RegistryError(
        "registry %s %s is writable by someone other than root (mode %04o, owner uid %d); refusing it because "
        "another user could forge allocations. Allowed: owned by root or by the user running the module (uid %d), "
        "not group- or world-writable; fix it with: chown root %s && chmod go-w %s"
        % (kind, path, stat.S_IMODE(st.st_mode), st.st_uid, os.geteuid(), path, path))


def _check_not_symlink_or_shared(path: str, kind: str) -> os.stat_result | None:
    """lstat ``path`` and refuse it if it is a symlink or anyone but root (or us) owns or can write it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise RegistryError("registry %s %s cannot exist: a directory on its path is not a directory" % (kind, path))
    if stat.S_ISLNK(st.st_mode):
        raise RegistryError("registry %s %s is a symlink; refusing to follow it (a link lets another "
                            "user redirect root's writes)" % (kind, path))
    if _shared(st):
        raise _refuse_shared(kind, path, st)
    return st


def _ancestors(path: str) -> list:
    """"/a/b/c" -> ["/", "/a", "/a/b"]."""
    found = []
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return list(reversed(found))
        found.append(parent)
        path = parent


def _check_ancestors(directory: str) -> None:
    """Every directory above the registry's own, as written and as symlinks resolve: none may be
    changed by anyone but root (or us), or the registry could be swapped from under it."""
    for ancestor in _ancestors(directory):
        try:
            st = os.lstat(ancestor)
        except FileNotFoundError:
            return  # made by us, 0700
        if stat.S_ISLNK(st.st_mode):
            if st.st_uid not in _trusted_uids():
                raise RegistryError("directory %s on the registry's path is a symlink owned by uid %d; refusing to "
                                    "follow it: use a path without it, or have root own it" % (ancestor, st.st_uid))
            target = os.path.realpath(ancestor)
            for resolved in _ancestors(target) + [target]:
                _check_ancestor(resolved, os.stat(resolved), " (where the symlink %s leads)" % ancestor)
        elif not stat.S_ISDIR(st.st_mode):
            raise RegistryError("%s on the registry's path is %s, not a directory" % (ancestor, _file_type(st)))
        else:
            _check_ancestor(ancestor, st, "")


def _check_ancestor(path: str, st: os.stat_result, via: str) -> None:
    if _shared(st, sticky_ok=True):
        raise RegistryError(
            "directory %s%s on the registry's path can be changed by someone other than root (mode %04o, owner uid "
            "%d), who could then replace the registry; fix it with: chown root %s && chmod go-w %s, or choose a "
            "registry path under directories only root can change" % (path, via, stat.S_IMODE(st.st_mode), st.st_uid,
                                                                      path, path))


class _LockWaitOver(Exception):
    pass


def _alarm(_signum, _frame):
    raise _LockWaitOver()


def _flock(fd: int, timeout: int) -> bool:
    """Take an exclusive flock on ``fd`` within ``timeout`` seconds; False when it stayed taken.

    The wait blocks in the kernel (waiters are woken together, so none is starved by others
    polling) under a SIGALRM timer; where a timer cannot be used (not the main thread, or one
    already running) it polls instead.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        if timeout <= 0:
            return False
    if threading.current_thread() is threading.main_thread() and signal.getitimer(signal.ITIMER_REAL)[0] == 0:
        previous = signal.signal(signal.SIGALRM, _alarm)
        taken = False
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, timeout)
                fcntl.flock(fd, fcntl.LOCK_EX)
                taken = True
            except _LockWaitOver:
                pass  # taken stays False; if the lock was got in that instant, closing the fd drops it
        finally:
            while True:
                try:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    signal.signal(signal.SIGALRM, previous)
                    break
                except _LockWaitOver:
                    continue  # the timer fired just now: it is off once this loop ends
        return taken
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.01)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            continue
    return False


def lock_holders(st: os.stat_result, locks_path: str = "/proc/locks") -> list:
    """PIDs holding a lock on the file ``st`` describes, as /proc/locks tells (may be empty)."""
    wanted = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    pids = []
    try:
        with open(locks_path, encoding="ascii", errors="replace") as locks:
            for line in locks:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"; waiters are "1: -> FLOCK ..."
                if len(fields) >= 6 and fields[1] != "->" and fields[5] == wanted and fields[4].isdigit():
                    pids.append(int(fields[4]))
    except OSError:
        pass
    return sorted(set(pids))


def _storage_error(path: str, exc: sqlite3.Error) -> OSError:
    """An SQLite failure while writing, as the OSError the engine reports (a full disk, a read-only one)."""
    text = str(exc)
    code = errno.ENOSPC if "full" in text else errno.EROFS if "readonly" in text or "read-only" in text else errno.EIO
    if code == errno.EIO:
        # SQLite says "unable to open database file" when its journal cannot be made: ask the disk why.
        with contextlib.suppress(OSError):
            fs = os.statvfs(os.path.dirname(path))
            if fs.f_bavail == 0 or fs.f_favail == 0:
                code = errno.ENOSPC
    return OSError(code, "%s (SQLite: %s)" % (os.strerror(code), text), path)


def sniff(path: str, kind: str = "file") -> tuple:
    """("sqlite" | "text" | None, the text of a file that is not a database): what is at ``path``.

    Opened without following a symlink and without blocking on a FIFO; anything but a regular
    file is refused. A database is not read here (SQLite opens it by its path).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RegistryError("registry %s %s is a symlink; refusing to follow it" % (kind, path))
        raise
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RegistryError("registry %s %s is %s, not a regular file; remove it (or move it away) and run "
                                "again" % (kind, path, _file_type(st)))
        head = handle.read(len(_store.SQLITE_MAGIC))
        if head == _store.SQLITE_MAGIC:
            return "sqlite", None
        return "text", (head + handle.read()).decode("utf-8", "replace")


def open_database(path: str, readonly: bool) -> sqlite3.Connection:
    """A connection to the registry's database (which exists); settings for crash safety on a writer.

    Rollback journal (journal_mode DELETE), synchronous EXTRA: a transaction is durable once it
    returns, also on power loss (the journal is synced before the database is changed, and the
    directory after the journal is deleted), and a reader opened read-only needs no companion
    file it would have to create (WAL's -shm), so check mode and tap_device_info write nothing.
    """
    mode = "ro" if readonly else "rw"
    conn = sqlite3.connect("file:%s?mode=%s" % (quote(path), mode), uri=True, isolation_level=None,
                           timeout=BUSY_TIMEOUT, check_same_thread=False)
    try:
        conn.execute("PRAGMA trusted_schema = OFF")
        if not readonly:
            conn.execute("PRAGMA journal_mode = DELETE").fetchone()
            conn.execute("PRAGMA synchronous = EXTRA")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def check_database(conn: sqlite3.Connection, full: bool = True) -> None:
    """Check a database is a registry of this schema, every row of the right types; raise
    CorruptRegistry (or RegistryError for a newer schema). Done in SQLite, without loading rows.

    Not ``full``: only the version, the schema and the meta rows (a database this module wrote
    and nothing changed since: see Registry._verified)."""
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RegistryError("registry schema version %d is newer than this module understands (%d); "
                                "upgrade the netdev.tuntap collection" % (version, SCHEMA_VERSION))
        _require(version == SCHEMA_VERSION, "unknown schema version %r" % version)
        objects = {(kind, name): sql for kind, name, sql in conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_autoindex_%'")}
        _require(objects == dict(zip(_store.SCHEMA_ORDER, _store.SCHEMA)),
                 "its tables are not those of a registry (%s)" % ", ".join(sorted(n for _k, n in objects)))
        if full:
            found = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            _require(found == "ok", "the database is damaged (%s)" % found)
            for what, query in _store.row_checks(ID_LIMIT):
                _require(conn.execute(query).fetchone()[0] == 0, what)
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        registry_id = meta.get("registry_id")
        _require(registry_id is None or is_registry_id(registry_id),
                 "'registry_id' is not %d lower-case hex digits" % REGISTRY_ID_LENGTH)
        intent = meta.get("intent")
        if intent is not None:
            try:
                intent = json.loads(intent)
            except (ValueError, RecursionError):
                raise CorruptRegistry("'intent' is not JSON")
        _check_intent(intent)
    except sqlite3.DatabaseError as exc:
        raise CorruptRegistry("not a registry database (%s)" % exc)


STAMP_PREFIX = b"netdev.tuntap verified "


def database_stamp(path: str) -> bytes | None:
    """What identifies the database as a run left it: SQLite's change counter (header bytes 24-27,
    bumped by every commit), size, mtime and inode. None when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        counter = os.pread(fd, 4, 24)
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = (STAMP_PREFIX, counter.hex().encode(), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
    return b"%s%s %d %d %d %d\n" % fields


class Registry:
    """One registry. Use as a context manager: it takes the lock and opens the registry.

    The ledger reads the database by queries while the run holds the lock; ``save`` writes
    what the ledger changed in one transaction. In check mode nothing on disk is created,
    locked, moved or written (a JSON file is read, not migrated).
    """

    def __init__(self, path: str, check_mode: bool = False, clock=time.time, lock_timeout: int = DEFAULT_LOCK_TIMEOUT):
        self.path = os.path.abspath(path)
        self.directory = os.path.dirname(self.path)
        self.check_mode = check_mode
        self.clock = clock
        self.lock_timeout = lock_timeout
        self.warnings: list[str] = []
        self.recovered = False
        self.migrated = False
        self.ledger = Ledger(empty_state(), clock)
        self._conn = None
        self._lock_fd = None
        self._must_write = False
        self.writes = 0

    # -- opening -------------------------------------------------------
    def __enter__(self) -> "Registry":
        self._check_paths()
        if not self.check_mode:
            self._make_directory()
            self._lock()
        try:
            if not self.check_mode:
                # Again under the lock: a directory someone else made between the first check
                # and our mkdir is trusted only if it passes too.
                self._check_paths()
                self._remove_stale_temporaries()
            self.ledger = Ledger(self._open(), self.clock)
            self._repair()
        except BaseException:
            self._close()
            self._unlock()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._close()
        self._unlock()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _companions(self) -> tuple:
        return (("file", self.path), ("journal", self.path + "-journal"), ("lock", self.path + ".lock"),
                ("migrated JSON copy", self.path + JSON_KEPT))

    def _check_paths(self) -> None:
        _check_ancestors(self.directory)
        st = _check_not_symlink_or_shared(self.directory, "directory")
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise RegistryError("registry directory %s is not a directory" % self.directory)
        if st is None:
            return
        for kind, path in self._companions():
            st = _check_not_symlink_or_shared(path, kind)
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise RegistryError("registry %s %s is %s, not a regular file; this module makes only regular "
                                    "files there: remove it (or move it away) and run again"
                                    % (kind, path, _file_type(st)))

    def _remove_stale_temporaries(self) -> None:
        """Databases of runs killed while writing a new one (every write happens under the lock we hold).

        Anything else under such a name (a FIFO, a device node) is removed too, never opened;
        a directory there is refused when a write needs its name.
        """
        base = os.path.basename(self.path)
        prefixes = (base + ".tmp-", base + JSON_KEPT + ".tmp-")
        with os.scandir(self.directory) as entries:
            stale = [entry.path for entry in entries
                     if entry.name.startswith(prefixes) and not entry.is_dir(follow_symlinks=False)]
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _make_directory(self) -> None:
        missing = []
        parent = self.directory
        while not os.path.lexists(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(missing):
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                continue  # made by a concurrent run; never chmod what we did not create
            os.chmod(directory, 0o700)  # the umask may have taken bits we asked for: be exact

    def _lock(self) -> None:
        lock = self.path + ".lock"
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            self._lock_fd = os.open(lock, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RegistryError("registry lock %s is a symlink; refusing it" % lock)
            raise RegistryError("cannot open registry lock %s: %s" % (lock, exc.strerror))
        st = os.fstat(self._lock_fd)
        if not stat.S_ISREG(st.st_mode):
            self._unlock()
            raise RegistryError("registry lock %s is %s, not a regular file; remove it and run again"
                                % (lock, _file_type(st)))
        if not _flock(self._lock_fd, self.lock_timeout):
            holders = lock_holders(st)
            self._unlock()
            raise RegistryError(
                "the registry lock %s is still held by another run after lock_timeout %d s (%s); wait for it "
                "to finish, or raise lock_timeout. A run that never ends holds it until it is stopped"
                % (lock, self.lock_timeout, "held by PID %s" % ", ".join(map(str, holders)) if holders
                   else "the holder's PID is not visible here"))

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def _lock_file_stamp(self) -> bytes | None:
        try:
            if self._lock_fd is not None:
                return os.pread(self._lock_fd, 256, 0)
            fd = os.open(self.path + ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                return os.read(fd, 256) if stat.S_ISREG(os.fstat(fd).st_mode) else None
            finally:
                os.close(fd)
        except OSError:
            return None

    def _verified(self) -> bool:
        """The database is as the last run that checked or wrote it left it (the stamp it wrote in
        the lock file matches): only a run of this module, under the lock, changes it then."""
        current = database_stamp(self.path)
        return current is not None and self._lock_file_stamp() == current

    def _stamp(self) -> None:
        """Record in the lock file that the database, as it is now, was checked or written by us."""
        if self._lock_fd is None:
            return
        stamp = database_stamp(self.path) or b""
        with contextlib.suppress(OSError):  # a full disk: the next run checks the database in full
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, stamp, 0)

    def _damaged(self, exc: Exception) -> RegistryError:
        """A read that failed mid-run: the next run checks the database in full (and rebuilds it)."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
        return RegistryError("registry %s could not be read (%s); the next run checks it and, if it is damaged, "
                             "moves it aside and rebuilds it from the devices' marks" % (self.path, exc))

    # -- reading, migration and recovery ------------------------------------
    def _open(self):
        """The store the ledger reads: the database, or a document in memory (new, JSON in check
        mode, rebuilt)."""
        try:
            kind, text = sniff(self.path)
        except OSError as exc:
            return self._recover("it could not be read (%s)" % exc.strerror)
        if kind is None:
            if any(os.path.lexists(self.path + suffix) for suffix in (JSON_KEPT, ".prev")):
                # A registry that existed (it was migrated, or it kept a previous generation) is lost,
                # not new: rebuild it, raising counters above the marked devices.
                return self._recover("the file is missing", move_aside=False)
            return _store.DictStore(empty_state(derived_registry_id(self.path)))
        if kind == "text":
            try:
                state = parse_state(text)
            except CorruptRegistry as exc:
                return self._recover(str(exc))
            return self._migrate(state)
        try:
            self._conn = open_database(self.path, readonly=self.check_mode)
            # The full check reads every page and row: skipped when the database is exactly as the
            # last run that checked or wrote it left it (its stamp in the lock file matches).
            check_database(self._conn, full=not self._verified())
            if not self.check_mode:
                self._stamp()
            return _store.SqliteStore(self._conn, self._damaged)
        except CorruptRegistry as exc:
            self._close()
            return self._recover(str(exc))
        except sqlite3.Error as exc:
            self._close()
            if self.check_mode:
                # Read-only, it cannot roll back a transaction a killed run left: a real run does.
                self.warnings.append("registry %s cannot be read in check mode (%s); planned as if it were empty"
                                     % (self.path, exc))
                return _store.DictStore(empty_state(derived_registry_id(self.path)))
            return self._recover("not a registry database (%s)" % exc)

    def _migrate(self, state: dict):
        """A JSON registry (schema 1) at the path: replaced by a database holding every field of it, in
        one step (a complete database is renamed over it), the JSON kept beside it. A run killed at
        any point leaves the JSON or the database, never a part of either."""
        if state["registry_id"] is None:
            state["registry_id"] = derived_registry_id(self.path)
        if self.check_mode:
            return _store.DictStore(state)
        # Before it is written: a time that is not finite has no place in the database.
        self._repair_document(state)
        kept = self.path + JSON_KEPT
        try:
            same = os.path.samestat(os.lstat(kept), os.lstat(self.path))
        except FileNotFoundError:
            same = False
        if not same:  # (a run killed after this step left it linked already; rename would do nothing)
            staging = "%s.tmp-%d" % (kept, os.getpid())
            os.link(self.path, staging)
            os.replace(staging, kept)
        self._replace_with(state)
        self.migrated = True  # an upgrade, not a problem: no warning (docs/registry.md says where the JSON went)
        self._stamp()
        return _store.SqliteStore(self._conn, self._damaged)

    def _recover(self, reason: str, move_aside: bool = True):
        self.recovered = True
        self._must_write = True
        source = "the devices present"
        if self.check_mode:
            self.warnings.append("registry %s is unusable: %s. A real run would move it aside and rebuild "
                                 "it from %s" % (self.path, reason, source))
        else:
            kept = " It was moved aside to %s and" % self._move_aside() if move_aside else ""
            self.warnings.append("registry %s was unusable: %s.%s rebuilt from %s"
                                 % (self.path, reason, kept or " It was", source))
        return _store.DictStore(empty_state(derived_registry_id(self.path)))

    def _move_aside(self) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock()))
        target = "%s.corrupt-%s" % (self.path, stamp)
        suffix = 1
        while os.path.lexists(target) or os.path.lexists(target + "-journal"):
            target = "%s.corrupt-%s.%d" % (self.path, stamp, suffix)
            suffix += 1
        # A journal stays with its database: left beside a new one, SQLite would play it into that.
        if os.path.lexists(self.path + "-journal"):
            os.rename(self.path + "-journal", target + "-journal")
        os.rename(self.path, target)
        self._fsync_directory()
        return target

    def _repair(self) -> None:
        """Times that cannot be right are repaired (as changes, written by the run's first save)."""
        now = self.clock()
        if isinstance(self.ledger.store, _store.DictStore):
            self._must_write = self._repair_document(self.ledger.store.state) or self._must_write
            return
        released, leases = _store.impossible_times(self._conn, now)
        repaired = []
        for name, at in released:
            record = dict(self.ledger.released_record(name), at=now)
            self.ledger._put_released(name, record)  # pylint: disable=protected-access
            repaired.append("the release time of %r (%r) is in the future or not finite; it was reset to now, "
                            "so the name is held for its hold once more" % (name, at))
        for key, since in leases:
            self.ledger._put_lease(key, dict(self.ledger.lease(key), since=now))  # pylint: disable=protected-access
            repaired.append("the binding time of lease %r (%r) is impossible; it was reset to now" % (key, since))
        if self.ledger.registry_id is None:
            self.ledger.set_registry_id(derived_registry_id(self.path))
        if repaired:
            self.warnings.append("registry %s held impossible times: %s" % (self.path, "; ".join(repaired)))

    def _repair_document(self, state: dict) -> bool:
        repaired = check_times(state, self.clock())
        if repaired:
            self.warnings.append("registry %s held impossible times: %s" % (self.path, "; ".join(repaired)))
        return bool(repaired)

    # -- writing ---------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return self._must_write or bool(self.ledger.changes)

    def save(self) -> None:
        """Write what the ledger changed, in one transaction (no-op when unchanged)."""
        if self.check_mode:
            raise RuntimeError("registry save in check mode")
        if not self.dirty:
            return
        if self._conn is None:
            self._replace_with(self.ledger.state)
        else:
            try:
                _store.write_changes(self._conn, self.ledger.changes)
            except UnicodeEncodeError as exc:
                raise RegistryError("registry %s cannot record %r: it is not UTF-8 text (a lone surrogate)"
                                    % (self.path, exc.object))
            except sqlite3.Error as exc:
                self._stamp()  # whatever the database is now, the stamp no longer matches an unchecked one
                raise _storage_error(self.path, exc)
        self._stamp()
        self.ledger.store = _store.SqliteStore(self._conn, self._damaged)
        self.ledger.changes = Changes()
        self._must_write = False
        self.writes += 1

    def _replace_with(self, state: dict) -> None:
        """Write ``state`` as a complete new database and rename it over the path (a new, migrated or
        rebuilt registry); then the run goes on with it."""
        self._close()
        tmp = "%s.tmp-%d" % (self.path, os.getpid())
        for leftover in (tmp, tmp + "-journal"):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                os.unlink(leftover)  # ours, from an earlier write of this process that failed
        try:
            # O_EXCL: never open what is there (a FIFO would block, a device node would be written to).
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        except FileExistsError:
            raise RegistryError("registry temporary file %s exists and is not a file this module can replace "
                                "(a directory?); remove it and run again" % tmp)
        try:
            conn = open_database(tmp, readonly=False)
            try:
                _store.create_database(conn, state)
            finally:
                conn.close()
            os.replace(tmp, self.path)
        except BaseException as exc:
            for leftover in (tmp, tmp + "-journal"):
                with contextlib.suppress(OSError):
                    os.unlink(leftover)  # a full disk must not keep the space of a half-written copy
            if isinstance(exc, sqlite3.Error):
                raise _storage_error(self.path, exc)
            raise
        self._fsync_directory()
        self._conn = open_database(self.path, readonly=False)

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
