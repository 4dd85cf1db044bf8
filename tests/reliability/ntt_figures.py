"""Sizes of the reliability suite and the figures its tests record (see conftest.py)."""
from __future__ import annotations

import os

import ntt_helpers as h

SOAK = os.environ.get("NTT_SOAK", "").strip() not in ("", "0")
SIZES = dict(processes=16, leases_per_process=20, kills=200, hostile_cases=2000, wrong_values_per_path=4)
SOAK_SIZES = dict(processes=32, leases_per_process=40, kills=2000, hostile_cases=20000, wrong_values_per_path=12)
OUTPUT = os.path.join(h.REPO_ROOT, "tests", "output", "reliability")
FIGURES: dict = {}


def size(name: str) -> int:
    """The size of one dimension; NTT_SIZE_<NAME> overrides it (to debug one case quickly)."""
    override = os.environ.get("NTT_SIZE_" + name.upper())
    return int(override) if override else (SOAK_SIZES if SOAK else SIZES)[name]


def record(case: str, **figures) -> None:
    """What a test did and found, for docs/reliability.md."""
    FIGURES[case] = dict(figures)
