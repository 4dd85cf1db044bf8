# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark: finding holders and removing many taps, as root.

    .venv/bin/python benchmarks/removal_bench.py                 # 1000 devices, 1000 holder processes
    .venv/bin/python benchmarks/removal_bench.py --devices 200   # a quick check

In a throwaway namespace ntt-bench-<random> with a throwaway registry:
  1. tap_device makes N leased taps in one batch call.
  2. N processes (`sleep`) in that namespace each hold one of them (an attached tun fd), with
     carrier forced off on all: the holder scan (_kernel._holders) is timed; a run that changes
     nothing is timed and must not scan; a removal of all N is timed and must be refused, naming
     a holder, with every device still there.
  3. The processes are stopped (by PID); tap_device removes all N leases in ONE call
     (remove_prefixes): timed (median of --trials, the devices made again for each), with the
     kernel batch's share; every device must be gone and every lease released.
  4. For reference, iproute2 deletes N taps already put in one link group (`ip link del group`):
     the kernel's own cost on this machine right now. And M devices (default 50) are deleted one
     netlink request each (pyroute2); the per-device cost is extrapolated to N.
Prints the figures and the ratios. Target: the N=1000 removal call under 0.5 s. Everything is
removed on exit, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import secrets
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, "tests", "output", "collections")
sys.path.insert(0, COLLECTIONS)

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def ensure_collection_link() -> None:
    # tests/conftest.py makes the same link: the worktree importable as ansible_collections.netdev.tuntap.
    link = os.path.join(COLLECTIONS, "ansible_collections", "netdev", "tuntap")
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)


