# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Entering a named network namespace (as made by ``ip netns add``) for a stretch of work.

A tap lands in the namespace the opening thread is in when it opens /dev/net/tun, and
a netlink socket talks to the namespace it was made in; so everything that touches
devices runs inside ``entered(netns)``. The module is one thread, so a setns() of the
calling thread is all it takes, and the original namespace is restored afterwards.
The host's namespace is the one the process started in, reached through a handle kept
from before it entered any other (remember_host), never "wherever the thread is now".
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000


class NetnsError(Exception):
    """A namespace that cannot be used (message is user-facing)."""


def validate_netns_name(name: str) -> None:
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\0" in name:
        raise NetnsError("netns %r is not a valid namespace name: it must be the name of an entry in "
                         "%s (non-empty, no '/', not '.' or '..')" % (name, NETNS_RUN_DIR))


def netns_path(name: str) -> str:
    validate_netns_name(name)
    return os.path.join(NETNS_RUN_DIR, name)


def netns_exists(name: str | None) -> bool:
    """Whether namespace ``name`` exists; the host's (None) always does."""
    return name is None or os.path.exists(netns_path(name))


def missing_netns_error(name: str) -> NetnsError:
    return NetnsError("netns %r does not exist (no %s); create it first, e.g. 'ip netns add %s'"
                      % (name, netns_path(name), name))


_LIBC: list = []


def _setns(fd: int) -> None:
    native = getattr(os, "setns", None)  # Python 3.12+
    if native is not None:
        native(fd, CLONE_NEWNET)
        return
    if not _LIBC:
        # find_library runs ldconfig in a subprocess: once per process, not at every namespace switch.
        _LIBC.append(ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True))
    if _LIBC[0].setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


_host_fd = None


def remember_host() -> None:
    """Keep a handle on the namespace this process started in: "the host's" for this run.

    Called before anything enters another namespace, so that a lease recorded in the host's
    namespace (netns None) is reached there, whichever namespace the task targets.
    """
    global _host_fd  # pylint: disable=global-statement
    if _host_fd is None:
        _host_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def _same_namespace(fd_a: int, fd_b: int) -> bool:
    a, b = os.fstat(fd_a), os.fstat(fd_b)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@contextlib.contextmanager
def entered(name: str | None):
    """Run the body inside namespace ``name``; None means the host's (see remember_host)."""
    remember_host()
    if name is None:
        path = "the host's namespace"
        target = os.dup(_host_fd)
    else:
        path = netns_path(name)
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise missing_netns_error(name)
    try:
        origin = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _same_namespace(origin, target):
                yield
                return
            try:
                _setns(target)
            except OSError as exc:
                if exc.errno == errno.EPERM:
                    raise NetnsError("entering netns %r needs root (CAP_SYS_ADMIN)" % name)
                raise NetnsError("%s is not a network namespace handle (%s)" % (path, exc.strerror))
            try:
                yield
            finally:
                _setns(origin)
        finally:
            os.close(origin)
    finally:
        os.close(target)
