"""The tun ioctl numbers _tun computes for this machine, used on the real /dev/net/tun.

The unit test checks every architecture's numbers against the headers; this one shows the kernel
accepts the running machine's, including the read ioctls (TUNGETFEATURES, TUNGETIFF) and
TUNSETQUEUE that nothing else uses yet.
"""
from __future__ import annotations

import json
import os
import subprocess

import ntt_helpers as h

_PROBE = r"""
import fcntl, json, os, struct, sys
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _tun

out = {}
fd = os.open(_tun.TUN_DEVICE, os.O_RDWR)
out["features"] = struct.unpack("I", fcntl.ioctl(fd, _tun.TUNGETFEATURES, b"\0" * 4))[0]
flags = _tun.IFF_TAP | _tun.IFF_NO_PI | _tun.IFF_MULTI_QUEUE
fcntl.ioctl(fd, _tun.TUNSETIFF, _tun._IFREQ.pack(b"ntt-probe0", flags))
name, got = _tun._IFREQ.unpack(fcntl.ioctl(fd, _tun.TUNGETIFF, b"\0" * _tun._IFREQ.size))
out["getiff"] = [name.split(b"\0", 1)[0].decode(), got]
# A queue can detach itself from a multi-queue device (IFF_DETACH_QUEUE 0x0400) and re-attach.
fcntl.ioctl(fd, _tun.TUNSETQUEUE, _tun._IFREQ.pack(b"", 0x0400))
fcntl.ioctl(fd, _tun.TUNSETQUEUE, _tun._IFREQ.pack(b"", 0x0200))
print(json.dumps(out))
sys.stdout.flush()
sys.stdin.read()  # hold the device until the test has looked at it
"""


def test_running_machine_numbers_work_on_the_kernel(ns):
    env = dict(os.environ, PYTHONPATH=h.COLLECTIONS_ROOT)
    proc = subprocess.Popen(["ip", "netns", "exec", ns, h.PYTHON, "-c", _PROBE], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        out = json.loads(line)
        shown = h.tun_info(ns, "ntt-probe0")
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()
    wanted = h.IFF_TUN | h.IFF_TAP | h.IFF_NO_PI | h.IFF_MULTI_QUEUE | h.IFF_VNET_HDR
    assert out["features"] & wanted == wanted, hex(out["features"])
    assert out["getiff"][0] == "ntt-probe0"
    assert out["getiff"][1] & (h.IFF_TAP | h.IFF_NO_PI | h.IFF_MULTI_QUEUE) == \
        h.IFF_TAP | h.IFF_NO_PI | h.IFF_MULTI_QUEUE
    assert shown["type"] == "tap" and shown["multi_queue"] is True, shown
    assert "ntt-probe0" not in h.tun_names(ns)  # not persistent: gone with the descriptor
