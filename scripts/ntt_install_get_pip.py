"""Put the offline get-pip stand-in (ntt_get_pip.py) where ansible-test looks for get-pip.py.

ansible-test --venv first bootstraps pip with a get-pip.py it downloads from the internet and
caches as ~/.ansible/test/cache/get_pip_<its pinned pip version>.py. A real script already
cached there is kept; a stand-in from an older checkout is replaced.
"""
from __future__ import annotations

import os
import re
import shutil

import ansible_test

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, "ntt_get_pip.py")
MARKER = "# netdev.tuntap offline get-pip stand-in"


def wanted_pip_version() -> str:
    path = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")
    with open(path, encoding="utf-8") as handle:
        match = re.search(r"default_packages = dict\(\s*pip='([0-9.]+)'", handle.read())
    if not match:
        raise SystemExit("cannot tell which pip version ansible-test wants (read %s)" % path)
    return match.group(1)


def main() -> None:
    cache = os.path.expanduser("~/.ansible/test/cache/get_pip_%s.py" % wanted_pip_version().replace(".", "_"))
    if os.path.exists(cache):
        with open(cache, encoding="utf-8", errors="replace") as handle:
            if MARKER not in handle.read():
                return  # a real get-pip.py, downloaded by ansible-test itself
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    shutil.copyfile(STANDIN, cache + ".tmp")
    os.replace(cache + ".tmp", cache)


if __name__ == "__main__":
    main()