def timed(func, *args, **kwargs):
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--one-by-one", type=int, default=50, help="devices deleted one request each")
    parser.add_argument("--repeat", type=int, default=5, help="holder scans timed (median)")
    parser.add_argument("--trials", type=int, default=3, help="removals of all devices timed (median)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("removal_bench: needs root (network namespaces)", file=sys.stderr)
        return 2
    ensure_collection_link()
    from ansible_collections.netdev.tuntap.plugins.module_utils import _engine, _world
    from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _holders
    from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import entered

    ns = "ntt-bench-" + secrets.token_hex(4)
    scratch = tempfile.mkdtemp(prefix="ntt-bench-")
    os.chmod(scratch, 0o700)
    registry = os.path.join(scratch, "reg", "registry.json")
    sleepers: list = []
    n = args.devices
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        base = {"netns": ns, "registry": registry}
        devices = [{"name": "vmb%d", "lease": "bench/%d" % i} for i in range(n)]
        t_create, made = timed(_engine.run, dict(base, devices=devices))
        names = [d["name"] for d in made["devices"]]
        assert len(set(names)) == n
        print("created %d leased taps in one call: %.2f s" % (n, t_create))

        # -- N holder processes, carrier forced off --------------------------------------------
        with entered(ns):
            for name in names:
                fd = os.open("/dev/net/tun", os.O_RDWR)
                fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI))
                sleepers.append(subprocess.Popen(["sleep", "600"], pass_fds=(fd,), stdin=subprocess.DEVNULL))
                os.close(fd)
        batch = "\n".join("link set %s carrier off" % name for name in names) + "\n"
        subprocess.run(["ip", "-n", ns, "-batch", "-"], input=batch, text=True, check=True)
        nproc = len([p for p in os.listdir("/proc") if p.isdigit()])
        key = _holders.namespace_key("/run/netns/" + ns)
        scans = []
        for _scan in range(args.repeat):
            seconds, found = timed(_holders.holders, {key: set(names)})
            scans.append(seconds)
        held = sum(1 for pids in found.values() if pids)
        assert held == n, "holders found for %d of %d devices" % (held, n)
        assert sorted(p for pids in found.values() for p in pids) == sorted(p.pid for p in sleepers)
        scan = statistics.median(scans)
        print("holder scan: %d devices, %d holder processes (%d processes on the machine): %.1f ms median "
              "of %d (%.1f us per holder process)" % (n, len(sleepers), nproc, scan * 1e3, args.repeat,
                                                      scan * 1e6 / len(sleepers)))

        calls = []
        real_holders = _world._holders.holders
        _world._holders.holders = lambda wanted: calls.append(1) or real_holders(wanted)
        try:
            t_nochange, again = timed(_engine.run, dict(base, devices=devices))
            assert again["changed"] is False and not calls, "a no-change run must not look for holders"
            t_refused = time.perf_counter()
            try:
                _engine.run(dict(base, remove_prefixes=["bench/"]))
                raise AssertionError("the removal of held devices was not refused")
            except _engine.TapError as exc:
                assert "is in use (held by PID" in str(exc), str(exc)
            t_refused = time.perf_counter() - t_refused
            assert len(calls) == 1
        finally:
            _world._holders.holders = real_holders
        left = _world.read_links(ns)
        assert all(name in left for name in names), "a refused removal deleted devices"
        print("run with no change (%d leases): %.3f s, holder scans: 0" % (n, t_nochange))
        print("removal refused (every tap held, carrier off): %.3f s, holder scans: 1" % t_refused)

        for proc in sleepers:
            proc.kill()
        for proc in sleepers:
            proc.wait()
        sleepers.clear()

        # -- one call removes all N (made again for each trial) ---------------------------------
        from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._links import Links
        real_delete_many = Links.delete_many
        kernel: list = []

        def timed_delete_many(self, *a, **kw):
            seconds, gone = timed(real_delete_many, self, *a, **kw)
            kernel.append(seconds)
            return gone

        Links.delete_many = timed_delete_many
        removals = []
        try:
            for trial in range(args.trials):
                if trial:
                    _engine.run(dict(base, devices=devices))
                names = [d["name"] for d in _engine.run(dict(base, devices=devices), check_mode=True)["devices"]]
                t_remove, removed = timed(_engine.run, dict(base, remove_prefixes=["bench/"]))
                assert len(removed["pruned"]) == n
                left = _world.read_links(ns)
                assert not set(names) & set(left), "devices left after the removal"
                assert not _engine.run(dict(base, remove_prefixes=["bench/"]))["changed"]
                removals.append(t_remove)
        finally:
            Links.delete_many = real_delete_many
        t_remove = statistics.median(removals)
        print("removal of %d leased taps in one call (remove_prefixes): median %.3f s of %d (%s), of which the "
              "kernel batch (link group set + delete) %.3f s; %.0f us per device; target < 0.5 s: %s"
              % (n, t_remove, len(removals), ", ".join("%.3f" % t for t in removals), statistics.median(kernel),
                 t_remove * 1e6 / n, "met" if t_remove < 0.5 else "NOT met"))
        with open("/proc/loadavg", encoding="ascii") as handle:
            print("load average while measuring: %s" % " ".join(handle.read().split()[:3]))

        # -- the kernel's own floor: iproute2 doing the same group delete ---------------------------
        subprocess.run(["ip", "-n", ns, "-batch", "-"], text=True, check=True,
                       input="".join("tuntap add dev ref%d mode tap\nlink set ref%d up\n" % (i, i) for i in range(n)))
        subprocess.run(["ip", "-n", ns, "-batch", "-"], text=True, check=True,
                       input="".join("link set ref%d group 77\n" % i for i in range(n)))
        t_ip, _done = timed(subprocess.run, ["ip", "-n", ns, "link", "del", "group", "77"], check=True)
        assert not any(name.startswith("ref") for name in _world.read_links(ns))
        print("for reference, iproute2 on %d taps already in one group: `ip link del group` %.3f s" % (n, t_ip))

        # -- the old way, one request per device -------------------------------------------------
        m = args.one_by_one
        subprocess.run(["ip", "-n", ns, "-batch", "-"], text=True, check=True,
                       input="".join("tuntap add dev one%d mode tap\n" % i for i in range(m)))
        from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel
        with entered(ns):
            with IPRoute() as ipr:
                indexes = [ipr.link_lookup(ifname="one%d" % i)[0] for i in range(m)]
                start = time.perf_counter()
                for index in indexes:
                    ipr.link("del", index=index)
                one = (time.perf_counter() - start) / m
        print("one request per device: %.1f ms per device (%d measured), %.1f s for %d"
              % (one * 1e3, m, one * n, n))
        print("ratio one-by-one / one batch call at %d devices: %.0fx" % (n, one * n / t_remove))
        return 0
    finally:
        for proc in sleepers:
            proc.send_signal(signal.SIGKILL)
        for proc in sleepers:
            proc.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
