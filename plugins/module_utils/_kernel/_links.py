# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Netlink: list links (through _rtnl), change and delete links (through _nl).

All calls talk to the namespace the thread was in when ``Links`` was made, so make
it inside ``_netns.entered(...)``. One dump per run is read into ``LinkInfo``
records. A change to one device is one request encoded by pyroute2's message class
(imported light, see _nl); ``configure_many`` changes many devices in one batch of
requests. Deleting a device waits for an RCU grace period (about 16 ms), so
``delete_many`` puts many devices into one link group and deletes the group in one
request, which the kernel unregisters together.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import random

from ansible_collections.netdev.tuntap.plugins.module_utils._device import LinkInfo, link_info
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _nl, _rtnl
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._rtnl import dump_links

# The module reports pyroute2 missing with missing_required_lib before it does anything; its
# message classes are imported (light, see _nl) on the first change that needs them.
PYROUTE2_IMPORT_ERROR = None if importlib.util.find_spec("pyroute2") else ImportError("No module named 'pyroute2'")

MIN_PYROUTE2 = _nl.MIN_PYROUTE2


# Link groups this module picks for a bulk delete: high enough to stay clear of the small numbers
# people give groups by hand (/etc/iproute2/group), and checked unused in the namespace each time.
GROUP_RANGE = (0x4E540000, 0x7FFFFFFF)


class LinkError(Exception):
    """A netlink request failed (message is user-facing)."""


class BulkDeleteError(LinkError):
    """A bulk delete did not remove every device; ``gone`` holds the ifindexes that are gone."""

    def __init__(self, message: str, gone: set):
        super().__init__(message)
        self.gone = gone


def link_settings(mtu: int | None = None, mac_address: str | None = None, master: int | None = None,
                  up: bool | None = None, alias: str | None = None, txqueuelen: int | None = None) -> dict:
    """The settings of one link request (see _nl.pack); None leaves a setting alone."""
    settings = {"mtu": mtu, "address": mac_address, "master": master, "alias": alias, "txqlen": txqueuelen,
                "up": up}
    return {key: value for key, value in settings.items() if value is not None}


def refusal(name: str, settings: dict, code: int) -> LinkError:
    """The error for a link request on ``name`` the kernel answered with errno ``code``."""
    shown = ", ".join("%s=%s" % ("state" if key == "up" else key,
                                 ("up" if value else "down") if key == "up" else value)
                      for key, value in sorted(settings.items()) if key != "alias")
    return LinkError("the kernel refused to set %s on %r: %s (errno %d)"
                     % (shown or "the alias", name, os.strerror(code), code))


