#!/usr/bin/env bash
# The complete test run of the netdev.tuntap collection - the README's test command.
#
#   sudo bash scripts/test.sh                  # everything (on a fresh Debian machine, as root)
#   bash scripts/test.sh unit sanity           # only some stages (setup always runs first)
#   bash scripts/test.sh --list                # the stages, in order
#
# Setup installs what is missing (Debian packages: iproute2, qemu-system-x86, shellcheck, sudo,
# openssh-server/-client and python3-apt for the fleet, python3-venv; apt-get update once, only when
# something has to be installed; Debian 11's CPython 3.9, unpacked privately; the libvirt stage
# installs libvirt's packages itself, see scripts/libvirt_setup.sh) and builds the
# pinned virtual environment (.venv, see scripts/bootstrap.sh). Then every stage runs, each
# under a time limit (NTT_STAGE_TIMEOUT seconds, default 1500), even after another failed. A
# stage whose subject does not exist yet fails; nothing is skipped silently. The run ends with a
# summary and exits non-zero when any stage failed.
#
# Devices are only ever created inside network namespaces named ntt-* that the tests make and
# delete, with throwaway registries; nothing touches the machine's own interfaces.

set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$NTT_ROOT"

# ------------------------------------------------------------------------------------------
# The stages, in the order they run: name, set ("all": run by default and by `all`;
# "named": only when named), the function that runs it, and what it does. To add a stage,
# write its function below and add one line here.

STAGE_NAMES=() STAGE_SETS=() STAGE_FUNCS=() STAGE_DESCS=()
stage() { STAGE_NAMES+=("$1") STAGE_SETS+=("$2") STAGE_FUNCS+=("$3") STAGE_DESCS+=("$4"); }

stage unit         all   stage_unit         "pytest tests/unit"
stage integration  all   stage_integration  "pytest tests/integration (real devices in throwaway namespaces)"
stage bench        all   stage_bench        "the benchmark's tiny version (scripts/bench.sh --tiny); checks its doc, PNG and every figure (timings never fail)"
stage reliability  all   stage_reliability  "tests/reliability: concurrency, SIGKILLs, broken registries, full disk, hostile input; writes docs/reliability.md (NTT_SOAK=1: the long soak)"
stage pyroute2_min all   stage_pyroute2_min "pytest tests/integration again with pyroute2 0.7.2, the oldest supported"
stage doc          all   stage_doc          "ansible-doc renders the modules, the role (every role variable) and the filters"
stage sanity       all   stage_sanity       "ansible-test sanity on the installed collection"
stage lint         all   stage_lint         "ansible-lint (production profile), antsibull-changelog lint"
stage artifact     all   stage_artifact     "ansible-galaxy collection build, install, use it ad hoc and in a playbook"
stage molecule     all   stage_molecule     "molecule test (scripts/molecule.sh)"
stage fleet        all   stage_fleet        "guest_taps on 10 emulated hosts over real SSH (scripts/fleet.sh)"
stage libvirt      all   stage_libvirt      "pytest tests/libvirt (a private libvirtd starts guests on the role's taps)"
stage ovs          all   stage_ovs          "pytest -m ovs: OVS ports on a private ovsdb-server/ovs-vswitchd per test"
stage vlan_vm      all   stage_vlan_vm      "bridge VLANs for real on Debian's kernel under QEMU (tests/vmkernel)"
stage demo         named stage_demo         "the README's main job (scripts/demo.sh)"

JUNIT_DIR="$NTT_OUTPUT/junit"

header() { printf '\n==== %s ====\n' "$*"; }

# ------------------------------------------------------------------------------------------
# setup

