"""Real `ansible` and `ansible-playbook` runs against real devices in a throwaway namespace."""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.ansible]

T = "vmt%d"


def _no_traceback(run_output: str):
    assert "Traceback" not in run_output, run_output


def test_adhoc_gives_increasing_names(ns, registry):
    names = []
    for _run in range(3):
        run = h.ansible_adhoc("name=vmt%%d netns=%s registry=%s" % (ns, registry))
        assert run.rc == 0, run
        assert run.status == "CHANGED" and run.result["changed"] is True, run
        names.append(run.result["name"])
        h.assert_matches_kernel(ns, run.result)
    assert names == ["vmt0", "vmt1", "vmt2"]
    _no_traceback(run.output)


def test_adhoc_check_mode_changes_nothing(ns, registry):
    run = h.ansible_adhoc("name=vmt%%d lease=x netns=%s registry=%s" % (ns, registry), check=True)
    assert run.rc == 0, run
    assert run.result["changed"] is True and run.result["name"] == "vmt0", run
    assert run.result["ifindex"] is None
    assert h.non_lo(ns) == set()
    assert not os.path.exists(os.path.dirname(registry))


@pytest.mark.parametrize("args, words", [
    ("name=ta/p", ["ta/p"]),
    ("name=abcdefghijklmnop", ["abcdefghijklmnop"]),
    ("name=vm%d%d", ["vm%d%d"]),
    ("name=vmt%d mode=tun mac_address=02:00:00:00:00:01", ["mac_address"]),
    ("name=vmt%d bridge=nobr0", ["nobr0"]),
    ("name=vmt%d state=absent", ["is a template", "give the lease"]),
    ("name=vmt%d mtu=lots", ["mtu"]),
    ("name=vmt%d colour=blue", ["colour"]),
], ids=["slash", "16-bytes", "two-%d", "mac-on-tun", "missing-bridge", "absent-template",
        "mtu-type", "unknown-option"])
def test_adhoc_bad_input_fails_cleanly(ns, registry, args, words):
    run = h.ansible_adhoc("%s netns=%s registry=%s" % (args, ns, registry))
    assert run.rc != 0, run
    assert run.failed and run.result is not None, run
    for word in words:
        assert word in run.result.get("msg", ""), run
    _no_traceback(run.output)
    assert h.non_lo(ns) == set(), "nothing half-made"
    assert not os.path.exists(os.path.dirname(registry)), "nothing half-made"


def test_adhoc_missing_netns_fails_cleanly_and_is_not_created(make_ns, registry):
    missing = make_ns.reserve()
    run = h.ansible_adhoc("name=vmt%%d netns=%s registry=%s" % (missing, registry))
    assert run.rc != 0 and run.failed, run
    assert missing in run.result["msg"], run
    _no_traceback(run.output)
    assert missing not in h.netns_list()


def test_adhoc_without_pyroute2_reports_missing_library(ns, registry, tmp_path):
    # A fresh virtual environment is a target Python that surely lacks pyroute2.
    h.sh(h.PYTHON, "-m", "venv", "--without-pip", tmp_path / "bare")
    bare = str(tmp_path / "bare" / "bin" / "python")
    probe = subprocess.run([bare, "-c", "import pyroute2"], capture_output=True, check=False)
    assert probe.returncode != 0, "the fresh virtual environment can import pyroute2"
    run = h.ansible_adhoc("name=vmt%%d netns=%s registry=%s" % (ns, registry), interpreter=bare)
    assert run.rc != 0 and run.failed, run
    assert "Failed to import the required Python library (pyroute2 >= 0.7.2)" in run.result["msg"], run
    _no_traceback(run.output)
    assert h.non_lo(ns) == set()


def _unprivileged_prefix() -> tuple[list[str], str]:
    """nobody when it can run this interpreter; otherwise root without CAP_NET_ADMIN
    (the interpreter may live under /root, 0700, as pyenv's does here)."""
    as_nobody = ["runuser", "-u", h.NOBODY, "--"]
    if subprocess.run(as_nobody + [h.PYTHON, "-c", "import pyroute2"], capture_output=True,
                      cwd="/", check=False).returncode == 0:
        return as_nobody, "nobody"
    return ["setpriv", "--bounding-set=-net_admin", "--"], "root without CAP_NET_ADMIN"


