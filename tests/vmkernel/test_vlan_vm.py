"""The Linux bridge VLAN path on a kernel that has bridge VLAN filtering: Debian's cloud kernel
booted once under QEMU (TCG) from the initramfs that build.py makes, running guest_checks.py.

One test per check the guest reports, so a failure names the check and its reason; the whole
console is kept in tests/output/vmkernel/console.log.
"""
from __future__ import annotations

import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import boot  # noqa: E402
import guest_checks  # noqa: E402  (only for the names of its checks; it runs in the VM)

OUT = os.path.join(os.path.dirname(HERE), "output", "vmkernel")
CHECKS = [function.__name__ for function in guest_checks.CHECKS]


def _missing() -> list:
    tools = ("qemu-system-x86_64", "busybox", "apt-get", "dpkg-deb", "modinfo")
    found = {tool: shutil.which(tool) is not None for tool in tools}
    found["busybox"] = found["busybox"] or os.path.exists("/bin/busybox")
    return [tool for tool in tools if not found[tool]]


@pytest.fixture(scope="module")
def vm():
    missing = _missing()
    if missing:
        message = "the VM tier needs %s (scripts/test.sh vlan_vm installs them)" % ", ".join(missing)
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(message + ", and CI is set")
        pytest.skip(message)
    result = boot.boot(OUT)
    print("VM tier: %s; build %.1f s, boot and checks %.1f s; initramfs %d bytes"
          % (result["guest_kernel"], result["build_seconds"], result["boot_seconds"], result["bytes"]))
    return result


def test_the_vm_ran_every_check(vm):
    assert not vm["timed_out"], "the VM did not finish in time; console: %s" % "\n".join(vm["lines"][-40:])
    assert vm["done"] is not None, "no NTT-DONE line; console: %s" % "\n".join(vm["lines"][-40:])
    assert "NTT-VM kernel" in (vm["guest_kernel"] or ""), "no kernel line"
    assert sorted(vm["checks"]) == sorted(CHECKS)


@pytest.mark.parametrize("name", CHECKS)
def test_check(vm, name):
    state, why = vm["checks"].get(name, ("MISSING", "the guest never reported it"))
    assert state == "PASS", "%s: %s %s (console: %s)" % (name, state, why, os.path.join(OUT, "console.log"))
