#!/usr/bin/env bash
# A real Slurm on this machine, to test sbatch.sh: a single-node cluster on 127.0.0.1 with a fake
# `gpu` gres (backed by /dev/null), then two jobs:
#   1. the single-GPU path: a short training run must complete, with metrics, checkpoint and log;
#   2. preemption: a longer run gets USR1 (scancel --batch --signal=USR1), must checkpoint, be
#      requeued, resume from last.pt and finish.
# Needs root and Debian's slurm-wlm and munge (installed here if missing). Everything stays on
# loopback and is stopped and removed at the end. Usage: bash tests/slurm/run_local_cluster.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DATA_DIR="${HW5_DATA_DIR:-$ROOT/../shared/data}"
WORK="$(mktemp -d /tmp/hw5-slurm.XXXXXX)"
export SLURM_CONF="$WORK/slurm.conf"
NODE="$(hostname -s)"

log() { echo "[slurm-test $(date +%T)] $*"; }
fail() { log "FAILED: $*"; for f in "$WORK"/*.log; do echo "--- $f"; tail -n 20 "$f"; done; exit 1; }

cleanup() {
    scancel --quiet --user=root 2>/dev/null || true
    [ -f "$WORK/slurmd.pid" ] && kill "$(cat "$WORK/slurmd.pid")" 2>/dev/null || true
    [ -f "$WORK/slurmctld.pid" ] && kill "$(cat "$WORK/slurmctld.pid")" 2>/dev/null || true
    [ -n "${MUNGE_PID:-}" ] && kill "$MUNGE_PID" 2>/dev/null || true
    sleep 1
    rm -rf "$WORK" "$ROOT"/slurm-hw5ci-*.out
}
trap cleanup EXIT

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurm-wlm and munge"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# munge: authentication between the Slurm daemons and clients
mkdir -p "$WORK/munge" /run/munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
chmod 400 /etc/munge/munge.key
munged --force --socket=/run/munge/munge.socket.2 --pid-file="$WORK/munge/munged.pid" \
       --log-file="$WORK/munged.log" --seed-file="$WORK/munge/seed"
MUNGE_PID="$(cat "$WORK/munge/munged.pid")"

mkdir -p "$WORK/state" "$WORK/spool"
cat > "$SLURM_CONF" <<CONF
ClusterName=hw5ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
GresTypes=gpu
JobRequeue=1
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=8000 Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$WORK/gres.conf" <<CONF
NodeName=$NODE Name=gpu File=/dev/null
CONF

slurmctld -i
slurmd
for _ in $(seq 60); do
    sinfo -h -o "%T" 2>/dev/null | grep -q idle && break
    sleep 1
done
sinfo -h -o "%T" | grep -q idle || fail "the node never became idle"
log "cluster up: $(sinfo -h -o '%P %D %T %G')"

cd "$ROOT"
TRAIN=(--data-dir "$DATA_DIR/wikitext-2" --cache-dir "$WORK/cache" --vocab-size 300 --n-layer 1 --n-head 2
       --n-embd 16 --block-size 16 --batch-size 4 --dropout 0 --device cpu --no-report)

wait_done() {   # job id, timeout in seconds: wait until it leaves the queue, print its final state
    local id=$1 limit=$2 state
    for _ in $(seq "$limit"); do
        state=$(scontrol show job "$id" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)
        case "$state" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) echo "$state"; return;; esac
        sleep 1
    done
    echo "TIMEOUT_WAITING($state)"
}

# 1. single-GPU path: a short run to completion
OUT1="$WORK/run1"
id1=$(sbatch --parsable --job-name=hw5ci --mem=2G --cpus-per-task=1 --output="slurm-hw5ci-%j.out" sbatch.sh "${TRAIN[@]}" \
      --max-iters 30 --eval-interval 15 --eval-batches 20 --out-dir "$OUT1")
log "submitted job $id1 (short run)"
state=$(wait_done "$id1" 300)
log "job $id1: $state"
cat "slurm-hw5ci-$id1.out"
[ "$state" = COMPLETED ] || fail "job $id1 ended $state"
grep -q "1 GPU(s) each" "slurm-hw5ci-$id1.out" || fail "the job did not see its gres gpu"
grep -q "trainer finished with exit code 0" "slurm-hw5ci-$id1.out" || fail "no clean finish in the log"
[ -s "$OUT1/last.pt" ] && [ -s "$OUT1/best.pt" ] || fail "no checkpoints"
[ "$(grep -c '"kind": "eval"' "$OUT1/metrics.jsonl")" = 2 ] || fail "metrics.jsonl lacks the two evaluations"

# 2. preemption: USR1 to the batch script, checkpoint, requeue, resume, finish
OUT2="$WORK/run2"
id2=$(sbatch --parsable --job-name=hw5ci --mem=2G --cpus-per-task=1 --output="slurm-hw5ci-%j.out" sbatch.sh "${TRAIN[@]}" \
      --max-iters 6000 --eval-interval 3000 --eval-batches 20 --log-interval 50 --out-dir "$OUT2")
log "submitted job $id2 (to be preempted)"
for _ in $(seq 300); do [ -s "$OUT2/metrics.jsonl" ] && break; sleep 1; done
[ -s "$OUT2/metrics.jsonl" ] || fail "job $id2 never started training"
scancel --batch --signal=USR1 "$id2"
log "sent USR1 to job $id2"
for _ in $(seq 120); do grep -q requeueing "slurm-hw5ci-$id2.out" 2>/dev/null && break; sleep 1; done
grep -q requeueing "slurm-hw5ci-$id2.out" || fail "job $id2 did not requeue"
state=$(wait_done "$id2" 600)
log "job $id2: $state"
cat "slurm-hw5ci-$id2.out"
[ "$state" = COMPLETED ] || fail "job $id2 ended $state"
grep -q "stopped by SIGUSR1 after iteration" "slurm-hw5ci-$id2.out" || fail "the trainer did not checkpoint on USR1"
grep -q "(restart 1)" "slurm-hw5ci-$id2.out" || fail "the job did not run again after the requeue"
grep -q "trainer finished with exit code 0" "slurm-hw5ci-$id2.out" || fail "the resumed run did not finish"
python - "$OUT2/last.pt" <<'PY' || fail "the final checkpoint is not at iteration 6000"
import sys, torch
assert torch.load(sys.argv[1], weights_only=True)["iteration"] == 6000
PY
log "PASSED: single-GPU job $id1 completed; job $id2 checkpointed on USR1, was requeued and resumed to the end"
