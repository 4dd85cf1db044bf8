"""A throwaway hypervisor for the documentation's examples (see sandbox.sh), and ansible runs in it.

Nothing here edits an example: playbooks run from the text the documentation shows, and
what they did is read from the kernel (``ip -j -d link``), from the files they wrote (through
``/proc/PID/root``, the sandbox's view of the file system) and from the results the
``ntt_record`` callback saved.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess

import ntt_helpers as h

DOCS_DIR = os.path.dirname(os.path.abspath(__file__))
SANDBOX_SCRIPT = os.path.join(DOCS_DIR, "sandbox.sh")
CALLBACK_DIR = os.path.join(DOCS_DIR, "callback_plugins")
NODE_ROOT = "/run/netdev_tuntap"   # where tap_device makes macvtap nodes


class Run:
    """One ansible or ansible-playbook run: rc, output, and every task result it recorded."""

    def __init__(self, argv, proc: subprocess.CompletedProcess, record_file: str):
        self.argv = argv
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.records = []
        if os.path.exists(record_file):
            with open(record_file, encoding="utf-8") as handle:
                self.records = [json.loads(line) for line in handle if line.strip()]

    def __repr__(self):
        return "Run(%r, rc=%s)\n%s" % (self.argv, self.rc, self.output)

    def ok(self) -> "Run":
        if self.rc != 0:
            raise AssertionError("expected success:\n%r" % self)
        return self

    def tasks(self, name: str | None = None, status: str | None = None) -> list[dict]:
        return [r for r in self.records if r["event"] == "task"
                and (name is None or r["task"] == name) and (status is None or r["status"] == status)]

    def result(self, name: str) -> dict:
        found = [r for r in self.tasks(name) if r["status"] != "skipped"]
        assert len(found) == 1, "expected one result of task %r, got %d:\n%r" % (name, len(found), self)
        return found[0]["result"]

    @property
    def stats(self) -> dict:
        found = [r for r in self.records if r["event"] == "stats"]
        assert found, "no play recap recorded:\n%r" % self
        return found[-1]["hosts"]["localhost"]

    @property
    def changed(self) -> int:
        return self.stats["changed"]


class Sandbox:
    """``ip netns exec NETNS`` inside a private mount namespace set up by sandbox.sh."""

    def __init__(self, netns: str, workdir, aliases=("lab",)):
        self.netns = netns
        self.workdir = str(workdir)
        self.aliases = tuple(aliases)
        self.proc = None
        self.runs = 0
        self.inventory = os.path.join(self.workdir, "inventory.ini")
        with open(self.inventory, "w", encoding="utf-8") as handle:
            handle.write("[hypervisors]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n"
                         % h.PYTHON)

    def __enter__(self):
        # sandbox.sh mounts a tmpfs on /run/netdev_tuntap, making the mount point on the machine's /run.
        self.made_node_root = not os.path.exists(NODE_ROOT)
        scratch = os.path.join(self.workdir, "sandbox")
        os.makedirs(scratch)
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--",
             "bash", SANDBOX_SCRIPT, self.netns, scratch, *self.aliases],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.__exit__(None, None, None)
            raise AssertionError("sandbox setup failed: %r %s" % (line, self.proc.stderr.read()))
        return self

    def __exit__(self, *exc):
        # The mount namespace and its mounts go away with its last process.
        with contextlib.suppress(Exception):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.made_node_root:
            with contextlib.suppress(OSError):  # in use by another run's sandbox
                os.rmdir(NODE_ROOT)

    def path(self, path: str) -> str:
        """``path`` as the sandbox sees it, readable from outside."""
        return "/proc/%d/root%s" % (self.proc.pid, path)

    def read(self, path: str) -> str:
        with open(self.path(path), encoding="utf-8") as handle:
            return handle.read()

    def env(self, record_file: str) -> dict:
        return h.ansible_env({
            "PATH": h.VENV_BIN + os.pathsep + os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "ANSIBLE_INVENTORY": self.inventory,
            "ANSIBLE_CALLBACK_PLUGINS": CALLBACK_DIR,
            "ANSIBLE_CALLBACKS_ENABLED": "ntt_record",
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "True",
            "NTT_RECORD_FILE": record_file,
        })

    def run(self, argv, cwd=None, timeout=300) -> Run:
        """``argv`` (an ansible command line) inside the sandbox and NETNS."""
        self.runs += 1
        record_file = os.path.join(self.workdir, "record-%d.jsonl" % self.runs)
        full = ["nsenter", "--target", str(self.proc.pid), "--mount", "--",
                "ip", "netns", "exec", self.netns, *argv]
        proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=cwd or self.workdir, env=self.env(record_file),
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError("%r timed out after %ss:\n%s%s" % (argv, timeout, out, err))
        finally:
            # ansible forks workers; none may outlive the run (they would keep the namespaces).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        return Run(argv, subprocess.CompletedProcess(full, proc.returncode, out, err), record_file)

    def playbook(self, path, *args, cwd=None) -> Run:
        return self.run(["ansible-playbook", str(path), *args], cwd=cwd)

    def uid(self, user: str) -> int:
        for line in self.read("/etc/passwd").splitlines():
            fields = line.split(":")
            if fields[0] == user:
                return int(fields[2])
        raise AssertionError("no user %r in the sandbox's /etc/passwd" % user)
