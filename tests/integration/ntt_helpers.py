"""Helpers for the integration tests (no fixtures here: see conftest.py).

Everything inspects the kernel with real tools (``ip -d -j link``), never only the
module's own return values.
"""
from __future__ import annotations

import grp
import importlib
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

INTEGRATION_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(INTEGRATION_DIR))
COLLECTIONS_ROOT = os.path.join(REPO_ROOT, "tests", "output", "collections")
ENGINE_MODULE = "ansible_collections.netdev.tuntap.plugins.module_utils._engine"
MODULE = "netdev.tuntap.tap_device"
ACTION_GROUP = "group/netdev.tuntap.tuntap"
PYTHON = sys.executable
VENV_BIN = os.path.dirname(sys.executable)
ALIAS_PREFIX = "netdev.tuntap "
NOBODY = "nobody"
NOBODY_UID = pwd.getpwnam(NOBODY).pw_uid
NOBODY_GID = pwd.getpwnam(NOBODY).pw_gid
NOBODY_GROUP = grp.getgrgid(NOBODY_GID).gr_name

# x86_64 / arm64 (generic _IOC encoding)
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_TAP, IFF_MULTI_QUEUE, IFF_NO_PI, IFF_VNET_HDR = 0x0001, 0x0002, 0x0100, 0x1000, 0x4000


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# --------------------------------------------------------------------------- commands

def sh(*argv, check=True, **kwargs) -> subprocess.CompletedProcess:
    """Run a command with text output captured; raise with its output when check fails."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    proc = subprocess.run([str(a) for a in argv], check=False, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError("command %r failed rc=%s\nstdout:\n%s\nstderr:\n%s"
                             % (argv, proc.returncode, proc.stdout, proc.stderr))
    return proc


def show(proc: subprocess.CompletedProcess) -> str:
    return "rc=%s\n--- stdout\n%s\n--- stderr\n%s" % (proc.returncode, proc.stdout, proc.stderr)


def netns_list() -> set[str]:
    out = sh("ip", "-j", "netns", "list").stdout.strip()
    return {entry["name"] for entry in json.loads(out)} if out else set()


def new_ns_name() -> str:
    return "ntt-" + secrets.token_hex(5)


def delete_ns(name: str) -> None:
    if name in netns_list():
        sh("ip", "netns", "del", name, check=False)


def ip(netns: str, *args) -> subprocess.CompletedProcess:
    """``ip -n NETNS ARGS...`` (raises with output on failure)."""
    return sh("ip", "-n", netns, *args)


# --------------------------------------------------------------------------- kernel view

def links(netns: str) -> dict[str, dict]:
    """All links of ``netns`` as ``ip -d -j link show`` reports them, by name."""
    out = sh("ip", "-n", netns, "-d", "-j", "link", "show").stdout
    return {entry["ifname"]: entry for entry in json.loads(out)}


ip_json = links


def link(netns: str, name: str) -> dict | None:
    return links(netns).get(name)


def kind(entry: dict) -> str | None:
    return (entry.get("linkinfo") or {}).get("info_kind")


def tun_names(netns: str) -> set[str]:
    return {name for name, entry in links(netns).items() if kind(entry) == "tun"}


def non_lo(netns: str) -> set[str]:
    return set(links(netns)) - {"lo"}


def _uid(value):
    if value is None or isinstance(value, int):
        return value
    return pwd.getpwnam(value).pw_uid


def _gid(value):
    if value is None or isinstance(value, int):
        return value
    return grp.getgrnam(value).gr_gid


def tun_info(netns: str, name: str) -> dict:
    """IFLA_TUN_* of ``name`` as netlink reports them; user/group numeric (None = unset).

    Keys: type ('tap'/'tun'), pi, vnet_hdr, multi_queue, persist, numqueues (multi-queue
    devices only), user, group.
    """
    entry = link(netns, name)
    assert entry is not None, "no device %r in %s: %s" % (name, netns, sorted(links(netns)))
    assert kind(entry) == "tun", "%r is a %r, not a tun/tap" % (name, kind(entry))
    data = dict(entry["linkinfo"].get("info_data") or {})
    # iproute2 prints a name when the passwd/group database knows the id, else the number
    data["user"] = _uid(data.get("user"))
    data["group"] = _gid(data.get("group"))
    return data


def raw_mark(entry: dict) -> dict | None:
    """The device's netdev.tuntap mark as written: lease, template and the registry's id."""
    alias = entry.get("ifalias")
    if not alias or not alias.startswith(ALIAS_PREFIX):
        return None
    return json.loads(alias[len(ALIAS_PREFIX):])


def parse_alias(entry: dict) -> dict | None:
    """The mark's lease and template (its registry id is checked to be one, and left out)."""
    mark = raw_mark(entry)
    if mark is None:
        return None
    registry = mark.pop("registry", None)
    assert registry is None or re.fullmatch("[0-9a-f]{8}", registry), mark
    return mark


