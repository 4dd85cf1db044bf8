"""Unit tests: pure logic from plugins/, no root, no devices, no network.

tests/conftest.py makes the collection importable as ``ansible_collections.netdev.tuntap``.
When pytest's rootdir/confcutdir keeps that file from being loaded (e.g. ``cd tests/unit &&
pytest`` or a test file given by absolute path from elsewhere, with no ini file), run it by
path so the imports work all the same.
"""
from __future__ import annotations

import importlib.util
import os
import sys

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_COLLECTIONS_ROOT = os.path.join(_REPO_ROOT, "tests", "output", "collections")

if _COLLECTIONS_ROOT not in sys.path:
    _spec = importlib.util.spec_from_file_location(
        "_netdev_tuntap_tests_conftest", os.path.join(_REPO_ROOT, "tests", "conftest.py"))
    _spec.loader.exec_module(importlib.util.module_from_spec(_spec))
