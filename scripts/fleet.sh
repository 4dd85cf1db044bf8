#!/usr/bin/env bash
# The guest_taps role on a fleet of hypervisors over real SSH, all emulated on this machine.
#
#   sudo bash scripts/fleet.sh                      # 10 hosts x 20 guests x 2 NICs, with faults
#   sudo bash scripts/fleet.sh --hosts 30 --guests 5
#   sudo bash scripts/fleet.sh --hosts 50 --bench   # first run and no-change run, timed
#
# Each host is an sshd (Debian's openssh-server) in a network namespace ntt-f<id>-hNN and a mount
# and UTS namespace of its own: overlays over /usr, /etc, /var/lib, /var/cache and /var/log (so its
# registry at the default path, its dpkg database and its packages are its own), tmpfs /tmp, /root,
# /home and /run, its own host key, pidfile and log (tests/fleet/host_init.sh). The controller runs
# ansible-playbook from the namespace ntt-f<id>-c, whose bridge joins one veth per host. Nothing is
# configured in the machine's root network namespace.
#
# The tier (without --bench), with forks = number of hosts and interpreter discovery "auto":
#   1 first run: every host installs python3-pyroute2 with apt (from a local copy of the .debs:
#     no route leaves the namespaces), except h03, whose "mirror" is missing: it fails there and
#     only there; h02 logs in as a non-root user and becomes root with sudo;
#   2 rerun with h03's mirror back: h03 completes, the others report changed=0;
#   3 again: changed=0 on every host (from here on ansible_python_interpreter is given);
#   4 host_vars change (guests removed on some hosts, added on others) while h04 is unreachable:
#     the others finish, h04 is left exactly as it was;
#   5 rerun with h04 back: h04 completes, the others report changed=0.
# After each run tests/fleet/verify.py checks every host's devices, registry and names.
# --bench runs only 1 (without faults) and 3 and prints their wall times.
#
# Everything is torn down on exit, also on Ctrl-C or kill (TERM): SSH masters are closed, every
# process in the test's namespaces is ended, the namespaces and the work directory removed.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FLEET_DIR="$NTT_ROOT/tests/fleet"
HOSTS=10
GUESTS=20
NICS=2
BENCH=0
BENCH_OUT=""

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --hosts) HOSTS="$2"; shift 2 ;;
        --guests) GUESTS="$2"; shift 2 ;;
        --bench) BENCH=1; shift ;;
        --bench-out) BENCH_OUT="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) ntt_die "unknown argument '$1' (see --help)" ;;
    esac
done
if ! [[ "$HOSTS" =~ ^[0-9]+$ ]] || [ "$HOSTS" -lt 1 ] || [ "$HOSTS" -gt 200 ]; then
    ntt_die "--hosts must be 1 to 200 (one /24 inside the test's namespaces), not '$HOSTS'"
fi
if ! [[ "$GUESTS" =~ ^[0-9]+$ ]] || [ "$GUESTS" -lt 2 ] || [ "$GUESTS" -gt 200 ]; then
    ntt_die "--guests must be 2 to 200, not '$GUESTS'"
fi
if [ "$BENCH" = 0 ] && [ "$HOSTS" -lt 4 ]; then
    ntt_die "the tier needs --hosts 4 or more (h02 logs in as a non-root user, h03 and h04 fail)"
fi

need_root "scripts/fleet.sh"
for tool in sshd:/usr/sbin/sshd sudo:sudo ip:ip unshare:unshare nsenter:nsenter ssh:ssh; do
    command -v "${tool#*:}" >/dev/null 2>&1 || ntt_die "${tool%%:*} is missing (apt-get install openssh-server sudo iproute2 util-linux openssh-client)"
done
/usr/bin/python3 -c 'import apt' 2>/dev/null ||
    ntt_die "/usr/bin/python3 has no apt module (apt-get install python3-apt): the hosts' apt tasks need it"
ntt_env
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0