setup_packages() {
    local -a need=()
    command -v ip >/dev/null 2>&1 || need+=(iproute2)
    command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
    command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
    if ! "$NTT_PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        need+=(python3-venv)
    fi
    command -v sudo >/dev/null 2>&1 || need+=(sudo) # the documented examples and the fleet use become
    # the fleet stage: sshd per emulated host, ssh from the controller, apt's Python bindings for
    # the role's package step on hosts that share this machine's /usr
    [ -x /usr/sbin/sshd ] || need+=(openssh-server)
    command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
    /usr/bin/python3 -c 'import apt' >/dev/null 2>&1 || need+=(python3-apt)
    for tool in flock unshare runuser; do
        command -v "$tool" >/dev/null 2>&1 || need+=(util-linux)
    done
    if [ "${#need[@]}" -gt 0 ]; then
        # shellcheck disable=SC2207
        need=($(printf '%s\n' "${need[@]}" | sort -u))
        [ "$(id -u)" -eq 0 ] || ntt_die "missing packages: ${need[*]} (run as root, or apt-get install them)"
        command -v apt-get >/dev/null 2>&1 || ntt_die "missing packages: ${need[*]} and no apt-get to install them"
        echo "installing Debian packages: ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # Packages with daemons (openssh-server) must not start them on this machine: a
        # policy-rc.d that refuses, unless the machine has its own.
        local made_policy=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && made_policy=1
        fi
        local apt_rc=0
        apt-get install -y -qq --no-install-recommends "${need[@]}" >"$NTT_OUTPUT/apt.log" 2>&1 || apt_rc=$?
        [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
        if [ "$apt_rc" -ne 0 ]; then
            tail -n 30 "$NTT_OUTPUT/apt.log" >&2
            ntt_die "apt-get install ${need[*]} failed (log: $NTT_OUTPUT/apt.log)"
        fi
    fi
    [ -c /dev/net/tun ] || modprobe tun 2>/dev/null || true
    [ -c /dev/net/tun ] || ntt_die "/dev/net/tun is missing (the tun kernel module is needed)"
}

run_setup() {
    mkdir -p "$NTT_OUTPUT"
    setup_packages
    # The oldest Python the module claims (tests/config.yml): Debian 11's CPython, unpacked privately.
    bash "$NTT_ROOT/scripts/oldest_python.sh" >/dev/null || ntt_die "cannot obtain the oldest supported CPython"
    ntt_bootstrap
    ntt_env
    # ansible-test --venv would download get-pip.py from the internet: an offline stand-in.
    python "$NTT_ROOT/scripts/ntt_install_get_pip.py" || ntt_die "cannot install the get-pip stand-in for ansible-test"
    python "$NTT_ROOT/scripts/ntt_versions.py"
}

# ------------------------------------------------------------------------------------------
# helpers for stages

require_path() {
    local p
    for p in "$@"; do
        [ -e "$NTT_ROOT/$p" ] || ntt_die "$p does not exist (yet): this stage cannot run"
    done
}

# pytest, with its output on the console and a JUnit report for the final tally.
# Exit code 5 (no tests collected) is a failure like any other non-zero code.
run_pytest() {
    local name="$1"
    shift
    mkdir -p "$JUNIT_DIR"
    local rc=0
    "${NTT_PYTEST_PYTHON:-python}" -m pytest -p no:cacheprovider -ra --junitxml="$JUNIT_DIR/$name.xml" "$@" \
        </dev/null || rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "pytest collected no tests in $* (exit 5): counted as a failure" >&2
    fi
    return "$rc"
}

# The integration tests and the molecule scenario attach a real QEMU to taps. Setup installs it;
# should it still be missing, the stage fails here rather than letting those checks skip.
require_qemu() {
    command -v qemu-system-x86_64 >/dev/null 2>&1 ||
        ntt_die "qemu-system-x86_64 is missing (setup installs qemu-system-x86): the QEMU checks cannot run"
}

list_ntt_netns() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep '^ntt-' | sort || true
}

# Namespaces named ntt-* that appeared during a stage and are still there afterwards are leaks.
# (Only reported: another run on this machine may own them.)
check_netns_leaks() {
    local before="$1" after leaked i
    for i in 1 2 3 4 5; do
        after="$(list_ntt_netns)"
        leaked="$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | sed '/^$/d')"
        [ -z "$leaked" ] && return 0
        sleep 1
    done
    echo "network namespaces left behind by this stage: $(echo "$leaked" | tr '\n' ' ')" >&2
    if [ "${CI:-}" = "true" ] || [ "${NTT_STRICT_LEAKS:-0}" = 1 ]; then
        return 1
    fi
    echo "(not failing: outside CI another run may own them; NTT_STRICT_LEAKS=1 makes this fatal)" >&2
}

# ------------------------------------------------------------------------------------------
# stages (each runs in its own process, with ntt_env applied)

stage_unit() {
    require_path tests/unit
    run_pytest unit tests/unit
}

stage_integration() {
    need_root "the integration stage"
    require_path tests/integration
    require_qemu
    local before rc=0
    before="$(list_ntt_netns)"
    run_pytest integration -m "not ovs" tests/integration || rc=$?
    check_netns_leaks "$before" || rc=1
    return "$rc"
}

