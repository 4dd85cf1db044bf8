"""The CI check of a benchmark run: the doc and the PNG exist and every figure is there and a
number. A slow figure never fails; a missing or NaN one does."""
from __future__ import annotations

import json
import math
import os
import re

from .derive import derive, int_keys
from .plan import FULL, TINY
from .scenarios import CREATE_TOOLS
from .targets import evaluate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check(out_dir: str) -> list[str]:
    problems: list[str] = []
    doc, png, raw = (os.path.join(out_dir, name) for name in ("benchmarks.md", "benchmarks.png", "results.json"))
    for path in (doc, png, raw):
        if not os.path.isfile(path):
            problems.append("missing: " + path)
    if problems:
        return problems
    with open(png, "rb") as handle:
        head = handle.read(8)
    if head != PNG_MAGIC or os.path.getsize(png) < 10000:
        problems.append("%s is not a PNG chart (%d bytes)" % (png, os.path.getsize(png)))
    with open(doc, encoding="utf-8") as handle:
        text = handle.read()
    if re.search(r"\bnan\b", text, re.IGNORECASE):
        problems.append("%s shows a NaN figure" % doc)
    if "](benchmarks.png)" not in text:
        problems.append("%s does not embed benchmarks.png" % doc)
    with open(raw, encoding="utf-8") as handle:
        data = int_keys(json.load(handle))
    plan = TINY if data["tiny"] else FULL
    fig = derive(data["samples"])

    def need(value, what):
        if value is None or not isinstance(value, (int, float)) or math.isnan(value):
            problems.append("figure missing or NaN: " + what)

    for tool in CREATE_TOOLS:
        sizes = (1,) + (plan.loop_sizes if tool == "playbook_loop" else plan.create_sizes)
        for n in sizes:
            entry = fig["create"].get(tool, {}).get(n)
            need(entry and entry["whole"][0], "create %s N=%d" % (tool, n))
            if n > 1:
                need(entry and entry["per_device"][0], "create %s N=%d per device" % (tool, n))
    for series in ("module_leased", "module_unleased", "kernel_pct", "kernel_pct_process"):
        for d in plan.alloc_sizes:
            need(fig["alloc"].get(series, {}).get(d, (None,))[0], "alloc %s D=%d" % (series, d))
    for leases in plan.memory_sizes:
        need(fig["memory"].get(leases, (None,))[0], "memory %d leases" % leases)
    for key in ("first", "nochange", "empty"):
        need(fig["role"].get(key, (None,))[0], "role %s" % key)
    if not problems:
        for target in evaluate(plan, fig):
            need(target.value, "target " + target.id)
            if target.what not in text:
                problems.append("%s does not show the target %r" % (doc, target.what))
    return problems
