"""Write the fleet test's inventory: hosts.yml and one host_vars file per host.

group_vars/hypervisors.yml is a fixed file (tests/fleet/inventory/group_vars) that
scripts/fleet.sh copies next to what this writes; docs/many-hosts.md shows this layout.

Each host has its own guests, named after the host (h03-vm07), with NICs net0 on br0 and net1 on
br1 and MACs 52:54:00:<host>:<guest>:<nic>. The "change" phase removes and adds guests:
  host index % 3 == 1: guest vm01 is marked state: absent
  host index % 3 == 2: guest vm<G+1> is added
  host index % 3 == 0: guest vm02 is dropped from the list (prune removes it), vm<G+2> is added
"""

import argparse
import os

import yaml


def guest(host, index, g, nics):
    return {
        "name": "%s-vm%02d" % (host, g),
        "nics": [{"id": "net%d" % n, "bridge": "br%d" % (n % 2),
                  "mac": "52:54:00:%02x:%02x:%02x" % (index % 256, g % 256, n)}
                 for n in range(nics)],
    }


def guests_for(host, index, guests, nics, phase):
    listed = [guest(host, index, g, nics) for g in range(1, guests + 1)]
    if phase == "initial":
        return listed
    kind = index % 3
    if kind == 1:
        listed[0] = {"name": listed[0]["name"], "state": "absent"}
    elif kind == 2:
        listed.append(guest(host, index, guests + 1, nics))
    else:
        del listed[1]
        listed.append(guest(host, index, guests + 2, nics))
    return listed


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True, help="the inventory directory")
    p.add_argument("--hosts-file", required=True, help="lines: name address login-user ('-' = root)")
    p.add_argument("--guests", type=int, default=20)
    p.add_argument("--nics", type=int, default=2)
    p.add_argument("--phase", choices=("initial", "change"), default="initial")
    a = p.parse_args()

    rows = [line.split() for line in open(a.hosts_file) if line.strip()]
    os.makedirs(os.path.join(a.out, "host_vars"), exist_ok=True)
    with open(os.path.join(a.out, "hosts.yml"), "w") as f:
        f.write("---\nall:\n  children:\n    hypervisors:\n      hosts:\n")
        f.writelines("        %s:\n" % r[0] for r in rows)
    for index, (name, address, user) in enumerate(rows, start=1):
        hv = {"ansible_host": address}
        if user != "-":
            hv["ansible_user"] = user
        hv["guest_taps_guests"] = guests_for(name, index, a.guests, a.nics, a.phase)
        tmp = os.path.join(a.out, "host_vars", name + ".yml.tmp")
        with open(tmp, "w") as f:
            f.write("---\n")
            yaml.safe_dump(hv, f, default_flow_style=False, sort_keys=False, width=120)
        os.replace(tmp, os.path.join(a.out, "host_vars", name + ".yml"))


if __name__ == "__main__":
    main()
