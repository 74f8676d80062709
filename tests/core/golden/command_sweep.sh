#!/bin/bash
# experiment golden, stage sweep: 3 unit(s) of work
# rendered by `orchestrate` from golden.yaml
#SBATCH --job-name=golden.sweep
#SBATCH --partition=debug
#SBATCH --account=lab
#SBATCH --qos=normal
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=4
#SBATCH --gpus-per-node=1
#SBATCH --mem=64G
#SBATCH --time=2-00:00:00
#SBATCH --constraint=a100&ib
#SBATCH --array=0-2%2
#SBATCH --output=/orch-home/logs/golden/_jobs/sweep/%A_%a_0_log.out
#SBATCH --error=/orch-home/logs/golden/_jobs/sweep/%A_%a_0_log.err
#SBATCH --open-mode=append
#SBATCH --no-requeue
#SBATCH --kill-on-invalid-dep=yes
#SBATCH --exclusive
#SBATCH --mail-type=END
set -eo pipefail

# modules
module load cuda/12.1
module load gcc/12

# python environment
source '/opt/envs/my env/bin/activate'

# environment variables
export HF_HOME='/scratch/$USER/hf cache'
export NOTE='it'"'"'s; $(x) `y`'
export TOKENIZERS_PARALLELISM=false

# run the unit(s) of work: submitit loads the pickled task for this job / array index; with
# several tasks, one failing ends the others (they may be waiting on it in a collective)
export SUBMITIT_EXECUTOR=slurm
srun --kill-on-bad-exit=1 --unbuffered --output /orch-home/logs/golden/_jobs/sweep/%A_%a_%t_log.out --error /orch-home/logs/golden/_jobs/sweep/%A_%a_%t_log.err '/opt/envs/my env/bin/python' -u -m submitit.core._submit /orch-home/logs/golden/_jobs/sweep
