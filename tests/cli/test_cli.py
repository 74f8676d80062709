"""The command line: only the chosen subcommand's module is imported, and the control commands
never import the heavy libraries."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = {
    "torch",
    "transformers",
    "vllm",
    "ray",
    "wandb",
    "bitsandbytes",
    "openai",
    "datasets",
    "pynvml",
    "matplotlib",
    "bm25s",
    "sentence_transformers",
    "pypdf",
}

PROBE = """
import json, sys
from orchestrator.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
mods = sorted(m for m in sys.modules if m.startswith("orchestrator.cli.") or m.split(".")[0] in %r)
print("PROBE" + json.dumps({"code": code, "modules": mods}), file=sys.stderr)
""" % sorted(HEAVY)


def imported(orch_home, *args: str) -> tuple[int, set[str]]:
    res = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    line = next(x for x in res.stderr.splitlines() if x.startswith("PROBE"))
    probe = json.loads(line.removeprefix("PROBE"))
    return probe["code"], set(probe["modules"])


@pytest.mark.parametrize(
    "args, module",
    [
        (["--help"], None),
        (["render", "hello"], "render_cmd"),
        (["submit", "hello", "--dry-run", "--executor", "local"], "submit_cmd"),
        (["render", "rag-tiny"], "render_cmd"),
        (["submit", "rag-tiny", "--dry-run", "--executor", "slurm"], "submit_cmd"),
        (["status"], "status_cmd"),
        (["list"], "list_cmd"),
        (["logs", "--help"], "logs_cmd"),
    ],
)
def test_control_commands_import_only_what_they_use(orch_home, args, module):
    code, modules = imported(orch_home, *args)
    assert code == 0
    assert modules == ({f"orchestrator.cli.{module}"} if module else set())  # no heavy library either


SPECS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "jobs").glob("*.yaml"))


@pytest.mark.parametrize("spec", SPECS)
def test_every_shipped_spec_renders_without_secrets_or_scheduler(orch_home, spec, tmp_path):
    """`render` is pure: no API key, no sbatch/squeue on PATH, no data a later submit needs."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.startswith("ORCH_JUDGE")}
    env["PATH"] = str(Path(sys.executable).parent)  # no SLURM client commands (nor anything else)
    assert shutil.which("sbatch", path=env["PATH"]) is None
    res = subprocess.run(
        [sys.executable, "-m", "orchestrator", "render", spec], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert "#SBATCH" in res.stdout


def test_submit_checks_what_render_does_not_need(cli):
    """Missing data is a submit-time error (exit 2, naming the file), never a render error."""
    assert cli("submit", "rag-wattbot", "--dry-run", "--executor", "local").code == 0
    res = cli("submit", "rag-wattbot", "--executor", "local")
    assert res.code == 2 and "questions:" in res.err and "does not exist" in res.err
    assert cli("status", "rag-wattbot", "--json").out.strip() in ("", "[]")  # nothing submitted
