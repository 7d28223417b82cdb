#!/usr/bin/env bash
# scripts/slurm/train.sbatch against a real Slurm on this machine. The test starts its own
# munged, slurmctld and slurmd (configuration, key, state and logs in a temp dir; SLURM_CONF
# points the clients there, /etc/slurm and /etc/munge are not touched), then:
#   A  a plain job submitted with --ntasks=2 --cpus-per-task=1 ends with exit code 0 and
#      writes the same model (max_abs=0) as the same job run directly under mpirun at 2
#      ranks; the same through srun (RINGTRAIN_LAUNCHER=srun, PMIx); and --cpus-per-task=2
#      becomes 2 BLAS threads per rank.
#   B  preemption round trip: a ~20 s job gets SIGUSR1 on its batch shell (scancel --signal=USR1
#      --batch, the path of the time-limit warning) once its first checkpoint exists; it
#      checkpoints, exits 75, is requeued, resumes and ends with the same model (max_abs=0)
#      as an uninterrupted run.
# Needs root; skips (77) otherwise, when Slurm or munge are missing (RINGTRAIN_INSTALL_SLURM=1
# installs them with apt-get) or when a slurmctld/slurmd it did not start is running.
# Stops exactly the daemons it started, by their pid files, and removes its files on exit.
#   slurm.sh           (RINGTRAIN, MKDATA, MODELDIFF and MPIRUN_SH come from meson)
set -u
SECONDS=0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sbatch_script=$(cd "$here/../.." && pwd)/scripts/slurm/train.sbatch

skip() {
    echo "SKIP: $*"
    exit 77
}
for v in RINGTRAIN MKDATA MODELDIFF MPIRUN_SH; do
    [ -n "${!v:-}" ] || { echo "ERROR: $v is not set (run through meson test)"; exit 99; }
done
[ "$(id -u)" -eq 0 ] || skip "needs root to run its own slurmctld, slurmd and munged"
[ -r "$sbatch_script" ] || { echo "ERROR: no $sbatch_script"; exit 99; }

have_slurm() {
    local c
    for c in slurmctld slurmd sbatch scontrol sinfo scancel munged; do
        command -v "$c" >/dev/null 2>&1 || return 1
    done
}
if ! have_slurm; then
    [ "${RINGTRAIN_INSTALL_SLURM:-0}" = 1 ] ||
        skip "slurm-wlm and munge are not installed (apt-get install slurm-wlm munge, or set RINGTRAIN_INSTALL_SLURM=1)"
    echo "installing slurm-wlm munge"
    { DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y slurm-wlm munge ||
        { timeout 120 apt-get update && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y slurm-wlm munge; }
    } >/tmp/ringtrain-slurm-apt.log 2>&1
    have_slurm || skip "could not install slurm-wlm munge (see /tmp/ringtrain-slurm-apt.log)"
    rm -f /tmp/ringtrain-slurm-apt.log
fi

# Daemons by executable name, from /proc (no dependency on procps).
running() {
    local f
    for f in /proc/[0-9]*/comm; do
        [ "$(cat "$f" 2>/dev/null)" = "$1" ] && return 0
    done
    return 1
}
for d in slurmctld slurmd; do
    running "$d" && skip "a $d not started by this test is running"
done

# This test's own Slurm: nothing may leak in from a surrounding job.
while read -r v; do unset "$v"; done < <(compgen -v SLURM_)
unset RINGTRAIN_LAUNCHER RINGTRAIN_LAUNCHER_ARGS RINGTRAIN_SRUN_MPI OPENBLAS_NUM_THREADS

tmp=$(mktemp -d /tmp/ringtrain-slurm.XXXXXX)
chmod 755 "$tmp" # munged wants its socket directory (and the way there) open to all
mkdir -p "$tmp/state" "$tmp/spool" "$tmp/log" "$tmp/munge" "$tmp/run" "$tmp/work"
chmod 700 "$tmp/munge"
jobs_submitted=()

