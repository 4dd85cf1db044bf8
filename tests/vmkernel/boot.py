"""Boot the VM tier once and collect its check lines.

    .venv/bin/python tests/vmkernel/boot.py [OUTDIR]

QEMU with TCG (no KVM on these machines), no disk, no network: Debian's kernel and the
initramfs from build.py, console on the serial port, which is read line by line (and kept in
OUTDIR/console.log). The run ends when the guest powers off, or at the time limit
(NTT_VM_TIMEOUT seconds, default 600), when QEMU is killed by its PID.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import build  # noqa: E402

ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|c)")   # the firmware's terminal resets
CHECK = re.compile(r"NTT-CHECK (\S+) (PASS|FAIL)(?: (.*))?")


def boot(out: str, timeout: float | None = None) -> dict:
    timeout = timeout or float(os.environ.get("NTT_VM_TIMEOUT", "600"))
    started = time.monotonic()
    built = build.build(out)
    build_seconds = time.monotonic() - started
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise RuntimeError("qemu-system-x86_64 is missing (package qemu-system-x86)")
    argv = [qemu, "-machine", "q35,accel=tcg", "-cpu", "max", "-m", "1024", "-smp", "1",
            "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-net", "none",
            "-kernel", built["kernel"], "-initrd", built["initramfs"],
            "-append", "console=ttyS0 panic=-1 rdinit=/init quiet"]
    checks: dict = {}
    lines = []
    booted = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done = None
    try:
        os.set_blocking(proc.stdout.fileno(), False)
        buffer = b""
        while time.monotonic() - booted < timeout:
            chunk = proc.stdout.read()
            if chunk:
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    line = ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\r")
                    lines.append(line)
                    match = CHECK.search(line)
                    if match:
                        checks[match.group(1)] = (match.group(2), match.group(3) or "")
                    if "NTT-DONE" in line:
                        done = line
            elif proc.poll() is not None:
                break
            else:
                time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        with open(os.path.join(out, "console.log"), "w", encoding="utf-8") as log:
            log.write("\n".join(lines) + "\n")
    return {"checks": checks, "done": done, "boot_seconds": time.monotonic() - booted,
            "build_seconds": build_seconds, "timed_out": done is None and time.monotonic() - booted >= timeout,
            "guest_kernel": next((l for l in lines if "NTT-VM kernel" in l), None), "lines": lines, **built}


if __name__ == "__main__":
    result = boot(os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                                  os.path.join(build.REPO, "tests/output/vmkernel")))
    for name, (state, why) in result["checks"].items():
        print(name, state, why)
    print(result["done"], "boot %.1f s, build %.1f s" % (result["boot_seconds"], result["build_seconds"]))
