"""The reliability suite: concurrency, crashes, broken registries, full disks, hostile input.

Real devices, only in throwaway ``ntt-*`` namespaces; registries under each test's own
0700 directory. Sizes come from ntt_figures.SIZES (the CI run) or SOAK_SIZES (``NTT_SOAK=1``:
the long run of the same command). Every test records what it did in ``FIGURES``; the
session writes them to tests/output/reliability/figures.json, from which
scripts/ntt_reliability.py writes docs/reliability.md.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(os.path.dirname(HERE), "integration")
if INTEGRATION not in sys.path:
    sys.path.insert(0, INTEGRATION)

import ntt_helpers as h  # noqa: E402

if h.COLLECTIONS_ROOT not in sys.path:
    _spec = importlib.util.spec_from_file_location(
        "_netdev_tuntap_tests_conftest", os.path.join(h.REPO_ROOT, "tests", "conftest.py"))
    _spec.loader.exec_module(importlib.util.module_from_spec(_spec))

from ntt_figures import FIGURES, OUTPUT, SOAK  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    os.makedirs(OUTPUT, exist_ok=True)
    document = {"soak": SOAK, "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                "exitstatus": int(exitstatus), "cases": FIGURES}
    with open(os.path.join(OUTPUT, "figures.json"), "w", encoding="utf-8") as out:
        json.dump(document, out, indent=1, sort_keys=True)


def pytest_configure(config):
    config.addinivalue_line("markers", "root: needs root (CAP_NET_ADMIN, ip netns); fails in CI when not root")


@pytest.fixture(autouse=True)
def _require_root():
    if os.geteuid() != 0:
        message = "the reliability suite needs root (ip netns, CAP_NET_ADMIN)"
        if h.in_ci():
            pytest.fail(message + ", and CI is set")
        pytest.skip(message)


@pytest.fixture
def make_ns():
    made: list = []

    def make() -> str:
        name = h.new_ns_name()
        made.append(name)
        h.sh("ip", "netns", "add", name)
        return name

    try:
        yield make
    finally:
        for name in made:
            h.delete_ns(name)


@pytest.fixture
def ns(make_ns) -> str:
    return make_ns()


@pytest.fixture
def workdir(tmp_path):
    os.chmod(tmp_path, 0o700)
    return tmp_path


@pytest.fixture
def registry(workdir):
    return str(workdir / "reg" / "registry.json")
