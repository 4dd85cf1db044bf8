"""Format the "fleet bench:" lines of scripts/fleet.sh --bench as a Markdown table.

Usage: python3 fleet_table.py FILE   (the lines benchmarks/fleet_bench.sh collected)
"""

import re
import sys


def main(path):
    rows = [dict(re.findall(r"(\w+)=([\d.]+)", line)) for line in open(path) if line.startswith("fleet bench:")]
    if not rows:
        sys.exit("no 'fleet bench:' lines in %s" % path)
    base = float(rows[0]["per_host_again"])
    print("| hosts | taps | first run, s | no-change run, s | per host, first | per host, no change "
          "| per host vs %s hosts (no change) |" % rows[0]["hosts"])
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        hosts, guests, nics = int(r["hosts"]), int(r["guests"]), int(r["nics"])
        print("| %d | %d | %.2f | %.2f | %.3f | %.3f | %.2fx |" % (
            hosts, hosts * guests * nics, float(r["first"]), float(r["again"]),
            float(r["per_host_first"]), float(r["per_host_again"]), float(r["per_host_again"]) / base))


if __name__ == "__main__":
    main(sys.argv[1])
