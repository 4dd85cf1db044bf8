# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mark a managed device carries in its interface alias: its registry, lease and template.

It is what lets a lost registry be rebuilt with its leases, and a device made by an
interrupted run be adopted instead of orphaned. The registry's id says whose device it
is: a run never adopts, changes or deletes a device that another registry marked. Marks
written before registries had ids carry none (``registry`` None: a legacy mark).
"""

from __future__ import annotations

import json
import re

ALIAS_PREFIX = "netdev.tuntap "
# IFALIASZ is 256 with the terminating NUL, and the kernel refuses 255 bytes (ERANGE): 254 fit.
MAX_MARK_BYTES = 254
REGISTRY_ID_LENGTH = 8
REGISTRY_ID = re.compile(r"\A[0-9a-f]{%d}\Z" % REGISTRY_ID_LENGTH)


def is_registry_id(value) -> bool:
    return isinstance(value, str) and REGISTRY_ID.match(value) is not None


def encode_mark(lease: str | None, template: str | None, registry: str | None = None) -> str:
    fields = {"lease": lease, "template": template}
    if registry is not None:
        fields["registry"] = registry
    return ALIAS_PREFIX + json.dumps(fields, separators=(",", ":"), sort_keys=True)


def mark_bytes(lease: str | None, template: str | None) -> int:
    """The length of the mark a device with this lease and template gets (ids have one length)."""
    return len(encode_mark(lease, template, "0" * REGISTRY_ID_LENGTH).encode("utf-8"))


def decode_mark(alias: str | None) -> dict | None:
    if not alias or not alias.startswith(ALIAS_PREFIX):
        return None
    try:
        mark = json.loads(alias[len(ALIAS_PREFIX):])
    except (ValueError, RecursionError):
        return None
    if not isinstance(mark, dict):
        return None
    lease, template, registry = mark.get("lease"), mark.get("template"), mark.get("registry")
    if not (lease is None or isinstance(lease, str)) or not (template is None or isinstance(template, str)):
        return None
    if not (registry is None or is_registry_id(registry)):
        return None
    decoded = {"lease": lease, "template": template}
    if registry is not None:
        decoded["registry"] = registry
    return decoded
