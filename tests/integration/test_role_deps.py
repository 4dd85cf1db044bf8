"""guest_taps_install_deps against a real target Python that lacks pyroute2: a fresh virtual
environment, which the role must give pyroute2 with pip before the module can run there."""
from __future__ import annotations

import re
import subprocess

import pytest

import ntt_helpers as h

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.ansible, pytest.mark.slow]

PIP_SPEC = "pyroute2==0.9.7"

PLAY = """
- name: The role on a target Python without pyroute2
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: netdev.tuntap.guest_taps
  tasks:
    - name: Keep the fact for the test
      ansible.builtin.copy:
        content: "{{ guest_taps_devices | to_json }}"
        dest: "{{ fact_file }}"
        mode: "0600"
      check_mode: false
"""


def _recap(output: str) -> dict:
    match = re.search(r"^localhost\s+:\s+(.*)$", output, re.M)
    assert match, output
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def _pyroute2_version(python: str):
    probe = subprocess.run([python, "-c", "import pyroute2; print(pyroute2.__version__)"],
                           capture_output=True, text=True, check=False)
    return probe.stdout.strip() if probe.returncode == 0 else None


@pytest.fixture
def bare_python(tmp_path):
    """A virtual environment with pip and nothing else: the role sees a Python that is not the
    distribution's, so it must choose pip."""
    venv = tmp_path / "target-venv"
    h.sh(h.PYTHON, "-m", "venv", venv)
    python = str(venv / "bin" / "python")
    assert _pyroute2_version(python) is None
    return python


def test_install_deps_installs_pyroute2_with_pip_then_provisions(ns, registry, bare_python, tmp_path):
    h.add_link(ns, "br0", "bridge")
    playbook = h.write_playbook(tmp_path, PLAY)
    fact_file = tmp_path / "fact.json"
    variables = {
        "ansible_python_interpreter": bare_python,
        "fact_file": str(fact_file),
        "guest_taps_netns": ns,
        "guest_taps_registry": str(registry),
        "guest_taps_pyroute2_pip_spec": PIP_SPEC,
        "guest_taps_guests": [
            {"name": "g1", "nics": [{"id": "net0", "bridge": "br0", "mac": "52:54:00:00:00:01"}]}],
    }

    # Check mode first: nothing can be predicted without pyroute2, nothing is installed or made,
    # and the fact still exists for later tasks.
    checked = h.ansible_playbook(playbook, variables, check=True)
    assert checked.returncode == 0, h.show(checked)
    assert _pyroute2_version(bare_python) is None, "check mode installed pyroute2"
    assert h.tun_names(ns) == set()
    assert h.read_json(fact_file) == {}

    first = h.ansible_playbook(playbook, variables, timeout=300)
    assert first.returncode == 0, h.show(first)
    assert _pyroute2_version(bare_python) == PIP_SPEC.split("==")[1]
    fact = h.read_json(fact_file)
    device = fact["g1"][0]["device"]
    assert h.tun_names(ns) == {device}
    assert h.master(h.link(ns, device)) == "br0"
    assert _recap(first.stdout)["changed"] >= 2, first.stdout  # the pip install and the taps

    second = h.ansible_playbook(playbook, variables)
    assert second.returncode == 0, h.show(second)
    assert _recap(second.stdout)["changed"] == 0, second.stdout
    assert h.read_json(fact_file)["g1"][0]["device"] == device