def mark_registries(netns: str) -> dict[str, str | None]:
    """Device name -> the registry id in its mark, for every marked device in ``netns``."""
    out = {}
    for name, entry in links(netns).items():
        mark = raw_mark(entry)
        if mark is not None:
            out[name] = mark.get("registry")
    return out


def registry_id(path) -> str:
    return read_registry(path)["registry_id"]


def aliases(netns: str) -> dict[str, dict]:
    """Device name -> parsed netdev.tuntap alias, for every marked device in ``netns``."""
    out = {}
    for name, entry in links(netns).items():
        parsed = parse_alias(entry)
        if parsed is not None:
            out[name] = parsed
    return out


def is_up(entry: dict) -> bool:
    return "UP" in entry["flags"]


def master(entry: dict) -> str | None:
    return entry.get("master")


def attached(netns: str, name: str) -> bool:
    """A process holds the tap: carrier (LOWER_UP) on an UP single-queue device, or
    numqueues > 0 on a multi-queue one."""
    entry = link(netns, name)
    if entry is None:
        return False
    info = entry["linkinfo"]["info_data"]
    if info.get("multi_queue"):
        return info.get("numqueues", 0) > 0
    return "LOWER_UP" in entry["flags"]


def assert_matches_kernel(netns: str, result: dict) -> dict:
    """Check a per-device result against the real device; return its ip entry."""
    name = result["name"]
    entry = link(netns, name)
    assert entry is not None, "result names %r but %s holds %s" % (name, netns, sorted(links(netns)))
    info = tun_info(netns, name)
    assert result["ifindex"] == entry["ifindex"], (result, entry)
    assert info["type"] == result["mode"], (result, info)
    assert bool(info["multi_queue"]) == bool(result["multi_queue"]), (result, info)
    assert info["persist"] is True, info
    assert result["mtu"] == entry["mtu"], (result, entry)
    if result["mode"] == "tap":
        assert (result["mac_address"] or "").lower() == entry["address"].lower(), (result, entry)
    assert result["owner"] == info["user"], (result, info)
    assert result["group"] == info["group"], (result, info)
    assert result["up"] == is_up(entry), (result, entry["flags"])
    assert (result["bridge"] or None) == master(entry), (result, entry)
    assert parse_alias(entry) == {"lease": result["lease"], "template": result["template"]}, entry
    assert result["netns"] == netns, result
    return entry


def add_tuntap(netns: str, name: str, mode: str = "tap", *extra) -> None:
    """An UNMANAGED tun/tap made with iproute2 (no alias)."""
    ip(netns, "tuntap", "add", "dev", name, "mode", mode, *extra)


def add_link(netns: str, name: str, link_kind: str) -> None:
    ip(netns, "link", "add", name, "type", link_kind)


FOREIGN_KINDS = ("dummy", "ifb", "bridge")  # this kernel has no dummy module; CI may


def add_foreign(netns: str, name: str) -> str:
    """A device that is not a tun/tap: the first kind the kernel supports; returns it."""
    errors = []
    for candidate in FOREIGN_KINDS:
        proc = sh("ip", "-n", netns, "link", "add", name, "type", candidate, check=False)
        if proc.returncode == 0:
            return candidate
        errors.append(proc.stderr.strip())
    raise AssertionError("cannot make a non-tun device: %s" % errors)


def del_link(netns: str, name: str) -> None:
    ip(netns, "link", "del", name)


# Carrier of a tap made a moment ago drops asynchronously (the kernel's link watch runs up to
# a second later), so a snapshot right after creation may still show it.
CARRIER_FLAGS = ("NO-CARRIER", "LOWER_UP")


def stable_view(entry: dict) -> dict:
    """An ip entry minus what changes without anyone touching the device."""
    view = {k: v for k, v in entry.items() if k not in ("stats", "stats64", "operstate")}
    if "flags" in view:
        view["flags"] = [flag for flag in view["flags"] if flag not in CARRIER_FLAGS]
    return view


def stable_links(netns: str) -> dict[str, dict]:
    """``links(netns)`` as stable views: equal unless someone changed a device."""
    return {name: stable_view(entry) for name, entry in links(netns).items()}


# --------------------------------------------------------------------------- registry

