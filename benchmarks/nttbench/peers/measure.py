"""Run one command as this process's only child; print its wall time and peak RSS.

    measure.py OUTPUT_FILE COMMAND [ARG...]

The child's stdout goes to OUTPUT_FILE, its stderr to OUTPUT_FILE.err. The last line printed
is JSON: {"seconds": wall time around the child only, "maxrss_kb": getrusage(RUSAGE_CHILDREN)
.ru_maxrss (this wrapper has no other child, so it is the child's own peak, or that of its
largest descendant), "rc": exit status}."""
import json
import resource
import subprocess
import sys
import time


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    with open(out, "wb") as stdout, open(out + ".err", "wb") as stderr:
        start = time.perf_counter()
        rc = subprocess.call(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"seconds": seconds, "maxrss_kb": usage.ru_maxrss, "rc": rc}))


main()