class Links:
    """Netlink in the namespace the thread is in when this is made: reads through _rtnl,
    changes through one socket of _nl's (opened on the first change)."""

    def __init__(self):
        self._netns_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._socket = None

    @property
    def _nl(self) -> _nl.Rtnl:
        if self._socket is None:
            self._require_same_namespace()
            try:
                self._socket = _nl.Rtnl()
            except OSError as exc:
                raise LinkError("opening a netlink socket failed: %s" % (exc.strerror or exc))
        return self._socket

    def _require_same_namespace(self) -> None:
        # Sockets talk to the namespace they are made in: make them where this object was made.
        here = os.stat("/proc/thread-self/ns/net")
        mine = os.fstat(self._netns_fd)
        if (here.st_dev, here.st_ino) != (mine.st_dev, mine.st_ino):
            raise LinkError("internal error: netlink used outside the namespace it was opened for")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        os.close(self._netns_fd)

    def __enter__(self) -> "Links":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def dump(self) -> dict[str, LinkInfo]:
        """Every link in the namespace, by name."""
        self._require_same_namespace()
        try:
            return {info.name: info for info in map(link_info, dump_links())}
        except OSError as exc:
            raise LinkError("listing network links failed: %s" % (exc.strerror or exc))

    def get(self, name: str) -> LinkInfo | None:
        return self.dump().get(name)

    def _request(self, kind: int, index: int, settings: dict) -> int:
        """One request, encoded by pyroute2; its errno (0: done)."""
        sock = self._nl
        try:
            seq = sock.next_seq()
            return sock.request(_nl.encode(kind, seq, index, settings), seq)
        except _nl.NetlinkUnavailable as exc:
            raise LinkError(str(exc))
        except OSError as exc:
            raise LinkError("netlink failed: %s" % (exc.strerror or exc))

    def configure(self, name: str, index: int, mtu: int | None = None, mac_address: str | None = None,
                  master: int | None = None, up: bool | None = None, alias: str | None = None,
                  txqueuelen: int | None = None) -> None:
        """Apply the given settings in one request; None leaves a setting alone (master 0 detaches)."""
        settings = link_settings(mtu, mac_address, master, up, alias, txqueuelen)
        if not settings:
            return
        code = self._request(_nl.RTM_NEWLINK, index, settings)
        if code:
            raise refusal(name, settings, code)

    def configure_many(self, changes: list) -> list:
        """Apply (name, ifindex, settings) changes (settings from ``link_settings``) as one batch of
        requests; the LinkError of each, None where it was done. The kernel carries out each on
        its own, in order: one refused does not stop the others."""
        self._require_same_namespace()
        todo = [(name, index, settings) for name, index, settings in changes if settings]
        try:
            codes = iter(self._nl.links(_nl.RTM_NEWLINK, [(index, settings) for _name, index, settings in todo]))
        except OSError as exc:
            raise LinkError("netlink failed: %s" % (exc.strerror or exc))
        errors = []
        for name, _index, settings in changes:
            code = next(codes) if settings else 0
            errors.append(refusal(name, settings, code) if code else None)
        return errors

    def delete(self, name: str, index: int) -> None:
        code = self._request(_nl.RTM_DELLINK, index, {})
        if code and code != errno.ENODEV:  # ENODEV: already gone
            raise LinkError("deleting %r failed: %s (errno %d)" % (name, os.strerror(code), code))

    def delete_many(self, devices: list, groups_in_use) -> set:
        """Delete ``devices`` as one kernel batch; return the ifindexes gone.

        ``devices`` are (name, ifindex, link group) of each; ``groups_in_use`` the link groups of
        the namespace's devices (from the snapshot of this run). Each device is picked by its
        ifindex, never its name, so a device made since under the same name is not touched.
        They are moved into a link group no other device is in, and that group is deleted in
        one request: the kernel unregisters all of them or, refusing, none. Raises
        BulkDeleteError, with the ifindexes gone all the same (read back from the kernel), if
        any remains; the survivors get their old link group back.
        """
        self._require_same_namespace()
        if not devices:
            return set()
        names = {index: name for name, index, _group in devices}
        old_groups = {index: group for _name, index, group in devices}
        group = random.randint(*GROUP_RANGE)
        while group in groups_in_use:
            group = random.randint(*GROUP_RANGE)
        indexes = list(names)
        try:
            answers = _rtnl.set_groups([(index, group) for index in indexes])
            refused = [(index, code) for index, code in zip(indexes, answers) if code not in (0, errno.ENODEV)]
            if refused:
                index, code = refused[0]
                problem = "moving %r into link group %d failed: %s" % (names[index], group, os.strerror(code))
            else:
                code = _rtnl.delete_group(group)
                if code == 0 or (code == errno.ENODEV and all(a == errno.ENODEV for a in answers)):
                    return set(indexes)  # the group is gone, and with it every device put in it
                problem = "deleting link group %d failed: %s" % (group, os.strerror(code))
        except OSError as exc:
            problem = "netlink failed: %s" % (exc.strerror or exc)
        after = self._dump_or_assume_kept(names)
        left = sorted(index for index in indexes if index in after)
        self._restore_groups([(index, old_groups[index]) for index in left if after[index].link_group == group])
        gone = set(indexes) - set(left)
        if not left:
            return gone
        raise BulkDeleteError("%s; still present: %s" % (problem, ", ".join(repr(names[i]) for i in left)), gone)

    @staticmethod
    def _dump_or_assume_kept(names: dict) -> dict:
        try:
            return {link.index: link for link in map(link_info, dump_links())}
        except OSError:
            # Nothing can be read: count nothing as gone (a later run finds them gone and releases).
            return {index: LinkInfo(name, index, None, 0, None, None, False, False, None) for index, name in names.items()}

    @staticmethod
    def _restore_groups(pairs: list) -> None:
        try:
            _rtnl.set_groups(pairs)
        except OSError:
            pass  # best effort: a device left in a group nobody else uses harms nothing
