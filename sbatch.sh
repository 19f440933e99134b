#!/usr/bin/env bash
# Slurm job for the hw5 main run:   sbatch sbatch.sh [train flags...]
#   e.g.  sbatch sbatch.sh --max-iters 20000
# Output goes to slurm-<jobid>.out. Edit the cluster-specific lines below for your cluster.
#SBATCH --job-name=hw5-gpt
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=01:00:00
#SBATCH --output=slurm-%j.out
# Cluster-specific (uncomment and fill in if your cluster needs them):
##SBATCH --account=YOUR_ACCOUNT
##SBATCH --partition=YOUR_GPU_PARTITION

set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")}"

# Use the project's environment if there is one: ./venv or ./.venv, else $CONDA_ENV if set.
if [ -f venv/bin/activate ]; then source venv/bin/activate
elif [ -f .venv/bin/activate ]; then source .venv/bin/activate
elif [ -n "${CONDA_ENV:-}" ]; then source "$(conda info --base)/etc/profile.d/conda.sh" && conda activate "$CONDA_ENV"
fi

echo "job ${SLURM_JOB_ID:-local} on $(hostname): $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || echo 'no GPU visible')"
python -u main.py train --no-progress "$@"
