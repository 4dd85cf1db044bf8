"""The module and every module_utils file work on the oldest Python the collection claims.

The claim is tests/config.yml's ``modules: python_requires`` (what ansible-test sanity checks).
scripts/oldest_python.sh obtains that interpreter (Debian 11's CPython 3.9, unpacked privately);
scripts/test.sh's setup runs it, and these tests only look it up (no network here). Without it
they fail under CI=true and are skipped, with the reason, elsewhere.

The imports run against ansible-core's own ``ansible`` package (the controller's copy, the code
AnsiballZ ships to hosts), alone on the path: the rest of the controller's site-packages holds
extensions built for the controller's Python. The ad-hoc run then goes through AnsiballZ for real.
"""
from __future__ import annotations

import ast
import glob
import json
import os
import re
import subprocess
import sys

import ansible
import pytest
import yaml
from ansible_test._util.target.common.constants import CONTROLLER_PYTHON_VERSIONS, REMOTE_ONLY_PYTHON_VERSIONS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS_ROOT = os.path.join(REPO_ROOT, "tests", "output", "collections")
SCRIPT = os.path.join(REPO_ROOT, "scripts", "oldest_python.sh")
PACKAGE = "ansible_collections.netdev.tuntap"

TARGET_FILES = sorted(
    os.path.relpath(p, REPO_ROOT)
    for p in glob.glob(os.path.join(REPO_ROOT, "plugins", "module_utils", "**", "*.py"), recursive=True)
) + ["plugins/modules/tap_device.py"]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def claimed_minimum() -> tuple[int, int]:
    with open(os.path.join(REPO_ROOT, "tests", "config.yml")) as f:
        requires = yaml.safe_load(f)["modules"]["python_requires"]
    match = re.fullmatch(r"\s*>=\s*(\d+)\.(\d+)\s*", requires)
    assert match, "python_requires %r is not of the form '>=X.Y'" % requires
    return int(match.group(1)), int(match.group(2))


def _dotted(path: str) -> str:
    return PACKAGE + "." + path[:-len(".py")].replace(os.sep, ".").replace("/", ".")


@pytest.fixture(scope="module")
def oldest_python() -> str:
    proc = subprocess.run(["bash", SCRIPT, "--check"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        reason = "the oldest claimed Python is missing: %s" % proc.stderr.strip()
        if _in_ci():
            pytest.fail(reason)
        pytest.skip(reason + " (not failing outside CI)")
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def target_path(tmp_path_factory) -> str:
    """A sys.path entry holding only ansible-core's package (and the collection root beside it)."""
    root = tmp_path_factory.mktemp("target-path")
    os.symlink(os.path.dirname(ansible.__file__), root / "ansible")
    return os.pathsep.join([str(root), COLLECTIONS_ROOT])


def test_claimed_minimum_is_one_ansible_core_supports_on_hosts():
    supported = REMOTE_ONLY_PYTHON_VERSIONS + CONTROLLER_PYTHON_VERSIONS
    minimum = "%d.%d" % claimed_minimum()
    assert minimum in supported, (minimum, supported)


def test_feature_version_check_rejects_newer_syntax():
    """ast's feature_version is best effort: show it catches syntax newer than the claim."""
    with pytest.raises(SyntaxError):
        ast.parse("match x:\n    case 1:\n        pass\n", feature_version=(3, 9))


@pytest.mark.parametrize("path", TARGET_FILES)
def test_parses_with_claimed_minimum_grammar(path):
    with open(os.path.join(REPO_ROOT, path)) as f:
        source = f.read()
    ast.parse(source, filename=path, feature_version=claimed_minimum())


_IMPORT_ALL = r"""
import importlib, json, os, sys
result = {"version": list(sys.version_info[:2]), "failed": {}, "files": {}}
for name in sys.argv[1:]:
    try:
        result["files"][name] = os.path.realpath(importlib.import_module(name).__file__)
    except BaseException as exc:
        result["failed"][name] = "%s: %s" % (type(exc).__name__, exc)
print(json.dumps(result))
"""


def test_everything_imports_on_oldest_python(oldest_python, target_path, tmp_path):
    names = ["ansible.module_utils.basic"] + [_dotted(p) for p in TARGET_FILES]
    env = dict(os.environ, PYTHONPATH=target_path)
    proc = subprocess.run([oldest_python, "-B", "-s", "-c", _IMPORT_ALL] + names, cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert tuple(result["version"]) == claimed_minimum()
    assert result["failed"] == {}
    for path in TARGET_FILES:
        assert result["files"][_dotted(path)] == os.path.realpath(os.path.join(REPO_ROOT, path))


def test_module_runs_through_ansible_on_oldest_python(oldest_python, tmp_path):
    """A real ad-hoc run: AnsiballZ on the oldest Python imports the module and validates its
    arguments. The interpreter is a logging wrapper, to show that it was the one used."""
    log = tmp_path / "interpreter.log"
    wrapper = tmp_path / "python"
    wrapper.write_text('#!/bin/sh\n%s -c "import sys; print(sys.version_info[:2])" >>%s\nexec %s "$@"\n'
                       % (oldest_python, log, oldest_python))
    wrapper.chmod(0o755)
    ansible_bin = os.path.join(os.path.dirname(sys.executable), "ansible")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "local"), ANSIBLE_REMOTE_TEMP=str(tmp_path / "remote"))
    proc = subprocess.run(
        [ansible_bin, "localhost", "-m", "netdev.tuntap.tap_device", "-a", "name=vnet%d mode=bogus",
         "-e", "ansible_python_interpreter=%s" % wrapper],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    status, answer = proc.stdout.split(" => ", 1)
    assert status.splitlines()[-1] == "localhost | FAILED!", proc.stdout
    result = json.loads(answer)
    assert result["msg"] == "value of mode must be one of: tap, tun, got: bogus"
    assert "exception" not in result
    assert log.read_text().split("\n")[0] == str(claimed_minimum())
