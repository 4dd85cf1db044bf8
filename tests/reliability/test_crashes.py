"""2. Runs SIGKILLed at random points (in replacements, batches, releases and prunes), then run again.

After every kill the killed task is run again to completion, as a user would, and the
invariants are checked on the kernel and the registry file: every lease maps to its device,
at most one device per lease, no marked device the registry cannot explain, no released
lease back, counters at or above every number handed out.
"""
from __future__ import annotations

import random
import time

import pytest

import ntt_crash as crash
import ntt_invariants
from ntt_figures import record, size

pytestmark = [pytest.mark.root]

LEASES = ["g%d/n0" % i for i in range(10)]
TEMPLATES = ("crs%d", "alt%d")


def _spec(rng) -> dict:
    spec = {"name": rng.choice(TEMPLATES)}
    if rng.random() < 0.3:
        spec["multi_queue"] = True
    if rng.random() < 0.2:
        spec["mode"] = "tun"
    return spec


def _operation(rng, model: dict):
    """(kind, params-without-netns/registry, model after it)."""
    roll = rng.random()
    after = dict(model)
    present = sorted(model)
    if roll < 0.25 or not present:
        lease = rng.choice(LEASES)
        spec = _spec(rng)
        after[lease] = spec
        kind = "replace" if lease in model and model[lease] != spec else "create"
        return kind, dict(spec, lease=lease), after
    if roll < 0.5:
        present_change = rng.choice(present)
        spec = _spec(rng)
        after[present_change] = spec
        return "replace", dict(spec, lease=present_change), after
    if roll < 0.7:
        chosen = rng.sample(LEASES, rng.randint(2, 5))
        devices = []
        for lease in chosen:
            spec = model.get(lease) if lease in model and rng.random() < 0.5 else _spec(rng)
            after[lease] = spec
            devices.append(dict(spec, lease=lease))
        return "batch", {"devices": devices}, after
    if roll < 0.85:
        lease = rng.choice(present)
        del after[lease]
        return "release", {"lease": lease, "state": "absent"}, after
    keep = rng.sample(present, rng.randint(0, len(present)))
    for lease in present:
        if lease not in keep:
            del after[lease]
    return "prune", {"devices": [dict(model[lease], lease=lease) for lease in keep], "prune_prefix": "g"}, after


def test_sigkill_at_random_points(ns, registry):
    rng = random.Random(int(time.time()))
    seed = rng.randrange(2 ** 32)
    rng = random.Random(seed)
    wanted = size("kills")
    model: dict = {}
    released: set = set()
    kills, completed, by_kind, by_point = 0, 0, {}, {}
    started = time.monotonic()
    while kills < wanted:
        kind, params, after = _operation(rng, model)
        params = dict(params, netns=ns, registry=registry)
        point = (rng.choice(crash.POINTS), rng.randint(1, 2))
        outcome = crash.run_forked(params, kill_at=point)
        if crash.KILLED in outcome:
            kills += 1
            by_kind[kind] = by_kind.get(kind, 0) + 1
            by_point[point[0]] = by_point.get(point[0], 0) + 1
            outcome = crash.run_forked(params)     # the user runs the task again
            assert "result" in outcome, (seed, kind, params, point, outcome)
            again = crash.run_forked(params)       # and once more: nothing left to do
            assert again["result"]["changed"] is False, (seed, kind, params, point, again)
        else:
            completed += 1
            assert "result" in outcome, (seed, kind, params, point, outcome)
        model = after
        gone = {lease for lease in LEASES if lease not in model}
        released |= gone
        released -= set(model)
        ntt_invariants.check(registry, ns, model, released=released)
    record("crashes", kills=kills, completed_runs_without_kill=completed, by_operation=by_kind,
           by_point=by_point, seed=seed, leases=len(LEASES), seconds=round(time.monotonic() - started, 1))
