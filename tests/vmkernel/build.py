"""Build what the VM tier boots: Debian's cloud kernel and an initramfs that carries the test.

    .venv/bin/python tests/vmkernel/build.py [OUTDIR]     # default tests/output/vmkernel

This machine's kernel has no bridge VLAN filtering, so the working path of the module's
Linux bridge VLANs is tested on Debian's own kernel, booted under QEMU (TCG, no KVM needed).
The kernel package is fetched with ``apt-get download`` (the metapackage
linux-image-cloud-amd64 names the current one); the modules the test needs (tun, bridge and
what they depend on, by modinfo) come from it. The initramfs holds busybox (Debian's
busybox-static), this host's Debian python3 with its standard library and shared libraries,
iproute2's ip and bridge (to read the kernel back), pyroute2 and ansible's module_utils from
the test virtualenv, the collection's plugins, and /init (INIT), which runs guest_checks.py
and powers off. Written as a plain newc cpio (the kernel reads it uncompressed; no cpio tool needed).
"""
from __future__ import annotations

import glob
import os
import shutil
import stat
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"          # Debian's, whose stdlib is in /usr/lib/python3.X
MODULES = ["tun", "bridge"]
IPROUTE = ["/usr/sbin/ip", "/usr/sbin/bridge", "/usr/bin/ip", "/bin/ip", "/sbin/bridge"]
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
               "dist-packages", "site-packages", "venv", "distutils", "config-3.11-x86_64-linux-gnu"}


# /init of the initramfs (busybox sh): mount what Python and iproute2 need, load the kernel
# modules the test uses, run the checks, report on the serial console, power off.
INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
# iproute2 before the busybox applets of the same name
export PATH=/usr/sbin:/usr/bin:/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/net
[ -c /dev/net/tun ] || mknod /dev/net/tun c 10 200
while read -r module; do
    insmod "/modules/$module" || echo "NTT-VM insmod $module failed"
