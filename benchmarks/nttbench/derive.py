"""Raw samples -> figures: (median, min, max) of every series, per-device costs, MB."""
from __future__ import annotations

from .stats import per_device, spread


def derive(samples: dict) -> dict:
    create = {}
    for tool, by_n in samples["create"].items():
        create[tool] = {}
        for n, times in by_n.items():
            entry = {"whole": spread(times), "rounds": len(times)}
            if n > 1:
                entry["per_device"] = spread(per_device(by_n.get(1, []), times, n))
            create[tool][n] = entry
    alloc = {series: {d: spread(times) for d, times in by_d.items()} for series, by_d in samples["alloc"].items()}
    memory = {leases: spread([kb / 1024 for kb in kbs]) for leases, kbs in samples["memory"].items()}
    role = {k: spread(v) for k, v in samples["role"].items()}
    return {"create": create, "alloc": alloc, "memory": memory, "role": role}


def int_keys(data):
    """JSON turned the sizes into strings: back to ints."""
    if isinstance(data, dict):
        return {(int(k) if isinstance(k, str) and k.isdigit() else k): int_keys(v) for k, v in data.items()}
    return data
