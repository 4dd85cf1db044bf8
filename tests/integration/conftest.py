"""Fixtures for the integration tests (real devices, root only).

Every device these tests make lives in a network namespace a fixture made
(``ntt-<random hex>``) and deletes again in teardown, whatever the test did.
Every test gets its own registry path under its (0700) ``tmp_path``.
Helpers (link listing, API/ansible runners) live in ntt_helpers.py.
"""
from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import signal
import stat
import subprocess
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # so test modules can `import ntt_helpers` under any import mode
    sys.path.insert(0, _HERE)

import ntt_helpers as h  # noqa: E402

if h.COLLECTIONS_ROOT not in sys.path:
    # tests/conftest.py makes the collection importable; when pytest's rootdir/confcutdir
    # keeps it from being loaded (e.g. `pytest tests/integration` without an ini file),
    # run it by path so the link and ANSIBLE_COLLECTIONS_PATH exist all the same.
    _spec = importlib.util.spec_from_file_location(
        "_netdev_tuntap_tests_conftest", os.path.join(h.REPO_ROOT, "tests", "conftest.py"))
    _spec.loader.exec_module(importlib.util.module_from_spec(_spec))


def pytest_configure(config):
    for line in (
        "root: needs root (CAP_NET_ADMIN, ip netns); skipped when not root, fails in CI",
        "integration: makes real devices inside throwaway network namespaces",
        "ansible: runs the real ansible / ansible-playbook executables",
        "qemu: attaches a real qemu-system-x86_64 to a tap",
        "slow: takes a few seconds or more",
        "ovs: needs Open vSwitch (a private ovsdb-server and ovs-vswitchd per test; the ovs stage)",
    ):
        config.addinivalue_line("markers", line)


@pytest.fixture(autouse=True)
def _require_root(request):
    if request.node.get_closest_marker("root") and os.geteuid() != 0:
        message = "integration tests need root (ip netns, CAP_NET_ADMIN)"
        if h.in_ci():
            pytest.fail(message + ", and CI is set")
        pytest.skip(message)


@pytest.fixture
def make_ns():
    """Factory: ``make_ns()`` creates and returns a fresh ``ntt-<hex>`` namespace.

    ``make_ns.reserve()`` returns a name that does NOT exist, deleted in teardown should
    anything create it (to prove the module does not create namespaces).
    All are deleted in teardown, even when the test fails.
    """
    made: list[str] = []

    def make() -> str:
        name = h.new_ns_name()
        made.append(name)
        h.sh("ip", "netns", "add", name)
        return name

    def reserve() -> str:
        name = h.new_ns_name()
        made.append(name)
        return name

    make.reserve = reserve
    try:
        yield make
    finally:
        for name in made:
            h.delete_ns(name)


@pytest.fixture
def ns(make_ns) -> str:
    return make_ns()


@pytest.fixture
def registry(tmp_path):
    """A registry path whose directory does not exist yet (the module makes it, 0700).

    tmp_path is 0700 under /tmp/pytest-of-root, so nothing on the way is writable by
    anyone but root.
    """
    if stat.S_IMODE(os.stat(tmp_path).st_mode) & 0o022:
        os.chmod(tmp_path, 0o700)
    return tmp_path / "reg" / "registry.json"


@pytest.fixture
def api(ns, registry) -> h.Api:
    return h.Api(ns, registry)


@pytest.fixture
def hold_tap():
    """Factory ``hold_tap(ns, name, mode="tap", multi_queue=False, extra_flags=0)``: a child in
    ``ns`` attaches to the device (TUNSETIFF) and holds it until the test ends.
    ``release(proc)`` lets go early."""
    started: list[subprocess.Popen] = []

    def stop(proc):
        with contextlib.suppress(Exception):
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def hold(netns: str, name: str, mode: str = "tap", multi_queue: bool = False,
             extra_flags: int = 0, detach: bool = False):
        flags = (h.IFF_TAP if mode == "tap" else h.IFF_TUN) | h.IFF_NO_PI | extra_flags
        if multi_queue:
            flags |= h.IFF_MULTI_QUEUE
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, h.PYTHON, "-c", h.HOLDER, name, str(flags)]
            + (["detach"] if detach else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        line = proc.stdout.readline()
        if line.strip() != "ready":
            stop(proc)
            raise AssertionError("holder for %s failed: %r %s" % (name, line, proc.stderr.read()))
        return proc

    hold.release = stop
    try:
        yield hold
    finally:
        for proc in started:
            stop(proc)


@pytest.fixture
def tun_world_openable():
    """/dev/net/tun mode 0666 during the test (0600 on these machines); old mode restored.

    An flock serialises concurrent test runs so that one never records another's 0666
    as "the old mode"."""
    with open("/run/lock/netdev-tuntap-tests-dev-net-tun.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = stat.S_IMODE(os.stat("/dev/net/tun").st_mode)
        os.chmod("/dev/net/tun", 0o666)
        try:
            yield
        finally:
            os.chmod("/dev/net/tun", old)


@pytest.fixture
def qemu():
    """Factory ``qemu(ns, ifname, user="nobody", queues=None)`` -> Popen of a QEMU with
    only a tap netdev (no guest), run in ``ns`` as ``user``. Its process group is killed
    in teardown."""
    binary = h.qemu_binary()
    started: list[subprocess.Popen] = []

    def start(netns: str, ifname: str, user: str = h.NOBODY, queues: int | None = None):
        netdev = "tap,id=n0,ifname=%s,script=no,downscript=no,vhost=off" % ifname
        if queues:
            netdev += ",queues=%d" % queues
        argv = ["ip", "netns", "exec", netns, "runuser", "-u", user, "--", binary,
                "-machine", "none", "-display", "none", "-monitor", "none", "-serial", "none",
                "-nodefaults", "-netdev", netdev]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        # SIGKILL the whole group (runuser and its QEMU): runuser answers SIGTERM by
        # waiting 2 s before killing its child, and a throwaway QEMU holds nothing.
        for proc in started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        for proc in started:
            proc.wait(timeout=10)


@pytest.fixture
def private_ovs(ns, tmp_path):
    """An Open vSwitch (ovsdb-server + ovs-vswitchd, userspace datapath) running inside ``ns``
    with private directories; stopped by PID in teardown. Missing binaries fail in CI."""
    import ntt_ovs  # pylint: disable=import-outside-toplevel

    missing = ntt_ovs.binaries_missing()
    if missing:
        message = "Open vSwitch is not installed (%s); scripts/test.sh ovs installs it" % ", ".join(missing)
        if h.in_ci():
            pytest.fail(message + ", and CI is set")
        pytest.skip(message)
    ovs = ntt_ovs.PrivateOvs(ns, tmp_path / "ovs")
    try:
        ovs.start()
        yield ovs
    finally:
        ovs.stop()
