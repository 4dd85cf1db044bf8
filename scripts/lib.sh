# shellcheck shell=bash
# Shared shell helpers for the scripts of the netdev.tuntap collection.
#
# Source it (do not run it):   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It only defines variables and functions; it never changes shell options of the caller.
#
# Variables
#   NTT_ROOT          absolute, symlink-free path of the repository (= the collection root)
#   NTT_VENV          $NTT_ROOT/.venv
#   NTT_OUTPUT        $NTT_ROOT/tests/output (git-ignored scratch space)
#   NTT_COLLECTIONS   $NTT_OUTPUT/collections (holds ansible_collections/netdev/tuntap -> $NTT_ROOT)
#   NTT_PYTHON        interpreter the venv is made with (default: python3; override from outside)
#
# Functions
#   ntt_info MSG... / ntt_warn MSG... / ntt_die MSG...   messages on stderr (die exits 1)
#   need_root                fail (exit 1) unless running as root
#   ntt_bootstrap            create/refresh .venv from requirements/ (idempotent, quiet)
#   ntt_activate             activate .venv (PATH, VIRTUAL_ENV) - bootstrap first if needed
#   ntt_collection_link      make tests/output/collections/ansible_collections/netdev/tuntap -> repo
#                            and export ANSIBLE_COLLECTIONS_PATH=$NTT_COLLECTIONS
#   ntt_env                  ntt_bootstrap + ntt_activate + ntt_collection_link + quiet ansible env
#   ntt_on_exit CMD...       run CMD (a string, eval'ed) when the shell exits, last registered first;
#                            also installs INT/TERM traps so cleanup runs on Ctrl-C / kill
#   ntt_netns_new VAR [TAG]  create a throwaway network namespace "ntt-[TAG-]<random>", store its
#                            name in VAR and register its deletion with ntt_on_exit
#   ntt_netns_del NAME       delete a namespace (no error when it is already gone)
#   ntt_tmpdir VAR [TAG]     create a 0700 temp dir (e.g. for a throwaway registry), store it in
#                            VAR and register its removal with ntt_on_exit
#   ntt_ansible_python       print the venv's python (use as ansible_python_interpreter)

NTT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
NTT_VENV="$NTT_ROOT/.venv"
NTT_OUTPUT="$NTT_ROOT/tests/output"
NTT_COLLECTIONS="$NTT_OUTPUT/collections"
NTT_PYTHON="${NTT_PYTHON:-python3}"
export NTT_ROOT NTT_VENV NTT_OUTPUT NTT_COLLECTIONS

ntt_info() { printf '%s\n' "$*" >&2; }
ntt_warn() { printf 'WARNING: %s\n' "$*" >&2; }
ntt_die() {
    printf 'ERROR: %s\n' "$*" >&2
    exit 1
}

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        ntt_die "${1:-this} must run as root (it creates network namespaces and tun/tap devices)"
    fi
}

# --- virtual environment ----------------------------------------------------------------------

# Everything that decides what the venv holds; a change to any of it rebuilds the venv.
_ntt_pins_hash() {
    {
        echo "bootstrap-format 1"
        "$NTT_PYTHON" -c 'import sys; print(sys.version)'
        cat "$NTT_ROOT/requirements/pinned.txt"
        if [ -f "$NTT_ROOT/requirements/constraints.txt" ]; then
            cat "$NTT_ROOT/requirements/constraints.txt"
        fi
    } | sha256sum | cut -d' ' -f1
}

