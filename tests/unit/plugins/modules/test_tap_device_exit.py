# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module's exit path: no copy of the result when no value is secret, the full no_log scan
when one is, and Ansible's exit_json left as it was afterwards."""

from __future__ import annotations

import inspect

import pytest

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netdev.tuntap.plugins.modules import tap_device


class Module:
    """Stands in for AnsibleModule: its exit_json does what AnsibleModule's does with the result
    (remove_values() looked up in ansible.module_utils.basic), and records the outcome."""

    def __init__(self, no_log_values):
        self.no_log_values = set(no_log_values)
        self.sent = None

    def exit_json(self, **kwargs):
        self.sent = basic.remove_values(kwargs, self.no_log_values)
        raise SystemExit(0)


def test_ansible_exit_json_still_scans_through_the_name_the_module_replaces():
    """If ansible-core stopped calling basic.remove_values there, the shortcut would do nothing
    (harmless) and this test says so."""
    assert "remove_values(kwargs, self.no_log_values)" in inspect.getsource(AnsibleModule._return_formatted)


def test_without_secret_values_the_result_is_sent_as_it_is():
    result = {"devices": [{"name": "vmtap%d" % i, "lease": "g%d/net0" % i} for i in range(3)], "changed": False}
    module = Module(no_log_values=())
    original = basic.remove_values
    with pytest.raises(SystemExit):
        tap_device.exit_json(module, result)
    assert module.sent is result or module.sent == result
    assert module.sent["devices"] is result["devices"]   # not rebuilt value by value
    assert basic.remove_values is original


def test_with_a_secret_value_it_is_hidden_as_before():
    result = {"devices": [{"name": "tap0", "external_ids": {"token": "s3cret-value"}}], "changed": True}
    module = Module(no_log_values=("s3cret-value",))
    original = basic.remove_values
    with pytest.raises(SystemExit):
        tap_device.exit_json(module, result)
    assert module.sent["devices"][0]["external_ids"]["token"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert "s3cret-value" not in repr(module.sent)
    assert basic.remove_values is original


def test_the_replacement_is_undone_when_exit_json_fails():
    class Broken(Module):
        def exit_json(self, **kwargs):
            raise RuntimeError("encoder failed")

    original = basic.remove_values
    with pytest.raises(RuntimeError):
        tap_device.exit_json(Broken(no_log_values=()), {"changed": False})
    assert basic.remove_values is original
