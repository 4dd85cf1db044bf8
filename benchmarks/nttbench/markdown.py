"""docs/benchmarks.md (or the tiny run's copy) and the console table, from the figures."""
from __future__ import annotations

import math

from .plan import Plan
from .targets import Target

TOOL_NAMES = {
    "module": "tap_device (one batch task, leases + template)",
    "floor": "raw ioctl loop (the floor)",
    "same_work": "the floor plus the module's per-device work (IPv6 off, mark, up), by hand",
    "ip_batch": "`ip -batch` (ip tuntap add)",
    "pyroute2": "pyroute2 `link('add', kind='tuntap')`",
    "playbook_loop": "playbook loop, one tap_device call per device",
}
ALLOC_NAMES = {
    "module_leased": "tap_device, registry holds the D leases (whole process)",
    "module_unleased": "tap_device, D devices the registry does not know (whole process)",
    "kernel_pct": "kernel `%d` (TUNSETIFF 'ntt%d', the ioctl itself)",
    "kernel_pct_process": "kernel `%d`, whole process (Python start-up included)",
}


def span(triple, scale: float = 1.0, digits: int = 3) -> str:
    med, low, high = triple
    if math.isnan(med):
        return "NaN"
    f = "%%.%df" % digits
    return (f + " (" + f + "–" + f + ")") % (med * scale, low * scale, high * scale)


def times(a: float, b: float) -> str:
    """a / b as '1.23x'; '-' when b is not above zero (a per-device cost swamped by noise)."""
    return "%.2fx" % (a / b) if b > 0 else "- (noise)"


def targets_table(targets: list[Target]) -> list[str]:
    lines = ["| target | measured | wanted | verdict | from |", "| --- | ---: | ---: | --- | --- |"]
    for t in targets:
        verdict = t.verdict() if t.met else "**%s**" % t.verdict()
        lines.append("| %s | %s | %s | %s | %s |" % (t.what, t.measured(), t.wanted(), verdict, t.detail))
    return lines


def console(plan: Plan, fig: dict, targets: list[Target]) -> str:
    lines = ["", "batch create (whole process, median s; per device, median us):"]
    for tool, by_n in fig["create"].items():
        cells = []
        for n, entry in sorted(by_n.items()):
            cell = "N=%d %.3f s" % (n, entry["whole"][0])
            if "per_device" in entry:
                cell += " (%.0f us/dev)" % (entry["per_device"][0] * 1e6)
            cells.append(cell)
        lines.append("  %-14s %s" % (tool, "; ".join(cells)))
    lines.append("one more device with D present (median):")
    for series, by_d in fig["alloc"].items():
        lines.append("  %-19s %s" % (series, "; ".join("D=%d %.4f s" % (d, v[0]) for d, v in sorted(by_d.items()))))
    lines.append("peak RSS, one-device run: " + "; ".join(
        "%d leases %.1f MB" % (k, v[0]) for k, v in sorted(fig["memory"].items())))
    lines.append("role, %d guests x 2 NICs: first %.2f s, no change %.2f s, empty play %.2f s" % (
        plan.guests, fig["role"]["first"][0], fig["role"]["nochange"][0], fig["role"]["empty"][0]))
    lines.append("")
    lines.append("targets:")
    for t in targets:
        lines.append("  %-75s %9s  %-10s %s%s" % (t.what, t.measured(), t.wanted(), t.verdict(),
                                                  ("  - why: " + t.why()) if not t.met else ""))
    return "\n".join(lines)


