"""1. Many processes, one registry, one namespace: ad hoc single, ad hoc batch and direct calls at once."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

import ntt_helpers as h
import ntt_invariants
from ntt_figures import record, size

pytestmark = [pytest.mark.root]

TEMPLATE = "rel%d"
KINDS = ("adhoc-single", "adhoc-batch", "direct-single", "direct-batch")


def _kind(index: int, processes: int) -> str:
    # One process in eight is ad hoc (each ansible run costs seconds of CPU); the rest call the module directly.
    if index == 0:
        return "adhoc-single"
    if index % 8 == 4:
        return "adhoc-batch"
    return "direct-single" if index % 2 else "direct-batch"


def _leases(index: int, count: int) -> list:
    return ["p%02d/%02d" % (index, n) for n in range(count)]


def _start(kind: str, index: int, leases: list, ns: str, registry: str, workdir) -> subprocess.Popen:
    base = {"netns": ns, "registry": registry, "max_id": 99999}
    if kind == "adhoc-single":
        # One ansible process, one single-form module run per inventory host, five at a time.
        inventory = workdir / ("inv-%d.ini" % index)
        inventory.write_text("[all]\n" + "".join(
            "h%d ansible_connection=local ansible_python_interpreter=%s lease=%s\n" % (n, h.PYTHON, lease)
            for n, lease in enumerate(leases)))
        args = "name=%s lease={{ lease }} netns=%s registry=%s" % (TEMPLATE, ns, registry)
        argv = [h.tool("ansible"), "all", "-i", str(inventory), "-f", "5", "-m", h.MODULE, "-a", args]
    elif kind == "adhoc-batch":
        params = dict(base, devices=[{"name": TEMPLATE, "lease": lease} for lease in leases])
        argv = [h.tool("ansible"), "localhost", "-m", h.MODULE, "-a", json.dumps(params),
                "-e", "ansible_python_interpreter=%s" % h.PYTHON]
    elif kind == "direct-single":
        calls = [dict(base, name=TEMPLATE, lease=lease) for lease in leases]
        argv = h.api_subprocess_argv(calls)
    else:
        calls = [dict(base, devices=[{"name": TEMPLATE, "lease": lease} for lease in leases[i:i + 5]])
                 for i in range(0, len(leases), 5)]
        argv = h.api_subprocess_argv(calls)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
                            env=h.ansible_env({"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}))


def _failures(kind: str, proc: subprocess.Popen, out: str, err: str) -> list:
    if proc.returncode != 0:
        return ["%s exited %d: %s %s" % (kind, proc.returncode, out[-2000:], err[-2000:])]
    if kind.startswith("direct"):
        results = json.loads(out.strip().splitlines()[-1])
        return [r["error"] for r in results if "error" in r]
    bad = [line for line in out.splitlines() if "FAILED" in line or "UNREACHABLE" in line]
    return bad + (["Traceback in output"] if "Traceback" in out + err else [])


def test_many_processes_share_one_registry(ns, registry, workdir):
    processes, per = size("processes"), size("leases_per_process")
    started = time.monotonic()
    plan = [(_kind(i, processes), i, _leases(i, per)) for i in range(processes)]
    procs = [(kind, _start(kind, i, leases, ns, registry, workdir)) for kind, i, leases in plan]
    failures = []
    for kind, proc in procs:
        out, err = proc.communicate(timeout=900)
        failures += _failures(kind, proc, out, err)
    elapsed = time.monotonic() - started
    assert failures == [], failures
    expected = {lease: {"template": TEMPLATE} for _kind_, _i, leases in plan for lease in leases}
    doc = ntt_invariants.check(registry, ns, expected)
    numbers = [rec["id"] for rec in doc["leases"].values()]
    assert len(set(numbers)) == len(numbers) == processes * per
    ntt_invariants.counters_cover(doc, {TEMPLATE: numbers})
    # Everything again, in one batch: nothing to change.
    again = h.api_subprocess([{"netns": ns, "registry": registry,
                               "devices": [{"name": TEMPLATE, "lease": lease} for lease in sorted(expected)]}])
    assert again[0]["result"]["changed"] is False, again
    assert [d["name"] for d in again[0]["result"]["devices"]] == [doc["leases"][k]["name"] for k in sorted(expected)]
    kinds = {kind: sum(1 for k, _i, _l in plan if k == kind) for kind in KINDS}
    record("concurrency", processes=processes, leases=processes * per, kinds=kinds, failed_runs=len(failures),
           distinct_names=len(set(numbers)), counter=doc["counters"][TEMPLATE], max_number=max(numbers),
           rerun_changed=again[0]["result"]["changed"], seconds=round(elapsed, 1))
