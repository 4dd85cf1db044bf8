# netdev.tuntap offline get-pip stand-in (copied by scripts/ntt_install_get_pip.py).
"""ansible-test runs this as get-pip.py: ``python get_pip.py [pip options] pip==X [--no-setuptools] [--no-wheel]``.

pip comes from ensurepip, then the wanted version from the package index: no download of
get-pip.py from the internet.
"""
from __future__ import annotations

import subprocess
import sys

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "-q"] + args))
