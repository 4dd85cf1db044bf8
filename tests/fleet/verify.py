"""Check every fleet host after a run of tests/fleet/site.yml, from what the kernel and the files show.

For each host (rows of WORK/hosts.tsv: name netns pid address user):
  - the play recap says what this run was expected to do on it (changed, unchanged, failed,
    unreachable);
  - devices: every NIC its host_vars lists as present has a tap in the host's network namespace,
    on the bridge and with the host-side MAC the inventory implies, carrying its lease mark;
    no other vmtap device exists there;
  - registry (the default path, read through the host's own mount namespace): root's, mode 0600,
    holds exactly this host's leases, each naming the device that exists;
  - names: a lease made in this run got a number above every number this host used before, no
    name ever changes lease (freed names are not reused), and freed names are held in "released".
Hosts named by --stale must be exactly as the previous check left them (a failed or unreachable
run changed nothing there); hosts named by --empty have no taps and no leases at all.
The state seen is kept in WORK/snap/<host>.json for the next check.
"""

import argparse
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile

import yaml

REGISTRY = "var/lib/netdev_tuntap/registry.json"
LEASE_PREFIX = "guest_taps:"
MARK_PREFIX = "netdev.tuntap "
TAP_NAME = re.compile(r"^vmtap(\d+)$")


class Host:
    def __init__(self, name, netns, pid, address, user):
        self.name, self.netns, self.pid, self.address, self.user = name, netns, int(pid), address, user
        self.problems = []

    def root(self, path):
        return "/proc/%d/root/%s" % (self.pid, path)

    def fail(self, msg):
        self.problems.append(msg)


def host_mac(mac):
    first = "fa" if mac.lower().startswith("fe") else "fe"
    return first + mac.lower()[2:]


def expected_nics(work, host):
    with open(os.path.join(work, "inventory", "host_vars", host.name + ".yml")) as f:
        hv = yaml.safe_load(f)
    nics = {}
    for g in hv["guest_taps_guests"]:
        if g.get("state", "present") != "present":
            continue
        for index, nic in enumerate(g.get("nics", [])):
            lease = "%s%s/%s" % (LEASE_PREFIX, g["name"], nic.get("id", index))
            nics[lease] = {"bridge": nic["bridge"], "mac": host_mac(nic["mac"])}
    return nics


def read_devices(host):
    out = subprocess.run(["ip", "-n", host.netns, "-d", "-j", "link", "show"], check=True,
                         capture_output=True, text=True).stdout
    devices = {}
    for link in json.loads(out):
        if not TAP_NAME.match(link["ifname"]):
            continue
        info = link.get("linkinfo", {})
        alias = link.get("ifalias", "")
        mark = json.loads(alias[len(MARK_PREFIX):]) if alias.startswith(MARK_PREFIX) else {}
        devices[link["ifname"]] = {
            "kind": "%s/%s" % (info.get("info_kind"), info.get("info_data", {}).get("type")),
            "master": link.get("master"), "mac": link.get("address"), "lease": mark.get("lease"),
        }
    return devices


def read_registry(host):
    path = host.root(REGISTRY)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if st.st_uid != 0 or stat.S_IMODE(st.st_mode) != 0o600:
        host.fail("registry is uid %d mode %o, expected root's 0600" % (st.st_uid, stat.S_IMODE(st.st_mode)))
    # The registry is an SQLite database (docs/registry.md). Read from a copy: SQLite resolves the
    # /proc/PID/root link of the host's path to this machine's root.
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "registry")
        shutil.copyfile(path, copy)
        conn = sqlite3.connect("file:%s?mode=ro" % copy, uri=True)
        try:
            intent = dict(conn.execute("SELECT key, value FROM meta")).get("intent")
            return {"leases": {key: {"name": name} for key, name in conn.execute("SELECT key, name FROM leases")},
                    "released": {name: {"at": at} for name, at in conn.execute("SELECT name, at FROM released")},
                    "intent": json.loads(intent) if intent else None}
        finally:
            conn.close()