def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_registry(path) -> dict:
    """The registry at ``path`` as the document of docs/registry.md (version, registry_id, counters,
    leases, released, intent), whether it is the SQLite database or a JSON file not migrated yet."""
    info = importlib.import_module("ansible_collections.netdev.tuntap.plugins.module_utils._info")
    state, facts, _warnings = info.read_registry(str(path))
    assert facts["readable"], "registry %s cannot be read: %s" % (path, facts["error"])
    return state


def siblings(path) -> list[str]:
    directory = os.path.dirname(str(path))
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def tree_snapshot(directory) -> dict:
    """name -> (mode, size, mtime_ns, bytes) for every file in ``directory``."""
    snap = {}
    directory = str(directory)
    if not os.path.isdir(directory):
        return snap
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        st = os.lstat(path)
        content = None
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as handle:
                content = handle.read()
        snap[name] = (st.st_mode, st.st_size, st.st_mtime_ns, content)
    return snap


# --------------------------------------------------------------------------- Python API

def engine():
    """The engine module, imported lazily."""
    return importlib.import_module(ENGINE_MODULE)


class Api:
    """``api(**params)`` calls ``_engine.run`` with this test's netns and registry
    (unless the call gives its own); ``api.fails(**params)`` requires a TapError and
    returns its message."""

    def __init__(self, netns: str, registry_path):
        self.ns = netns
        self.registry = str(registry_path)

    def params(self, params: dict) -> dict:
        params = dict(params)
        params.setdefault("netns", self.ns)
        params.setdefault("registry", self.registry)
        return params

    def __call__(self, check_mode: bool = False, diff: bool = False, **params) -> dict:
        result = engine().run(self.params(params), check_mode=check_mode, diff=diff)
        assert isinstance(result, dict), result
        return result

    def fails(self, check_mode: bool = False, diff: bool = False, **params) -> str:
        mod = engine()
        try:
            result = mod.run(self.params(params), check_mode=check_mode, diff=diff)
        except mod.TapError as exc:
            return str(exc)
        raise AssertionError("expected TapError for %r, got result %r" % (params, result))


SUBPROCESS_API = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, %(root)r)
    from %(engine)s import run, TapError
    calls = json.loads(sys.argv[1])
    out = []
    for call in calls:
        try:
            out.append({"result": run(call, check_mode=False)})
        except TapError as exc:
            out.append({"error": str(exc)})
    print(json.dumps(out))
""") % {"root": COLLECTIONS_ROOT, "engine": ENGINE_MODULE}


def api_subprocess_argv(calls: list[dict], prefix: list[str] | None = None) -> list[str]:
    return list(prefix or []) + [PYTHON, "-c", SUBPROCESS_API, json.dumps(calls)]


def api_subprocess(calls: list[dict], prefix: list[str] | None = None, timeout=120) -> list[dict]:
    """Run each params dict through ``run`` in a NEW Python process, in order; returns a
    list of ``{"result": ...}`` or ``{"error": message}``. ``prefix`` wraps the command
    (e.g. ``["runuser", "-u", "nobody", "--"]``)."""
    proc = sh(*api_subprocess_argv(calls, prefix), check=False, timeout=timeout, cwd="/")
    assert proc.returncode == 0, "subprocess failed " + show(proc)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- processes

TUNSETQUEUE = 0x400454D9
IFF_DETACH_QUEUE = 0x0400

# argv: NAME FLAGS [detach]; with "detach", the queue is detached (TUNSETQUEUE) but still held.
HOLDER = textwrap.dedent("""
    import fcntl, os, struct, sys
    name, flags = sys.argv[1], int(sys.argv[2])
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, %d, struct.pack("16sH22x", name.encode(), flags))
    if sys.argv[3:] == ["detach"]:
        fcntl.ioctl(fd, %d, struct.pack("16sH22x", b"", %d))
    print("ready", flush=True)
    sys.stdin.read()
