#!/usr/bin/env bash
# The complete test run of the netdev.tuntap collection - the README's test command.
#
#   sudo bash scripts/test.sh                  # everything (on a fresh Debian machine, as root)
#   bash scripts/test.sh unit sanity           # only some stages (setup always runs first)
#   bash scripts/test.sh --list                # the stages, in order
#
# Setup installs what is missing (Debian packages: iproute2, qemu-system-x86, shellcheck,
# python3-venv; apt-get update once, only when something has to be installed) and builds the
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

ALL_STAGES=(unit integration pyroute2_min doc sanity lint artifact molecule)
OPTIONAL_STAGES=(demo)
JUNIT_DIR="$NTT_OUTPUT/junit"

# Options every module option / role variable must show in the rendered docs.
MODULE_OPTIONS=(name state lease mode owner group multi_queue vnet_hdr packet_info mtu mac_address
    bridge up netns registry max_id reuse_delay force devices prune_prefix)
ROLE_OPTIONS=(guest_taps_guests guest_taps_template guest_taps_owner guest_taps_group
    guest_taps_netns guest_taps_registry guest_taps_prune guest_taps_install_deps)

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
        apt-get install -y -qq --no-install-recommends "${need[@]}" >"$NTT_OUTPUT/apt.log" 2>&1 || {
            tail -n 30 "$NTT_OUTPUT/apt.log" >&2
            ntt_die "apt-get install ${need[*]} failed (log: $NTT_OUTPUT/apt.log)"
        }
    fi
    [ -c /dev/net/tun ] || modprobe tun 2>/dev/null || true
    [ -c /dev/net/tun ] || ntt_die "/dev/net/tun is missing (the tun kernel module is needed)"
}

# ansible-test --venv first bootstraps pip with a get-pip.py script it downloads from the
# internet. Give it an offline stand-in (ensurepip, then pip from the package index) under the
# name it looks for, unless a real script is already cached there.
setup_ansible_test_pip() {
    local version cache marker="# netdev.tuntap offline get-pip stand-in"
    version="$(python - <<'EOF'
import os, re, ansible_test
src = open(os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")).read()
print(re.search(r"default_packages = dict\(\s*pip='([0-9.]+)'", src).group(1))
EOF
)" || ntt_die "cannot tell which pip version ansible-test wants"
    cache="$HOME/.ansible/test/cache/get_pip_${version//./_}.py"
    if [ -f "$cache" ] && ! grep -qF "$marker" "$cache"; then
        return 0 # a real get-pip.py, downloaded by ansible-test itself
    fi
    mkdir -p "$(dirname "$cache")"
    cat >"$cache.tmp" <<EOF
$marker (written by scripts/test.sh).
# ansible-test runs it as get-pip.py: python get_pip.py [pip options] pip==X [--no-setuptools] [--no-wheel]
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "-q"] + args))
EOF
    mv "$cache.tmp" "$cache"
}

run_setup() {
    mkdir -p "$NTT_OUTPUT"
    setup_packages
    ntt_bootstrap
    ntt_env
    setup_ansible_test_pip
    python - <<'EOF'
import platform
from importlib.metadata import version
print("python %s; %s" % (platform.python_version(), ", ".join(
    "%s %s" % (p, version(p)) for p in ("ansible-core", "pyroute2", "pytest", "ansible-lint", "molecule"))))
EOF
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
    local before rc=0
    before="$(list_ntt_netns)"
    run_pytest integration tests/integration || rc=$?
    check_netns_leaks "$before" || rc=1
    return "$rc"
}

# The integration suite again with the oldest pyroute2 the module supports, in a venv of its
# own (.venv-pyroute2-min, rebuilt when requirements/pyroute2-min.txt or the constraints change).
stage_pyroute2_min() {
    need_root "the pyroute2_min stage"
    require_path tests/integration requirements/pyroute2-min.txt
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
    PATH="$venv/bin:$PATH" NTT_PYTEST_PYTHON="$venv/bin/python" run_pytest pyroute2-min tests/integration || rc=$?
    check_netns_leaks "$before" || rc=1
    return "$rc"
}

# ansible-doc must render (exit 0, no warning) and show every option.
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

