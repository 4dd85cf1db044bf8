"""A private libvirtd for the libvirt tier: its own network namespace, mount namespace and directories.

``libvirt`` (module scope) starts ``libvirtd`` inside a throwaway network namespace
``ntt-<hex>``, in a private mount namespace where /run, /etc/libvirt and /var are bind mounts
of a scratch directory (so nothing of the host's libvirt, if any, is seen or touched, and no
directory is made outside the scratch directory). Its QEMUs run in the same namespaces.
Teardown, also after a failure: every domain destroyed, the QEMUs and libvirtd stopped by PID,
the namespace deleted, the scratch directory removed, and a check that no process of it is left
(the private mounts go with the last process of their mount namespace).

With CI=true a missing libvirt is a failure; scripts/test.sh's libvirt stage installs it.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_INTEGRATION = os.path.join(os.path.dirname(_HERE), "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

import ntt_helpers as h  # noqa: E402

if h.COLLECTIONS_ROOT not in sys.path:
    _spec = importlib.util.spec_from_file_location(
        "_netdev_tuntap_tests_conftest", os.path.join(h.REPO_ROOT, "tests", "conftest.py"))
    _spec.loader.exec_module(importlib.util.module_from_spec(_spec))

LIBVIRTD = "/usr/sbin/libvirtd"

# libvirt 9.0 as Debian 12 packages it, run without systemd, virtlogd, cgroups or a qemu user.
QEMU_CONF = """\
user = "+0"
group = "+0"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""
LIBVIRTD_CONF = """\
listen_tls = 0
listen_tcp = 0
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""


def pytest_configure(config):
    config.addinivalue_line("markers", "libvirt: starts a private libvirtd and QEMU guests")
    config.addinivalue_line("markers", "root: needs root (CAP_NET_ADMIN, ip netns); fails in CI without it")


def _missing() -> list:
    need = [LIBVIRTD, shutil.which("virsh"), shutil.which("qemu-system-x86_64")]
    names = ["libvirtd", "virsh", "qemu-system-x86_64"]
    missing = [name for name, path in zip(names, need) if not path or not os.access(path, os.X_OK)]
    if not any(os.path.exists(os.path.join(d, "libvirt/connection-driver/libvirt_driver_qemu.so"))
               for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")):
        missing.append("libvirt's QEMU driver (libvirt-daemon-driver-qemu)")
    return missing


class Libvirt:
    """The running private libvirtd: ``virsh(...)``, its namespace, its scratch directory."""

    def __init__(self, netns: str, scratch: str):
        self.netns = netns
        self.scratch = scratch
        self.run_dir = os.path.join(scratch, "run")
        self.uri = "qemu:///system?socket=%s/libvirt/libvirt-sock" % self.run_dir
        self.proc = None

    def virsh(self, *args, check=True) -> subprocess.CompletedProcess:
        return h.sh("virsh", "-q", "-c", self.uri, *args, check=check, timeout=60)

    def qemu_pid(self, domain: str) -> int | None:
        try:
            with open(os.path.join(self.run_dir, "libvirt", "qemu", domain + ".pid"), encoding="ascii") as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def domains(self) -> list:
        out = self.virsh("list", "--all", "--name", check=False).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def log(self) -> str:
        path = os.path.join(self.scratch, "var", "log", "libvirt", "libvirtd.log")
        with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()[-4000:]
        return ""


def _free_id(database: str) -> int:
    used = set()
    with open(database, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit():
                used.add(int(fields[2]))
    return next(n for n in range(64000, 65000) if n not in used)


def _prepare(scratch: str) -> None:
    for sub in ("run", "etc-libvirt/qemu", "var/lib/libvirt", "var/log/libvirt", "var/cache/libvirt", "var/tmp"):
        os.makedirs(os.path.join(scratch, sub), exist_ok=True)
    os.symlink("/run", os.path.join(scratch, "var", "run"))
    os.symlink("/run/lock", os.path.join(scratch, "var", "lock"))
    for name in ("libvirt.conf", "libvirt-admin.conf"):
        with contextlib.suppress(OSError):
            shutil.copy2(os.path.join("/etc/libvirt", name), os.path.join(scratch, "etc-libvirt", name))
    with open(os.path.join(scratch, "etc-libvirt", "qemu.conf"), "w", encoding="ascii") as handle:
        handle.write(QEMU_CONF)
    with open(os.path.join(scratch, "etc-libvirt", "libvirtd.conf"), "w", encoding="ascii") as handle:
        handle.write(LIBVIRTD_CONF)
    # libvirtd 9.0 looks up its built-in QEMU user (libvirt-qemu) before it reads qemu.conf, and
    # only libvirt-daemon-system creates it. Copies of passwd/group that have it are bind-mounted
    # in the private mount namespace only: the host's user database is not changed.
    uid, gid = _free_id("/etc/passwd"), _free_id("/etc/group")
    shutil.copy2("/etc/passwd", os.path.join(scratch, "passwd"))
    shutil.copy2("/etc/group", os.path.join(scratch, "group"))
    with open(os.path.join(scratch, "passwd"), "a", encoding="utf-8") as handle:
        handle.write("libvirt-qemu:x:%d:%d:libvirt:/var/lib/libvirt:/usr/sbin/nologin\n" % (uid, gid))
    with open(os.path.join(scratch, "group"), "a", encoding="utf-8") as handle:
        handle.write("libvirt-qemu:x:%d:\n" % gid)


def _stop(pid: int, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; wait until the PID is gone (or reaped by us)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _processes_in(netns: str) -> list:
    """PIDs in network namespace ``netns`` (libvirtd and its QEMUs run there, nothing else)."""
    try:
        st = os.stat("/run/netns/" + netns)
    except OSError:
        return []
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            ns = os.stat("/proc/%s/ns/net" % pid)
            if (ns.st_dev, ns.st_ino) == (st.st_dev, st.st_ino):
                found.append(int(pid))
    return found


@pytest.fixture(scope="module")
def libvirt():
    missing = _missing()
    if missing:
        message = "libvirt is not installed (missing: %s); scripts/test.sh libvirt installs it" % ", ".join(missing)
        if h.in_ci():
            pytest.fail(message + ", and CI is set")
        pytest.skip(message)
    if os.geteuid() != 0:
        (pytest.fail if h.in_ci() else pytest.skip)("the libvirt tier needs root")
    netns = h.new_ns_name()
    scratch = tempfile.mkdtemp(prefix="ntt-libvirt-")
    os.chmod(scratch, 0o700)
    lv = Libvirt(netns, scratch)
    h.sh("ip", "netns", "add", netns)
    qemu_pids: set = set()
    try:
        _prepare(scratch)
        script = ("set -e; mount --bind {s}/run /run; mount --bind {s}/etc-libvirt /etc/libvirt; "
                  "mount --bind {s}/var /var; mount --bind {s}/passwd /etc/passwd; "
                  "mount --bind {s}/group /etc/group; exec {d}").format(s=scratch, d=LIBVIRTD)
        # ip netns exec and unshare exec (no fork): the PID is libvirtd's.
        lv.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            if lv.proc.poll() is not None:
                raise AssertionError("libvirtd exited with %s: %s\n%s"
                                     % (lv.proc.returncode, lv.proc.stdout.read(), lv.log()))
            if os.path.exists(os.path.join(lv.run_dir, "libvirt", "libvirt-sock")) and \
                    lv.virsh("version", check=False).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError("libvirtd did not answer within 90 s\n" + lv.log())
            time.sleep(0.2)
        lv.qemu_pids = qemu_pids
        yield lv
    finally:
        leftovers = []
        if lv.proc is not None:
            for domain in lv.domains() if lv.proc.poll() is None else []:
                pid = lv.qemu_pid(domain)
                if pid:
                    qemu_pids.add(pid)
                lv.virsh("destroy", domain, check=False)
            for pid in sorted(qemu_pids):
                _stop(pid)
            _stop(lv.proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                lv.proc.wait(timeout=30)
            leftovers = _processes_in(netns)
            for pid in leftovers:
                _stop(pid, timeout=5)
        h.delete_ns(netns)
        shutil.rmtree(scratch, ignore_errors=True)
        assert not leftovers, "processes of the private libvirtd were left and had to be killed: %s" % leftovers
        assert not os.path.exists(scratch)
