"""The command line: only the chosen subcommand's module is imported, and the control commands
never import the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

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