def document(plan: Plan, fig: dict, targets: list[Target], machine: dict, png: str, note: str,
             elapsed: float) -> str:
    out = ["# Benchmarks: batch create, allocation, memory, the role", ""]
    out.append("Written by `bash scripts/bench.sh%s` (%s; the whole run took %.0f s). "
               % (" --tiny" if plan.tiny else "", "tiny CI version" if plan.tiny else "full run", elapsed)
               + "Every figure is a whole process started from outside, as Ansible would start it, unless said "
               "otherwise; the tools alternate within each round (A B A B ...), each run in a fresh throwaway "
               "namespace `ntt-bench-<random>` with a throwaway registry; medians with min–max over %d rounds."
               % plan.rounds)
    out.append("")
    if plan.tiny:
        out += ["**Tiny run** (CI keeps the benchmark code from rotting): sizes are far below the targets' "
                "sizes, so the verdicts below say nothing about the targets.", ""]
    if note:
        out += ["**Note:** " + note, ""]
    out += ["## The machine", "", "| | |", "| --- | --- |"]
    for key in ("cpu", "cores", "kernel", "os", "python", "ansible-core", "pyroute2", "date", "commit",
                "load_before", "load_after"):
        out.append("| %s | %s |" % (key.replace("_", " "), machine.get(key, "")))
    out += ["", "## Targets", ""] + targets_table(targets) + [""]
    missed = [t for t in targets if not t.met]
    if missed:
        out += ["Why the missed ones are missed:", ""]
        # targets that share a reason are listed together, the reason once
        by_reason: dict = {}
        for t in missed:
            by_reason.setdefault(t.why(), []).append(t.what)
        out += ["- %s: %s" % ("; ".join(whats), why) for why, whats in by_reason.items()]
        out.append("")
    out += ["![per-device cost against N; one more device against devices present](%s)" % png, ""]

    out += ["## 1. Batch create", "",
            "N taps in one run of each tool. Per-device cost = (time(N) − time of the same tool making 1 "
            "device) / (N − 1), per round. The playbook loop runs at N = %s only, in %d round(s) (it is slow)."
            % (", ".join(str(n) for n in plan.loop_sizes), plan.loop_rounds), "",
            "| tool | N | whole process, s | per device, µs |", "| --- | ---: | ---: | ---: |"]
    for tool, by_n in fig["create"].items():
        for n, entry in sorted(by_n.items()):
            each = span(entry["per_device"], 1e6, 0) if "per_device" in entry else "–"
            out.append("| %s | %d | %s | %s |" % (TOOL_NAMES[tool], n, span(entry["whole"]), each))
    out += ["", "Ratios to the floor (median of the tool / median of the raw loop):", "",
            "| tool | N | per device | whole process |", "| --- | ---: | ---: | ---: |"]
    for tool, by_n in fig["create"].items():
        if tool == "floor":
            continue
        for n, entry in sorted(by_n.items()):
            if n == 1:
                continue
            floor = fig["create"]["floor"][n]
            each = times(entry["per_device"][0], floor["per_device"][0])
            out.append("| %s | %d | %s | %s |" % (TOOL_NAMES[tool], n, each, times(entry["whole"][0], floor["whole"][0])))
    out += ["", "## 2. One more device with D devices present", "",
            "Leased: the module made the D devices itself (in calls of up to %d) and the registry holds their "
            "leases. Unleased: the raw loop made D taps `ntt0`..., a fresh registry knows none of them; the "
            "kernel's own `%%d` runs in that namespace too (it scans every device). Each round adds one device "
            "(D .. D + %d)." % (plan.batch_chunk, plan.rounds - 1), "",
            "| D | " + " | ".join(ALLOC_NAMES[s] for s in fig["alloc"]) + " |",
            "| ---: | " + " | ".join("---:" for series in fig["alloc"]) + " |"]
    for d in plan.alloc_sizes:
        out.append("| %d | %s |" % (d, " | ".join(
            span(by_d[d], 1e3, 2 if s != "kernel_pct" else 4) + " ms" for s, by_d in fig["alloc"].items())))
    small, large = plan.alloc_sizes[0], plan.alloc_sizes[-1]
    out.append("| D = %d / D = %d | %s |" % (large, small, " | ".join(
        times(by_d[large][0], by_d[small][0]) for by_d in fig["alloc"].values())))
    out += ["", "## 3. Memory", "",
            "Peak RSS of the module's process for one more leased device (the leased runs above), from "
            "`getrusage(RUSAGE_CHILDREN).ru_maxrss` in a wrapper process that has only that child.", "",
            "| leases in the registry | peak RSS, MB |", "| ---: | ---: |"]
    for leases, triple in sorted(fig["memory"].items()):
        out.append("| %d | %s |" % (leases, span(triple, 1, 1)))
    out += ["", "## 4. The guest_taps role", "",
            "`ansible-playbook benchmarks/role.yml` with %d guests × 2 NICs (as `benchmarks/guest_taps_bench.sh` "
            "runs it), then the same again (must report changed=0), and an empty play: ansible-playbook's own "
            "floor." % plan.guests, "",
            "| run | seconds | minus the empty play |", "| --- | ---: | ---: |"]
    empty = fig["role"]["empty"][0]
    for key, label in (("first", "first run"), ("nochange", "no-change run"), ("empty", "empty play")):
        net = "%.2f" % (fig["role"][key][0] - empty) if key != "empty" else "–"
        out.append("| %s | %s | %s |" % (label, span(fig["role"][key], 1, 2), net))
    out += ["", "## Method and related benchmarks", "",
            "- The module runs as `python -m ansible_collections.netdev.tuntap.plugins.modules.tap_device ARGS.json`, "
            "the way Ansible's wrapper runs it on the host, without ansible-playbook around it.",
            "- The floor: open /dev/net/tun, TUNSETIFF (tap, no packet info, EXCL), TUNSETPERSIST, close, per "
            "device, in one Python process (`benchmarks/nttbench/peers/raw_loop.py`). Peers enter the namespace "
            "with setns before creating.",
            "- The same-work loop (`benchmarks/nttbench/peers/same_work_loop.py`) is the floor plus what the "
            "module does per device with its defaults and nothing else: IPv6 switched off through "
            "`disable_ipv6` before the link first comes up, the mark (the interface alias) set in one netlink "
            "send while the descriptor holds the device, TUNSETPERSIST, close, and one send bringing the "
            "devices up. Its distance to the floor is work the module cannot leave out.",
            "- After a namespace with 1000 or more devices is deleted, the next run waits until the kernel has "
            "torn them down (it holds the rtnl lock meanwhile).",
            "- Removal: [`benchmarks/removal_bench.py`](../benchmarks/removal_bench.py); many hosts: "
            "[benchmarks-fleet.md](benchmarks-fleet.md).", ""]
    return "\n".join(out)