# The benchmark at CI size (N = 50): it must run and produce tests/output/bench/benchmarks.md, the
# PNG and every figure as a number; how fast anything is never fails it. scripts/bench.sh installs
# requirements/bench.txt (matplotlib) itself.
stage_bench() {
    need_root "the bench stage"
    require_path scripts/bench.sh benchmarks/bench.py requirements/bench.txt
    local before rc=0
    before="$(list_ntt_netns)"
    rm -f "$NTT_OUTPUT/bench/benchmarks.md" "$NTT_OUTPUT/bench/benchmarks.png" "$NTT_OUTPUT/bench/results.json"
    bash "$NTT_ROOT/scripts/bench.sh" --tiny </dev/null || rc=$?
    python "$NTT_ROOT/benchmarks/bench.py" --check "$NTT_OUTPUT/bench" || rc=1
    check_netns_leaks "$before" || rc=1
    return "$rc"
}

# The reliability suite prints its figures and rewrites docs/reliability.md from them. NTT_SOAK=1
# (passed through the environment) makes it the long soak. Its full-disk and read-only mounts live
# in private mount namespaces; one left in the host's is a failure.
stage_reliability() {
    need_root "the reliability stage"
    require_path tests/reliability scripts/ntt_reliability.py
    local before rc=0
    before="$(list_ntt_netns)"
    python "$NTT_ROOT/scripts/ntt_reliability.py" || rc=$?
    check_netns_leaks "$before" || rc=1
    if grep -F " $NTT_OUTPUT/" /proc/self/mounts; then
        echo "mounts left under $NTT_OUTPUT by the reliability suite (above)" >&2
        rc=1
    fi
    return "$rc"
}

# The integration suite again with the oldest pyroute2 the module supports, in a venv of its
# own (.venv-pyroute2-min, rebuilt when requirements/pyroute2-min.txt or the constraints change).
stage_pyroute2_min() {
    need_root "the pyroute2_min stage"
    require_path tests/integration requirements/pyroute2-min.txt
    require_qemu
    local venv="$NTT_ROOT/.venv-pyroute2-min" min_constraints="$NTT_OUTPUT/constraints-pyroute2-min.txt"
    local want before rc=0
    want="$(cat "$NTT_ROOT/requirements/pyroute2-min.txt" "$NTT_ROOT/requirements/constraints.txt" |
        sha256sum | cut -d' ' -f1) $("$NTT_PYTHON" -V 2>&1)"
    if [ "$(cat "$venv/.ntt-stamp" 2>/dev/null)" != "$want" ]; then
        echo "building $venv from requirements/pyroute2-min.txt"
        grep -v '^pyroute2==' "$NTT_ROOT/requirements/constraints.txt" >"$min_constraints"
        "$NTT_PYTHON" -m venv --clear "$venv"
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q --no-input \
            -r "$NTT_ROOT/requirements/pyroute2-min.txt" -c "$min_constraints" >"$NTT_OUTPUT/pyroute2-min-pip.log" 2>&1 || {
            grep -v "^WARNING: Location '" "$NTT_OUTPUT/pyroute2-min-pip.log" | tail -n 30 >&2
            ntt_die "pip install of requirements/pyroute2-min.txt failed"
        }
        echo "$want" >"$venv/.ntt-stamp"
    fi
    "$venv/bin/python" -c 'import pyroute2, sys; print("pyroute2", pyroute2.__version__, "on python", sys.version.split()[0])'
    before="$(list_ntt_netns)"
    # Its ansible and ansible-playbook run the module with this venv's python, so the module
    # itself meets pyroute2 0.7.2 too.
    # The documented examples test the documents, not the library: they run once, in integration.
    PATH="$venv/bin:$PATH" NTT_PYTEST_PYTHON="$venv/bin/python" run_pytest pyroute2-min -m "not ovs" tests/integration \
        --ignore=tests/integration/test_docs_examples.py || rc=$?
    check_netns_leaks "$before" || rc=1
    return "$rc"
}