def load_snapshot(work, host):
    try:
        with open(os.path.join(work, "snap", host.name + ".json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"leases": {}, "names_seen": {}, "max_id": -1}


def save_snapshot(work, host, snap):
    os.makedirs(os.path.join(work, "snap"), exist_ok=True)
    with open(os.path.join(work, "snap", host.name + ".json"), "w") as f:
        json.dump(snap, f, sort_keys=True)


def consistent(host, registry, devices):
    """Registry leases and devices describe the same taps; returns {lease: name}."""
    leases = {k: v["name"] for k, v in (registry or {}).get("leases", {}).items()}
    for lease, name in sorted(leases.items()):
        if not lease.startswith(LEASE_PREFIX + host.name + "-"):
            host.fail("registry holds %s, not a lease of this host's guests" % lease)
        dev = devices.get(name)
        if dev is None:
            host.fail("lease %s names %s, which does not exist" % (lease, name))
        elif dev["lease"] != lease:
            host.fail("%s is marked with lease %s, the registry says %s" % (name, dev["lease"], lease))
    orphans = sorted(set(devices) - set(leases.values()))
    if orphans:
        host.fail("devices no lease names: %s" % ", ".join(orphans))
    if registry is not None and registry.get("intent"):
        host.fail("registry still holds an intent record: %s" % registry["intent"])
    return leases


def check_host(host, work, mode):
    registry = read_registry(host)
    devices = read_devices(host)
    leases = consistent(host, registry, devices)
    snap = load_snapshot(work, host)
    if mode == "empty":
        if leases or devices:
            host.fail("expected no taps yet, found %d leases and %d devices" % (len(leases), len(devices)))
    elif mode == "stale":
        if leases != snap["leases"]:
            host.fail("changed although its run did not complete: %d leases now, %d before"
                      % (len(leases), len(snap["leases"])))
    else:
        want = expected_nics(work, host)
        if set(leases) != set(want):
            missing = sorted(set(want) - set(leases))
            extra = sorted(set(leases) - set(want))
            host.fail("leases differ from host_vars: missing %s; not listed %s" % (missing[:5], extra[:5]))
        for lease, spec in sorted(want.items()):
            dev = devices.get(leases.get(lease))
            if dev is None:
                continue
            if dev["kind"] != "tun/tap":
                host.fail("%s (%s) is %s, not a tap" % (leases[lease], lease, dev["kind"]))
            if dev["master"] != spec["bridge"]:
                host.fail("%s (%s) is on %s, expected %s" % (leases[lease], lease, dev["master"], spec["bridge"]))
            if dev["mac"] != spec["mac"]:
                host.fail("%s (%s) has MAC %s, expected %s" % (leases[lease], lease, dev["mac"], spec["mac"]))
    # Names never change lease; new leases get numbers above all earlier ones.
    new_ids = []
    for lease, name in sorted(leases.items()):
        before = snap["names_seen"].get(name)
        if before is not None and before != lease:
            host.fail("%s was %s's and is now %s's: a freed name was reused" % (name, before, lease))
        if lease not in snap["leases"]:
            new_ids.append(int(TAP_NAME.match(name).group(1)))
    if new_ids and snap["max_id"] >= 0 and min(new_ids) <= snap["max_id"]:
        host.fail("a new lease got number %d, not above the earlier maximum %d" % (min(new_ids), snap["max_id"]))
    freed = sorted(set(snap["leases"].values()) - set(leases.values()))
    released = (registry or {}).get("released", {})
    for name in freed:
        if name in devices:
            host.fail("%s was freed but still exists" % name)
        if name not in released:
            host.fail("%s was freed but is not held in the registry's released list" % name)
    seen = dict(snap["names_seen"])
    seen.update({name: lease for lease, name in leases.items()})
    ids = [int(TAP_NAME.match(n).group(1)) for n in seen]
    save_snapshot(work, host, {"leases": leases, "names_seen": seen, "max_id": max(ids) if ids else -1})
    return {"taps": len(devices), "new": len(new_ids), "freed": len(freed)}


def parse_recap(log):
    recap, inside = {}, False
    for line in open(log, errors="replace"):
        if line.startswith("PLAY RECAP"):
            inside = True
            continue
        m = re.match(r"^(\S+)\s+:\s+(.*)$", line) if inside else None
        if m:
            recap[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return recap


def failed_task(log, host):
    """The name of the task in which HOST failed (the TASK header before its 'fatal:' line)."""
    task = None
    for line in open(log, errors="replace"):
        m = re.match(r"^TASK \[(.*)\] \*+", line)
        if m:
            task = m.group(1)
        elif line.startswith("fatal: [%s]" % host):
            return task
    return None


def recap_state(counts):
    if counts.get("unreachable"):
        return "unreachable"
    if counts.get("failed"):
        return "failed"
    return "changed" if counts.get("changed") else "unchanged"


def dpkg_overlap(hosts):
    """How many hosts were inside their dpkg run at the same moment (dpkg.log has 1 s resolution)."""
    spans = []
    for host in hosts:
        try:
            lines = [ln for ln in open(host.root("var/log/dpkg.log")) if "python3-pyroute2" in ln or "startup" in ln]
        except FileNotFoundError:
            continue
        if lines:
            spans.append((lines[0][:19], lines[-1][:19]))
    best = max((sum(1 for s, e in spans if s <= start <= e) for start, end in spans), default=0)
    return len(spans), best


def names(text):
    return set(filter(None, text.split(",")))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True)
    p.add_argument("--recap", help="ansible-playbook output to read the PLAY RECAP from")
    p.add_argument("--default", choices=("changed", "unchanged"), default="changed",
                   help="what the recap must say for hosts not named below")
    for state in ("changed", "unchanged", "failed", "unreachable"):
        p.add_argument("--" + state, default="", help="comma-separated hosts")
    p.add_argument("--stale", default="", help="hosts that must be as the previous check left them")
    p.add_argument("--empty", default="", help="hosts that must have no taps and no leases")
    p.add_argument("--deps", action="store_true",
                   help="python3-pyroute2 must be installed on every non-empty host, and nowhere else")
    p.add_argument("--failed-task", default="",
                   help="HOST=TEXT: the host must have failed in the task whose name contains TEXT")
    p.add_argument("--login", default="", help="HOST=USER: the host's sshd must have let USER in by key")
    a = p.parse_args()

    hosts = [Host(*line.split()) for line in open(os.path.join(a.work, "hosts.tsv")) if line.strip()]
    expect = {h.name: a.default for h in hosts}
    for state in ("changed", "unchanged", "failed", "unreachable"):
        for n in names(getattr(a, state)):
            expect[n] = state
    stale, empty = names(a.stale), names(a.empty)

    recap = parse_recap(a.recap) if a.recap else None
    for host in hosts:
        if recap is not None:
            got = recap_state(recap.get(host.name, {}))
            if host.name not in recap:
                host.fail("not in the play recap")
            elif got != expect[host.name]:
                host.fail("recap says %s (%s), expected %s" % (got, recap[host.name], expect[host.name]))
        mode = "empty" if host.name in empty else "stale" if host.name in stale else "inventory"
        facts = check_host(host, a.work, mode)
        if a.deps and mode != "empty":
            status = open(host.root("var/lib/dpkg/status")).read()
            if not re.search(r"^Package: python3-pyroute2\nStatus: install ok installed$", status, re.M):
                host.fail("python3-pyroute2 is not installed in the host's dpkg database")
        print("%-4s %-11s %3d taps, %2d new, %2d freed  %s" % (
            host.name, (recap_state(recap.get(host.name, {})) if recap else mode), facts["taps"],
            facts["new"], facts["freed"], "ok" if not host.problems else "FAILED"))
        for problem in host.problems[:10]:
            print("     %s: %s" % (host.name, problem))
    if a.failed_task:
        name, text = a.failed_task.split("=", 1)
        host = next(h for h in hosts if h.name == name)
        task = failed_task(a.recap, name)
        if task is None or text not in task:
            host.fail("expected to fail in the task %r, failed in %r" % (text, task))
            print("     %s: expected to fail in the task %r, failed in %r" % (name, text, task))
        else:
            print("%s: failed in the task %r, as intended" % (name, task))
    for spec in filter(None, a.login.split(",")):
        name, user = spec.split("=")
        host = next(h for h in hosts if h.name == name)
        log = open(host.root("run/ntt/sshd.log")).read()
        if "Accepted publickey for %s " % user not in log:
            host.fail("its sshd log shows no key login of %s" % user)
            print("     %s: its sshd log shows no key login of %s" % (name, user))
        else:
            print("%s: logged in as %s, registry written as root through sudo" % (name, user))
    if a.deps:
        # dpkg-query exits 1 when the package is unknown: that is an answer here, not an error.
        machine = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "python3-pyroute2"],
                                 capture_output=True, text=True, check=False).stdout
        installed, overlap = dpkg_overlap(hosts)
        print("python3-pyroute2: installed with apt on %d hosts, up to %d dpkg runs at the same second; "
              "machine's own dpkg status: %s" % (installed, overlap, machine or "not installed"))
    bad = [h.name for h in hosts if h.problems]
    if bad:
        sys.exit("fleet check FAILED on %s" % ", ".join(bad))
    print("fleet check OK: %d hosts" % len(hosts))


if __name__ == "__main__":
    main()
