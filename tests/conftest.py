"""Make the working tree importable as ``ansible_collections.netdev.tuntap``.

Tests import the collection the way Ansible does, through a collections root that
holds ``ansible_collections/netdev/tuntap`` as a link to this checkout.
"""
from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS_ROOT = os.path.join(REPO_ROOT, "tests", "output", "collections")


def _ensure_collection_link() -> None:
    ns_dir = os.path.join(COLLECTIONS_ROOT, "ansible_collections", "netdev")
    link = os.path.join(ns_dir, "tuntap")
    os.makedirs(ns_dir, exist_ok=True)
    if os.path.realpath(link) != REPO_ROOT:
        if os.path.islink(link):
            os.unlink(link)
        os.symlink(REPO_ROOT, link)


_ensure_collection_link()
if COLLECTIONS_ROOT not in sys.path:
    sys.path.insert(0, COLLECTIONS_ROOT)
os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", COLLECTIONS_ROOT)
