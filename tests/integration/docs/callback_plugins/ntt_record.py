# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Record every task result and the final stats as JSON lines in $NTT_RECORD_FILE.

The documentation tests run the examples exactly as written, so they cannot add tasks that
show what happened; this callback lets them read every result (facts set, names chosen,
changed counts) without touching the playbook.
"""
from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "ntt_record"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, record):
        with open(os.environ["NTT_RECORD_FILE"], "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=str) + "\n")

    def _record(self, status, result):
        payload = getattr(result, "result", None)
        if payload is None:
            payload = result._result
        self._write({
            "event": "task",
            "status": status,
            "host": result._host.get_name(),
            # The name as written: get_name() prefixes a role's tasks with the role.
            "task": result._task.name or result._task.action,
            "action": result._task.action,
            "result": dict(payload),
        })

    def v2_runner_on_ok(self, result):
        self._record("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record("failed", result)

    def v2_runner_on_skipped(self, result):
        self._record("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._record("unreachable", result)

    def v2_playbook_on_stats(self, stats):
        self._write({"event": "stats", "hosts": {host: stats.summarize(host) for host in sorted(stats.processed)}})
