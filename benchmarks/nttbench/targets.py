"""The issue's targets, evaluated on the figures of one run."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .plan import Plan
from .reasons import reason
from .stats import ratio


@dataclass
class Target:
    id: str
    what: str
    value: float        # the measured figure (a ratio, seconds or MB)
    limit: float
    unit: str           # "x", "s" or "MB"
    detail: str         # the figures the value comes from

    @property
    def met(self) -> bool:
        if math.isnan(self.value):
            return False
        if self.unit == "x":
            return self.value <= self.limit
        return self.value < self.limit

    def measured(self) -> str:
        return fmt(self.value, self.unit)

    def wanted(self) -> str:
        return ("<= " if self.unit == "x" else "< ") + fmt(self.limit, self.unit)

    def verdict(self) -> str:
        if math.isnan(self.value):
            return "not measured"
        if math.isinf(self.value):
            return "not measurable in this run: the raw loop's N-device run was not slower than its 1-device run (noise)"
        if self.met:
            return "met"
        over = self.value - self.limit
        return "missed by %s (%.0f%%)" % (fmt(over, self.unit), 100 * over / self.limit)

    def why(self) -> str:
        if self.met:
            return ""
        if math.isinf(self.value):
            return "the machine's noise is larger than the floor's cost at this N"
        return reason(self.id)


def fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-"
    if unit == "x":
        return "%.2fx" % value
    if unit == "s":
        return "%.2f s" % value
    return "%.1f %s" % (value, unit)


def evaluate(plan: Plan, fig: dict) -> list[Target]:
    create, alloc, memory, role = fig["create"], fig["alloc"], fig["memory"], fig["role"]
    out = []
    for n in plan.create_targets:
        mod, flo = create["module"][n]["per_device"][0], create["floor"][n]["per_device"][0]
        # a floor at or below zero per device means the noise swamped it: no ratio can be taken
        value = ratio(mod, flo) if not flo <= 0 else math.inf
        out.append(Target("create_per_device_%d" % n, "batch create, N = %d: per-device cost, module / raw loop" % n,
                          value, 1.2, "x", "%.0f us / %.0f us" % (mod * 1e6, flo * 1e6)))
    n = plan.whole_target
    mod, flo = create["module"][n]["whole"][0], create["floor"][n]["whole"][0]
    out.append(Target("create_whole_%d" % n, "batch create, N = %d: whole process, module / raw loop" % n,
                      ratio(mod, flo), 1.5, "x", "%.3f s / %.3f s" % (mod, flo)))
    small, large = plan.alloc_sizes[0], plan.alloc_sizes[-1]
    for series, label in (("module_leased", "%d leases in the registry" % large),
                          ("module_unleased", "%d devices the registry does not know" % large)):
        a, b = alloc[series][large][0], alloc[series][small][0]
        out.append(Target("alloc_%s" % series, "one more leased device with %s vs %d: module" % (label, small),
                          ratio(a, b), 1.5, "x", "%.3f s / %.3f s" % (a, b)))
    for leases in plan.memory_sizes:
        out.append(Target("memory_%d" % leases, "peak RSS, one-device run with %d leases" % leases,
                          memory[leases][0], 40.0, "MB", "median of the runs"))
    out.append(Target("role_first", "guest_taps, %d guests x 2 NICs: first run" % plan.guests,
                      role["first"][0], 3.0, "s", "ansible-playbook, whole run"))
    out.append(Target("role_nochange", "guest_taps, %d guests x 2 NICs: no-change run" % plan.guests,
                      role["nochange"][0], 2.0, "s", "ansible-playbook, whole run"))
    return out