# ansible-doc must render (exit 0, no warning) and show every option named after the kind
# and the name. (That the module's documented options match its argument spec is
# ansible-test's validate-modules check, in the sanity stage; nothing checks the role's.)
check_doc() {
    local kind="$1" fqcn="$2" out err
    shift 2
    out="$NTT_OUTPUT/doc/$kind-$fqcn.txt"
    err="$out.stderr"
    mkdir -p "$NTT_OUTPUT/doc"
    echo "\$ ansible-doc -t $kind $fqcn"
    if ! ANSIBLE_NOCOLOR=1 ansible-doc -t "$kind" "$fqcn" >"$out" 2>"$err"; then
        cat "$err" >&2
        ntt_die "ansible-doc -t $kind $fqcn failed"
    fi
    if grep -Eiq 'warning|error' "$err"; then
        cat "$err" >&2
        ntt_die "ansible-doc -t $kind $fqcn printed warnings"
    fi
    local missing=() opt
    for opt in "$@"; do
        grep -Eq -- "^ *[-=] $opt( |\$)" "$out" || missing+=("$opt")
    done
    [ "${#missing[@]}" -eq 0 ] || ntt_die "ansible-doc -t $kind $fqcn does not mention: ${missing[*]}"
    head -n 3 "$out"
    echo "    ... ($(wc -l <"$out") lines${1:+; documents $*})"
}

# The variables the role reads: guest_taps_* in its tasks, defaults and vars, minus the fact it
# publishes (guest_taps_devices) and its internal __guest_taps_* names.
role_inputs() {
    grep -rhoE '(^|[^_[:alnum:]])guest_taps_[a-z0-9_]+' "$NTT_ROOT/roles/guest_taps" \
        --include='*.yml' --include='*.j2' | sed -E 's/^[^g]*//' | grep -vx guest_taps_devices | sort -u
}

stage_doc() {
    require_path plugins/modules/tap_device.py roles/guest_taps/meta/argument_specs.yml
    check_doc module netdev.tuntap.tap_device
    check_doc module netdev.tuntap.tap_device_info netns all_namespaces registry names templates lease_prefix holders
    local -a inputs
    mapfile -t inputs < <(role_inputs)
    [ "${#inputs[@]}" -gt 0 ] || ntt_die "found no guest_taps_* variable in roles/guest_taps"
    check_doc role netdev.tuntap.guest_taps "${inputs[@]}"
    # Every documented filter plugin of the collection renders too.
    local f
    for f in $(ansible-doc -t filter -l netdev.tuntap --json 2>/dev/null |
        python -c 'import json, sys; print("\n".join(sorted(json.load(sys.stdin))))'); do
        check_doc filter "$f"
    done
}

stage_sanity() {
    require_path plugins/modules/tap_device.py
    local dest="$NTT_OUTPUT/sanity" pyver
    pyver="$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    # ansible-test needs the collection under .../ansible_collections/netdev/tuntap and refuses the
    # symlink: test what users install. ANSIBLE_TEST_CONTENT_ROOT stops it from walking up to this
    # repository's git checkout (where tests/output is ignored, so it would see no files).
    rm -rf "$dest"
    ANSIBLE_COLLECTIONS_PATH="$dest" ansible-galaxy collection install "$NTT_ROOT" -p "$dest" --force >/dev/null
    cd "$dest/ansible_collections/netdev/tuntap"
    echo "\$ ansible-test sanity --venv --python $pyver   (in $PWD)"
    ANSIBLE_TEST_CONTENT_ROOT="$PWD" ansible-test sanity --venv --python "$pyver" --color no 2>&1 |
        grep --line-buffered -v "^WARNING: Location '.*' is ignored"
}

stage_lint() {
    require_path galaxy.yml meta/runtime.yml roles/guest_taps examples molecule/default \
        changelogs/config.yaml changelogs/changelog.yaml
    echo "\$ ansible-lint   (profile and offline mode from .ansible-lint)"
    ansible-lint --nocolor
    echo "\$ antsibull-changelog lint"
    antsibull-changelog lint
    antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
    echo "changelog: OK"
}

# Build the artifact, install it into an empty collections path and use it from there only
# (tests/artifact: its contents, ad hoc, a playbook with module_defaults and the role).
stage_artifact() {
    need_root "the artifact stage"
    require_path README.md plugins/modules/tap_device.py roles/guest_taps tests/artifact
    local dist="$NTT_OUTPUT/dist" colls="$NTT_OUTPUT/artifact/collections" tarball before rc=0
    rm -rf "$dist" "$NTT_OUTPUT/artifact"
    mkdir -p "$dist" "$colls"
    ansible-galaxy collection build "$NTT_ROOT" --output-path "$dist" --force
    tarball="$(ls "$dist"/netdev-tuntap-*.tar.gz)"
    ANSIBLE_COLLECTIONS_PATH="$colls" ansible-galaxy collection install "$tarball" -p "$colls" --force
    before="$(list_ntt_netns)"
    # From here on only the installed artifact provides netdev.tuntap.
    NTT_ARTIFACT_TARBALL="$tarball" NTT_ARTIFACT_COLLECTIONS="$colls" ANSIBLE_COLLECTIONS_PATH="$colls" \
        run_pytest artifact tests/artifact || rc=$?
    check_netns_leaks "$before" || rc=1
    return "$rc"
}

