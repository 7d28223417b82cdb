#!/usr/bin/env bash
# Three "hosts" on one machine: Linux network namespaces, each with a veth pair into a bridge
# on a private subnet, and Open MPI launching one rank into each through an rsh agent
# (tests/system/rsh-netns.sh) instead of ssh, with MPI traffic on TCP over the veths only.
# A 50-step training job run this way must give exactly the parameters of the same job on
# 3 ranks of one host (max_abs=0: same reduction order, only the transport differs), and
# within a relative 1e-5 of 1 rank. Also checks that each rank ran in its own namespace and
# that every namespace sent and received at least half a gradient per step over its veth.
#   bash tests/system/multihost.sh     (env: RINGTRAIN MKDATA MODELDIFF MPIRUN_SH; defaults
#                                       are the build/ and scripts/ paths of this checkout)
# Needs root and `ip` with netns, veth and bridge support; exits 77 (skip) otherwise, or if
# its names (rtns-*) or subnet (10.231.77.0/24) are already in use on this machine. It
# removes only what it created, also on failure, interrupt or timeout.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
RINGTRAIN=${RINGTRAIN:-$root/build/ringtrain}
MKDATA=${MKDATA:-$root/build/tests/cli/mkdata}
MODELDIFF=${MODELDIFF:-$root/build/tests/cli/modeldiff}
MPIRUN_SH=${MPIRUN_SH:-$root/scripts/mpirun.sh}
agent=$here/rsh-netns.sh
net=10.231.77                  # bridge .1, hosts .11 .12 .13
nhosts=3
bridge=rtns-br
limit=120                      # seconds per mpirun
export OPENBLAS_NUM_THREADS=1

skip() { echo "SKIP: $*"; exit 77; }
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/../cli/lib.sh"
fail() { echo "FAIL: $*"; exit 1; }

# --- can this machine do it? ---------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || skip "multihost needs root for network namespaces"
for c in ip unshare timeout awk "${MPIRUN:-mpirun}"; do
    command -v "$c" >/dev/null || skip "multihost needs '$c' on PATH"
done
for v in RINGTRAIN MKDATA MODELDIFF MPIRUN_SH; do
    [ -x "${!v}" ] || fail "$v=${!v} is not executable (build first)"
done
[ -x "$agent" ] || fail "$agent is not executable"
ip netns list >/dev/null 2>&1 || skip "'ip netns' does not work here"
ns_names=() veths=() addrs=()
for ((i = 0; i < nhosts; i++)); do
    ns_names+=("rtns-h$i") veths+=("rtns-v$i") addrs+=("$net.$((11 + i))")
done
taken=()
for n in "${ns_names[@]}"; do
    ip netns list | awk '{ print $1 }' | grep -qxF "$n" && taken+=("netns $n")
done
for l in "$bridge" "${veths[@]}"; do
    ip link show dev "$l" >/dev/null 2>&1 && taken+=("link $l")