stop_pidfile() { # NAME PIDFILE: TERM the process, wait up to 10 s, then KILL it
    local pid i
    [ -s "$2" ] || return 0
    pid=$(cat "$2")
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "cleanup: $1 (pid $pid) did not stop on TERM, killing it"
    kill -9 "$pid" 2>/dev/null
}
cleanup() {
    local i
    if [ ${#jobs_submitted[@]} -gt 0 ] && [ -s "$tmp/run/slurmctld.pid" ]; then
        scancel "${jobs_submitted[@]}" 2>/dev/null
        # Let slurmd end the jobs' processes before it goes away (squeue lists the jobs that
        # are pending, running or completing; only this test's jobs are in this Slurm).
        for ((i = 0; i < 30; i++)); do
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    stop_pidfile slurmd "$tmp/run/slurmd.pid"
    stop_pidfile slurmctld "$tmp/run/slurmctld.pid"
    stop_pidfile munged "$tmp/run/munged.pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

show_logs() {
    local f
    for f in "$tmp"/log/*.log; do
        [ -e "$f" ] || continue
        echo "---- $f (last 25 lines)"
        tail -n 25 "$f"
    done
    for f in "$tmp"/work/*.out; do
        [ -e "$f" ] || continue
        echo "---- $f (last 40 lines but epoch lines)"
        grep -v '^epoch ' "$f" | tail -n 40
    done
}
fail() {
    echo "FAIL: $*"
    show_logs
    exit 1
}

# --- munge: a private key and daemon (own socket), so a system munged is neither needed nor
# touched; slurm.conf's AuthInfo points Slurm at the socket.
if command -v mungekey >/dev/null 2>&1; then
    mungekey --create --keyfile="$tmp/munge/munge.key" || fail "mungekey failed"
else
    dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none || fail "no munge key"
fi
chmod 600 "$tmp/munge/munge.key"
sock=$tmp/run/munge.socket
munged --socket="$sock" --key-file="$tmp/munge/munge.key" --pid-file="$tmp/run/munged.pid" \
    --seed-file="$tmp/munge/seed" --log-file="$tmp/log/munged.log" ||
    fail "munged did not start"

# --- Slurm. Slurm's daemons run as root; proctrack/linuxproc and task/none need no cgroups.
# Node and controller addresses are given as 127.0.0.1 so no name service is needed.
# KillWait=5 makes cancelled jobs (cleanup after a failure) end quickly; nothing triggers a
# scheduling pass when a pending job's begin time passes, so the periodic passes are made
# frequent (defaults: 60 s main, 30 s backfill).
host=$(hostname -s)
export SLURM_CONF=$tmp/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=ringtrain-test
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
KillWait=5
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/run/slurmctld.pid
SlurmdPidFile=$tmp/run/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start"
slurmd -f "$SLURM_CONF" || fail "slurmd did not start"
for ((i = 0; i < 60; i++)); do
    [ "$(sinfo -h -n "$host" -o %t 2>/dev/null)" = idle ] && break
    sleep 0.5
done
[ "$(sinfo -h -n "$host" -o %t 2>/dev/null)" = idle ] || fail "node $host not idle after 30 s: $(sinfo 2>&1)"
echo "slurm up in ${SECONDS}s: $(sinfo -h -o '%P %a %D %t %N %c') cpus"

# --- helpers
field() { # JOBID FIELD: a field of `scontrol show job`
    scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"
}
submit() { # TAG SBATCH-ARGS...: submits; the job id is left in $jid
    local tag=$1
    shift
    jid=$(sbatch --parsable --chdir="$tmp/work" --output="$tmp/work/$tag-%j.out" "$@") ||
        fail "sbatch $* failed"
    jid=${jid%%;*}
    jobs_submitted+=("$jid")
}
wait_done() { # JOBID SECONDS: wait until the job has ended
    local i st
    for ((i = 0; i < $2 * 2; i++)); do
        st=$(field "$1" JobState)
        case $st in
        COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | PREEMPTED | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
            return 0 ;;
        esac
        sleep 0.5
    done
    fail "job $1 not done after $2 s (state ${st:-unknown})"
}
check_ok() { # JOBID: ended COMPLETED with exit code 0
    local st ec
    st=$(field "$1" JobState)
    ec=$(field "$1" ExitCode)
    if [ "$st" != COMPLETED ] || [ "$ec" != 0:0 ]; then
        fail "job $1: state $st, exit code $ec"
    fi
}
direct() { # MODEL NP JOB-ARGS...: the same job run directly (no Slurm), one BLAS thread per rank
    local out=$1 np=$2
    shift 2
    OPENBLAS_NUM_THREADS=1 timeout -k 5 180 "$MPIRUN_SH" "$np" "$RINGTRAIN" train "$@" train.out="$out" \
        >"$tmp/work/direct-${out##*/}.out" 2>&1 || { cat "$tmp/work/direct-${out##*/}.out"; fail "direct run failed"; }
}
same() { # A.h5 B.h5 WHAT: max_abs must be 0
    local d
    d=$("$MODELDIFF" "$1" "$2") || fail "modeldiff $1 $2 failed"
    echo "  $3: $d"
    case $d in max_abs=0\ *) ;; *) fail "$3: models differ: $d" ;; esac
}

"$RINGTRAIN" train --help 2>&1 | grep -q -- --resume ||
    fail "$RINGTRAIN has no --resume, which train.sbatch passes (a build from before checkpoints?)"

"$MKDATA" "$tmp/train.h5" blobs 610 16 4 && "$MKDATA" "$tmp/test.h5" blobs 203 16 4 || exit 99
cat >"$tmp/job.ini" <<INI
[model]
layers = 16, 64, 32, 4
activation = tanh
[data]
train = $tmp/train.h5
test = $tmp/test.h5
[optim]
name = sgd
lr = 0.05
momentum = 0.9
[train]
epochs = 5
max_steps = 50
batch = 60
eval_batch = 50
log_every = 10
INI

# --- Test A: plain runs
echo "A: plain job, 2 ranks"
t0=$SECONDS
submit a --ntasks=2 --cpus-per-task=1 "$sbatch_script" "$tmp/job.ini" \
    train.out="$tmp/a.h5" checkpoint.dir="$tmp/ck-a"
a=$jid
wait_done "$a" 120
check_ok "$a"
[ -s "$tmp/a.h5" ] || fail "job $a wrote no model"
grep -q '^train.sbatch: job .* 2 ranks x 1 BLAS threads, mpirun' "$tmp/work/a-$a.out" ||
    fail "job $a: no start line for 2 ranks x 1 thread under mpirun"
grep -q '^ringtrain: job .* 2 ranks x 1 thread ' "$tmp/work/a-$a.out" || fail "job $a: ringtrain did not run 2 ranks x 1 thread"
grep -q '^resume: no checkpoint in .*: starting from step 0' "$tmp/work/a-$a.out" ||
    fail "job $a: ringtrain was not run with --resume auto"
grep -q '^final: ' "$tmp/work/a-$a.out" || fail "job $a: no final line"
echo "  job $a: exit code $(field "$a" ExitCode), $((SECONDS - t0)) s from submission to end"
direct "$tmp/a-direct.h5" 2 "$tmp/job.ini" checkpoint.dir="$tmp/ck-a-direct"
same "$tmp/a.h5" "$tmp/a-direct.h5" "sbatch+mpirun vs mpirun -np 2"

echo "A: the same through srun --mpi=pmix"
RINGTRAIN_LAUNCHER=srun submit s --ntasks=2 --cpus-per-task=1 "$sbatch_script" "$tmp/job.ini" \
    train.out="$tmp/s.h5" checkpoint.dir="$tmp/ck-s"
s=$jid
wait_done "$s" 120
check_ok "$s"
grep -q '^train.sbatch: job .* 2 ranks x 1 BLAS threads, srun' "$tmp/work/s-$s.out" || fail "job $s: not launched by srun"
same "$tmp/s.h5" "$tmp/a-direct.h5" "sbatch+srun vs mpirun -np 2"

echo "A: --ntasks=1 --cpus-per-task=2 gives 2 BLAS threads"
submit c --ntasks=1 --cpus-per-task=2 "$sbatch_script" "$tmp/job.ini" \
    train.out="$tmp/c.h5" checkpoint.dir="$tmp/ck-c"
c=$jid
wait_done "$c" 120
check_ok "$c"
grep -q '^ringtrain: job .* 1 rank x 2 threads ' "$tmp/work/c-$c.out" ||
    fail "job $c: ringtrain did not use 2 threads: $(grep '^ringtrain: job' "$tmp/work/c-$c.out")"
echo "  job $c: $(grep -o '1 rank x 2 threads' "$tmp/work/c-$c.out")"

# --- Test B: preemption round trip. 2000 steps of a 1M-parameter model over 12000 rows (100
# steps an epoch): about 20 s on 2 idle cores.
echo "B: SIGUSR1 to the batch shell mid-run, checkpoint, requeue, resume"
"$MKDATA" "$tmp/big.h5" blobs 12000 16 4 || exit 99
big=(data.train="$tmp/big.h5" model.layers="16, 1024, 1024, 4" optim.name=adam optim.lr=0.001
    train.epochs=1000 train.max_steps=2000 train.batch=120 train.log_every=500
    checkpoint.every_steps=200 checkpoint.keep=2)
t0=$SECONDS
submit b --ntasks=2 --cpus-per-task=1 "$sbatch_script" "$tmp/job.ini" "${big[@]}" \
    train.out="$tmp/b.h5" checkpoint.dir="$tmp/ck-b"
b=$jid
for ((i = 0; i < 120; i++)); do
    compgen -G "$tmp/ck-b/ckpt-*.h5" >/dev/null && break
    st=$(field "$b" JobState)
    case $st in
    COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | PREEMPTED | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
        fail "job $b ended before its first checkpoint: $st" ;;
    esac
    sleep 0.5
done
compgen -G "$tmp/ck-b/ckpt-*.h5" >/dev/null || fail "job $b: no checkpoint in $tmp/ck-b after 60 s"
t_sig=$((SECONDS - t0))
scancel --signal=USR1 --batch "$b" || fail "scancel --signal=USR1 --batch $b failed"
# The batch shell forwards USR1, the ranks checkpoint and exit 75, the script requeues the job.
for ((i = 0; i < 120; i++)); do
    [ "$(field "$b" Restarts)" = 1 ] && [ "$(field "$b" JobState)" = PENDING ] && break
    case $(field "$b" JobState) in COMPLETED | FAILED | CANCELLED) break ;; esac
    sleep 0.5
