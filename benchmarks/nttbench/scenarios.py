"""The four measurements. Each returns plain data (lists of samples, seconds or KB) that
report.py turns into medians, ratios and verdicts. Tools alternate within every round (A B A
B ...), each run in a namespace of its own that is deleted afterwards."""
from __future__ import annotations

import json
import os

from .plan import Plan
from .scratch import Scratch, ip
from .tools import BenchError, Runner, expect_taps

CREATE_TOOLS = ("module", "floor", "same_work", "ip_batch", "pyroute2", "playbook_loop")


def log(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------ 1. batch create

def batch_create(plan: Plan, scratch: Scratch, run: Runner) -> dict:
    samples: dict = {tool: {} for tool in CREATE_TOOLS}
    # every tool also runs at the playbook loop's sizes, so that it has something to compare with
    sizes = tuple(sorted({1, *plan.create_sizes, *plan.loop_sizes}))
    for rnd in range(plan.rounds):
        for n in sizes:
            for tool in CREATE_TOOLS:
                if tool == "playbook_loop" and (rnd >= plan.loop_rounds or (n != 1 and n not in plan.loop_sizes)):
                    continue
                ns, registry = scratch.netns(), scratch.registry()
                if tool == "module":
                    figures = run.module_batch(ns, registry, n)
                elif tool == "floor":
                    figures = run.raw_loop(ns, "raw", 0, n)
                elif tool == "same_work":
                    figures = run.same_work(ns, n)
                elif tool == "ip_batch":
                    figures = run.ip_batch(ns, n)
                elif tool == "pyroute2":
                    figures = run.pyroute2(ns, n)
                else:
                    figures = run.playbook_loop(ns, registry, n)
                expect_taps(ns, n, "%s, N = %d" % (tool, n))
                scratch.drop(ns, settle=n >= 1000)
                samples[tool].setdefault(n, []).append(figures["seconds"])
            log("  create round %d/%d, N = %d: %s" % (rnd + 1, plan.rounds, n, ", ".join(
                "%s %.3f s" % (tool, samples[tool][n][-1]) for tool in CREATE_TOOLS if n in samples[tool]
                and len(samples[tool][n]) == rnd + 1)))
    return samples


# ------------------------------------------------------------------ 2 and 3. allocation, memory

def allocation(plan: Plan, scratch: Scratch, run: Runner) -> tuple[dict, dict]:
    """One more device with D present: the module with D leases in its registry (devices made
    by the module), the module with D devices its registry does not know (made by the raw
    loop), and the kernel's own %d in that second namespace. The peak RSS of the leased runs
    is the memory figure."""
    series: dict = {"module_leased": {}, "module_unleased": {}, "kernel_pct": {}, "kernel_pct_process": {}}
    memory: dict = {}
    for d in plan.alloc_sizes:
        leased_ns, leased_reg = scratch.netns(), scratch.registry()
        made = 0
        while made < d:
            chunk = min(plan.batch_chunk, d - made)
            figures = run.module_batch(leased_ns, leased_reg, chunk, start=made)
            made += chunk
            log("  D = %d: the module made %d leased taps (%.1f s)" % (d, made, figures["seconds"]))
        expect_taps(leased_ns, d, "leased devices present")
        plain_ns, plain_reg = scratch.netns(), scratch.registry()
        figures = run.raw_loop(plain_ns, "ntt", 0, d)
        expect_taps(plain_ns, d, "unleased devices present")
        log("  D = %d: the raw loop made %d taps (%.1f s)" % (d, d, figures["seconds"]))
        scratch.settle()
        for rnd in range(plan.rounds):
            # the devices of this and the earlier rounds come on top of D (D .. D + rounds - 1)
            leased = run.module_batch(leased_ns, leased_reg, 1, start=d + rnd)
            expect_taps(leased_ns, d + rnd + 1, "one more leased device")
            plain = run.module(plain_ns, plain_reg, [{"name": "bt%d", "lease": "one/%d" % rnd}],
                               "tap_device, one leased tap beside %d unknown taps" % d)
            kernel = run.kernel_template(plain_ns)
            if kernel["name"] != "ntt%d" % (d + rnd):
                raise BenchError("the kernel's %%d gave %s, expected ntt%d" % (kernel["name"], d + rnd))
            expect_taps(plain_ns, d + 2 * rnd + 2, "one more device beside unleased ones")
            series["module_leased"].setdefault(d, []).append(leased["seconds"])
            series["module_unleased"].setdefault(d, []).append(plain["seconds"])
            series["kernel_pct"].setdefault(d, []).append(kernel["ioctl_seconds"])
            series["kernel_pct_process"].setdefault(d, []).append(kernel["seconds"])
            memory.setdefault(d, []).append(leased["maxrss_kb"])
            log("  alloc round %d/%d, D = %d: module leased %.3f s (%.1f MB), unleased %.3f s, kernel %%d %.0f us"
                % (rnd + 1, plan.rounds, d, leased["seconds"], leased["maxrss_kb"] / 1024, plain["seconds"],
                   kernel["ioctl_seconds"] * 1e6))
        scratch.drop(leased_ns)
        scratch.drop(plain_ns, settle=True)
    return series, {d: memory[d] for d in plan.memory_sizes}


# ------------------------------------------------------------------ 4. the role

def guests_file(path: str, count: int) -> None:
    """The input benchmarks/guest_taps_bench.sh gives benchmarks/role.yml: guest gNNN with NIC 0
    on br0 and NIC 1 on br1."""
    width = max(3, len(str(count - 1)))
    guests = []
    for g in range(count):
        nics = [{"id": "net%d" % k, "bridge": "br%d" % k, "mac": "52:54:00:%02x:%02x:%02x" % (g >> 8, g & 0xFF, k)}
                for k in range(2)]
        guests.append({"name": "g%0*d" % (width, g), "nics": nics})
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"guest_taps_guests": guests}, handle)


def role(plan: Plan, scratch: Scratch, run: Runner) -> dict:
    samples: dict = {"first": [], "nochange": [], "empty": []}
    guests = os.path.join(scratch.directory("role"), "guests.json")
    guests_file(guests, plan.guests)
    for rnd in range(plan.rounds):
        ns, registry = scratch.netns(), scratch.registry()
        for bridge in ("br0", "br1"):
            ip("-n", ns, "link", "add", bridge, "up", "type", "bridge")
        extra = ["@" + guests, "bench_netns=" + ns, "bench_registry=" + registry]
        first = run.playbook("role.yml", extra, "guest_taps, first run")
        if first["recap"].get("failed") != 0 or not first["recap"].get("changed"):
            raise BenchError("role, first run: recap %s" % first["recap"])
        expect_taps(ns, 2 * plan.guests, "role, first run")
        again = run.playbook("role.yml", extra, "guest_taps, no-change run")
        if again["recap"].get("failed") != 0 or again["recap"].get("changed") != 0:
            raise BenchError("role, no-change run: recap %s (expected changed=0)" % again["recap"])
        empty = run.playbook("empty.yml", [], "an empty play", want_recap=False)
        samples["first"].append(first["seconds"])
        samples["nochange"].append(again["seconds"])
        samples["empty"].append(empty["seconds"])
        scratch.drop(ns, settle=True)
        log("  role round %d/%d, %d guests: first %.2f s, no change %.2f s, empty play %.2f s"
            % (rnd + 1, plan.rounds, plan.guests, first["seconds"], again["seconds"], empty["seconds"]))
    return samples
