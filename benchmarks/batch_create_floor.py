# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Batch creation against the kernel's floor, whole processes, interleaved; and a run's peak RSS.

    sudo .venv/bin/python benchmarks/batch_create_floor.py [--sizes 1,1000,5000] [--rounds 3]

Floor: a raw Python loop (open /dev/net/tun, TUNSETIFF exclusive, TUNSETPERSIST, close) as a
process. Module: tap_device as a process (``python -m ...tap_device ARGS.json``) with a batch of
N devices and a new registry each time. Both run in a throwaway namespace ntt-<random>; the
devices are deleted between runs as one link group (synchronous, unlike deleting a namespace).
Per device = (time(N) - time(1)) / (N - 1). Prints medians (min-max) and the ratios.
Speed is for reading, never a verdict.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, "tests", "output", "collections")
MODULE = "ansible_collections.netdev.tuntap.plugins.modules.tap_device"
GROUP = 0x4E53FFFF

RAW_LOOP = """
import fcntl, os, struct, sys
TUNSETIFF, TUNSETPERSIST = 0x400454CA, 0x400454CB
flags = 0x0002 | 0x1000 | 0x8000      # IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL
for number in range(int(sys.argv[1])):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", b"raw%d" % number, flags))
    fcntl.ioctl(fd, TUNSETPERSIST, 1)
    os.close(fd)
"""

RSS_WRAPPER = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def sh(*argv, **kwargs):
    return subprocess.run(list(argv), check=True, **kwargs)


def env() -> dict:
    return dict(os.environ, PYTHONPATH=COLLECTIONS)


def module_args(path: str, ns: str, registry: str, count: int) -> None:
    devices = [{"name": "bm%d", "lease": "g%d/n0" % number} for number in range(count)]
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": {"netns": ns, "registry": registry, "devices": devices}}, handle)


def clear(ns: str) -> None:
    """Delete every tun/tap of ``ns`` as one link group (the kernel waits one grace period for all)."""
    sh("ip", "netns", "exec", ns, sys.executable, "-c", """
import sys
sys.path.insert(0, %r)
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _rtnl
links = [l["index"] for l in _rtnl.dump_links() if l["kind"] == "tun"]
if links:
    assert not any(_rtnl.set_groups([(i, %d) for i in links]))
    assert _rtnl.delete_group(%d) == 0
""" % (COLLECTIONS, GROUP, GROUP))


def timed(argv, **kwargs) -> float:
    started = time.perf_counter()
    sh(*argv, **kwargs)
    return time.perf_counter() - started


def run_raw(ns: str, count: int) -> float:
    took = timed(["ip", "netns", "exec", ns, sys.executable, "-c", RAW_LOOP, str(count)])
    clear(ns)
    return took


def run_module(ns: str, work: str, count: int) -> float:
    registry = os.path.join(work, "reg-%s" % secrets.token_hex(4), "registry.json")
    args = os.path.join(work, "args.json")
    module_args(args, ns, registry, count)
    took = timed(["ip", "netns", "exec", ns, sys.executable, "-m", MODULE, args], env=env(),
                 stdout=subprocess.DEVNULL)
    clear(ns)
    shutil.rmtree(os.path.dirname(registry), ignore_errors=True)
    return took


def peak_rss_mb(ns: str, work: str) -> float:
    registry = os.path.join(work, "rss", "registry.json")
    args = os.path.join(work, "args.json")
    module_args(args, ns, registry, 1)
    out = subprocess.run([sys.executable, "-c", RSS_WRAPPER, sys.executable, "-m", MODULE, args], env=env(),
                         check=True, capture_output=True, text=True).stdout
    clear(ns)
    shutil.rmtree(os.path.dirname(registry), ignore_errors=True)
    return int(out.strip()) / 1024


def shown(values) -> str:
    return "%.3f s (%.3f-%.3f)" % (statistics.median(values), min(values), max(values))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--sizes", default="1,1000,5000")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    sizes = sorted({1} | {int(size) for size in options.sizes.split(",")})
    ns = "ntt-bench-%s" % secrets.token_hex(3)
    work = tempfile.mkdtemp(prefix="ntt-bench-")
    sh("ip", "netns", "add", ns)
    times: dict = {(kind, size): [] for kind in ("raw", "module") for size in sizes}
    try:
        for _round in range(options.rounds):
            for size in sizes:
                times["raw", size].append(run_raw(ns, size))
                times["module", size].append(run_module(ns, work, size))
        rss = [peak_rss_mb(ns, work) for _run in range(3)]
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(work, ignore_errors=True)
    print("machine: %s, %d CPUs, kernel %s, python %s; %d rounds, interleaved"
          % (platform.machine(), os.cpu_count(), platform.release(), platform.python_version(), options.rounds))
    for size in sizes:
        print("N=%-5d raw loop %s   tap_device %s   whole-process ratio %.2fx"
              % (size, shown(times["raw", size]), shown(times["module", size]),
                 statistics.median(times["module", size]) / statistics.median(times["raw", size])))
    for size in sizes:
        if size == 1:
            continue
        per = {kind: (statistics.median(times[kind, size]) - statistics.median(times[kind, 1])) / (size - 1)
               for kind in ("raw", "module")}
        print("N=%-5d per device: raw %.1f us, tap_device %.1f us, ratio %.2fx"
              % (size, per["raw"] * 1e6, per["module"] * 1e6, per["module"] / per["raw"]))
    print("peak RSS, one device: %.1f MB (min %.1f, max %.1f)" % (statistics.median(rss), min(rss), max(rss)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
