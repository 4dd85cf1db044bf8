"""Add up JUnit XML reports: ``python ntt_junit_tally.py REPORT.xml...``.

Prints ``pytest: N passed, N failed, N skipped`` (errors count as failures).
"""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def tally(paths):
    tests = failed = skipped = 0
    for path in paths:
        root = ET.parse(path).getroot()
        for suite in [root] if root.tag == "testsuite" else root.iter("testsuite"):
            tests += int(suite.get("tests", 0))
            failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skipped += int(suite.get("skipped", 0))
    return tests - failed - skipped, failed, skipped


if __name__ == "__main__":
    print("pytest: %d passed, %d failed, %d skipped" % tally(sys.argv[1:]))
