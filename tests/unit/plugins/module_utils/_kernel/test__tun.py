"""The tun ioctl numbers on every architecture, against the values the kernel's headers give.

The expected numbers are written out by hand from the UAPI headers (cited in _tun.py), as
_IOC(dir, 'T', nr, sizeof(int)) = dir << (16 + size_bits) | 4 << 16 | 0x54 << 8 | nr:

generic (include/uapi/asm-generic/ioctl.h: 14 size bits, _IOC_WRITE 1, _IOC_READ 2):
  TUNSETIFF = _IOW('T', 202, int) = 1 << 30 | 0x00040000 | 0x5400 | 0xCA = 0x400454CA
  TUNGETIFF = _IOR('T', 210, unsigned int) = 2 << 30 | 0x00040000 | 0x5400 | 0xD2 = 0x800454D2
alpha, mips, powerpc, sparc (13 size bits, _IOC_READ 2, _IOC_WRITE 4):
  TUNSETIFF = 4 << 29 | 0x00040000 | 0x5400 | 0xCA = 0x800454CA
  TUNGETIFF = 2 << 29 | 0x00040000 | 0x5400 | 0xD2 = 0x400454D2
parisc (14 size bits, but _IOC_WRITE 2, _IOC_READ 1):
  TUNSETIFF = 2 << 30 | 0x00040000 | 0x5400 | 0xCA = 0x800454CA
  TUNGETIFF = 1 << 30 | 0x00040000 | 0x5400 | 0xD2 = 0x400454D2
(The other numbers: TUNSETPERSIST 203 = 0xCB, TUNSETOWNER 204 = 0xCC, TUNSETGROUP 206 = 0xCE,
TUNGETFEATURES 207 = 0xCF (read), TUNSETQUEUE 217 = 0xD9.)
"""
from __future__ import annotations

import platform

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils._kernel import _tun

GENERIC = {
    "TUNSETIFF": 0x400454CA,
    "TUNSETPERSIST": 0x400454CB,
    "TUNSETOWNER": 0x400454CC,
    "TUNSETGROUP": 0x400454CE,
    "TUNGETFEATURES": 0x800454CF,
    "TUNGETIFF": 0x800454D2,
    "TUNSETQUEUE": 0x400454D9,
}
# alpha, mips, powerpc, sparc; parisc reaches the same numbers through its swapped bits.
WRITE_IS_TOP_BIT = {
    "TUNSETIFF": 0x800454CA,
    "TUNSETPERSIST": 0x800454CB,
    "TUNSETOWNER": 0x800454CC,
    "TUNSETGROUP": 0x800454CE,
    "TUNGETFEATURES": 0x400454CF,
    "TUNGETIFF": 0x400454D2,
    "TUNSETQUEUE": 0x800454D9,
}

MACHINES = [
    # (platform.machine(), family, expected numbers)
    ("x86_64", "generic", GENERIC),
    ("i686", "generic", GENERIC),
    ("i386", "generic", GENERIC),
    ("aarch64", "generic", GENERIC),
    ("armv7l", "generic", GENERIC),
    ("armv6l", "generic", GENERIC),
    ("s390x", "generic", GENERIC),
    ("riscv64", "generic", GENERIC),
    ("loongarch64", "generic", GENERIC),
    ("ppc64le", "powerpc", WRITE_IS_TOP_BIT),
    ("ppc64", "powerpc", WRITE_IS_TOP_BIT),
    ("ppc", "powerpc", WRITE_IS_TOP_BIT),
    ("mips", "mips", WRITE_IS_TOP_BIT),
    ("mips64", "mips", WRITE_IS_TOP_BIT),
    ("sparc", "sparc", WRITE_IS_TOP_BIT),
    ("sparc64", "sparc", WRITE_IS_TOP_BIT),
    ("alpha", "alpha", WRITE_IS_TOP_BIT),
    ("parisc", "parisc", WRITE_IS_TOP_BIT),
    ("parisc64", "parisc", WRITE_IS_TOP_BIT),
]


@pytest.mark.parametrize("machine, family, expected", MACHINES, ids=[m[0] for m in MACHINES])
def test_ioctl_numbers_match_the_kernel_headers(machine, family, expected):
    assert _tun.arch_family(machine) == family
    assert {name: hex(n) for name, n in _tun.tun_ioctls(machine).items()} == \
        {name: hex(n) for name, n in expected.items()}


@pytest.mark.parametrize("family, none_value", [("generic", 0), ("powerpc", 1), ("parisc", 0)])
def test_ioc_none_direction(family, none_value):
    """_IO('T', 0) carries the NONE direction: 0 in the generic and parisc layouts, bit 29 in
    the 3-bit ones (OSF/1's non-zero _IOC_NONE)."""
    layout = _tun.IOC_LAYOUTS[family]
    assert layout.none == none_value
    assert _tun.ioc(layout, layout.none, ord("T"), 0, 0) == (0x20005400 if none_value else 0x5400)


def test_size_that_does_not_fit_the_layout_is_refused():
    with pytest.raises(ValueError):
        _tun.ioc(_tun.IOC_LAYOUTS["powerpc"], 4, ord("T"), 0, 1 << 13)


def test_module_constants_are_those_of_the_running_machine():
    here = _tun.tun_ioctls(platform.machine())
    assert {name: getattr(_tun, name) for name in here} == here
