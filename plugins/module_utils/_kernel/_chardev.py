# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""macvtap character devices: their numbers, the private nodes we hand out, and who holds them.

A macvtap's major:minor is only in sysfs (``/sys/class/macvtap/tapN/dev``, N = ifindex),
and /sys shows the devices of the network namespace that MOUNTED it, not of the thread's
current one. So the numbers are read by a forked child that stays in the caller's network
namespace, enters a private mount namespace, mounts a sysfs of its own there and reads
it: nothing is mounted where anyone else can see it, and the mount goes with the child.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import stat

from ansible_collections.netdev.tuntap.plugins.module_utils._nodes import DIR_MODE, NODE_ROOT, NodeState

CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
MNT_DETACH = 2
_CLASS_DIR = "/sys/class/macvtap"


class CharDevError(Exception):
    """A macvtap's character device could not be read or its node made (message is user-facing)."""


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))


def _read_in_private_sysfs() -> dict:
    """(In the child) {ifindex: [major, minor]} of every macvtap of the current network namespace."""
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # Private first, so that the sysfs mounted next never propagates to the host's mounts.
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    # Off with the inherited /sys first, as `ip netns exec` does: mounting the sysfs that is already
    # on top of /sys again (this namespace's own) fails with EBUSY.
    libc.umount2(b"/sys", MNT_DETACH)
    _check(libc.mount(b"sysfs", b"/sys", b"sysfs", 0, None), "mounting sysfs")
    numbers = {}
    if os.path.isdir(_CLASS_DIR):
        for entry in os.listdir(_CLASS_DIR):
            if not (entry.startswith("tap") and entry[3:].isdigit()):
                continue
            with open(os.path.join(_CLASS_DIR, entry, "dev"), encoding="ascii") as dev:
                major, minor = dev.read().strip().split(":")
            numbers[int(entry[3:])] = [int(major), int(minor)]
    return numbers


def read_numbers() -> dict:
    """{ifindex: (major, minor)} of the macvtap devices in the calling thread's network namespace."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        code = 0
        try:
            os.close(reader)
            payload = json.dumps({"numbers": _read_in_private_sysfs()})
        except BaseException as exc:  # pylint: disable=broad-exception-caught
            payload = json.dumps({"error": str(exc)})
            code = 1
        try:
            os.write(writer, payload.encode())
        finally:
            os._exit(code)  # pylint: disable=protected-access
    os.close(writer)
    try:
        chunks = []
        while True:
            chunk = os.read(reader, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(reader)
        os.waitpid(pid, 0)
    try:
        answer = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        answer = {}
    if "numbers" not in answer:
        raise CharDevError("reading the macvtap character devices from a private sysfs failed: %s (this needs "
                           "root with CAP_SYS_ADMIN)" % answer.get("error", "the reader exited without an answer"))
    return {int(index): tuple(pair) for index, pair in answer["numbers"].items()}


def node_state(path: str) -> NodeState | None:
    """The node at ``path`` as it is (None: nothing there)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    rdev = (os.major(info.st_rdev), os.minor(info.st_rdev)) if stat.S_ISCHR(info.st_mode) else None
    return NodeState(rdev, info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode))


def _make_dirs(directory: str) -> None:
    """The node directory and its parents up to NODE_ROOT, root's and 0755; nothing else is trusted."""
    parts = directory[len(NODE_ROOT):].strip("/").split("/")
    path = NODE_ROOT
    for part in [""] + parts:
        path = os.path.join(path, part) if part else path
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            pass
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or stat.S_IMODE(info.st_mode) & 0o022:
            raise CharDevError("%s must be a directory owned by root and writable only by root; it is not, so "
                               "no device node was made there" % path)


def make_node(path: str, wanted: NodeState) -> None:
    """Make (or remake) the node at ``path`` as ``wanted``; a temporary name and rename, so the
    path never shows a node with other numbers or a wider owner than wanted."""
    _make_dirs(os.path.dirname(path))
    temporary = "%s.new-%d" % (path, os.getpid())
    try:
        os.unlink(temporary)
    except FileNotFoundError:
        pass
    try:
        os.mknod(temporary, stat.S_IFCHR | wanted.mode, os.makedev(*wanted.rdev))
        os.chown(temporary, wanted.owner, wanted.group)
        os.chmod(temporary, wanted.mode)  # mknod's mode is cut by the umask
        os.rename(temporary, path)
    except OSError as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise CharDevError("making the device node %s failed: %s" % (path, exc.strerror or exc))


def set_node(path: str, wanted: NodeState) -> None:
    """Change owner, group and mode of an existing node that has the right numbers."""
    try:
        os.chown(path, wanted.owner, wanted.group, follow_symlinks=False)
        os.chmod(path, wanted.mode)
    except OSError as exc:
        raise CharDevError("changing the device node %s failed: %s" % (path, exc.strerror or exc))


def remove_node(path: str) -> None:
    """Remove the node at ``path`` if it is a character device, and its directory once empty."""
    found = node_state(path)
    if found is None or found.rdev is None:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CharDevError("removing the device node %s failed: %s" % (path, exc.strerror or exc))
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass  # other nodes are still there


def sweep_nodes(directory: str, keep: dict) -> list:
    """Remove the nodes in ``directory`` (one namespace's) that are not those of a present macvtap.

    ``keep`` maps each macvtap's name to its (major, minor). A node left behind by a device
    deleted outside the module would otherwise point at numbers the kernel hands to the next
    macvtap made anywhere, and give its owner that device. Returns the names removed.
    """
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    removed = []
    for entry in sorted(entries):
        path = os.path.join(directory, entry)
        found = node_state(path)
        if found is None or found.rdev is None or keep.get(entry) == found.rdev:
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise CharDevError("removing the stale device node %s failed: %s" % (path, exc.strerror or exc))
        removed.append(entry)
    try:
        os.rmdir(directory)
    except OSError:
        pass  # nodes are left in it
    return removed


def open_char_devices() -> dict:
    """{(major, minor): number of open descriptors} of the character devices any process has open.

    One pass over /proc/*/fd; processes that exit meanwhile are skipped.
    """
    counts: dict = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = "/proc/%s/fd" % pid
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                info = os.stat("%s/%s" % (fd_dir, fd))
            except OSError:
                continue
            if stat.S_ISCHR(info.st_mode):
                key = (os.major(info.st_rdev), os.minor(info.st_rdev))
                counts[key] = counts.get(key, 0) + 1
    return counts
