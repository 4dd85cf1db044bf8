# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One call of tap_device_info: parameters -> registry read -> snapshot -> inventory.

Read-only. The registry is read as it stands, without the run's lock file: the database
is opened read-only, and SQLite's transactions show a reader a run's changes whole or not
at all. Nothing is created, not even the registry's directory. The links of each
namespace come from one raw dump; holders from one pass over /proc, when asked.
"""

from __future__ import annotations

import os
import sqlite3
import time

from ansible_collections.netdev.tuntap.plugins.module_utils import _inventory, _registry, _store, _world
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._links import LinkError
from ansible_collections.netdev.tuntap.plugins.module_utils._kernel._netns import (
    NetnsError, remember_host, validate_netns_name)
from ansible_collections.netdev.tuntap.plugins.module_utils._ledger import empty_state
from ansible_collections.netdev.tuntap.plugins.module_utils._names import InvalidName, validate_template
from ansible_collections.netdev.tuntap.plugins.module_utils._registry import (
    CorruptRegistry, RegistryError, parse_state)
from ansible_collections.netdev.tuntap.plugins.module_utils._spec import DEFAULT_REGISTRY

ARGUMENT_SPEC = dict(
    netns=dict(type="str"),
    all_namespaces=dict(type="bool", default=False),
    registry=dict(type="path", default=DEFAULT_REGISTRY),
    names=dict(type="list", elements="str"),
    templates=dict(type="list", elements="str"),
    lease_prefix=dict(type="str"),
    holders=dict(type="bool", default=True),
    export=dict(type="bool", default=False),
)


class InfoError(Exception):
    """A request the module must refuse (message is user-facing)."""


def read_registry(path: str) -> tuple:
    """(state, facts about the file, warnings): the registry as it is on disk, never changed.

    The database is opened read-only (SQLite's shared lock for the length of the read: a run's
    commit is seen whole or not at all); a JSON file not migrated yet is read as it is.
    """
    facts = {"path": path, "exists": False, "readable": True, "error": None}
    try:
        kind, text = _registry.sniff(path)
    except (OSError, RegistryError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        facts.update(exists=os.path.lexists(path), readable=False, error=reason)
        return empty_state(), facts, ["registry %s cannot be read (%s): only the devices are reported"
                                      % (path, reason)]
    if kind is None:
        return empty_state(), facts, []
    facts["exists"] = True
    try:
        if kind == "text":
            return parse_state(text), facts, []
        conn = _registry.open_database(path, readonly=True)
        try:
            _registry.check_database(conn)
            return _store.SqliteStore(conn).document(), facts, []
        finally:
            conn.close()
    except (CorruptRegistry, RegistryError, sqlite3.Error) as exc:
        facts.update(readable=False, error=str(exc))
        return empty_state(), facts, ["registry %s is unusable (%s): only the devices are reported; the next "
                                      "tap_device run will rebuild it" % (path, exc)]


def _filters(params: dict) -> _inventory.Filters:
    for template in params.get("templates") or ():
        try:
            validate_template(template, 0, what="templates")
        except InvalidName as exc:
            raise InfoError(str(exc))
    prefix = params.get("lease_prefix")
    if prefix is not None and not prefix:
        raise InfoError("lease_prefix must not be empty: omit it to see every lease")
    return _inventory.Filters(names=params.get("names") or None, templates=params.get("templates") or None,
                              lease_prefix=prefix)


def run(params: dict) -> dict:
    """The inventory; raises InfoError for anything the user can cause."""
    remember_host()
    try:
        target = params.get("netns")
        if target is not None:
            validate_netns_name(target)
        filters = _filters(params)
        registry = os.path.abspath(params.get("registry") or DEFAULT_REGISTRY)
        state, facts, warnings = read_registry(registry)
        namespaces = [target]
        if params.get("all_namespaces"):
            recorded = {rec.get("netns") for rec in state["leases"].values()}
            recorded.update(rec.get("netns") for rec in state["released"].values())
            namespaces += sorted((n for n in recorded if n != target and _valid_netns(n)), key=lambda n: n or "")
        world = _world.gather(target, namespaces[1:])
        if target is not None and not world.exists(target):
            raise InfoError("netns %r does not exist (no /run/netns/%s)" % (target, target))
        if params.get("holders", True):
            _world.add_holders(world, [(netns, name) for netns in namespaces if world.exists(netns)
                                       for name, link in world.devices(netns).items()
                                       if link.tun is not None and filters.name_ok(name)])
        result = _inventory.build(state, world, namespaces, filters, time.time())
    except (NetnsError, LinkError) as exc:
        raise InfoError(str(exc))
    except OSError as exc:
        raise InfoError("system error%s: %s" % (" (%s)" % exc.filename if exc.filename else "",
                                                exc.strerror or exc))
    result["registry"] = facts
    if params.get("export"):
        # The whole registry, unfiltered, in the layout of docs/registry.md (what JSON registries held).
        result["export"] = state
    result["warnings"] = warnings
    return result


def _valid_netns(name) -> bool:
    if name is None:
        return True
    try:
        validate_netns_name(name)
    except NetnsError:
        return False
    return True
