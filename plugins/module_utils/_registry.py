# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry file: lock, load, recover, atomic save. Its content is a _ledger.Ledger.

Layout beside ``registry.json`` (docs/registry.md has the schema):
  registry.json.lock           flock'ed for the whole run, never unlinked
  registry.json.prev           the previous generation: the file as it was before the last run
                               that wrote (a hard link to it)
  registry.json.corrupt-STAMP  a file that could not be read, moved aside
"""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import json
import os
import stat
import time

from ansible_collections.netdev.tuntap.plugins.module_utils._ledger import SCHEMA_VERSION, Ledger, empty_state


class RegistryError(Exception):
    """A registry the module must refuse to use (message is user-facing)."""


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


def parse_state(text: str) -> dict:
    """Parse and structurally check a registry document; raise CorruptRegistry if it is not one."""
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
    counters = data.get("counters")
    _require(isinstance(counters, dict) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in counters.items()),
        "'counters' is not an object of template -> integer")
    leases = data.get("leases")
    _require(isinstance(leases, dict), "'leases' is not an object")
    for key, lease in leases.items():
        _require(isinstance(lease, dict) and isinstance(lease.get("name"), str),
                 "lease %r has no device name" % key)
        _require(all(_optional(lease.get(field), str) for field in ("template", "netns", "mode"))
                 and _optional(lease.get("id"), int) and _optional(lease.get("multi_queue"), bool)
                 and _optional(lease.get("ifindex"), int) and _optional(lease.get("boot_id"), str)
                 and _optional(lease.get("netns_inode"), int),
                 "lease %r has a field of the wrong type" % key)
    released = data.get("released")
    _require(isinstance(released, dict) and all(
        isinstance(v, dict) and _is_number(v.get("at")) and _optional(v.get("hold"), int)
        for v in released.values()),
        "'released' is not an object of name -> {at: time}")
    intent = data.get("intent")
    _require(intent is None or (isinstance(intent, dict) and isinstance(intent.get("items"), list)
                                and all(isinstance(item, dict) for item in intent["items"])),
             "'intent' is neither null nor an object with a list of 'items'")
    return {"version": SCHEMA_VERSION, "counters": counters, "leases": leases,
            "released": released, "intent": intent}


def dump_state(state: dict) -> bytes:
    return (json.dumps(state, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _writable_by_non_root(st: os.stat_result) -> bool:
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return True
    return st.st_uid != 0 and bool(st.st_mode & stat.S_IWUSR)


def _check_not_symlink_or_shared(path: str, kind: str) -> os.stat_result | None:
    """lstat ``path`` and refuse it if it is a symlink or writable by anyone but root."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise RegistryError("registry %s %s is a symlink; refusing to follow it (a link lets another "
                            "user redirect root's writes)" % (kind, path))
    if _writable_by_non_root(st):
        raise RegistryError("registry %s %s is writable by someone other than root (mode %04o, owner "
                            "uid %d); refusing it because another user could forge allocations. Allowed: "
                            "owned by root, not group- or world-writable"
                            % (kind, path, stat.S_IMODE(st.st_mode), st.st_uid))
    return st


