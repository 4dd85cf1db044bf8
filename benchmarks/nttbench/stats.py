"""Medians, min-max and the derived figures (per-device cost, ratios) from raw samples."""
from __future__ import annotations

import math
import statistics


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else math.nan


def spread(values) -> tuple[float, float, float]:
    """(median, min, max); NaN when there are no samples."""
    values = [v for v in values if v is not None]
    if not values:
        return math.nan, math.nan, math.nan
    return statistics.median(values), min(values), max(values)


def per_device(one: list[float], many: list[float], n: int) -> list[float]:
    """(time(N) - time(1)) / (N - 1) per round: the same tool's start-up and one device taken
    away. Rounds pair up where both exist."""
    return [(t_n - t_1) / (n - 1) for t_1, t_n in zip(one, many)]


def ratio(a: float, b: float) -> float:
    if b is None or a is None or not b or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b
