"""Throwaway network namespaces (ntt-bench-<random>) and registries, removed on exit.

Every device the benchmark makes lives in a namespace made here; nothing is ever created in
the root namespace. `Scratch.close()` deletes whatever is left; bench.py calls it from a
`finally`, and turns SIGINT/SIGTERM into exceptions so that it also runs on Ctrl-C or a kill.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

PREFIX = "ntt-bench-"


class Interrupted(Exception):
    """SIGTERM/SIGHUP arrived: unwind so that the namespaces are deleted."""


def _raise(signum, _frame):
    raise Interrupted("signal %d" % signum)


def trap_signals() -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)


def ip(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True, **kwargs)


class Scratch:
    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix=PREFIX)
        os.chmod(self.root, 0o700)
        self.namespaces: set[str] = set()

    def netns(self) -> str:
        name = PREFIX + secrets.token_hex(4)
        ip("netns", "add", name)
        self.namespaces.add(name)
        return name

    def drop(self, name: str, settle: bool = False) -> None:
        """Delete a namespace. With settle, wait until the kernel has torn its devices down:
        that work runs in the background under the rtnl lock and would be timed as part of
        whatever runs next."""
        assert name.startswith(PREFIX), name
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        self.namespaces.discard(name)
        if settle:
            self.settle()

    def settle(self, limit: float = 60.0) -> None:
        # A request that needs the rtnl lock in a namespace of our own, until three in a row
        # are quick: then the teardown no longer holds the lock.
        probe = self.netns()
        try:
            quick, deadline = 0, time.monotonic() + limit
            while quick < 3 and time.monotonic() < deadline:
                time.sleep(0.15)
                start = time.perf_counter()
                ip("-n", probe, "link", "set", "lo", "up")
                quick = quick + 1 if time.perf_counter() - start < 0.02 else 0
        finally:
            self.drop(probe)

    def directory(self, tag: str) -> str:
        path = tempfile.mkdtemp(prefix=tag + "-", dir=self.root)
        os.chmod(path, 0o700)
        return path

    def registry(self) -> str:
        """A path for a registry that does not exist yet, in a directory of its own."""
        return os.path.join(self.directory("registry"), "registry.json")

    def close(self) -> None:
        for name in sorted(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        self.namespaces.clear()
        shutil.rmtree(self.root, ignore_errors=True)
