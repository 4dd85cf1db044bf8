"""The PNG: per-device cost against N, and one more device against devices present.

matplotlib (Agg backend, no display) draws it; it is only needed for this chart
(requirements/bench.txt)."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position

from .markdown import TOOL_NAMES  # noqa: E402

ALLOC_LABELS = {"module_leased": "tap_device, leased D", "module_unleased": "tap_device, D unknown devices",
                "kernel_pct": "kernel %d (the ioctl)"}


def bars(meds: list[float], lows: list[float], highs: list[float]):
    """Medians and error bars for a log axis: values at or below zero (noise swamping a tiny
    per-device cost) are left out of the line, and no bar reaches below zero."""
    meds = [m if m > 0 else math.nan for m in meds]
    down = [0 if math.isnan(m) else min(m - lo, m * 0.999) for m, lo in zip(meds, lows)]
    up = [0 if math.isnan(m) else max(hi - m, 0) for m, hi in zip(meds, highs)]
    return meds, [down, up]


def draw(fig: dict, path: str, title: str) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for tool, by_n in fig["create"].items():
        sizes = sorted(n for n in by_n if n > 1)
        if not sizes:
            continue
        meds, err = bars([by_n[n]["per_device"][0] * 1e6 for n in sizes], [by_n[n]["per_device"][1] * 1e6 for n in sizes],
                         [by_n[n]["per_device"][2] * 1e6 for n in sizes])
        left.errorbar(sizes, meds, yerr=err, marker="o", capsize=3,
                      label=TOOL_NAMES[tool].replace("`", ""))
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("N, devices made in one run")
    left.set_ylabel("per-device cost, µs (median, min–max)")
    left.set_title("Batch create")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7)
    for series, label in ALLOC_LABELS.items():
        by_d = fig["alloc"][series]
        sizes = sorted(by_d)
        meds, err = bars([by_d[d][0] * 1e3 for d in sizes], [by_d[d][1] * 1e3 for d in sizes],
                         [by_d[d][2] * 1e3 for d in sizes])
        right.errorbar(sizes, meds, yerr=err, marker="o", capsize=3, label=label)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("D, devices present")
    right.set_ylabel("one more device, ms (median, min–max)")
    right.set_title("Allocation")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