stage_doc() {
    require_path plugins/modules/tap_device.py roles/guest_taps/meta/argument_specs.yml
    check_doc module netdev.tuntap.tap_device "${MODULE_OPTIONS[@]}"
    check_doc role netdev.tuntap.guest_taps "${ROLE_OPTIONS[@]}"
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

# Build the artifact, install it into an empty collections path and use it from there only.
stage_artifact() {
    need_root "the artifact stage"
    require_path README.md plugins/modules/tap_device.py roles/guest_taps
    local dist="$NTT_OUTPUT/dist" colls="$NTT_OUTPUT/artifact/collections" tarball
    rm -rf "$dist" "$NTT_OUTPUT/artifact"
    mkdir -p "$dist" "$colls"
    ansible-galaxy collection build "$NTT_ROOT" --output-path "$dist" --force
    tarball="$(ls "$dist"/netdev-tuntap-*.tar.gz)"
    python - "$tarball" <<'EOF'
import sys, tarfile
names = tarfile.open(sys.argv[1]).getnames()
for must in ("MANIFEST.json", "README.md", "LICENSE", "meta/runtime.yml", "plugins/modules/tap_device.py",
             "roles/guest_taps/tasks/main.yml", "roles/guest_taps/meta/argument_specs.yml"):
    if must not in names:
        sys.exit("the artifact lacks %s" % must)
bad = [n for n in names if n.split("/")[0] in (".venv", ".git", ".ci", ".pytest_cache")
       or n.startswith("tests/output") or "__pycache__" in n or n.endswith((".pyc", ".tar.gz"))]
if bad:
    sys.exit("the artifact holds files it should not: %s" % ", ".join(sorted(bad)[:10]))
print("artifact: %d entries, %s" % (len(names), sys.argv[1]))
EOF
    ANSIBLE_COLLECTIONS_PATH="$colls" ansible-galaxy collection install "$tarball" -p "$colls" --force

    # From here on only the installed artifact provides netdev.tuntap.
    export ANSIBLE_COLLECTIONS_PATH="$colls"
    local work ns reg out
    ntt_tmpdir work artifact
    cd "$work"
    out="$(ansible-galaxy collection list netdev.tuntap 2>&1)" || true
    if [ "$(grep -c '^# ' <<<"$out")" -ne 1 ] || ! grep -qF "# $colls/ansible_collections" <<<"$out"; then
        echo "$out"
        ntt_die "ansible-galaxy should see netdev.tuntap in $colls and nowhere else"
    fi
    ansible-doc netdev.tuntap.tap_device >/dev/null
    ansible-doc -t role netdev.tuntap.guest_taps >/dev/null

    ntt_netns_new ns artifact
    reg="$work/registry/registry.json"
    ip -n "$ns" link add ntt-br0 type bridge
    ip -n "$ns" link set ntt-br0 up

    # 1. ad hoc, twice with one lease: same device, second run unchanged.
    adhoc() {
        ansible localhost -m netdev.tuntap.tap_device -a "$1" </dev/null
    }
    for run in 1 2; do
        echo "\$ ansible localhost -m netdev.tuntap.tap_device -a 'name=vnet%d lease=artifact/adhoc netns=$ns registry=$reg'"
        out="$(adhoc "name=vnet%d lease=artifact/adhoc netns=$ns registry=$reg")" || {
            echo "$out"
            ntt_die "ad-hoc run $run failed"
        }
        printf "%s\n" "$out" | tee "$work/adhoc$run.json"
    done
    python - "$work/adhoc1.json" "$work/adhoc2.json" <<'EOF'
import json, re, sys
# "localhost | CHANGED => {...}" (the ad-hoc output users see)
r = [json.loads(open(p).read().split("=> ", 1)[1]) for p in sys.argv[1:]]
assert r[0]["changed"] is True and re.fullmatch(r"vnet\d+", r[0]["name"]), r[0]
assert r[1]["changed"] is False and r[1]["name"] == r[0]["name"], r[1]
print("ad hoc: %s created, second run unchanged" % r[0]["name"])
open(sys.argv[1] + ".name", "w").write(r[0]["name"])
EOF
    local first
    first="$(cat "$work/adhoc1.json.name")"
    ip -n "$ns" -d link show "$first" | grep -q 'tun type tap' || ntt_die "$first is not a tap in $ns"

    # 2. a playbook: module_defaults through the action group, release, no reuse, the role.
    cat >"$work/play.yml" <<EOF
- name: Use the installed artifact
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/netdev.tuntap.tuntap:
      netns: $ns
      registry: $reg
  tasks:
    - name: A leased tap, netns and registry from module_defaults
      netdev.tuntap.tap_device:
        name: vnet%d
        lease: artifact/play
      register: leased
    - name: Remove the ad-hoc device's lease
      netdev.tuntap.tap_device:
        lease: artifact/adhoc
        state: absent
      register: removed
    - name: Allocate another name after the release
      netdev.tuntap.tap_device:
        devices:
          - name: vnet%d
            lease: artifact/after
      register: after
    - name: The role, from the artifact
      ansible.builtin.include_role:
        name: netdev.tuntap.guest_taps
      vars:
        guest_taps_netns: $ns
        guest_taps_registry: $reg
        guest_taps_install_deps: false
        guest_taps_guests:
          - name: g1
            nics:
              - bridge: ntt-br0
                mac: "52:54:00:12:34:56"
    - name: Check
      ansible.builtin.assert:
        that:
          - leased.changed
          - leased.netns == "$ns"
          - removed.changed
          - after.devices[0].name != "$first"
          - (after.devices[0].id | int) > (leased.id | int)
          - guest_taps_devices.g1 | length == 1
    - name: Report
      ansible.builtin.debug:
        msg: "{{ leased.name }} {{ after.devices[0].name }} {{ guest_taps_devices.g1[0] }}"
EOF
    echo "\$ ansible-playbook play.yml   (module_defaults: group/netdev.tuntap.tuntap)"
    ansible-playbook "$work/play.yml" </dev/null
    grep -q '"artifact/play"' "$reg" || ntt_die "the registry $reg has no lease artifact/play"
    ip -n "$ns" link show "$first" >/dev/null 2>&1 && ntt_die "$first still exists after state=absent"
    echo "artifact: OK"
}

stage_molecule() {
    require_path scripts/molecule.sh molecule/default/molecule.yml
    local before rc=0
    before="$(list_ntt_netns)"
    bash "$NTT_ROOT/scripts/molecule.sh" </dev/null || rc=$?
    check_netns_leaks "$before" || rc=1
    return "$rc"
}

stage_demo() {
    require_path scripts/demo.sh
    bash "$NTT_ROOT/scripts/demo.sh" </dev/null
}

# ------------------------------------------------------------------------------------------
# driver

describe() {
    case "$1" in
        unit) echo "pytest tests/unit" ;;
        integration) echo "pytest tests/integration (real devices in throwaway namespaces)" ;;
        pyroute2_min) echo "pytest tests/integration again with pyroute2 0.7.2, the oldest supported" ;;
        doc) echo "ansible-doc: module, role, filters" ;;
        sanity) echo "ansible-test sanity on the installed collection" ;;
        lint) echo "ansible-lint (production profile), antsibull-changelog lint" ;;
        artifact) echo "ansible-galaxy collection build, install, use it ad hoc and in a playbook" ;;
        molecule) echo "molecule test (scripts/molecule.sh)" ;;
        demo) echo "the README's main job (scripts/demo.sh)" ;;
    esac
}