done </modules/order
ip link set lo up
echo "NTT-VM kernel $(uname -r)"
PYTHONPATH=/opt/py:/opt/collections PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 /vm/guest_checks.py
echo "NTT-VM exit $?"
poweroff -f
"""


def run(*argv, **kwargs) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs).stdout


def kernel_package() -> str:
    out = run("apt-cache", "depends", "linux-image-cloud-amd64")
    for line in out.splitlines():
        word = line.split()[-1]
        if line.strip().startswith("Depends:") and word.startswith("linux-image-") and word[12:13].isdigit():
            return word
    raise SystemExit("apt-cache names no kernel for linux-image-cloud-amd64 (run apt-get update)")


def fetch_kernel(out: str) -> str:
    """The unpacked kernel package; downloaded once per kernel version."""
    package = kernel_package()
    debs = glob.glob(os.path.join(out, package + "_*.deb"))
    if not debs:
        fetched = subprocess.run(["apt-get", "download", package], cwd=out, check=False, capture_output=True)
        if fetched.returncode != 0:
            # Package lists older than the archive name a version that is gone: refresh them once.
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
            package = kernel_package()
            subprocess.run(["apt-get", "download", package], cwd=out, check=True, capture_output=True)
        debs = glob.glob(os.path.join(out, package + "_*.deb"))
    tree = os.path.join(out, "kernel-" + package)
    if not os.path.isdir(tree):
        shutil.rmtree(tree + ".tmp", ignore_errors=True)
        run("dpkg-deb", "-x", debs[0], tree + ".tmp")
        os.rename(tree + ".tmp", tree)
    return tree


def module_order(tree: str) -> list:
    """The .ko files for MODULES, dependencies first (modinfo's depends field)."""
    paths = {}
    for path in glob.glob(os.path.join(tree, "lib/modules/*/kernel/**/*.ko"), recursive=True):
        paths[os.path.basename(path)[:-3].replace("-", "_")] = path
    order: list = []

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in order:
            return
        if name not in paths:
            return  # built into this kernel
        for dep in filter(None, run("modinfo", "-F", "depends", paths[name]).strip().split(",")):
            visit(dep)
        order.append(name)

    for name in MODULES:
        visit(name)
    return [paths[name] for name in order]


class Tree:
    """Files for the archive: archive path -> host path (or bytes), plus directories and links."""

    def __init__(self):
        self.files: dict = {}
        self.links: dict = {}
        self.dirs: set = set()

    def add_dir(self, path: str) -> None:
        path = path.strip("/")
        while path:
            self.dirs.add(path)
            path = os.path.dirname(path)

    def add(self, dest: str, source, mode: int = 0o644) -> None:
        dest = dest.strip("/")
        self.add_dir(os.path.dirname(dest))
        self.files[dest] = (source, mode)

    def add_host(self, path: str) -> None:
        """A host file at the same path, following symlinks (keeping the link too)."""
        real = os.path.realpath(path)
        if real != path and path not in self.links:
            self.add_dir(os.path.dirname(path.strip("/")))
            self.links[path.strip("/")] = real
        self.add(real, real, stat.S_IMODE(os.stat(real).st_mode))

    def add_tree(self, source: str, dest: str, skip=()) -> None:
        for root, dirs, files in os.walk(source):
            dirs[:] = [d for d in dirs if d not in skip]
            rel = os.path.relpath(root, source)
            for name in files:
                host = os.path.join(root, name)
                if os.path.islink(host) and not os.path.exists(host):
                    continue
                self.add(os.path.normpath(os.path.join(dest, rel, name)), host,
                         stat.S_IMODE(os.stat(host).st_mode))


def shared_libraries(binaries) -> set:
    libs = set()
    for binary in binaries:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            parts = line.split()
            for part in parts:
                if part.startswith("/"):
                    libs.add(part)
    return libs


def write_cpio(tree: Tree, path: str) -> None:
    ino = [1]

    def entry(out, name: str, mode: int, data: bytes) -> None:
        encoded = name.encode() + b"\0"
        header = "070701" + "".join("%08X" % v for v in (
            ino[0], mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0))
        ino[0] += 1
        out.write(header.encode() + encoded)
        out.write(b"\0" * ((4 - (110 + len(encoded)) % 4) % 4))
        out.write(data)
        out.write(b"\0" * ((4 - len(data) % 4) % 4))

    with open(path + ".tmp", "wb") as out:
        for name in sorted(tree.dirs):
            entry(out, name, stat.S_IFDIR | 0o755, b"")
        for name, target in sorted(tree.links.items()):
            entry(out, name, stat.S_IFLNK | 0o777, target.encode())
        for name, (source, mode) in sorted(tree.files.items()):
            if name in tree.links:
                continue
            data = source if isinstance(source, bytes) else open(source, "rb").read()
            entry(out, name, stat.S_IFREG | mode, data)
        entry(out, "TRAILER!!!", 0, b"")
    os.replace(path + ".tmp", path)


def venv_site() -> str:
    import pyroute2  # the test virtualenv's (python of this script)
    return os.path.dirname(os.path.dirname(pyroute2.__file__))


def build(out: str) -> dict:
    os.makedirs(out, exist_ok=True)
    kernel_tree = fetch_kernel(out)
    vmlinuz = glob.glob(os.path.join(kernel_tree, "boot/vmlinuz-*"))[0]
    tree = Tree()
    for directory in ("proc", "sys", "dev", "run", "tmp", "sbin", "usr/bin", "usr/sbin", "var/run"):
        tree.add_dir(directory)
    tree.add("bin/busybox", shutil.which("busybox") or "/bin/busybox", 0o755)
    for path in module_order(kernel_tree):
        tree.add("modules/" + os.path.basename(path), path)
    tree.add("modules/order", "".join(os.path.basename(p) + "\n" for p in module_order(kernel_tree)).encode())
    python = os.path.realpath(PYTHON)
    version = "python%d.%d" % tuple(int(x) for x in run(python, "-c", "import sys; print(*sys.version_info[:2])").split())
    stdlib = "/usr/lib/" + version
    tree.add_host(PYTHON)
    tree.add_tree(stdlib, stdlib, skip=STDLIB_SKIP)
    iproute = list(dict.fromkeys(map(os.path.realpath, filter(os.path.exists, IPROUTE))))
    for binary in iproute:
        tree.add(binary, binary, 0o755)
    dynload = glob.glob(os.path.join(stdlib, "lib-dynload", "*.so"))
    for lib in shared_libraries([python] + iproute + dynload):
        tree.add_host(lib)
    site = venv_site()
    tree.add_tree(os.path.join(site, "pyroute2"), "opt/py/pyroute2", skip={"__pycache__"})
    # As on a managed host (AnsiballZ): ansible's module_utils under an empty ansible package.
    tree.add("opt/py/ansible/__init__.py", b"")
    tree.add_tree(os.path.join(site, "ansible/module_utils"), "opt/py/ansible/module_utils", skip={"__pycache__"})
    tree.add_tree(os.path.join(REPO, "plugins"), "opt/collections/ansible_collections/netdev/tuntap/plugins",
                  skip={"__pycache__"})
    tree.add("vm/guest_checks.py", os.path.join(HERE, "guest_checks.py"))
    tree.add("init", INIT.encode(), 0o755)
    initramfs = os.path.join(out, "initramfs.cpio")
    write_cpio(tree, initramfs)
    return {"kernel": vmlinuz, "initramfs": initramfs, "files": len(tree.files),
            "bytes": os.path.getsize(initramfs)}


if __name__ == "__main__":
    result = build(os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "tests/output/vmkernel")))
    print("kernel %(kernel)s\ninitramfs %(initramfs)s (%(files)d files, %(bytes)d bytes)" % result)