stage_fleet() {
    need_root "the fleet stage"
    require_path scripts/fleet.sh tests/fleet/site.yml tests/fleet/verify.py
    local before rc=0
    before="$(list_ntt_netns)"
    bash "$NTT_ROOT/scripts/fleet.sh" --hosts "${NTT_FLEET_HOSTS:-10}" </dev/null || rc=$?
    check_netns_leaks "$before" || rc=1
    return "$rc"
}

stage_molecule() {
    require_path scripts/molecule.sh molecule/default/molecule.yml
    require_qemu
    local before rc=0
    before="$(list_ntt_netns)"
    bash "$NTT_ROOT/scripts/molecule.sh" </dev/null || rc=$?
    check_netns_leaks "$before" || rc=1
    return "$rc"
}

# Debian packages a stage needs: installed when a command is missing (root, apt-get). A daemon's
# package must not start its service on the machine: without a policy-rc.d, one that refuses
# every start is put in place for the install and removed again.
ensure_packages() {
    local -a need=()
    local pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/sbin/${pair%%:*}" ] || need+=("${pair#*:}")
    done
    [ "${#need[@]}" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || ntt_die "missing packages: ${need[*]} (run as root, or apt-get install them)"
    command -v apt-get >/dev/null 2>&1 || ntt_die "missing packages: ${need[*]} and no apt-get to install them"
    echo "installing Debian packages: ${need[*]}"
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local rc=0
    { apt-get install -y -qq --no-install-recommends "${need[@]}" ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; }; } \
        >"$NTT_OUTPUT/apt-${need[0]}.log" 2>&1 || rc=$?
    [ "$made_policy" = 1 ] && rm -f "$policy"
    if [ "$rc" -ne 0 ]; then
        tail -n 30 "$NTT_OUTPUT/apt-${need[0]}.log" >&2
        ntt_die "apt-get install ${need[*]} failed (log: $NTT_OUTPUT/apt-${need[0]}.log)"
    fi
}

# Open vSwitch's userspace datapath, one private instance per test inside its namespace
# (tests/integration/ntt_ovs.py); never the machine's own OVS.
stage_ovs() {
    need_root "the ovs stage"
    require_path tests/integration/test_ovs_ports.py
    require_qemu
    ensure_packages ovs-vsctl:openvswitch-switch ovs-vswitchd:openvswitch-switch
    local before rc=0
    before="$(list_ntt_netns)"
    run_pytest ovs -m ovs tests/integration || rc=$?
    check_netns_leaks "$before" || rc=1
    return "$rc"
}

# libvirt as a client: installs libvirt when missing (scripts/libvirt_setup.sh, which also makes
# sure no libvirt daemon runs in the host's namespaces), then the tests start their own libvirtd
# in a throwaway network and mount namespace and remove everything they made.
stage_libvirt() {
    need_root "the libvirt stage"
    require_path tests/libvirt scripts/libvirt_setup.sh
    require_qemu
    bash "$NTT_ROOT/scripts/libvirt_setup.sh" || ntt_die "libvirt could not be installed"
    local before rc=0
    before="$(list_ntt_netns)"
    run_pytest libvirt tests/libvirt || rc=$?
    check_netns_leaks "$before" || rc=1
    return "$rc"
}

# This machine's kernel has no bridge VLAN filtering: the working path runs on Debian's cloud
# kernel under QEMU/TCG (tests/vmkernel: build.py fetches it with apt-get download into
# tests/output/vmkernel and builds the initramfs; boot.py boots it, ~20-100 s by load).
stage_vlan_vm() {
    require_path tests/vmkernel/test_vlan_vm.py
    require_qemu
    ensure_packages busybox:busybox-static modinfo:kmod dpkg-deb:dpkg
    if ! apt-cache depends linux-image-cloud-amd64 >/dev/null 2>&1; then
        [ "$(id -u)" -eq 0 ] || ntt_die "apt has no package lists (run apt-get update as root)"
        apt-get update -qq
    fi
    run_pytest vlan_vm -s tests/vmkernel
}

stage_demo() {
    require_path scripts/demo.sh
    bash "$NTT_ROOT/scripts/demo.sh" </dev/null
}

# ------------------------------------------------------------------------------------------
# driver

stage_index() {
    local i
    for i in "${!STAGE_NAMES[@]}"; do
        [ "${STAGE_NAMES[i]}" = "$1" ] && { echo "$i"; return 0; }
    done
    return 1
}

stages_in_set() {
    local i
    for i in "${!STAGE_NAMES[@]}"; do
        [ "${STAGE_SETS[i]}" = "$1" ] && echo "${STAGE_NAMES[i]}"
    done
}

if [ "${1:-}" = "--run-stage" ]; then
    # Internal: one stage in its own process (so a time limit can end all of it).
    i="$(stage_index "$2")" || ntt_die "unknown stage '$2'"
    ntt_env
    export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 PY_COLORS=0
    "${STAGE_FUNCS[i]}"
    exit 0
fi

mapfile -t default_stages < <(stages_in_set all)
stages=()
for arg in "$@"; do
    case "$arg" in
        all) stages+=("${default_stages[@]}") ;;
        --list)
            for i in "${!STAGE_NAMES[@]}"; do printf '%-12s %s\n' "${STAGE_NAMES[i]}" "${STAGE_DESCS[i]}"; done
            echo "(all = ${default_stages[*]}; $(stages_in_set named | tr '\n' ' ')only when named)"
            exit 0
            ;;
        -h | --help)
            sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            stage_index "$arg" >/dev/null ||
                ntt_die "unknown stage '$arg' (stages: ${STAGE_NAMES[*]} all)"
            stages+=("$arg")
            ;;
    esac
