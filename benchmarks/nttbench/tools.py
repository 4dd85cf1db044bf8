"""The tools the benchmark times, each as a whole process started through peers/measure.py.

Every run is checked afterwards against the kernel (the number of taps in its namespace) and,
for the module, its own result; a run that did not do its work stops the benchmark."""
from __future__ import annotations

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "peers")
BENCH_DIR = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH_DIR)
COLLECTIONS = os.path.join(ROOT, "tests", "output", "collections")
MODULE = "ansible_collections.netdev.tuntap.plugins.modules.tap_device"
PYTHON = sys.executable
MODULE_TEMPLATE = "bt%d"


class BenchError(RuntimeError):
    """A timed run failed or did not do its work."""


def tap_count(ns: str) -> int:
    out = subprocess.run(["ip", "-n", ns, "-o", "link", "show", "type", "tun"], check=True,
                         capture_output=True, text=True).stdout
    return len(out.splitlines())


def expect_taps(ns: str, want: int, what: str) -> None:
    have = tap_count(ns)
    if have != want:
        raise BenchError("%s: %d taps in %s, expected %d" % (what, have, ns, want))


class Runner:
    """Runs commands through measure.py, with output files in a scratch directory."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.serial = 0

    def measure(self, what: str, argv: list[str], env: dict | None = None) -> dict:
        self.serial += 1
        out = os.path.join(self.workdir, "run-%05d.out" % self.serial)
        proc = subprocess.run([PYTHON, os.path.join(PEERS, "measure.py"), out, *argv], capture_output=True,
                              text=True, env=env, cwd="/", check=False)
        try:
            figures = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError) as exc:
            raise BenchError("%s: the measuring wrapper failed: %s %s" % (what, proc.stdout, proc.stderr)) from exc
        with open(out, encoding="utf-8", errors="replace") as handle:
            figures["stdout"] = handle.read()
        if figures["rc"] != 0:
            with open(out + ".err", encoding="utf-8", errors="replace") as handle:
                err = handle.read()
            raise BenchError("%s failed (exit %s):\n%s\n%s" % (what, figures["rc"], figures["stdout"][-3000:], err[-3000:]))
        return figures

    # ---------------------------------------------------------------- the module, as a process

    def module(self, ns: str, registry: str, items: list[dict], what: str) -> dict:
        """tap_device run directly (python -m ...modules.tap_device ARGS_FILE), as Ansible's
        module wrapper would run it, without ansible-playbook around it."""
        self.serial += 1
        args = os.path.join(self.workdir, "args-%05d.json" % self.serial)
        with open(args, "w", encoding="utf-8") as handle:
            json.dump({"ANSIBLE_MODULE_ARGS": {"netns": ns, "registry": registry, "devices": items}}, handle)
        env = dict(os.environ, PYTHONPATH=COLLECTIONS, PYTHONDONTWRITEBYTECODE="1")
        figures = self.measure(what, [PYTHON, "-m", MODULE, args], env=env)
        try:
            result = json.loads(figures["stdout"])
        except ValueError as exc:
            raise BenchError("%s: no JSON result: %s" % (what, figures["stdout"][-2000:])) from exc
        if result.get("failed") or len(result.get("devices", [])) != len(items):
            raise BenchError("%s: %s" % (what, json.dumps(result)[:2000]))
        figures["result"] = result
        del figures["stdout"]
        return figures

    def module_batch(self, ns: str, registry: str, count: int, start: int = 0) -> dict:
        items = [{"name": MODULE_TEMPLATE, "lease": "bench/%d" % i} for i in range(start, start + count)]
        figures = self.module(ns, registry, items, "tap_device, %d leased taps" % count)
        names = {d["name"] for d in figures["result"]["devices"]}
        if len(names) != count:
            raise BenchError("tap_device returned %d distinct names for %d leases" % (len(names), count))
        return figures

    # ---------------------------------------------------------------- the floor and the peers

    def raw_loop(self, ns: str, prefix: str, start: int, count: int) -> dict:
        return self.measure("raw ioctl loop", [PYTHON, os.path.join(PEERS, "raw_loop.py"), ns, prefix, str(start),
                                               str(count)])

    def same_work(self, ns: str, count: int) -> dict:
        return self.measure("same-work loop", [PYTHON, os.path.join(PEERS, "same_work_loop.py"), ns, "sw", str(count)])

    def kernel_template(self, ns: str, template: str = "ntt%d") -> dict:
        figures = self.raw_loop(ns, template, 0, 1)
        name, seconds = figures.pop("stdout").split()
        figures["name"], figures["ioctl_seconds"] = name, float(seconds)
        return figures

    def ip_batch(self, ns: str, count: int) -> dict:
        self.serial += 1
        batch = os.path.join(self.workdir, "batch-%05d.txt" % self.serial)
        with open(batch, "w", encoding="ascii") as handle:
            handle.writelines("tuntap add dev ipb%d mode tap\n" % i for i in range(count))
        return self.measure("ip -batch", ["ip", "-n", ns, "-batch", batch])

    def pyroute2(self, ns: str, count: int) -> dict:
        return self.measure("pyroute2 tuntap", [PYTHON, os.path.join(PEERS, "pyroute2_tuntap.py"), ns, "pr",
                                                str(count)])

    # ---------------------------------------------------------------- ansible-playbook

    def playbook(self, playbook: str, extra: list[str], what: str, want_recap: bool = True) -> dict:
        argv = ["ansible-playbook", os.path.join(BENCH_DIR, playbook)]
        for item in extra:
            argv += ["-e", item]
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR="1",
                   ANSIBLE_RETRY_FILES_ENABLED="False", ANSIBLE_LOCALHOST_WARNING="False",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="False", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
        env.pop("ANSIBLE_CONFIG", None)
        figures = self.measure(what, argv, env=env)
        stdout = figures.pop("stdout")
        if want_recap:
            figures["recap"] = recap(stdout, what)
        return figures

    def playbook_loop(self, ns: str, registry: str, count: int) -> dict:
        figures = self.playbook("loop.yml", ["bench_netns=" + ns, "bench_registry=" + registry,
                                             "bench_count=%d" % count], "playbook loop of %d tap_device calls" % count)
        if figures["recap"].get("failed") != 0 or figures["recap"].get("changed") != 1:
            raise BenchError("playbook loop: recap %s" % figures["recap"])
        return figures


def recap(stdout: str, what: str) -> dict:
    """The numbers of the localhost line of the PLAY RECAP."""
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("PLAY RECAP"):
            for row in lines[i + 1:]:
                if row.startswith("localhost"):
                    return {k: int(v) for k, v in (f.split("=", 1) for f in row.split()[2:] if "=" in f)}
    raise BenchError("%s: no PLAY RECAP in its output:\n%s" % (what, stdout[-2000:]))
