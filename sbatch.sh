#!/usr/bin/env bash
# Slurm job for the hw5 main run:     sbatch sbatch.sh [train flags...]
#   one GPU (default):                sbatch sbatch.sh --max-iters 20000
#   several GPUs on one node:         sbatch --gres=gpu:4 sbatch.sh          (torchrun, one process per GPU)
#   several nodes:                    sbatch --nodes=2 --gres=gpu:4 sbatch.sh (srun + torchrun, c10d rendezvous)
# Output: slurm-<jobid>.out (appended to across requeues). Edit the cluster-specific lines below.
#
# Time limits and preemption: Slurm sends USR1 to this script 120 s before the end (--signal). The
# script passes it on; the trainer finishes its step, writes last.pt and exits; the script requeues
# the job, and the requeued job continues from last.pt (--auto-resume).
#SBATCH --job-name=hw5-gpt
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=01:00:00
#SBATCH --output=slurm-%j.out
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
# Cluster-specific (uncomment and fill in if your cluster needs them):
##SBATCH --account=YOUR_ACCOUNT
##SBATCH --partition=YOUR_GPU_PARTITION

set -uo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")}"

# The project's environment, if there is one: ./venv or ./.venv, else the conda env $CONDA_ENV.
if [ -f venv/bin/activate ]; then source venv/bin/activate
elif [ -f .venv/bin/activate ]; then source .venv/bin/activate
elif [ -n "${CONDA_ENV:-}" ]; then source "$(conda info --base)/etc/profile.d/conda.sh" && conda activate "$CONDA_ENV"
fi
PYTHON="${PYTHON:-python}"

# GPUs on this node: what Slurm says, else the visible devices, else none.
gpus="${SLURM_GPUS_ON_NODE:-}"
if [ -z "$gpus" ] && [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then gpus=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .); fi
gpus="${gpus:-0}"
nodes="${SLURM_NNODES:-1}"
echo "job ${SLURM_JOB_ID:-local} (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname): $nodes node(s), $gpus GPU(s) each"

if [ "$nodes" -gt 1 ]; then
    head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    launcher=(srun --kill-on-bad-exit=1 "$PYTHON" -m torch.distributed.run --nnodes="$nodes" --nproc-per-node="$gpus"
              --rdzv-backend=c10d --rdzv-endpoint="$head_node:29500" --rdzv-id="${SLURM_JOB_ID:-hw5}")
    stop_signal=TERM        # torchrun forwards TERM to its workers (it would die on USR1)
elif [ "$gpus" -gt 1 ]; then
    launcher=("$PYTHON" -m torch.distributed.run --standalone --nproc-per-node="$gpus")
    stop_signal=TERM
else
    launcher=("$PYTHON" -u)
    stop_signal=USR1
fi

"${launcher[@]}" main.py train --no-progress --auto-resume "$@" &
child=$!
signalled=0
on_usr1() {
    echo "$(date +%T) USR1: time limit or preemption ahead; asking the trainer to checkpoint and stop"
    signalled=1
    kill -"$stop_signal" "$child" 2>/dev/null
}
trap on_usr1 USR1

# `wait` returns early when a trapped signal arrives: keep waiting until the trainer has exited.
while true; do
    wait "$child"
    code=$?
    kill -0 "$child" 2>/dev/null || break
done

if [ "$signalled" -eq 1 ]; then
    if [ -n "${SLURM_JOB_ID:-}" ]; then
        echo "$(date +%T) trainer stopped (exit $code) after writing last.pt; requeueing job $SLURM_JOB_ID"
        scontrol requeue "$SLURM_JOB_ID"
    fi
    exit 0
fi
echo "$(date +%T) trainer finished with exit code $code"
exit "$code"