done
[ "${#stages[@]}" -gt 0 ] || stages=("${default_stages[@]}")

run_start=$SECONDS
results=()
failed=()
header "setup: packages, .venv, collections path"
t0=$SECONDS
if ! (run_setup); then
    echo "test.sh: FAILED - setup failed, no stage ran (total $((SECONDS - run_start)) s)"
    exit 1
fi
results+=("$(printf '  %-4s  %-12s %5d s' PASS setup $((SECONDS - t0)))")
rm -rf "$JUNIT_DIR"

stage_pid=""
trap '[ -n "$stage_pid" ] && kill -TERM "$stage_pid" 2>/dev/null; exit 130' INT
trap '[ -n "$stage_pid" ] && kill -TERM "$stage_pid" 2>/dev/null; exit 143' TERM

n=0
for name in "${stages[@]}"; do
    n=$((n + 1))
    header "[$n/${#stages[@]}] $name: ${STAGE_DESCS[$(stage_index "$name")]}"
    t0=$SECONDS
    rc=0
    # timeout puts the stage in its own process group and ends all of it at the limit.
    timeout -k 30 "${NTT_STAGE_TIMEOUT:-1500}" bash "$0" --run-stage "$name" </dev/null &
    stage_pid=$!
    wait "$stage_pid" || rc=$?
    stage_pid=""
    dt=$((SECONDS - t0))
    if [ "$rc" -eq 0 ]; then
        results+=("$(printf '  %-4s  %-12s %5d s' PASS "$name" "$dt")")
        echo "---- $name: PASS ($dt s)"
    else
        [ "$rc" -eq 124 ] && echo "---- $name: timed out after ${NTT_STAGE_TIMEOUT:-1500} s"
        results+=("$(printf '  %-4s  %-12s %5d s  (exit %d)' FAIL "$name" "$dt" "$rc")")
        failed+=("$name")
        echo "---- $name: FAIL (exit $rc, $dt s)"
    fi
done

header "summary"
printf '%s\n' "${results[@]}"
if compgen -G "$JUNIT_DIR/*.xml" >/dev/null; then
    python3 "$NTT_ROOT/scripts/ntt_junit_tally.py" "$JUNIT_DIR"/*.xml
fi
total=$((SECONDS - run_start))
if [ "${#failed[@]}" -eq 0 ]; then
    echo "test.sh: OK - all ${#stages[@]} stages passed (${stages[*]}) in $total s"
else
    echo "test.sh: FAILED - ${#failed[@]} of ${#stages[@]} stages failed: ${failed[*]} (total $total s)"
    exit 1
fi
