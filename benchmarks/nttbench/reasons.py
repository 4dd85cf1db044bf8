"""Why a target is missed, as data: shown in the report only when its target is missed.

Each entry is written from a profile of the code it describes, names the commit it was
analysed on, and is replaced when the code changes. 'not analysed' is said plainly where no
profile was made: never a guess."""

NOT_ANALYSED = "not analysed"

# target id -> reason
REASONS: dict[str, str] = {
}


def reason(target_id: str) -> str:
    return REASONS.get(target_id, NOT_ANALYSED)