def test_without_net_admin_fails_saying_so(ns, tmp_path):
    prefix, who = _unprivileged_prefix()
    reg = tmp_path / "reg" / "r.json"
    out = h.api_subprocess([{"name": T, "lease": "x", "netns": ns, "registry": str(reg)}],
                           prefix=prefix)
    assert "error" in out[0], (who, out)
    assert "needs root or CAP_NET_ADMIN" in out[0]["error"], (who, out)
    assert h.non_lo(ns) == set()
    assert not os.path.exists(reg.parent), "the privilege check comes before any write"


# ----------------------------------------------------------------------------- playbooks

FOUR_STEP = """
- name: Lease idempotence, four steps
  hosts: localhost
  gather_facts: false
  tasks:
    - name: 1 check mode
      netdev.tuntap.tap_device: &tap
        name: "vmt%d"
        lease: "web1/net0"
        mtu: 1400
        netns: "{{ ns }}"
        registry: "{{ reg }}"
      check_mode: true
      register: r1
    - name: 2 real
      netdev.tuntap.tap_device: *tap
      register: r2
    - name: 3 again
      netdev.tuntap.tap_device: *tap
      register: r3
    - name: 4 again in check mode
      netdev.tuntap.tap_device: *tap
      check_mode: true
      register: r4
    - name: Assert inside the playbook too
      ansible.builtin.assert:
        that:
          - r1 is changed
          - r2 is changed
          - r3 is not changed
          - r4 is not changed
          - r1.name == r2.name
          - r2.name == r3.name == r4.name
    - name: Save results
      ansible.builtin.copy:
        content: "{{ {'r1': r1, 'r2': r2, 'r3': r3, 'r4': r4} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
      check_mode: false
"""


def test_playbook_four_step_lease_idempotence(ns, registry, tmp_path):
    out = tmp_path / "out.json"
    proc = h.ansible_playbook(h.write_playbook(tmp_path, FOUR_STEP),
                              {"ns": ns, "reg": str(registry), "out": str(out)})
    assert proc.returncode == 0, h.show(proc)
    _no_traceback(proc.stdout + proc.stderr)
    res = json.loads(out.read_text())
    assert [res[k]["changed"] for k in ("r1", "r2", "r3", "r4")] == [True, True, False, False]
    assert res["r1"]["ifindex"] is None
    h.assert_warnings(res["r1"], h.CHECK_MODE_WARNING)
    for key in ("r2", "r3", "r4"):
        assert not res[key].get("warnings"), res[key]
    assert res["r2"]["name"] == "vmt0"
    h.assert_matches_kernel(ns, res["r3"])
    assert h.tun_names(ns) == {"vmt0"}


MODULE_DEFAULTS = """
- name: module_defaults through the action group
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/netdev.tuntap.tuntap:
      registry: "{{ reg }}"
      netns: "{{ ns }}"
  tasks:
    - name: First
      netdev.tuntap.tap_device:
        name: "vmt%d"
        lease: "md/a"
      register: a
    - name: Second
      netdev.tuntap.tap_device:
        name: "vmt%d"
        lease: "md/b"
        owner: nobody
      register: b
    - name: Save results
      ansible.builtin.copy:
        content: "{{ {'a': a, 'b': b} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
      check_mode: false
"""


