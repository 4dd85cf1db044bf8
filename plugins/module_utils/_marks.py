# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mark a managed device carries in its interface alias: its lease and template.

It is what lets a lost registry be rebuilt with its leases, and a device made by an
interrupted run be adopted instead of orphaned.
"""

from __future__ import annotations

import json

ALIAS_PREFIX = "netdev.tuntap "
# IFALIASZ is 256 with the terminating NUL, and the kernel refuses 255 bytes (ERANGE): 254 fit.
MAX_MARK_BYTES = 254


def encode_mark(lease: str | None, template: str | None) -> str:
    return ALIAS_PREFIX + json.dumps({"lease": lease, "template": template}, separators=(",", ":"),
                                     sort_keys=True)


def mark_bytes(lease: str | None, template: str | None) -> int:
    return len(encode_mark(lease, template).encode("utf-8"))


def decode_mark(alias: str | None) -> dict | None:
    if not alias or not alias.startswith(ALIAS_PREFIX):
        return None
    try:
        mark = json.loads(alias[len(ALIAS_PREFIX):])
    except ValueError:
        return None
    if not isinstance(mark, dict):
        return None
    lease, template = mark.get("lease"), mark.get("template")
    if not (lease is None or isinstance(lease, str)) or not (template is None or isinstance(template, str)):
        return None
    return {"lease": lease, "template": template}
