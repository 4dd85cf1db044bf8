"""Fixtures for the artifact tests: the built tarball and the collections path it was installed
into, handed over by scripts/test.sh's artifact stage (NTT_ARTIFACT_TARBALL,
NTT_ARTIFACT_COLLECTIONS); a throwaway network namespace with a bridge; a throwaway registry.

Nothing here imports the working tree: every check goes through the ansible executables and the
installed copy only.
"""
from __future__ import annotations

import os
import secrets
import subprocess

import pytest


def _from_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail("%s is not set: run these tests through `bash scripts/test.sh artifact`, which builds "
                    "and installs the artifact first" % name)
    return value


@pytest.fixture(scope="session")
def tarball() -> str:
    return _from_env("NTT_ARTIFACT_TARBALL")


@pytest.fixture(scope="session")
def collections_path() -> str:
    return _from_env("NTT_ARTIFACT_COLLECTIONS")


@pytest.fixture(scope="session")
def ansible_env(collections_path) -> dict:
    """The environment of every ansible command: only the installed artifact provides netdev.tuntap."""
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_path,
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    })
    env.pop("ANSIBLE_CONFIG", None)
    return env


@pytest.fixture(scope="module")
def netns():
    """``ntt-artifact-<hex>`` with a bridge ntt-br0 (up), deleted afterwards whatever happened."""
    if os.geteuid() != 0:
        pytest.fail("the artifact tests need root (ip netns, tun/tap devices)")
    name = "ntt-artifact-" + secrets.token_hex(4)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "ntt-br0", "type", "bridge"], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "ntt-br0", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("artifact")
    os.chmod(directory, 0o700)
    return str(directory / "registry" / "registry.json")
