#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv at the repository root) from the
# pinned versions in requirements/, and the collections path that makes the working tree
# importable as netdev.tuntap.
#
#   bash scripts/bootstrap.sh        # set up (idempotent: does nothing when the pins did not change)
#   . scripts/bootstrap.sh           # set up, then activate .venv and export ANSIBLE_COLLECTIONS_PATH
#                                    # in the current shell
#
# The venv is rebuilt from scratch whenever requirements/pinned.txt, requirements/constraints.txt
# or the Python interpreter (NTT_PYTHON, default python3) change; a stamp file in .venv holds the
# hash of all three.

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    # Sourced: keep the caller's shell options; report failure with a status, not by exiting.
    if ntt_bootstrap && ntt_activate; then
        ntt_collection_link
    else
        return 1
    fi
else
    set -euo pipefail
    ntt_bootstrap
    ntt_collection_link
fi
