"""Runs of the module that die or fail on purpose, for the crash and full-disk tests.

``run_forked`` runs ``_engine.run`` in a forked child of the test process (cheap: everything
is already imported) and can SIGKILL that child at the n-th occurrence of a named point:

  save         entering Registry.save (the intent before creating, or the result)
  replace      os.replace of a complete new database over the registry (a new, migrated or rebuilt one)
  commit       inside a save's transaction: its rows written, COMMIT about to run (a hot journal stays)
  create       right after a device was made (persistent, marked) and before it is recorded: in a
               batch, the devices after it are still held by descriptors, not persistent yet
  delete       right after a device (or a bulk of devices) was deleted and before that is recorded
  configure    right after a device's settings were changed (or those of a batch being created)

``fill_at`` instead fills the file system of the registry (space, then inodes) at such a
point, so that the next write meets a real ENOSPC. ``in_private_mount_namespace`` runs a
function in a child that has its own mount namespace (a tiny tmpfs made there disappears
with it, whatever happens to the test).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import signal
import time
import traceback

import ntt_helpers as h

POINTS = ("save", "replace", "commit", "create", "delete", "configure")
KILLED = "killed"
CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18


def _mods():
    import importlib
    base = "ansible_collections.netdev.tuntap.plugins.module_utils."
    return {name: importlib.import_module(base + name)
            for name in ("_engine", "_registry", "_store", "_apply", "_kernel._tun", "_kernel._links")}


def _fill(directory: str, what: str = "both") -> None:
    """Use up the space (``what`` "space"), the inodes ("inodes") or both of ``directory``'s file system."""
    if what in ("space", "both"):
        chunk = b"\0" * 4096
        with contextlib.suppress(OSError):
            with open(os.path.join(directory, "filler"), "wb", buffering=0) as handle:
                while True:
                    handle.write(chunk)
    if what == "space":
        return
    for number in range(1_000_000):
        try:
            os.close(os.open(os.path.join(directory, "filler-%d" % number), os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                return
            raise


def unfill(directory: str) -> None:
    for name in os.listdir(directory):
        if name.startswith("filler"):
            os.unlink(os.path.join(directory, name))


def _install(point: str, nth: int, action) -> None:
    """Call ``action()`` at the ``nth`` (1-based) occurrence of ``point``."""
    mods = _mods()
    count = [0]

    def hit():
        count[0] += 1
        if count[0] == nth:
            action()

    def after(owner, attr):
        original = getattr(owner, attr)

        def wrapper(*args, **kwargs):
            result = original(*args, **kwargs)
            hit()
            return result
        setattr(owner, attr, wrapper)

    def before(owner, attr):
        original = getattr(owner, attr)

        def wrapper(*args, **kwargs):
            hit()
            return original(*args, **kwargs)
        setattr(owner, attr, wrapper)

    if point == "save":
        before(mods["_registry"].Registry, "save")
    elif point == "replace":
        before(mods["_registry"].os, "replace")
    elif point == "commit":
        original = mods["_store"].write_changes

        def write_changes(conn, changes):
            conn.set_trace_callback(lambda statement: hit() if statement == "COMMIT" else None)
            try:
                return original(conn, changes)
            finally:
                conn.set_trace_callback(None)
        mods["_store"].write_changes = write_changes
    elif point == "create":
        after(mods["_kernel._tun"], "persist")
    elif point == "delete":
        after(mods["_kernel._links"].Links, "delete")
        if hasattr(mods["_kernel._links"].Links, "delete_many"):   # bulk removal (one netlink request)
            after(mods["_kernel._links"].Links, "delete_many")
    elif point == "configure":
        after(mods["_kernel._links"].Links, "configure")
        after(mods["_kernel._links"].Links, "configure_many")
    else:
        raise ValueError(point)


def _child(params: dict, check_mode: bool, kill_at, fill_at, fill_dir, fill_what, write_fd: int) -> None:
    outcome = {}
    try:
        if kill_at is not None:
            _install(kill_at[0], kill_at[1], lambda: os.kill(os.getpid(), signal.SIGKILL))
        if fill_at is not None:
            _install(fill_at[0], fill_at[1], lambda: _fill(fill_dir, fill_what))
        engine = _mods()["_engine"]
        try:
            outcome = {"result": engine.run(params, check_mode=check_mode)}
        except engine.TapError as exc:
            outcome = {"error": str(exc), "changed": exc.changed}
    except BaseException:  # pylint: disable=broad-except
        outcome = {"crash": traceback.format_exc()}
    with os.fdopen(write_fd, "w") as out:
        json.dump(outcome, out)


_WARM = []


def _warm() -> None:
    """Import in the parent what every child needs (pyroute2's message classes are imported on the
    first change that needs them)."""
    if not _WARM:
        mods = _mods()
        mods["_kernel._links"]._nl.messages()
        _WARM.append(True)


def run_forked(params: dict, check_mode: bool = False, kill_at=None, fill_at=None, fill_dir=None,
               fill_what: str = "both", timeout: float = 120.0) -> dict:
    """``{"result": ...}``, ``{"error": msg, "changed": bool}``, ``{"crash": traceback}`` or
    ``{"killed": True}`` (the child died of the planned SIGKILL)."""
    _warm()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_fd)
            _child(params, check_mode, kill_at, fill_at, fill_dir, fill_what, write_fd)
        except BaseException:  # pylint: disable=broad-except
            code = 70
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError("a run of %r did not end within %s s" % (params, timeout))
            time.sleep(0.005)
        text = pipe.read()
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return {KILLED: True}
    assert text, "the child ended with status %r and said nothing" % status
    outcome = json.loads(text)
    assert "crash" not in outcome, outcome["crash"]
    return outcome


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    return libc


def in_private_mount_namespace(function, timeout: float = 300.0):
    """Run ``function()`` in a forked child with a private mount namespace; return its JSON result."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_fd)
            libc = _libc()
            if libc.unshare(CLONE_NEWNS) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
            if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
                raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
            try:
                outcome = {"value": function()}
            except AssertionError as exc:
                outcome = {"assertion": str(exc)}
            except BaseException:  # pylint: disable=broad-except
                outcome = {"crash": traceback.format_exc()}
            with os.fdopen(write_fd, "w") as out:
                json.dump(outcome, out)
        except BaseException:  # pylint: disable=broad-except
            code = 70
        finally:
            os._exit(code)
    os.close(write_fd)
    deadline = time.monotonic() + timeout
    with os.fdopen(read_fd) as pipe:
        while not os.waitpid(pid, os.WNOHANG)[0]:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError("the private-mount scenario did not end within %s s" % timeout)
            time.sleep(0.01)
        text = pipe.read()
    assert text, "the private-mount child said nothing"
    outcome = json.loads(text)
    assert "crash" not in outcome, outcome["crash"]
    assert "assertion" not in outcome, outcome["assertion"]
    return outcome["value"]


def mount_tmpfs(directory: str, size: str = "64k", inodes: int = 16) -> None:
    """A tiny tmpfs at ``directory``; only inside ``in_private_mount_namespace``."""
    h.sh("mount", "-t", "tmpfs", "-o", "size=%s,nr_inodes=%d,mode=0700" % (size, inodes), "ntt-full", directory)


def mount_readonly(directory: str) -> None:
    h.sh("mount", "--bind", "-o", "ro", directory, directory)
    h.sh("mount", "-o", "remount,bind,ro", directory)