_ntt_bootstrap_impl() {
    set -euo pipefail
    local stamp="$NTT_VENV/.ntt-bootstrap-stamp" log="$NTT_OUTPUT/bootstrap.log" want have start
    mkdir -p "$NTT_OUTPUT"
    command -v "$NTT_PYTHON" >/dev/null 2>&1 || ntt_die "no '$NTT_PYTHON' on PATH (Python 3.11+ is needed)"
    if ! "$NTT_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        ntt_die "$NTT_PYTHON is $("$NTT_PYTHON" -V 2>&1); ansible-core 2.19 needs Python 3.11 or newer (set NTT_PYTHON)"
    fi
    # One bootstrap at a time (the demo and the tests may start together).
    exec 9>"$NTT_OUTPUT/.bootstrap.lock"
    flock 9
    want="$(_ntt_pins_hash)"
    have="$(cat "$stamp" 2>/dev/null || true)"
    if [ "$want" = "$have" ] && "$NTT_VENV/bin/python" -c 'import ansible, pyroute2' >/dev/null 2>&1; then
        return 0
    fi
    if ! "$NTT_PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        ntt_die "$NTT_PYTHON cannot create virtual environments (on Debian: apt-get install python3-venv)"
    fi
    start=$SECONDS
    ntt_info "bootstrap: building .venv from requirements/pinned.txt (one-time, ~15 s) ..."
    rm -f "$stamp"
    # --clear: a rebuild starts empty, so a pin removed from the list does not linger.
    "$NTT_PYTHON" -m venv --clear "$NTT_VENV" >"$log" 2>&1 || {
        cat "$log" >&2
        ntt_die "python -m venv failed (log: $log)"
    }
    local -a cons=()
    if [ -f "$NTT_ROOT/requirements/constraints.txt" ]; then
        cons=(-c "$NTT_ROOT/requirements/constraints.txt")
    fi
    if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$NTT_VENV/bin/python" -m pip install --no-input \
        -r "$NTT_ROOT/requirements/pinned.txt" "${cons[@]}" >>"$log" 2>&1; then
        grep -v "^WARNING: Location '" "$log" | tail -n 40 >&2
        ntt_die "pip install of requirements/pinned.txt failed (full log: $log)"
    fi
    echo "$want" >"$stamp"
    ntt_info "bootstrap: .venv ready in $((SECONDS - start)) s"
}

ntt_bootstrap() {
    # A subshell keeps set -e/-u/pipefail and the lock fd away from the caller.
    (_ntt_bootstrap_impl)
}

ntt_activate() {
    if [ ! -x "$NTT_VENV/bin/python" ] || [ ! -f "$NTT_VENV/.ntt-bootstrap-stamp" ]; then
        ntt_bootstrap || return 1
    fi
    if [ "${VIRTUAL_ENV:-}" != "$NTT_VENV" ]; then
        # shellcheck disable=SC1091
        . "$NTT_VENV/bin/activate"
    fi
    hash -r 2>/dev/null || true
}

ntt_ansible_python() { printf '%s\n' "$NTT_VENV/bin/python"; }

# --- collections path -------------------------------------------------------------------------

ntt_collection_link() {
    local ns_dir="$NTT_COLLECTIONS/ansible_collections/netdev" link
    link="$ns_dir/tuntap"
    mkdir -p "$ns_dir"
    if [ "$(readlink -f "$link" 2>/dev/null)" != "$NTT_ROOT" ]; then
        rm -rf "$link"
        ln -s "$NTT_ROOT" "$link"
    fi
    export ANSIBLE_COLLECTIONS_PATH="$NTT_COLLECTIONS"
}

ntt_env() {
    ntt_bootstrap || return 1
    ntt_activate || return 1
    ntt_collection_link
    # Only the working tree (or what a caller puts in ANSIBLE_COLLECTIONS_PATH) may provide
    # netdev.tuntap, never a copy in ~/.ansible/collections; and no chatter about implicit localhost.
    export ANSIBLE_LOCALHOST_WARNING=False
    export ANSIBLE_INVENTORY_UNPARSED_WARNING=False
}

# --- cleanup, namespaces, temp dirs -----------------------------------------------------------

NTT_EXIT_CMDS=()

_ntt_run_exit_cmds() {
    local i
    for ((i = ${#NTT_EXIT_CMDS[@]} - 1; i >= 0; i--)); do
        eval "${NTT_EXIT_CMDS[i]}" || true
    done
    NTT_EXIT_CMDS=()
}

ntt_on_exit() {
    NTT_EXIT_CMDS+=("$*")
    trap _ntt_run_exit_cmds EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

ntt_netns_del() {
    ip netns del "$1" 2>/dev/null || true
}

ntt_netns_new() {
    local __var="$1" tag="${2:-}" name
    name="ntt-${tag:+$tag-}$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
    ip netns add "$name" || ntt_die "ip netns add $name failed"
    ntt_on_exit "ntt_netns_del '$name'"
    printf -v "$__var" '%s' "$name"
}

ntt_tmpdir() {
    local __var="$1" tag="${2:-tmp}" dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/ntt-$tag.XXXXXX")" || ntt_die "mktemp failed"
    ntt_on_exit "rm -rf '$dir'"
    printf -v "$__var" '%s' "$dir"
}
