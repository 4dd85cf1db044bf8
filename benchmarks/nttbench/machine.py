"""What the benchmark ran on: CPU, cores, kernel, Debian, versions, date, commit, load."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version


def _first(path: str, key: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _git(root: str, *args: str) -> str:
    proc = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as handle:
        return " ".join(handle.read().split()[:3])


def describe(root: str) -> dict:
    try:
        with open("/etc/debian_version", encoding="ascii") as handle:
            debian = handle.read().strip()
    except OSError:
        debian = "not Debian"
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": "%s (Debian %s)" % (_first("/etc/os-release", "PRETTY_NAME="), debian),
        "python": platform.python_version(),
        "ansible-core": _version("ansible-core"),
        "pyroute2": _version("pyroute2"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git(root, "rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if dirty not in ("", "unknown") else ""),
        "load_before": loadavg(),
    }