if [ "${1:-}" = "--run-stage" ]; then
    # Internal: one stage in its own process (so a time limit can end all of it).
    ntt_env
    export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 PY_COLORS=0
    "stage_$2"
    exit 0
fi

stages=()
for arg in "$@"; do
    case "$arg" in
        all) stages+=("${ALL_STAGES[@]}") ;;
        --list)
            for s in "${ALL_STAGES[@]}" "${OPTIONAL_STAGES[@]}"; do printf '%-12s %s\n' "$s" "$(describe "$s")"; done
            echo "(all = ${ALL_STAGES[*]}; demo only when named)"
            exit 0
            ;;
        -h | --help)
            sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            if [ "$(type -t "stage_$arg")" != "function" ]; then
                ntt_die "unknown stage '$arg' (stages: ${ALL_STAGES[*]} ${OPTIONAL_STAGES[*]} all)"
            fi
            stages+=("$arg")
            ;;
    esac
done
[ "${#stages[@]}" -gt 0 ] || stages=("${ALL_STAGES[@]}")

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
for stage in "${stages[@]}"; do
    n=$((n + 1))
    header "[$n/${#stages[@]}] $stage: $(describe "$stage")"
    t0=$SECONDS
    rc=0
    # timeout puts the stage in its own process group and ends all of it at the limit.
    timeout -k 30 "${NTT_STAGE_TIMEOUT:-1500}" bash "$0" --run-stage "$stage" </dev/null &
    stage_pid=$!
    wait "$stage_pid" || rc=$?
    stage_pid=""
    dt=$((SECONDS - t0))
    if [ "$rc" -eq 0 ]; then
        results+=("$(printf '  %-4s  %-12s %5d s' PASS "$stage" "$dt")")
        echo "---- $stage: PASS ($dt s)"
    else
        [ "$rc" -eq 124 ] && echo "---- $stage: timed out after ${NTT_STAGE_TIMEOUT:-1500} s"
        results+=("$(printf '  %-4s  %-12s %5d s  (exit %d)' FAIL "$stage" "$dt" "$rc")")
        failed+=("$stage")
        echo "---- $stage: FAIL (exit $rc, $dt s)"
    fi
done

header "summary"
printf '%s\n' "${results[@]}"
if compgen -G "$JUNIT_DIR/*.xml" >/dev/null; then
    python3 - "$JUNIT_DIR"/*.xml <<'EOF'
import sys
import xml.etree.ElementTree as ET
t = f = s = 0
for path in sys.argv[1:]:
    root = ET.parse(path).getroot()
    for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
        t += int(suite.get("tests", 0))
        f += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        s += int(suite.get("skipped", 0))
print("pytest: %d passed, %d failed, %d skipped" % (t - f - s, f, s))
EOF
fi
total=$((SECONDS - run_start))
if [ "${#failed[@]}" -eq 0 ]; then
    echo "test.sh: OK - all ${#stages[@]} stages passed (${stages[*]}) in $total s"
else
    echo "test.sh: FAILED - ${#failed[@]} of ${#stages[@]} stages failed: ${failed[*]} (total $total s)"
    exit 1
fi
