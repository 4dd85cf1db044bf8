# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding tun holders in a /proc laid out as the kernel lays it out (a fake tree here)."""

from __future__ import annotations

import os

from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _holders


def process(proc, pid, netns_file, fds):
    """A /proc/PID with ns/net linked to ``netns_file`` and ``fds``: {fd: (target, fdinfo text)}."""
    base = proc / str(pid)
    (base / "ns").mkdir(parents=True)
    os.link(netns_file, base / "ns" / "net")  # same inode: the same namespace
    (base / "fd").mkdir()
    (base / "fdinfo").mkdir()
    for fd, (target, info) in fds.items():
        os.symlink(target, base / "fd" / str(fd))
        (base / "fdinfo" / str(fd)).write_text(info)


def test_holders_come_from_the_iff_line_of_tun_fds_in_the_device_s_namespace(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    proc.mkdir()
    here, there = tmp_path / "ns-here", tmp_path / "ns-there"
    here.write_text("")
    there.write_text("")
    tun = "pos:\t0\nflags:\t0102002\nmnt_id:\t25\nino:\t1067\niff:\tvmtap3\n"
    process(proc, 100, here, {3: ("/dev/net/tun", tun), 4: ("/dev/null", "iff:\tvmtap3\n")})
    process(proc, 101, here, {5: ("/dev/net/tun", "pos:\t0\nflags:\t02\n")})       # not attached
    process(proc, 102, there, {3: ("/dev/net/tun", tun)})                          # another namespace
    process(proc, 103, here, {7: ("/dev/net/tun", tun.replace("vmtap3", "vmtap4")),
                              8: ("/dev/net/tun", tun)})
    (proc / "self").mkdir()  # not a PID
    monkeypatch.setattr(_holders, "PROC", str(proc))
    key = _holders.namespace_key(str(here))
    found = _holders.holders({key: {"vmtap3", "vmtap4", "vmtap9"}})
    assert found == {(key, "vmtap3"): [100, 103], (key, "vmtap4"): [103], (key, "vmtap9"): []}


def test_no_namespace_asked_reads_no_process(tmp_path, monkeypatch):
    monkeypatch.setattr(_holders, "PROC", str(tmp_path / "missing"))
    assert _holders.holders({}) == {}