def test_playbook_module_defaults_and_check_flag(ns, registry, tmp_path):
    path = h.write_playbook(tmp_path, MODULE_DEFAULTS)
    out = tmp_path / "out.json"
    variables = {"ns": ns, "reg": str(registry), "out": str(out)}

    checked = h.ansible_playbook(path, variables, check=True)
    assert checked.returncode == 0, h.show(checked)
    res = json.loads(out.read_text())
    assert res["a"]["changed"] is True and res["a"]["name"] == "vmt0"
    assert res["a"]["netns"] == ns
    assert h.non_lo(ns) == set(), "--check made a device"
    assert not os.path.exists(os.path.dirname(registry)), "--check wrote the registry"

    real = h.ansible_playbook(path, variables)
    assert real.returncode == 0, h.show(real)
    res = json.loads(out.read_text())
    assert (res["a"]["name"], res["b"]["name"]) == ("vmt0", "vmt1")
    assert h.tun_info(ns, "vmt1")["user"] == h.NOBODY_UID
    for key in ("a", "b"):
        h.assert_matches_kernel(ns, res[key])
    assert set(h.read_registry(registry)["leases"]) == {"md/a", "md/b"}

    again = h.ansible_playbook(path, variables)
    assert again.returncode == 0, h.show(again)
    res = json.loads(out.read_text())
    assert (res["a"]["changed"], res["b"]["changed"]) == (False, False)
    assert (res["a"]["name"], res["b"]["name"]) == ("vmt0", "vmt1")


BATCH = """
- name: Batch mode through ansible-playbook
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/netdev.tuntap.tuntap:
      registry: "{{ reg }}"
      netns: "{{ ns }}"
  tasks:
    - name: Duplicate leases fail before any change
      netdev.tuntap.tap_device:
        devices:
          - {name: "vmt%d", lease: "g/a"}
          - {name: "vmt%d", lease: "g/b"}
          - {name: "vmt%d", lease: "g/a"}
      register: dup
      ignore_errors: true
    - name: Check nothing was made
      ansible.builtin.command: ip -n {{ ns }} -o link show
      register: after_dup
      changed_when: false
    - name: Batch in input order
      netdev.tuntap.tap_device:
        devices:
          - {name: "vmt%d", lease: "g/c"}
          - {name: "lit0"}
          - {name: "vmt%d", lease: "g/a", mtu: 1400}
          - {name: "vmt%d", lease: "g/b"}
      register: first
    - name: Same again
      netdev.tuntap.tap_device:
        devices:
          - {name: "vmt%d", lease: "g/c"}
          - {name: "lit0"}
          - {name: "vmt%d", lease: "g/a", mtu: 1400}
          - {name: "vmt%d", lease: "g/b"}
      register: second
    - name: Prune everything under g/ but g/b
      netdev.tuntap.tap_device:
        devices:
          - {name: "vmt%d", lease: "g/b"}
        prune_prefix: "g/"
      register: pruned
    - name: Save results
      ansible.builtin.copy:
        content: "{{ {'dup': dup, 'after_dup': after_dup.stdout_lines, 'first': first,
                      'second': second, 'pruned': pruned} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def test_playbook_batch_mode(ns, registry, tmp_path):
    out = tmp_path / "out.json"
    proc = h.ansible_playbook(h.write_playbook(tmp_path, BATCH),
                              {"ns": ns, "reg": str(registry), "out": str(out)})
    assert proc.returncode == 0, h.show(proc)
    _no_traceback(proc.stdout + proc.stderr)
    res = json.loads(out.read_text())
    assert res["dup"]["failed"] is True
    dup = res["dup"]["msg"]
    assert "'g/a'" in dup and re.search(r"\b0\b", dup) and re.search(r"\b2\b", dup), res["dup"]
    assert len(res["after_dup"]) == 1, res["after_dup"]  # only lo
    first = res["first"]
    assert first["changed"] is True
    assert [(d["lease"], d["name"]) for d in first["devices"]] == [
        ("g/c", "vmt0"), (None, "lit0"), ("g/a", "vmt1"), ("g/b", "vmt2")]
    assert res["second"]["changed"] is False
    assert [d["name"] for d in res["second"]["devices"]] == ["vmt0", "lit0", "vmt1", "vmt2"]
    assert res["pruned"]["changed"] is True
    assert h.tun_names(ns) == {"lit0", "vmt2"}
    assert set(h.read_registry(registry)["leases"]) == {"g/b"}
