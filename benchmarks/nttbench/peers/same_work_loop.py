"""The floor with tap_device's per-device work: COUNT taps PREFIX0.. in namespace NS.

    same_work_loop.py NS PREFIX COUNT

What tap_device does for a leased tap with its defaults, by hand and nothing else: open
/dev/net/tun, TUNSETIFF (tap, no packet info, EXCL), IPv6 off through
/proc/sys/net/ipv6/conf/NAME/disable_ipv6 (before the link first comes up), the descriptor
held; one netlink send sets every device's alias (the mark) while it is held; TUNSETPERSIST,
close; one netlink send brings them all up. The raw loop (raw_loop.py) leaves out the IPv6
switch, the mark and bringing the device up, which the module cannot leave out: this peer
says how much of the distance between the module and the raw loop is that work."""
import fcntl
import os
import socket
import struct
import sys

from ntt_setns import enter

TUNSETIFF, TUNSETPERSIST = 0x400454CA, 0x400454CB
FLAGS = 0x0002 | 0x1000 | 0x8000  # IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL
RTM_NEWLINK, NLMSG_ERROR = 16, 2
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
IFLA_IFALIAS, IFF_UP = 20, 0x1
SOL_NETLINK, NETLINK_CAP_ACK, SO_RCVBUFFORCE = 270, 10, 33
PART = 512          # devices held at once, and requests per send
MARK = '{"l":"bench/%d","t":"bt%%d","r":"0123abcd"}'   # about the length of the module's mark


def request(seq: int, index: int, alias: str | None, up: bool) -> bytes:
    attrs = b""
    if alias is not None:
        payload = alias.encode() + b"\0"
        attrs = struct.pack("=HH", 4 + len(payload), IFLA_IFALIAS) + payload + b"\0" * (-len(payload) % 4)
    flags, change = (IFF_UP, IFF_UP) if up else (0, 0)
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change) + attrs
    return struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def send(sock, messages: list) -> None:
    """Send the requests in one go and wait for every answer; any error ends the run."""
    sock.sendall(b"".join(messages))
    pending = len(messages)
    while pending:
        data = sock.recv(1 << 20)
        offset = 0
        while offset + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", data, offset + 16)[0]
                if code:
                    sys.exit("netlink: %s" % os.strerror(code))
                pending -= 1
            offset += (length + 3) & ~3


def main() -> None:
    ns, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    enter(ns)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    sock.bind((0, 0))
    sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)   # room for every answer of a send
    seq = 0
    for start in range(0, count, PART):
        held = []
        for number in range(start, min(count, start + PART)):
            name = "%s%d" % (prefix, number)
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), FLAGS))
            with open("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % name, "w", encoding="ascii") as knob:
                knob.write("1")
            held.append((fd, name, socket.if_nametoindex(name), number))
        marks = []
        for fd, name, index, number in held:
            seq += 1
            marks.append(request(seq, index, MARK % number, False))
        send(sock, marks)
        for fd, _name, _index, _number in held:
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
            os.close(fd)
        ups = []
        for _fd, _name, index, _number in held:
            seq += 1
            ups.append(request(seq, index, None, True))
        send(sock, ups)
    sock.close()


main()
