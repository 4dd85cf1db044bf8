"""Run the reliability suite (tests/reliability) and write docs/reliability.md from its figures.

    python scripts/ntt_reliability.py            # the CI run (a few minutes)
    python scripts/ntt_reliability.py --soak     # the long run: NTT_SOAK=1, ten times the kills and cases
    python scripts/ntt_reliability.py --render   # only rewrite the document from the last figures

The tests record what they did in tests/output/reliability/figures.json; this script prints
those figures and puts them into docs/reliability.md, with what each case guarantees. Run it
as root from the repository's virtual environment (scripts/test.sh's `reliability` stage does).
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "tests", "output", "reliability")
FIGURES = os.path.join(OUTPUT, "figures.json")
DOC = os.path.join(ROOT, "docs", "reliability.md")

CASES = [
    ("concurrency", "1. Concurrency",
     "processes at once (ad hoc single-form runs, ad hoc batches, direct single and batch calls), one registry, "
     "one namespace",
     "No run fails; every lease maps to its own device with its mark; all names distinct; the counter is at or "
     "above every number handed out; the same request again reports changed: false."),
    ("crashes", "2. Crashes",
     "SIGKILLs of a run at a random point (entering a registry write, inside its transaction before COMMIT, "
     "renaming a new database into place, right after a device is made, deleted or changed), in creations, "
     "replacements, batches, releases and prunes; the task is then run again",
     "After every kill and re-run: every lease maps to its device, at most one device per lease, no device with "
     "this registry's mark that the registry does not bind, no released lease back, counters cover every number; "
     "a third run reports changed: false."),
    ("broken_registries", "3. Broken registries",
     "JSON registries being migrated that are empty, truncated, not JSON, binary, nested deeply, of another "
     "version, huge, with impossible times, with a wrong type at every path of the document (intent items "
     "included); SQLite registries truncated, with damaged pages or header, of another version, with foreign "
     "tables or triggers, in WAL mode, with a transaction cut short or a garbage journal, with a wrong value in "
     "every column; and FIFOs, directories, device nodes and symlinks in place of registry.json, its -journal, "
     ".lock, .json-v1 and a temporary file, a symlinked directory, foreign owners and world-writable files and "
     "directories",
     "Each ends within a time limit as a result (recovered with a warning) or a failed task naming the path and "
     "what to do; never an internal error or a traceback; the invariants hold afterwards."),
    ("full_disk_space", "4. Full disk (space)",
     "a 256 KiB tmpfs in a private mount namespace filled up before the intent, after a device was made, "
     "before the result and after a deletion",
     "The run fails cleanly; it reports changed: true exactly when it made or deleted devices; the next run "
     "takes them in, says so (changed: true, adopted), and the invariants hold."),
    ("full_disk_inodes", "4. Full disk (inodes)",
     "the same with the tmpfs's inodes exhausted instead of its space",
     "As above."),
    ("read_only", "4. Read-only storage",
     "the registry's directory bind-mounted read-only",
     "A real run fails cleanly naming the file and makes no device; check mode still works."),
    ("hostile_input", "5. Hostile input",
     "generated tasks (hypothesis) over every option and batch item: format strings, unicode with lone "
     "surrogates, NUL and control bytes, huge and negative numbers, inf/nan, wrong types, path tricks",
     "Only failed tasks with a message (never an internal error) or devices that exist with valid names and "
     "their marks; nothing outside the target namespace and the registry sandbox changes."),
]


def _figures_text(figures: dict) -> str:
    parts = []
    for key, value in figures.items():
        if isinstance(value, dict):
            value = ", ".join("%s %s" % (k, v) for k, v in sorted(value.items()))
            parts.append("%s: %s" % (key.replace("_", " "), value))
        else:
            parts.append("%s %s" % (key.replace("_", " "), value))
    return "; ".join(parts)


def render(document: dict) -> str:
    cases = document.get("cases", {})
    status = "passed" if document.get("exitstatus") == 0 else "FAILED (pytest exit status %s)" % document.get(
        "exitstatus")
    lines = [
        "# Reliability",
        "",
        "What the reliability suite (`tests/reliability`) does to `netdev.tuntap.tap_device`, and the figures",
        "of its last run. This file is written by the suite's command; do not edit the figures by hand:",
        "",
        "    sudo python scripts/ntt_reliability.py           # CI size, a few minutes (scripts/test.sh reliability)",
        "    sudo python scripts/ntt_reliability.py --soak    # the long soak: NTT_SOAK=1, ten times the kills and cases",
        "",
        "Last run: %s, %s, %s." % (document.get("finished", "never"), "soak" if document.get("soak") else "CI size",
                                   status),
        "",
        "| case | what is done | figures | what it guarantees |",
        "| --- | --- | --- | --- |",
    ]
    for key, title, what, guarantee in CASES:
        figures = cases.get(key)
        shown = _figures_text(figures) if figures else "**not run**"
        lines.append("| %s | %s | %s | %s |" % (title, what, shown, guarantee))
    lines += [
        "",
        "Failures found: `failed runs` and `failures` above count outcomes that broke a guarantee in the",
        "last run; the suite fails when any is not zero. Defects found while the suite was written, each now",
        "with a test in tests/unit or tests/integration that failed before its fix: a crash in a replacement",
        "leaking a marked device, two registries adopting each other's devices, a FIFO blocking recovery,",
        "wrong types in intent records, NUL bytes in paths, `changed` lost after a full disk, an unbounded",
        "lock wait, impossible times, foreign owners, control characters in names; and two that the",
        "hostile-input case found by itself: lone surrogates in names and paths, and inf/nan given for a",
        "numeric option, each of which gave an internal error.",
        "",
        "Every test runs on real devices inside throwaway `ntt-*` network namespaces; full-disk and read-only",
        "mounts exist only in a private mount namespace of a child process and vanish with it.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list) -> int:
    soak = "--soak" in argv
    rest = [a for a in argv if a not in ("--soak", "--render")]
    rc = 0
    if "--render" not in argv:
        env = dict(os.environ)
        if soak:
            env["NTT_SOAK"] = "1"
        os.makedirs(OUTPUT, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(FIGURES)
        junit = os.path.join(ROOT, "tests", "output", "junit", "reliability.xml")
        os.makedirs(os.path.dirname(junit), exist_ok=True)
        rc = subprocess.call([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-ra",
                              "--basetemp", os.path.join(OUTPUT, "tmp"), "--junitxml", junit,
                              os.path.join(ROOT, "tests", "reliability")] + rest, env=env, cwd=ROOT)
    if not os.path.exists(FIGURES):
        print("no figures were recorded (%s is missing)" % FIGURES, file=sys.stderr)
        return rc or 1
    with open(FIGURES, encoding="utf-8") as handle:
        document = json.load(handle)
    print("\nreliability figures (%s):" % ("soak" if document.get("soak") else "CI size"))
    for key, figures in sorted(document.get("cases", {}).items()):
        print("  %-18s %s" % (key, _figures_text(figures)))
    with open(DOC, "w", encoding="utf-8") as out:
        out.write(render(document))
    print("wrote %s" % os.path.relpath(DOC, ROOT))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