done
if [ ${#taken[@]} -gt 0 ]; then
    skip "already exist, not touching them: ${taken[*]} (left by a killed run? remove with" \
        "ip netns del NAME / ip link del NAME)"
fi
ip -o -4 addr show | grep -qF " $net." && skip "subnet $net.0/24 already has an address here"
[ -z "$(ip -4 route show "$net.0/24")" ] || skip "subnet $net.0/24 already has a route here"

# --- cleanup: only what this run created ---------------------------------------------------
made_ns=() made_links=() child="" tmp=""
cleanup() {
    trap - EXIT INT TERM HUP
    # a bounded command still running (we were interrupted): stop it, timeout passes it on
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null
        wait "$child" 2>/dev/null
    fi
    # Open MPI daemons outlive a killed mpirun (and may ignore SIGTERM while stuck): end
    # whatever still runs in our namespaces, which can only be what this test started
    local pids=() ns sig p k
    for sig in TERM KILL; do
        pids=()
        for ns in "${made_ns[@]}"; do
            while read -r p; do [ -n "$p" ] && pids+=("$p"); done < <(ip netns pids "$ns" 2>/dev/null)
        done
        [ ${#pids[@]} -eq 0 ] && break
        kill -"$sig" "${pids[@]}" 2>/dev/null
        for ((k = 0; k < 20; k++)); do
            sleep 0.1
            for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && continue 2; done
            break
        done
    done
    for l in "${made_links[@]}"; do ip link del dev "$l" 2>/dev/null; done   # also the peer
    for ns in "${made_ns[@]}"; do ip netns del "$ns" 2>/dev/null; done
    [ -n "$tmp" ] && rm -rf "$tmp"
}
trap cleanup EXIT
exec 3>&1   # the real stdout, for a signal that arrives while output goes to a file
trap 'echo "FAIL: interrupted" >&3; exit 1' INT TERM HUP

# bounded CMD...: run under `timeout -k 5 $limit`, in the background so that a signal to
# this script is handled at once (and cleanup can stop it) rather than after it ends
bounded() {
    timeout -k 5 "$limit" "$@" 3>&- &
    child=$!
    wait "$child"
    local rc=$?
    child=""
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "(timed out after ${limit}s: $*)" >&2
    return $rc
}

# --- the hosts ------------------------------------------------------------------------------
tmp=$(mktemp -d /tmp/rtns.XXXXXX) || fail "mktemp"
err=$tmp/ip.err
ip link add "$bridge" type bridge 2>"$err" || skip "cannot create a bridge: $(head -1 "$err")"
made_links+=("$bridge")
{ ip addr add "$net.1/24" dev "$bridge" && ip link set "$bridge" up; } || fail "bridge setup"
: >"$tmp/hosts.map"
: >"$tmp/hostfile"
for ((i = 0; i < nhosts; i++)); do
    ns=${ns_names[i]} v=${veths[i]} a=${addrs[i]}
    ip netns add "$ns" 2>"$err" || skip "cannot create network namespaces: $(head -1 "$err")"
    made_ns+=("$ns")
    ip link add "$v" type veth peer name eth0 netns "$ns" 2>"$err" ||
        skip "cannot create veth pairs: $(head -1 "$err")"
    made_links+=("$v")
    { ip link set "$v" master "$bridge" up &&
        ip -n "$ns" addr add "$a/24" dev eth0 &&
        ip -n "$ns" link set eth0 up &&
        ip -n "$ns" link set lo up; } || fail "setting up $ns"   # lo: Open MPI hangs without
    echo "$a $ns" >>"$tmp/hosts.map"
    echo "$a slots=1" >>"$tmp/hostfile"
done
export RTNS_MAP=$tmp/hosts.map

mpirun_ns=("${MPIRUN:-mpirun}" --allow-run-as-root --hostfile "$tmp/hostfile" -np "$nhosts"
    --mca plm_rsh_agent "$agent"       # "ssh" into a namespace
    --mca plm_rsh_no_tree_spawn 1      # mpirun (in the root namespace) starts every daemon
    --mca btl "tcp,self"                 # no shared memory between ranks: TCP on the veths
    --mca btl_tcp_if_include "$net.0/24" --mca oob_tcp_if_include "$net.0/24"
    --mca orte_tmpdir_base "$tmp"      # session directories go away with $tmp
    --mca mpi_yield_when_idle 1        # 3 "hosts" of 1 slot share 2 cores: don't spin
    -x OPENBLAS_NUM_THREADS)

# --- launch check: one rank in each namespace ----------------------------------------------
# shellcheck disable=SC2016  # expanded by the ranks' shells
where='echo $OMPI_COMM_WORLD_RANK $(ip netns identify) $(hostname) $OPENBLAS_NUM_THREADS $(ip -o -4 addr show dev eth0 | awk "{ print \$4 }")'
bounded "${mpirun_ns[@]}" /bin/sh -c "$where" >"$tmp/where" 2>&1 ||
    { cat "$tmp/where"; fail "launch into the namespaces failed"; }
sort -n "$tmp/where" >"$tmp/where.sorted"
for ((i = 0; i < nhosts; i++)); do
    line=$(awk -v r="$i" '$1 == r' "$tmp/where.sorted")
    read -r r ns hn blas addr <<<"$line"
    { [ "${ns:-}" = "${ns_names[i]}" ] && [ "${hn:-}" = "${ns_names[i]}" ] &&
        [ "${addr:-}" = "${addrs[i]}/24" ] && [ "${blas:-}" = 1 ]; } || {
        cat "$tmp/where"
        fail "rank $i: want netns, host name ${ns_names[i]}, ${addrs[i]}/24, 1 BLAS thread; got '$line'"
    }
    echo "launch: rank $r in netns $ns (host $hn, $addr, OPENBLAS_NUM_THREADS=$blas)"
done
[ "$(wc -l <"$tmp/where")" -eq "$nhosts" ] || { cat "$tmp/where"; fail "launch: extra output"; }

# --- the job ----------------------------------------------------------------------------------
blobs_job "$tmp" || fail "mkdata failed" # tests/cli/lib.sh: the train_equiv.sh job
steps=50
final='^final: epochs=4.545 steps=50 loss=[0-9.]+ test_loss=[0-9.]+ test_acc=[0-9.]+ sparsity=0.0000 samples_per_s=[0-9.]+ seconds=[0-9.]+$'

counters() {   # "ns_sent ns_received" per host, read on the root side of each veth
    local v
    for v in "${veths[@]}"; do
        echo "$(cat "/sys/class/net/$v/statistics/rx_bytes") $(cat "/sys/class/net/$v/statistics/tx_bytes")"
    done
}
counters >"$tmp/c0"
bounded "${mpirun_ns[@]}" "$RINGTRAIN" train "$tmp/job.ini" train.out="$tmp/multi.h5" >"$tmp/o.multi" 2>&1 ||
    { tail -20 "$tmp/o.multi"; fail "multihost np=$nhosts run failed"; }
counters >"$tmp/c1"
grep -qE "$final" "$tmp/o.multi" || { tail -5 "$tmp/o.multi"; fail "multihost: no or bad final line"; }
grep -E '^final:' "$tmp/o.multi" | sed 's/^/multihost: /'

MPIRUN_ARGS="--mca orte_tmpdir_base $tmp" bounded "$MPIRUN_SH" "$nhosts" "$RINGTRAIN" train "$tmp/job.ini" \
    train.out="$tmp/single.h5" >"$tmp/o.single" 2>&1 ||
    { tail -20 "$tmp/o.single"; fail "single-host np=$nhosts run failed"; }
MPIRUN_ARGS="--mca orte_tmpdir_base $tmp" bounded "$MPIRUN_SH" 1 "$RINGTRAIN" train "$tmp/job.ini" \
    train.out="$tmp/one.h5" >"$tmp/o.one" 2>&1 ||
    { tail -20 "$tmp/o.one"; fail "np=1 run failed"; }

# --- compare ---------------------------------------------------------------------------------
field() { sed -n "s/.*$1=\\([^ ]*\\).*/\\1/p"; }
d3=$("$MODELDIFF" "$tmp/single.h5" "$tmp/multi.h5") || fail "modeldiff failed: $d3"
echo "multihost np=$nhosts vs single-host np=$nhosts: $d3"
d1=$("$MODELDIFF" "$tmp/one.h5" "$tmp/multi.h5") || fail "modeldiff failed: $d1"
echo "multihost np=$nhosts vs single-host np=1: $d1"
abs3=$(field max_abs <<<"$d3")
rel1=$(field max_rel <<<"$d1")
params=$(field params <<<"$d3")
awk -v a="$abs3" 'BEGIN { exit !(a != "" && a + 0 == 0) }' ||
    fail "multihost and single-host np=$nhosts parameters differ: $d3"
awk -v r="$rel1" 'BEGIN { exit !(r != "" && r + 0 <= 1e-5) }' ||
    fail "multihost np=$nhosts and np=1 parameters differ by more than 1e-5: $d1"

# --- traffic: every host sent and received at least half a gradient per step -----------------
[ -n "$params" ] || fail "modeldiff printed no params= count"
need=$((steps * params * 4 / 2))
for ((i = 0; i < nhosts; i++)); do
    read -r s0 r0 < <(sed -n "$((i + 1))p" "$tmp/c0")
    read -r s1 r1 < <(sed -n "$((i + 1))p" "$tmp/c1")
    sent=$((s1 - s0)) recv=$((r1 - r0))
    echo "traffic: ${ns_names[i]} sent $sent B, received $recv B over ${veths[i]} (need >= $need each)"
    { [ "$sent" -ge "$need" ] && [ "$recv" -ge "$need" ]; } ||
        fail "${ns_names[i]} moved too little over its veth: the job did not talk over TCP"
done
echo "ok multihost: $nhosts namespaces over TCP match single-host np=$nhosts bitwise" \
    "(max_abs=$abs3) and np=1 to max_rel=$rel1; ${SECONDS}s"