class Registry:
    """One registry file. Use as a context manager: it takes the lock and loads the state.

    In check mode nothing on disk is created, locked, moved or written.
    """

    def __init__(self, path: str, check_mode: bool = False, clock=time.time):
        self.path = os.path.abspath(path)
        self.directory = os.path.dirname(self.path)
        self.check_mode = check_mode
        self.clock = clock
        self.warnings: list[str] = []
        self.recovered = False
        self.ledger = Ledger(empty_state(), clock)
        self._saved = None
        self._lock_fd = None
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
            self.ledger = Ledger(self._load(), self.clock)
        except BaseException:
            self._unlock()
            raise
        # A rebuilt registry differs from what is on disk (nothing, or a bad file): write it back.
        self._saved = None if self.recovered else copy.deepcopy(self.ledger.state)
        return self

    def __exit__(self, *exc) -> None:
        self._unlock()

    def _check_paths(self) -> None:
        st = _check_not_symlink_or_shared(self.directory, "directory")
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise RegistryError("registry directory %s is not a directory" % self.directory)
        st = _check_not_symlink_or_shared(self.path, "file")
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise RegistryError("registry file %s is not a regular file" % self.path)

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of runs killed mid-write (every write happens under the lock we hold)."""
        base = os.path.basename(self.path)
        prefixes = (base + ".tmp-", base + ".prev-")
        with os.scandir(self.directory) as entries:
            stale = [entry.path for entry in entries
                     if entry.name.startswith(prefixes) and entry.is_file(follow_symlinks=False)]
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
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self._lock_fd = os.open(self.path + ".lock", flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RegistryError("registry lock %s.lock is a symlink; refusing it" % self.path)
            raise RegistryError("cannot open registry lock %s.lock: %s" % (self.path, exc.strerror))
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    # -- reading and recovery -------------------------------------------
    def _read(self, path: str) -> str | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as handle:
            return handle.read().decode("utf-8", "replace")

    def _load(self) -> dict:
        try:
            text = self._read(self.path)
        except OSError as exc:
            return self._recover("it could not be read (%s)" % exc.strerror)
        if text is None:
            if os.path.lexists(self.path + ".prev"):
                # Our writes replace the file atomically, so a missing file beside a previous
                # generation means it was lost, not that the registry is new.
                return self._recover("the file is missing", move_aside=False)
            return empty_state()
        try:
            return parse_state(text)
        except CorruptRegistry as exc:
            return self._recover(str(exc))

    def _recover(self, reason: str, move_aside: bool = True) -> dict:
        self.recovered = True
        base = empty_state()
        source = "nothing (no usable previous generation)"
        try:
            prev = self._read(self.path + ".prev")
            if prev is not None:
                base = parse_state(prev)
                source = "the previous generation %s.prev" % self.path
        except (OSError, CorruptRegistry, RegistryError):
            pass
        if self.check_mode:
            self.warnings.append("registry %s is unusable: %s. A real run would move it aside and rebuild "
                                 "it from %s and the devices present" % (self.path, reason, source))
            return base
        kept = " It was moved aside to %s and" % self._move_aside() if move_aside else ""
        self.warnings.append("registry %s was unusable: %s.%s rebuilt from %s and the devices present"
                             % (self.path, reason, kept or " It was", source))
        return base

    def _move_aside(self) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock()))
        target = "%s.corrupt-%s" % (self.path, stamp)
        suffix = 1
        while os.path.lexists(target):
            target = "%s.corrupt-%s.%d" % (self.path, stamp, suffix)
            suffix += 1
        os.rename(self.path, target)
        self._fsync_directory()
        return target

    # -- writing ---------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return self.ledger.state != self._saved

    def save(self) -> None:
        """Atomically replace the file with the current state (no-op when unchanged)."""
        if self.check_mode:
            raise RuntimeError("registry save in check mode")
        if not self.dirty:
            return
        data = dump_state(self.ledger.state)
        tmp = "%s.tmp-%d" % (self.path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        # The previous generation is the registry as it was before this run: only the run's first
        # write keeps the old file. A later write (the result after the intent) replaces the
        # intent, which a recovery must not take for a run that never finished.
        if self.writes == 0 and os.path.exists(self.path):
            prev_tmp = "%s.prev-%d" % (self.path, os.getpid())
            if os.path.lexists(prev_tmp):
                os.unlink(prev_tmp)
            os.link(self.path, prev_tmp)
            os.replace(prev_tmp, self.path + ".prev")
        os.replace(tmp, self.path)
        self._fsync_directory()
        self._saved = copy.deepcopy(self.ledger.state)
        self.writes += 1

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
