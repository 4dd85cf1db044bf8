"""The floor: COUNT taps made by the bare ioctls, one after the other, in namespace NS.

    raw_loop.py NS NAME_PREFIX START COUNT   # taps PREFIX<START> .. PREFIX<START+COUNT-1>
    raw_loop.py NS 'ntt%d' 0 1               # the kernel picks the number (its own %d)

Each tap: open /dev/net/tun, TUNSETIFF (tap, no packet info, EXCL), TUNSETPERSIST, close.
Prints the name of the last device made (the kernel's answer for a template) and the seconds
the loop itself took (the ioctls without the interpreter's start-up)."""
import fcntl
import os
import struct
import sys
import time

from ntt_setns import enter

TUNSETIFF, TUNSETPERSIST = 0x400454CA, 0x400454CB
FLAGS = 0x0002 | 0x1000 | 0x8000  # IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL


def main() -> None:
    ns, prefix, start, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    enter(ns)
    template = "%d" in prefix
    name = b""
    start_time = time.perf_counter()
    for i in range(start, start + count):
        wanted = prefix if template else prefix + str(i)
        fd = os.open("/dev/net/tun", os.O_RDWR)
        try:
            answer = fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", wanted.encode(), FLAGS))
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
        finally:
            os.close(fd)
        name = answer[:16].rstrip(b"\0")
    print(name.decode(), time.perf_counter() - start_time)


main()
