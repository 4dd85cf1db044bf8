# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmark: batch create, allocation, memory and the role, against the floor and the peers.

Run it through scripts/bench.sh (root; it installs requirements/bench.txt):

    bash scripts/bench.sh            # full: writes docs/benchmarks.md and docs/benchmarks.png
    bash scripts/bench.sh --tiny     # CI size: writes tests/output/bench/benchmarks.{md,png}

1. Batch create, N = 100 / 1000 / 5000 (tiny: 50), and 1 for the per-device cost: tap_device as
   a process (one task of N leased items with a template), the raw ioctl loop (the floor),
   `ip -batch`, pyroute2's tuntap creation, a playbook loop of one call per device (N = 100;
   tiny: 10; fewer rounds).
2. One more leased device with D = 100 / 1000 / 5000 / 30 000 devices present (tiny: 100, 300):
   leases in the registry, devices the registry does not know, and the kernel's own %d.
3. Peak RSS of the one-device runs of 2. at 5000 and 30 000 leases.
4. The guest_taps role, 500 guests x 2 NICs (tiny: 20): first run, no-change run, empty play.
5. Prints the figures and the targets, writes the doc, the PNG and results.json (raw samples).

Everything runs in throwaway namespaces ntt-bench-<random> with throwaway registries, deleted
on exit, also on failure or Ctrl-C. `bench.py --check DIR` checks a run's output (CI).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

# pylint: disable=wrong-import-position
from nttbench import machine, scenarios  # noqa: E402
from nttbench.derive import derive, int_keys  # noqa: E402
from nttbench.plan import FULL, TINY  # noqa: E402
from nttbench.scratch import Interrupted, Scratch, trap_signals  # noqa: E402
from nttbench.targets import evaluate  # noqa: E402
from nttbench.tools import BenchError, Runner  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--tiny", action="store_true", help="the CI size (N = 50)")
    parser.add_argument("--rounds", type=int, help="rounds (default: 5 full, 2 tiny)")
    parser.add_argument("--out", help="directory for benchmarks.md/.png (default: docs/, tiny: tests/output/bench/)")
    parser.add_argument("--note", default="", help="a sentence put at the top of the doc (e.g. the machine was shared)")
    parser.add_argument("--check", metavar="DIR", help="only check the output of a run in DIR")
    parser.add_argument("--render", metavar="RESULTS_JSON",
                        help="only write the doc and the PNG again from the raw samples of an earlier run")
    args = parser.parse_args()
    if args.check:
        from nttbench.check import check  # pylint: disable=import-outside-toplevel
        problems = check(args.check)
        for problem in problems:
            print("bench check: " + problem, file=sys.stderr)
        print("bench check: %s" % ("FAILED" if problems else "OK - the doc, the PNG and every figure are there"))
        return 1 if problems else 0
    if args.render:
        with open(args.render, encoding="utf-8") as handle:
            data = int_keys(json.load(handle))
        plan = TINY if data["tiny"] else FULL
        plan = dataclasses.replace(plan, rounds=data["rounds"], loop_rounds=data.get("loop_rounds", plan.loop_rounds))
        out = args.out or (os.path.dirname(os.path.abspath(args.render)) if plan.tiny else os.path.join(ROOT, "docs"))
        write(plan, data["samples"], data["machine"], out, args.note or data.get("note", ""), data["seconds"])
        return 0
    if os.geteuid() != 0:
        print("bench.py: needs root (network namespaces, tun/tap devices)", file=sys.stderr)
        return 2
    plan = TINY if args.tiny else FULL
    if args.rounds:
        plan = dataclasses.replace(plan, rounds=args.rounds, loop_rounds=min(plan.loop_rounds, args.rounds))
    raw_dir = os.path.join(ROOT, "tests", "output", "bench")
    out = args.out or (raw_dir if plan.tiny else os.path.join(ROOT, "docs"))
    os.makedirs(out, exist_ok=True)
    os.makedirs(raw_dir, exist_ok=True)

    trap_signals()
    started = time.monotonic()
    info = machine.describe(ROOT)
    print("benchmark (%s): %s, %s cores, kernel %s, python %s, ansible-core %s, pyroute2 %s, commit %s, load %s"
          % ("tiny" if plan.tiny else "full", info["cpu"], info["cores"], info["kernel"], info["python"],
             info["ansible-core"], info["pyroute2"], info["commit"], info["load_before"]), flush=True)
    scratch = Scratch()
    try:
        run = Runner(scratch.directory("runs"))
        samples = {}
        print("1. batch create", flush=True)
        samples["create"] = scenarios.batch_create(plan, scratch, run)
        print("2./3. one more device with D present; peak RSS", flush=True)
        samples["alloc"], samples["memory"] = scenarios.allocation(plan, scratch, run)
        print("4. the guest_taps role", flush=True)
        samples["role"] = scenarios.role(plan, scratch, run)
    except BenchError as exc:
        print("bench.py: FAILED: %s" % exc, file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Interrupted) as exc:
        print("bench.py: interrupted (%s); the namespaces and registries are being removed" % (str(exc) or "Ctrl-C"),
              file=sys.stderr)
        return 130
    finally:
        scratch.close()
    elapsed = time.monotonic() - started
    info["load_after"] = machine.loadavg()

    with open(os.path.join(out if plan.tiny else raw_dir, "results.json" if plan.tiny else "results-full.json"), "w",
              encoding="utf-8") as handle:
        json.dump({"tiny": plan.tiny, "rounds": plan.rounds, "loop_rounds": plan.loop_rounds, "machine": info,
                   "seconds": elapsed, "note": args.note, "samples": samples}, handle, indent=1)
    write(plan, samples, info, out, args.note, elapsed)
    return 0


def write(plan, samples: dict, info: dict, out: str, note: str, elapsed: float) -> None:
    """The doc, the PNG and the console table from the raw samples."""
    # pylint: disable=import-outside-toplevel
    from nttbench import chart, markdown
    fig = derive(samples)
    targets = evaluate(plan, fig)
    title = "netdev.tuntap %s, %s, %s cores, kernel %s, %s%s" % (
        info["commit"], info["cpu"], info["cores"], info["kernel"], info["date"], " (tiny run)" if plan.tiny else "")
    chart.draw(fig, os.path.join(out, "benchmarks.png"), title)
    with open(os.path.join(out, "benchmarks.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown.document(plan, fig, targets, info, "benchmarks.png", note, elapsed))
    print(markdown.console(plan, fig, targets))
    print("\nwrote %s and %s (whole run %.0f s)"
          % (os.path.join(out, "benchmarks.md"), os.path.join(out, "benchmarks.png"), elapsed))


if __name__ == "__main__":
    sys.exit(main())
