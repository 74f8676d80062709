"""Where jobs run: `slurm` (sbatch through submitit, squeue/sacct, scancel) and `local`
(submitit's local executor, afterok by polling, process-tree cancel). Both take a planned stage
and return a job id; what to submit and when is core.submit's business, states core.monitor's."""
