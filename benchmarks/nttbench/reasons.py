"""Why a target is missed, as data: shown in the report only when its target is missed.

Each entry is written from a profile of the code it describes, names the commit it was
analysed on, and is replaced when the code changes. 'not analysed' is said plainly where no
profile was made: never a guess."""

NOT_ANALYSED = "not analysed"

_CREATE = ("profiled on commit 673554f, N = 1000, cProfile of the module's process: 70% applying the "
           "actions, of which 35% configuring each device with one pyroute2 request through its asyncio "
           "loop and 19% in close() of each device's fd (the kernel's work for a device already up); "
           "14% imports (the whole pyroute2 package); 7% exit_json on the large result")

# target id -> reason
REASONS: dict[str, str] = {
    "create_per_device_1000": _CREATE,
    "create_per_device_5000": _CREATE,
    "create_whole_1000": _CREATE,
    "memory_5000": ("measured on commit 673554f: a bare AnsibleModule import peaks at 23 MB, adding "
                    "`import pyroute2` (its package __init__ imports everything) at 36 MB, before any lease "
                    "is read; the rest grows with the number of leases (not profiled further)"),
}
REASONS["memory_30000"] = REASONS["memory_5000"]


def reason(target_id: str) -> str:
    return REASONS.get(target_id, NOT_ANALYSED)