done
[ "$(field "$b" Restarts)" = 1 ] ||
    fail "job $b not requeued: state $(field "$b" JobState), restarts $(field "$b" Restarts), exit code $(field "$b" ExitCode)"
t_req=$((SECONDS - t0))
# A requeued job may only start again after its begin time, which Slurm sets to the requeue
# time + the credential lifetime (AuthInfo cred_expire, 120 s by default) + 1 s; it shows as
# Reason=BeginTime. The delay is there for a reason: the requeue revoked the job's launch
# credential on the node, and slurmd refuses (and the job then FAILS, "Job credential
# revoked") a new launch whose credential was created in the same second or earlier. So the
# operator (root) moves the begin time only to a few seconds from now, once the node has
# finished cleaning up the first run.
echo "  job $b: first checkpoint at ${t_sig}s, SIGUSR1 sent, requeued at ${t_req}s;" \
    "pending, reason $(field "$b" Reason), eligible at $(field "$b" EligibleTime)"
if [ "$(field "$b" JobState)" = PENDING ]; then
    for ((i = 0; i < 60; i++)); do
        [ "$(sinfo -h -n "$host" -o %t 2>/dev/null)" = idle ] && break
        sleep 0.5
    done
    scontrol update JobId="$b" StartTime=now+3 || fail "scontrol update JobId=$b StartTime=now+3 failed"