RUN_ID="$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
PREFIX="ntt-f$RUN_ID"
CTL_NS="$PREFIX-c"
WIDTH=$((${#HOSTS} > 2 ? ${#HOSTS} : 2))
NAMES=()
for ((i = 1; i <= HOSTS; i++)); do NAMES+=("$(printf 'h%0*d' "$WIDTH" "$i")"); done
declare -A HOST_PID=() HOST_NS=() HOST_ADDR=()
PLAY_PID=""
NAMESPACES=()

# --- teardown ---------------------------------------------------------------------------------

teardown() {
    local ns pid i sock left
    set +e
    if [ -n "$PLAY_PID" ] && kill -0 "$PLAY_PID" 2>/dev/null; then
        # ansible-playbook runs in a process group of its own (setsid): end it with its workers.
        kill -TERM -- "-$PLAY_PID" 2>/dev/null
        wait "$PLAY_PID" 2>/dev/null
    fi
    # ControlPersist masters would otherwise keep running (and keep sessions open on the hosts).
    [ -n "${WORK:-}" ] && [ -d "$WORK/cp" ] && close_masters
    # Every process in the test's namespaces was started by this run: sshd, its sessions, ssh.
    for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        left=0
        for ns in "${NAMESPACES[@]}"; do
            for pid in $(ip netns pids "$ns" 2>/dev/null); do
                left=1
                kill "$([ "$i" -gt 10 ] && echo -KILL || echo -TERM)" "$pid" 2>/dev/null
            done
        done
        [ "$left" = 0 ] && break
        sleep 0.5
    done
    for ns in "${NAMESPACES[@]}"; do ntt_netns_del "$ns"; done
    [ -n "${WORK:-}" ] && rm -rf "$WORK"
    # What must be gone now; say so if something is not.
    left="$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX-" || true)"
    [ -z "$left" ] || ntt_warn "namespaces left: $left"
    if [ -n "${WORK:-}" ] && { [ -e "$WORK" ] || grep -qF "$WORK" /proc/self/mountinfo; }; then
        ntt_warn "$WORK or a mount under it is left"
    fi
    echo "fleet: torn down ($PREFIX: ${#NAMESPACES[@]} namespaces, their processes and mounts, $WORK)" >&2
}

WORK="$(mktemp -d /tmp/ntt-fleet.XXXXXX)"
ntt_on_exit teardown
# set -e ends the script on any failing command: name it.
trap 'ntt_warn "fleet: failed at line $LINENO: $BASH_COMMAND"' ERR

# --- setup ------------------------------------------------------------------------------------

# The hosts install python3-pyroute2 (and what it depends on) with apt, as on a real Debian
# hypervisor. No route leaves the test's namespaces, so their "mirror" is a local copy of exactly
# the .debs apt would fetch, downloaded once per candidate version into tests/output/fleet-debs.
fetch_debs() {
    local dir="$NTT_OUTPUT/fleet-debs" want
    want="$(apt-cache policy python3-pyroute2 | grep Candidate) $(dpkg-query -W -f='${Status}' python3-psutil 2>/dev/null || true)"
    if [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$want" ] && ls "$dir"/python3-pyroute2_*.deb >/dev/null 2>&1; then
        return 0
    fi
    rm -rf "$dir"
    mkdir -p "$dir/partial"
    apt-get install -qq --download-only -y --no-install-recommends -o Dir::Cache::archives="$dir" \
        -o DPkg::Lock::Timeout=120 -o APT::Sandbox::User=root python3-pyroute2 >"$WORK/apt-download.log" 2>&1 || true
    if ! ls "$dir"/python3-pyroute2_*.deb >/dev/null 2>&1; then
        # Installed on the machine already: apt fetched nothing, but the hosts hide it.
        (cd "$dir" && apt-get download -qq -o APT::Sandbox::User=root python3-pyroute2 >>"$WORK/apt-download.log" 2>&1) || {
            cat "$WORK/apt-download.log" >&2
            ntt_die "cannot download python3-pyroute2 for the hosts' apt cache"
        }
    fi
    rm -rf "$dir/partial" "$dir/lock"
    echo "$want" >"$dir/.stamp"
}

make_namespaces() {
    ip netns add "$CTL_NS"
    NAMESPACES+=("$CTL_NS")
    ip -n "$CTL_NS" link set lo up
    ip -n "$CTL_NS" link add fleet0 type bridge
    ip -n "$CTL_NS" addr add 10.250.0.1/24 dev fleet0
    ip -n "$CTL_NS" link set fleet0 up
    local i name ns
    for ((i = 1; i <= HOSTS; i++)); do
        name="${NAMES[i - 1]}"
        ns="$PREFIX-$name"
        ip netns add "$ns"
        NAMESPACES+=("$ns")
        HOST_NS[$name]="$ns"
        HOST_ADDR[$name]="10.250.0.$((9 + i))"
        ip -n "$ns" link set lo up
        ip -n "$CTL_NS" link add "v$name" type veth peer name eth0 netns "$ns"
        ip -n "$CTL_NS" link set "v$name" master fleet0 up
        ip -n "$ns" addr add "${HOST_ADDR[$name]}/24" dev eth0
        ip -n "$ns" link set eth0 up
        # The hypervisor's bridges its guests' taps join.
        ip -n "$ns" link add br0 type bridge
        ip -n "$ns" link add br1 type bridge
        ip -n "$ns" link set br0 up
        ip -n "$ns" link set br1 up
    done
}

start_hosts() {
    local i name dir user debs
    ssh-keygen -q -t ed25519 -N '' -C "fleet controller" -f "$WORK/id_ed25519"
    : >"$WORK/known_hosts"
    : >"$WORK/hosts.tsv"
    for ((i = 1; i <= HOSTS; i++)); do
        name="${NAMES[i - 1]}"
        dir="$WORK/hosts/$name"
        mkdir -p "$dir"
        ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$dir/ssh_host_ed25519_key"
        sed "s/@ADDRESS@/${HOST_ADDR[$name]}/" "$FLEET_DIR/sshd_config" >"$dir/sshd_config"
        cp "$WORK/id_ed25519.pub" "$dir/authorized_keys"
        printf '%s %s\n' "${HOST_ADDR[$name]}" "$(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")" >>"$WORK/known_hosts"
        user="" debs="$NTT_OUTPUT/fleet-debs"
        if [ "$BENCH" = 0 ]; then
            [ "$name" = "${NAMES[1]}" ] && user=fleetadm
            [ "$name" = "${NAMES[2]}" ] && debs=""
        fi
        ip netns exec "${HOST_NS[$name]}" unshare --mount --uts -- \
            bash "$FLEET_DIR/host_init.sh" "$dir" "$name" "$user" "$debs" </dev/null >"$dir/init.log" 2>&1 &
        HOST_PID[$name]=$!
        printf '%s %s %s %s %s\n' "$name" "${HOST_NS[$name]}" "${HOST_PID[$name]}" "${HOST_ADDR[$name]}" "${user:--}" >>"$WORK/hosts.tsv"
    done
    # Ready when its sshd has written its pidfile (after it listens), seen through its own /run.
    local deadline=$((SECONDS + 60))
    for name in "${NAMES[@]}"; do
        until [ -s "/proc/${HOST_PID[$name]}/root/run/ntt/sshd.pid" ]; do
            if ! kill -0 "${HOST_PID[$name]}" 2>/dev/null || [ "$SECONDS" -gt "$deadline" ]; then
                cat "$WORK/hosts/$name/init.log" >&2
                ntt_die "host $name did not start its sshd"
            fi
            sleep 0.2
        done
    done
}

write_inventory() {
    mkdir -p "$WORK/inventory"
    cp -r "$FLEET_DIR/inventory/group_vars" "$WORK/inventory/"
    python "$FLEET_DIR/make_inventory.py" --out "$WORK/inventory" --hosts-file "$WORK/hosts.tsv.inv" \
        --guests "$GUESTS" --nics "$NICS" --phase "$1"
}

# --- runs -------------------------------------------------------------------------------------

export ANSIBLE_CONFIG="$FLEET_DIR/ansible.cfg"
export ANSIBLE_HOME="$WORK/ansible-home" ANSIBLE_LOCAL_TEMP="$WORK/ansible-tmp"
export ANSIBLE_PRIVATE_KEY_FILE="$WORK/id_ed25519"
export ANSIBLE_SSH_CONTROL_PATH_DIR="$WORK/cp"
# -F /dev/null: not the machine's ssh config; the run's own known_hosts with every host's key.
export ANSIBLE_SSH_ARGS="-F /dev/null -C -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=$WORK/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o ServerAliveInterval=5 -o ServerAliveCountMax=3"

LAST_SECONDS=""
# run_play LABEL [ARGS...]: ansible-playbook from the controller's namespace, in the background so that a
# signal reaches the traps at once; its output goes to WORK/logs/LABEL.log.
run_play() {
    local label="$1" log="$WORK/logs/$1.log" start end rc=0
    mkdir -p "$WORK/logs"
    start="$(date +%s.%N)"
    shift
    setsid ip netns exec "$CTL_NS" ansible-playbook -i "$WORK/inventory" --forks "$HOSTS" \
        "$FLEET_DIR/site.yml" "$@" </dev/null >"$log" 2>&1 &
    PLAY_PID=$!
    wait "$PLAY_PID" || rc=$?
    PLAY_PID=""
    end="$(date +%s.%N)"
    LAST_SECONDS="$(python -c "print('%.2f' % ($end - $start))")"
    printf '\n== run %s: ansible-playbook exit %d, %s s\n' "$label" "$rc" "$LAST_SECONDS"
    # awk, not head: head would end the pipe early, and pipefail would count sed's SIGPIPE.
    sed -n '/^PLAY RECAP/,$p' "$log" | awk 'NF && n++ < 12'
    [ "$HOSTS" -le 11 ] || echo "   ... ($HOSTS hosts; full output in the run's log)"
}

# verify LABEL ARGS...: tests/fleet/verify.py on the last run; on failure show the run's output.
verify() {
    local label="$1"
    shift
    if ! python "$FLEET_DIR/verify.py" --work "$WORK" --recap "$WORK/logs/$label.log" "$@"; then
        echo "---- output of run $label (last 60 lines) ----"
        tail -n 60 "$WORK/logs/$label.log"
        ntt_die "fleet: run $label did not leave the hosts as expected"
    fi
}

# Close every SSH master, as when ControlPersist runs out between two playbook runs.
close_masters() {
    local sock
    for sock in "$WORK"/cp/*; do
        [ -S "$sock" ] && ssh -F /dev/null -o ControlPath="$sock" -O exit fleet-host >/dev/null 2>&1
    done
    return 0
}

machine_pyroute2() {
    printf '%s/%s' "$(dpkg-query -W -f='${Status}' python3-pyroute2 2>/dev/null || true)" \
        "$(/usr/bin/python3 -c 'import pyroute2' >/dev/null 2>&1 && echo importable || echo absent)"
}

# --- main -------------------------------------------------------------------------------------

t0="$(date +%s.%N)"
machine_before="$(machine_pyroute2)"
fetch_debs
make_namespaces
start_hosts
awk '{print $1, $4, $5}' "$WORK/hosts.tsv" >"$WORK/hosts.tsv.inv"
write_inventory initial
echo "fleet: $HOSTS hosts ($PREFIX-*) x $GUESTS guests x $NICS NICs up in $(python -c "import time; print('%.1f' % (time.time() - $t0))") s; forks $HOSTS; work dir $WORK"

H2="${NAMES[1]}" H3="${NAMES[2]}" H4="${NAMES[3]:-}"
if [ "$BENCH" = 1 ]; then
    run_play first
    first="$LAST_SECONDS"
    verify first --default changed --deps
    run_play again
    again="$LAST_SECONDS"
    verify again --default unchanged
    line="$(printf 'fleet bench: hosts=%d guests=%d nics=%d first=%s again=%s per_host_first=%.3f per_host_again=%.3f' \
        "$HOSTS" "$GUESTS" "$NICS" "$first" "$again" "$(python -c "print($first / $HOSTS)")" "$(python -c "print($again / $HOSTS)")")"
    echo "$line"
    [ -z "$BENCH_OUT" ] || echo "$line" >>"$BENCH_OUT"
else
    # 1: h03's mirror is unreachable: apt fails there in the role's dependency step.
    run_play 1-first
    verify 1-first --default changed --failed "$H3" --empty "$H3" --deps --login "$H2=fleetadm" \
        --failed-task "$H3=Install the distribution's python3-pyroute2"

    # 2: the mirror is back.
    cp "$NTT_OUTPUT"/fleet-debs/*.deb "/proc/${HOST_PID[$H3]}/root/var/cache/apt/archives/"
    run_play 2-rerun
    verify 2-rerun --default unchanged --changed "$H3" --deps

    # From here on the interpreter is named, as docs/many-hosts.md recommends for a fleet: no
    # discovery round trip and no warning on every run. Runs 1 and 2 used discovery ("auto").
    pin=(-e ansible_python_interpreter=/usr/bin/python3)

    # 3: nothing to do anywhere.
    run_play 3-again "${pin[@]}"
    verify 3-again --default unchanged

    # 4: guests removed and added while h04 is down (no SSH master left to it: a master over a
    # dead link would wait for ServerAlive to give up; see docs/many-hosts.md).
    write_inventory change
    close_masters
    ip -n "${HOST_NS[$H4]}" link set eth0 down
    run_play 4-change "${pin[@]}"
    verify 4-change --default changed --unreachable "$H4" --stale "$H4"

    # 5: h04 is back and catches up.
    ip -n "${HOST_NS[$H4]}" link set eth0 up
    run_play 5-recover "${pin[@]}"
    verify 5-recover --default unchanged --changed "$H4"
fi

machine_after="$(machine_pyroute2)"
[ "$machine_before" = "$machine_after" ] ||
    ntt_die "the machine's python3-pyroute2 changed: $machine_before -> $machine_after (a host's install leaked out)"
echo "machine's own python3-pyroute2 unchanged: $machine_after"
echo "fleet OK: $HOSTS hosts, total $(python -c "import time; print('%.1f' % (time.time() - $t0))") s (teardown follows)"
