"""Why a target is missed, as data: shown in the report only when its target is missed.

Each entry is written from a profile of the code it describes, names the commit it was
analysed on, and is replaced when the code changes. 'not analysed' is said plainly where no
profile was made: never a guess."""

NOT_ANALYSED = "not analysed"

_CREATE = (
    "profiled on commit 4ceb346, N = 1000 (cProfile of the module's process, and the same-work peer in "
    "the same run): the floor does not do what the module must do for every device with its defaults: "
    "IPv6 switched off before the link first comes up, the mark set while our descriptor holds the "
    "device, and bringing it up; done by hand and nothing else (the same-work loop) that alone is 1.3x "
    "the floor per device. The rest is the module's own per-device work: reading every device it made "
    "back by name (one RTM_GETLINK each, decoded in Python: 100-140 us a device under the profiler), the "
    "ledger's record of each lease with its mark encoded as JSON (50-90 us under the profiler), its rows "
    "in the registry, and the result entry of each device")
_WHOLE = (
    "profiled on commit 4ceb346: besides the per-device work (see the per-device target), a run of the "
    "module starts Python with AnsibleModule and the module's own code, and compiles its module_utils "
    "(Ansible keeps no bytecode for them): 0.17-0.25 s whatever N is (the module's N = 1 run), against "
    "0.02 s for the raw loop's interpreter")
_ROLE = (
    "measured on commits 4ceb346 and 3955a66: the module's own process takes 0.40-0.6 s for a no-change "
    "run of the 1000 NICs (run directly, 0.13 s of it looking the 1000 devices up), an empty play "
    "0.6-1.0 s; the rest "
    "is Ansible on the controller around one task: the role's argument spec validated over the whole "
    "guest list, its dependency tasks, templating the module's arguments, packaging the module with "
    "its module_utils (AnsiballZ), and taking in the 670 KB result of 1000 devices and publishing it "
    "as a fact (profiled before the last merge at 0.25-0.3 s, 0.3 s, 0.4 s, 0.25-0.5 s and 0.6-0.9 s "
    "respectively); the first run also creates the 1000 devices on their bridges (see batch create)")

# target id -> reason
REASONS: dict[str, str] = {
    "create_per_device_1000": _CREATE,
    "create_per_device_5000": _CREATE,
    "create_whole_1000": _WHOLE,
    "role_first": _ROLE,
    "role_nochange": _ROLE,
}


def reason(target_id: str) -> str:
    return REASONS.get(target_id, NOT_ANALYSED)
