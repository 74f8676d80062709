"""Where jobs run, one class per executor behind core/executor.py's protocol: `slurm`
(sbatch through submitit, squeue/sacct, scancel) and `local` (submitit's local executor, afterok
by polling, process-tree cancel). What to submit and when is core.submit's business; the rules
every executor's states follow are core.monitor's."""
