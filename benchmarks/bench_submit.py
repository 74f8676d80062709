"""`orchestrate submit` of 200 units of one shape vs. a shell loop of 200 single `sbatch` calls
(how hand-made scripts submit per-checkpoint evaluations). Prints scheduler calls, wall times,
their ratio, CLI start-up and which heavy modules the CLI imports (must be none).

    python benchmarks/bench_submit.py        (needs the test cluster: scripts/slurm-cluster.sh up)
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from common import ORCHESTRATE, SchedulerShims, have_slurm, heavy_imports, timed

N = 200


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    shims = SchedulerShims()
    env = shims.env(ORCH_HOME=str(home))
    spec = home / "bench200.yaml"
    spec.write_text(
        "kind: command\nresources: {time: '5', mem: 50M}\narray_parallelism: 8\n"
        "stages:\n  eval:\n    run: ['true']\n    array: %s\n" % json.dumps([[str(i)] for i in range(N)])
    )

    help_s = min(timed([*ORCHESTRATE, "--help"], env)[0] for _ in range(5))
    render_s, _ = timed([*ORCHESTRATE, "render", str(spec)], env)
    print(f"orchestrate --help: {help_s * 1000:.0f} ms (best of 5); render of {N} units: {render_s * 1000:.0f} ms")
    for args in (
        ["--help"],
        ["render", str(spec)],
        ["submit", str(spec), "--dry-run", "--executor", "local"],
        ["status"],
        ["list"],
    ):
        heavy = heavy_imports(args, env)
        print(f"heavy imports for `orchestrate {args[0]}`: {', '.join(heavy) or 'none'}")
        assert not heavy, f"orchestrate {args[0]} imports {heavy}"

    if not have_slurm():
        print("no SLURM cluster: skipping the submission comparison (scripts/slurm-cluster.sh up)")
        return
    shims.reset()
    ours_s, out = timed([*ORCHESTRATE, "submit", str(spec), "--executor", "slurm"], env)
    ours_calls = shims.calls("sbatch")
    job = out.split("array of %d " % N)[1].split()[0]
    subprocess.run(["scancel", job])

    shims.reset()
    scripts = home / "loop"
    scripts.mkdir()
    loop = (
        f"for i in $(seq 0 {N - 1}); do sbatch --parsable --time=5 --mem=50M -o /dev/null "
        f"--job-name=loop$i --wrap true; done"
    )
    loop_s, out = timed(loop, env, shell=True)
    loop_calls = shims.calls("sbatch")
    subprocess.run(["scancel", *out.split()])

    print(f"\nsubmitting {N} units of one shape")
    print(f"  orchestrate submit : {ours_calls:4d} sbatch call(s)  {ours_s:6.2f} s")
    print(f"  shell loop         : {loop_calls:4d} sbatch call(s)  {loop_s:6.2f} s")
    print(f"  ratio (loop / ours): calls {loop_calls / ours_calls:.0f}x, wall time {loop_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
