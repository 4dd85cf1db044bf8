"""A private Open vSwitch for one test: ovsdb-server and ovs-vswitchd (userspace datapath)
inside the test's network namespace, with their own run, db, log and config directories.

This machine's kernel has no openvswitch module, so bridges use datapath_type=netdev: the
daemon opens the ports itself (a tap is opened by name in the namespace it runs in). Both
daemons are stopped by PID; the scratch directory is removed by the caller's tmp_path.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def binaries_missing() -> list[str]:
    return [b for b in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl") if shutil.which(b) is None]


class PrivateOvs:
    def __init__(self, netns: str, directory):
        self.netns = netns
        self.dir = str(directory)
        self.sock = os.path.join(self.dir, "db.sock")
        self.db = "unix:" + self.sock
        self.env = dict(os.environ, OVS_RUNDIR=self.dir, OVS_DBDIR=self.dir, OVS_LOGDIR=self.dir,
                        OVS_SYSCONFDIR=self.dir, OVS_PKGDATADIR="/usr/share/openvswitch")
        self.pids: list[int] = []

    def _exec(self, *argv, check=True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["ip", "netns", "exec", self.netns, *argv], env=self.env, capture_output=True,
                              text=True, timeout=60, check=False)
        if check and proc.returncode != 0:
            raise AssertionError("%s failed rc=%s: %s %s" % (argv, proc.returncode, proc.stdout, proc.stderr))
        return proc

    def _pid(self, name: str) -> int:
        with open(os.path.join(self.dir, name + ".pid"), encoding="ascii") as handle:
            return int(handle.read().strip())

    def start_db(self) -> None:
        os.makedirs(self.dir, exist_ok=True)
        db_file = os.path.join(self.dir, "conf.db")
        self._exec("ovsdb-tool", "create", db_file, SCHEMA)
        self._exec("ovsdb-server", db_file, "--remote=punix:" + self.sock,
                   "--pidfile=" + os.path.join(self.dir, "ovsdb-server.pid"),
                   "--unixctl=" + os.path.join(self.dir, "ovsdb-server.ctl"),
                   "--log-file=" + os.path.join(self.dir, "ovsdb-server.log"), "--detach")
        self.pids.append(self._pid("ovsdb-server"))
        self.vsctl("--no-wait", "init")

    def start_switch(self) -> None:
        self._exec("ovs-vswitchd", self.db, "--pidfile=" + os.path.join(self.dir, "ovs-vswitchd.pid"),
                   "--unixctl=" + os.path.join(self.dir, "ovs-vswitchd.ctl"),
                   "--log-file=" + os.path.join(self.dir, "ovs-vswitchd.log"), "--detach")
        self.pids.append(self._pid("ovs-vswitchd"))

    def start(self) -> "PrivateOvs":
        self.start_db()
        self.start_switch()
        return self

    def stop_switch(self) -> None:
        self._stop(self._pid("ovs-vswitchd"))

    def _stop(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        for pid in reversed(self.pids):
            self._stop(pid)
        self.pids.clear()

    def vsctl(self, *args, check=True) -> subprocess.CompletedProcess:
        return self._exec("ovs-vsctl", "--timeout=20", "--db=" + self.db, *args, check=check)

    def add_bridge(self, name: str) -> None:
        self.vsctl("add-br", name, "--", "set", "Bridge", name, "datapath_type=netdev")

    def get(self, table: str, record: str, column: str):
        """One column as ovs-vsctl --data=json gives it (sets and maps as [kind, data])."""
        out = self.vsctl("--format=json", "--data=json", "--columns=" + column, "list", table, record).stdout
        return json.loads(out)["data"][0][0]

    def port_names(self) -> set[str]:
        out = self.vsctl("--format=json", "--data=json", "--columns=name", "list", "Port").stdout
        return {row[0] for row in json.loads(out)["data"]}

    def interface_rows(self) -> dict:
        out = self.vsctl("--format=json", "--data=json", "--columns=name,external_ids", "list",
                         "Interface").stdout
        return {row[0]: dict(row[1][1]) for row in json.loads(out)["data"]}