""") % (TUNSETIFF, TUNSETQUEUE, IFF_DETACH_QUEUE)


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


def qemu_binary() -> str:
    found = shutil.which("qemu-system-x86_64")
    if not found:
        if in_ci():
            pytest.fail("qemu-system-x86_64 is missing and CI is set "
                        "(scripts/test.sh must install qemu-system-x86)")
        pytest.skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86) "
                    "and CI is not set")
    return found


# --------------------------------------------------------------------------- ansible

def tool(name: str) -> str:
    candidate = os.path.join(VENV_BIN, name)
    if os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    assert found, "%s not found next to %s nor on PATH" % (name, PYTHON)
    return found


def ansible_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS_ROOT,
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.pop("ANSIBLE_CONFIG", None)
    if extra:
        env.update(extra)
    return env


class AdHoc:
    """An ad hoc run: ``rc``, ``output`` (stdout+stderr), ``status`` (CHANGED, SUCCESS,
    FAILED!) and ``result`` (the module's JSON result)."""

    def __init__(self, proc: subprocess.CompletedProcess):
        self.proc = proc
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.status, self.result = self._parse(proc.stdout)

    @staticmethod
    def _parse(stdout: str):
        marker = "localhost | "
        start = stdout.find(marker)
        if start < 0:
            return None, None
        rest = stdout[start + len(marker):]
        status, _arrow, body = rest.partition(" => ")
        brace = body.find("{")
        if brace < 0:
            return status.strip(), None
        result = json.JSONDecoder().raw_decode(body[brace:])[0]
        return status.strip(), result

    @property
    def failed(self) -> bool:
        """ansible-core 2.19 shows failure as ``localhost | FAILED! => {...}`` and drops the
        ``failed`` key from the printed result; accept either form."""
        return bool((self.status or "").startswith("FAILED") or (self.result or {}).get("failed"))

    def __repr__(self):
        return "AdHoc(rc=%s)\n--- stdout\n%s\n--- stderr\n%s" % (
            self.rc, self.proc.stdout, self.proc.stderr)


def ansible_adhoc(args: str, check: bool = False, diff: bool = False,
                  interpreter: str = PYTHON, env: dict | None = None, timeout=120, module: str = MODULE) -> AdHoc:
    """``ansible localhost -m netdev.tuntap.tap_device -a ARGS`` (implicit localhost; or another ``module``)."""
    argv = [tool("ansible"), "localhost", "-m", module, "-a", args,
            "-e", "ansible_python_interpreter=%s" % interpreter]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    proc = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(env),
                          cwd="/", timeout=timeout, check=False)
    return AdHoc(proc)


def ansible_playbook(path, extra_vars: dict | None = None, check: bool = False,
                     env: dict | None = None, timeout=180) -> subprocess.CompletedProcess:
    """``ansible-playbook PATH -e JSON`` with the running Python as interpreter."""
    variables = {"ansible_python_interpreter": PYTHON}
    variables.update(extra_vars or {})
    argv = [tool("ansible-playbook"), str(path), "-e", json.dumps(variables)]
    if check:
        argv.append("--check")
    return subprocess.run(argv, capture_output=True, text=True, env=ansible_env(env),
                          cwd="/", timeout=timeout, check=False)


def write_playbook(directory, text: str, name: str = "playbook.yml") -> str:
    path = os.path.join(str(directory), name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(textwrap.dedent(text).lstrip())
    return path


# --------------------------------------------------------------------------- messages

# The module's warnings, matched by their wording (plugins/module_utils: _engine, _plan,
# _registry). re.escape() the values put in, and anchor with fullmatch (assert_warnings).
CHECK_MODE_WARNING = (r"check mode: predicted names may differ in a real run if another run allocates from "
                      r"the same registry in the meantime")


def lease_moved_warning(lease: str, old: str, new: str) -> str:
    return (r"lease %s: its device name %s is now held by .+, so the lease was moved to the fresh name %s"
            % tuple(re.escape(repr(v)) for v in (lease, old, new)))


def registry_rebuilt_warning(path) -> str:
    """A real run that moved an unusable registry aside and rebuilt it from the devices' marks."""
    path = re.escape(str(path))
    return (r"registry %s was unusable: .+\. It was moved aside to %s\.corrupt-\d{8}T\d{6}(\.\d+)? and rebuilt "
            r"from the devices present" % (path, path))


def registry_check_mode_warning(path) -> str:
    return (r"registry %s is unusable: .+\. A real run would move it aside and rebuild it from the "
            r"devices present" % re.escape(str(path)))


def interrupted_run_warning(path) -> str:
    return (r"registry %s records a run that was interrupted before it finished; its devices were checked and "
            r"counters kept above the numbers it used" % re.escape(str(path)))


def adopted_warning(names) -> str:
    names = sorted(names)
    return (r"adopted %d device\(s\) that the registry did not record \(left by an interrupted run or a lost "
            r"registry\): %s" % (len(names), re.escape(", ".join(names))))


def assert_warnings(result: dict, *patterns: str, ignore: str | None = None) -> None:
    """The result's warnings are exactly ``patterns`` (regexes, full match), in that order,
    once the warnings matching ``ignore`` are left out."""
    warnings = result.get("warnings")
    assert isinstance(warnings, list), result
    if ignore is not None:
        warnings = [w for w in warnings if not re.fullmatch(ignore, w, re.S)]
    assert len(warnings) == len(patterns), "warnings %r, expected %d matching %r" % (warnings, len(patterns), patterns)
    for warning, pattern in zip(warnings, patterns):
        assert re.fullmatch(pattern, warning, re.S), "warning %r does not match %r" % (warning, pattern)
