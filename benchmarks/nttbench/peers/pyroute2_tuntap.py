"""Peer: pyroute2's own tuntap creation, COUNT taps PREFIX0.. in namespace NS.

    pyroute2_tuntap.py NS PREFIX COUNT

IPRoute.link('add', kind='tuntap') opens /dev/net/tun in the calling process, so the process
enters the namespace first. no_pi as the other tools (pyroute2 sets packet info otherwise)."""
import sys

from ntt_setns import enter


def main() -> None:
    ns, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    enter(ns)
    from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel

    with IPRoute() as ipr:
        for i in range(count):
            ipr.link("add", ifname=prefix + str(i), kind="tuntap", mode="tap", ifr={"no_pi": 1})


main()
