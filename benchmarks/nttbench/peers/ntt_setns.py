"""Enter the network namespace /run/netns/NAME (Python 3.11 has no os.setns).

The peers open /dev/net/tun after this, so their devices land in that namespace. A name
that is not a benchmark namespace, or a failed setns, ends the process before anything is
created: never in the root namespace."""
import ctypes
import os
import sys

CLONE_NEWNET = 0x40000000


def enter(name: str) -> None:
    if not name.startswith("ntt-bench-") or "/" in name:
        sys.exit("refusing namespace %r: only ntt-bench-* namespaces" % name)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open("/run/netns/" + name, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            sys.exit("setns(%s): %s" % (name, os.strerror(err)))
    finally:
        os.close(fd)
