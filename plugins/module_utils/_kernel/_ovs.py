# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open vSwitch ports through the database's own client, ``ovs-vsctl``.

Why the client and not the ``ovs`` Python IDL: ovs-vsctl is installed wherever Open vSwitch
is (the IDL is a separate package, python3-openvswitch or a compiled PyPI wheel, that the
managed host would need as well), it speaks the schema of the server it talks to, it turns
one command line into one atomic transaction (``--`` separated commands), and by default it
waits until ovs-vswitchd has applied the change, so the Interface's ``ofport`` and ``error``
read right after it say whether OVS could open the device. ``--timeout`` bounds every call,
so a database that does not answer is a failure, never a hang; ``--db`` selects the server.

A port row is keyed by the device name. The Interface's ``external_ids`` carry what the task
gives (iface-id, attached-mac, vm-uuid, ...) and the lease (_ports.LEASE_KEY), which is how a row
left behind is recognised as ours.
"""

from __future__ import annotations

import json
import shutil
import subprocess


class OvsError(Exception):
    """Open vSwitch could not do what was asked (message is user-facing)."""


def _value(cell):
    """A cell of ovs-vsctl's --data=json output as plain Python (sets as lists, maps as dicts)."""
    if isinstance(cell, list) and len(cell) == 2 and cell[0] in ("set", "map", "uuid"):
        kind, data = cell
        if kind == "uuid":
            return data
        if kind == "map":
            return {key: _value(value) for key, value in data}
        return [_value(item) for item in data]
    return cell


def _scalar(cell):
    """An optional column (an empty set when unset) as a value or None."""
    value = _value(cell)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _quote(text: str) -> str:
    # ovs-vsctl reads JSON-style quoted strings: any key or value survives as written.
    return json.dumps(str(text))


class Ovs:
    def __init__(self, db: str | None = None, timeout: int = 10):
        self.db = db
        self.timeout = timeout

    def where(self) -> str:
        return self.db or "its default socket (unix:/var/run/openvswitch/db.sock)"

    def _run(self, args: list) -> str:
        binary = shutil.which("ovs-vsctl")
        if binary is None:
            raise OvsError("Open vSwitch's ovs-vsctl is not installed on this host (package openvswitch-switch)")
        argv = [binary, "--timeout=%d" % self.timeout] + (["--db=%s" % self.db] if self.db else []) + args
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
                                  timeout=self.timeout + 5)
        except subprocess.TimeoutExpired:
            raise OvsError(self._no_answer())
        if proc.returncode != 0:
            err = proc.stderr.strip()
            if "Alarm clock" in err or "timeout" in err.lower() or proc.returncode in (142, -14):
                raise OvsError(self._no_answer())
            if "database connection failed" in err or "connection attempt failed" in err:
                raise OvsError("Open vSwitch is not running or not reachable at %s (%s); start ovsdb-server and "
                               "ovs-vswitchd, or set ovs_db" % (self.where(), err))
            raise OvsError("ovs-vsctl failed: %s" % (err or "exit %d" % proc.returncode))
        return proc.stdout

    def _no_answer(self) -> str:
        return ("Open vSwitch did not answer within %d s (ovs_timeout) at %s: is ovsdb-server running, and "
                "ovs-vswitchd, which applies port changes?" % (self.timeout, self.where()))

    def snapshot(self) -> dict:
        """{"bridges": {name: [port names]}, "ports": {name: {...}}} read in one transaction."""
        out = self._run(["--format=json", "--data=json",
                         "--", "--columns=name,ports", "list", "Bridge",
                         "--", "--columns=_uuid,name,interfaces,tag,trunks,vlan_mode", "list", "Port",
                         "--", "--columns=_uuid,name,external_ids,ofport,error", "list", "Interface"])
        tables = [json.loads(line) for line in out.splitlines() if line.strip()]
        if len(tables) != 3:
            raise OvsError("unexpected ovs-vsctl output: %r" % out[:200])
        rows = [[dict(zip(table["headings"], row)) for row in table["data"]] for table in tables]
        bridges_raw, ports_raw, ifaces_raw = rows
        ifaces = {_value(row["_uuid"]): row for row in ifaces_raw}
        port_bridge = {}
        bridges = {}
        for row in bridges_raw:
            name = _value(row["name"])
            members = _value(row["ports"])
            members = members if isinstance(members, list) else [members]
            bridges[name] = members
            for uuid in members:
                port_bridge[uuid] = name
        ports = {}
        for row in ports_raw:
            uuid = _value(row["_uuid"])
            members = _value(row["interfaces"])
            members = members if isinstance(members, list) else [members]
            iface = ifaces.get(members[0]) if len(members) == 1 else None
            ports[_value(row["name"])] = {
                "bridge": port_bridge.get(uuid),
                "tag": _scalar(row["tag"]),
                "trunks": sorted(_value(row["trunks"]) or []),
                "vlan_mode": _scalar(row["vlan_mode"]),
                "external_ids": _value(iface["external_ids"]) if iface else {},
                "ofport": _scalar(iface["ofport"]) if iface else None,
                "error": _scalar(iface["error"]) if iface else None,
            }
        named_bridges = {name: sorted(p for p, info in ports.items() if info["bridge"] == name) for name in bridges}
        return {"bridges": named_bridges, "ports": ports}

    def interface(self, name: str) -> dict:
        """ofport and error of Interface ``name`` (after ovs-vswitchd applied the last change)."""
        out = self._run(["--format=json", "--data=json", "--columns=ofport,error", "list", "Interface", name])
        table = json.loads(out)
        row = dict(zip(table["headings"], table["data"][0]))
        return {"ofport": _scalar(row["ofport"]), "error": _scalar(row["error"])}

    @staticmethod
    def _settings(name: str, settings: dict, external_ids: dict) -> list:
        args = []
        port = []
        if "tag" in settings:
            port += ["tag=%d" % settings["tag"]] if settings["tag"] is not None else []
            args += ["--", "clear", "Port", name, "tag"] if settings["tag"] is None else []
        if "trunks" in settings:
            if settings["trunks"]:
                port.append("trunks=%s" % ",".join(str(vid) for vid in settings["trunks"]))
            else:
                args += ["--", "clear", "Port", name, "trunks"]
        if "vlan_mode" in settings:
            if settings["vlan_mode"]:
                port.append("vlan_mode=%s" % settings["vlan_mode"])
            else:
                args += ["--", "clear", "Port", name, "vlan_mode"]
        if port:
            args += ["--", "set", "Port", name] + port
        if external_ids:
            args += ["--", "set", "Interface", name] + [
                "external_ids:%s=%s" % (_quote(key), _quote(value)) for key, value in sorted(external_ids.items())]
        return args

    def add_port(self, bridge: str, name: str, settings: dict, external_ids: dict) -> dict:
        """Make ``name`` a port of ``bridge`` with these Port columns and Interface external_ids, in one
        transaction that first drops any row of that name (a stale row names a device that no longer
        exists: the name is ours now). Returns the Interface's ofport and error."""
        self._run(["--", "--if-exists", "del-port", name, "--", "add-port", bridge, name]
                  + self._settings(name, settings, external_ids))
        return self.interface(name)

    def update_port(self, name: str, settings: dict, external_ids: dict) -> None:
        args = self._settings(name, settings, external_ids)
        if args:
            self._run(args)

    def del_port(self, name: str, wait: bool = True) -> None:
        """Remove the port row of ``name``; ``wait=False`` does not wait for ovs-vswitchd (cleanup
        after a failure, when it may be the part that does not answer)."""
        self._run(([] if wait else ["--no-wait"]) + ["--", "--if-exists", "del-port", name])