fi
wait_done "$b" 180
check_ok "$b"
log=$tmp/work/b-$b.out
[ "$(field "$b" Restarts)" = 1 ] || fail "job $b restarted $(field "$b" Restarts) times, not once"
grep -q '^train.sbatch: got SIGUSR1' "$log" || fail "job $b: the batch shell saw no SIGUSR1"
grep -q '^train.sbatch: requeueing job' "$log" || fail "job $b: did not requeue itself"
grep -q '^train.sbatch: job .* start 1 ' "$log" || fail "job $b: no second start in its log"
stop=$(sed -n 's/^stopped: SIGUSR1 at step \([0-9]*\); checkpoint .*/\1/p' "$log")
[ -n "$stop" ] || fail "job $b: ringtrain did not report stopping on SIGUSR1"
res=$(sed -n 's/^resume: .*: step \([0-9]*\), epoch .*/\1/p' "$log")
[ -n "$res" ] || fail "job $b: the second run did not resume from a checkpoint"
[ "$res" = "$stop" ] || fail "job $b: stopped at step $stop but resumed at step $res"
[ "$(grep -c '^final: ' "$log")" = 1 ] || fail "job $b: expected one final line, got $(grep -c '^final: ' "$log")"
grep -q '^final: .* steps=2000 ' "$log" || fail "job $b: final line: $(grep '^final: ' "$log")"
[ -s "$tmp/b.h5" ] || fail "job $b wrote no model"
echo "  job $b: $(grep '^stopped: ' "$log")"
echo "  job $b: $(grep -E '^resume: .*: step [0-9]+, epoch' "$log")"
echo "  job $b: restarts $(field "$b" Restarts), exit code $(field "$b" ExitCode), $((SECONDS - t0)) s from submission to end"
t1=$SECONDS
direct "$tmp/b-direct.h5" 2 "$tmp/job.ini" "${big[@]}" checkpoint.dir="$tmp/ck-b-direct"
echo "  uninterrupted run: $((SECONDS - t1)) s"
same "$tmp/b.h5" "$tmp/b-direct.h5" "preempted+resumed vs uninterrupted"

echo "ok in ${SECONDS}s"
