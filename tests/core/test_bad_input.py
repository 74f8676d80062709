"""Malformed specs and overrides: each exits 2 with a message naming the problem, submits
nothing and executes nothing."""

from __future__ import annotations

import pytest

GOOD = """\
kind: command
stages:
  main:
    run: [python, -c, "print(1)"]
"""


CASES = [
    # (id, yaml text, extra CLI args, fragment the message must contain)
    ("yaml-syntax", "kind: command\nstages: [main\n", [], "YAML syntax error at line"),
    ("yaml-tab", "kind: command\nstages:\n\tmain: {}\n", [], "YAML syntax error"),
    ("top-level-list", "- kind: command\n", [], "top level must be a mapping"),
    ("unknown-top-key", GOOD + "gpus: 2\n", [], "gpus: unknown key; valid keys here"),
    (
        "unknown-resource-key",
        GOOD + "resources:\n  gpu: 1\n",
        [],
        "resources.gpu: unknown key; valid keys here: account",
    ),
    ("missing-kind", "stages: {}\n", [], "kind: required key is missing; use one of: command"),
    ("unknown-kind", "kind: magic\n", [], "kind: 'magic' is not a job kind"),
    ("missing-stages", "kind: command\n", [], "stages: required key is missing"),
    ("empty-stages", "kind: command\nstages: {}\n", [], "stages: "),
    ("nodes-type", GOOD + "resources:\n  nodes: two\n", [], "resources.nodes: Input should be a valid integer"),
    (
        "negative-gpus",
        GOOD + "resources:\n  gpus_per_node: -1\n",
        [],
        "resources.gpus_per_node: Input should be greater than or equal to 0",
    ),
    ("zero-cpus", GOOD + "resources:\n  cpus_per_task: 0\n", [], "resources.cpus_per_task"),
    ("time-too-many-fields", GOOD + "resources:\n  time: '1:2:3:4'\n", [], "bad time '1:2:3:4'"),
    ("time-words", GOOD + "resources:\n  time: one hour\n", [], "bad time 'one hour'"),
    ("time-zero", GOOD + "resources:\n  time: '00:00:00'\n", [], "must be longer than zero"),
    ("mem-format", GOOD + "resources:\n  mem: 16 GB\n", [], "bad memory '16 GB'"),
    (
        "tasks-exceed-cpus",
        GOOD + "resources:\n  node_cpus: 4\n  tasks_per_node: 4\n  cpus_per_task: 2\n",
        [],
        "exceeds the 4 CPUs of a node",
    ),
    ("gpus-exceed-node", GOOD + "resources:\n  node_gpus: 4\n  gpus_per_node: 8\n", [], "exceeds the 4 GPUs of a node"),
    ("name-semicolon", GOOD + "name: 'exp; touch PLANTED'\n", [], "name: String should match pattern"),
    ("name-subshell", GOOD + "name: '$(touch PLANTED)'\n", [], "name: String should match pattern"),
    ("name-backticks", GOOD + "name: '`touch PLANTED`'\n", [], "name: String should match pattern"),
    ("name-dotdot", GOOD + "name: ../escape\n", [], "name: String should match pattern"),
    ("partition-quote", GOOD + 'resources:\n  partition: "deb\'ug"\n', [], "resources.partition"),
    ("partition-semicolon", GOOD + "resources:\n  partition: 'debug; touch PLANTED'\n", [], "resources.partition"),
    ("account-subshell", GOOD + "resources:\n  account: '$(touch PLANTED)'\n", [], "resources.account"),
    ("module-semicolon", GOOD + "env:\n  modules: ['cuda; touch PLANTED']\n", [], "module name 'cuda; touch "),
    ("conda-backticks", GOOD + "env:\n  conda: '`touch PLANTED`'\n", [], "env.conda"),
    ("newline-in-value", GOOD + 'description: "line one\\ntouch PLANTED"\n', [], "description: contains a newline"),
    ("newline-in-var", GOOD + 'env:\n  vars:\n    X: "a\\nb"\n', [], "env.vars.X: contains a newline"),
    ("env-var-name", GOOD + "env:\n  vars:\n    1BAD: x\n", [], "'1BAD' is not a valid shell name"),
    (
        "after-unknown",
        'kind: command\nstages:\n  a:\n    run: ["true"]\n    after: [zzz]\n',
        [],
        "stages.a.after: unknown stage 'zzz'",
    ),
    (
        "after-cycle",
        'kind: command\nstages:\n  a:\n    run: ["true"]\n    after: [b]\n  b:\n    run: ["true"]\n    after: [a]\n',
        [],
        "cycle",
    ),
    (
        "output-dotdot",
        'kind: command\nstages:\n  a:\n    run: ["true"]\n    outputs: [../../etc/x]\n',
        [],
        "must be a path inside the run directory",
    ),
    (
        "output-absolute",
        'kind: command\nstages:\n  a:\n    run: ["true"]\n    outputs: [/etc/passwd]\n',
        [],
        "must be a path inside the run directory",
    ),
    ("stage-name-slash", 'kind: command\nstages:\n  ../a:\n    run: ["true"]\n', [], "stage name '../a'"),
    ("sbatch-key-case", GOOD + "resources:\n  sbatch:\n    Mail_Type: END\n", [], "sbatch option 'Mail_Type'"),
    (
        "sbatch-value-subshell",
        GOOD + "resources:\n  sbatch:\n    comment: '$(touch PLANTED)'\n",
        [],
        "sbatch option comment=",
    ),
    ("sbatch-generated-key", GOOD + "resources:\n  sbatch:\n    time: '10'\n", [], "use resources.time"),
    ("run-empty", "kind: command\nstages:\n  a:\n    run: []\n", [], "stages.a.run"),
    ("run-unbalanced-quote", "kind: command\nstages:\n  a:\n    run: 'python \"abc'\n", [], "cannot split"),
    (
        "array-empty",
        "kind: command\nstages:\n  a:\n    run: [echo]\n    array: []\n",
        [],
        "give at least one argument set",
    ),
    ("array-parallelism-zero", GOOD + "array_parallelism: 0\n", [], "array_parallelism"),
    (
        "stage-resources-bad",
        "kind: command\nstages:\n  a:\n    run: [echo]\n    resources:\n      gpus_per_node: -2\n",
        [],
        "gpus_per_node",
    ),
    ("set-no-equals", GOOD, ["--set", "resources.nodes"], "write it as key.path=value"),
    ("set-into-scalar", GOOD, ["--set", "kind.x=1"], "kind is not a mapping"),
    ("set-bad-type", GOOD, ["--set", "resources.nodes=abc"], "resources.nodes: Input should be a valid integer"),
    ("set-unknown-key", GOOD, ["--set", "resources.gpu=1"], "resources.gpu: unknown key"),
    ("set-injection", GOOD, ["--set", "resources.partition=x;touch PLANTED"], "resources.partition"),
    ("include-missing", "include: nope.yaml\n" + GOOD, [], "include 'nope.yaml': file not found"),
    ("include-outside", "include: ../../../etc/hostname\n" + GOOD, [], "points outside"),
    ("include-type", "include: {a: 1}\n" + GOOD, [], "include: must be a file path"),
]


@pytest.mark.parametrize("case_id,text,extra,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_spec_exits_2_and_submits_nothing(cli, spec_file, orch_home, tmp_path, case_id, text, extra, fragment):
    path = spec_file(f"spec-{case_id}", text.replace("PLANTED", str(tmp_path / "PLANTED")))
    for command in (["submit", "--executor", "local"], ["render"]):
        res = cli(*command[:1], path, *command[1:], *extra)
        assert res.code == 2, (res.out, res.err)
        assert f"spec-{case_id}.yaml" in res.err  # names the file
        assert fragment in res.err, res.err
        assert "Traceback" not in res.err
    assert not (orch_home / "logs" / "registry.sqlite").exists()  # nothing submitted
    assert not (tmp_path / "PLANTED").exists()  # nothing executed


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30


def test_include_cycle(cli, tmp_path):
    (tmp_path / "a.yaml").write_text("include: b.yaml\n" + GOOD)
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    res = cli("render", tmp_path / "a.yaml")
    assert res.code == 2 and "include cycle: a.yaml → b.yaml → a.yaml" in res.err


def test_missing_spec_file(cli):
    res = cli("submit", "no-such-spec-anywhere")
    assert res.code == 2 and "no such spec file or name" in res.err


def test_template_with_undefined_variable(cli, spec_file, tmp_path, monkeypatch):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "sbatch.sh.j2").write_text("#!/bin/bash\necho {{ no_such_variable | q }}\n")
    monkeypatch.setenv("ORCH_TEMPLATES", str(templates))
    res = cli("submit", spec_file("t", GOOD), "--executor", "local")
    assert res.code == 2 and "'no_such_variable' is undefined" in res.err
    assert "fix the template" in res.err


def test_unknown_executor(cli, spec_file, monkeypatch):
    monkeypatch.setenv("ORCH_EXECUTOR", "kubernetes")
    res = cli("submit", spec_file("t", GOOD))
    assert res.code == 2 and "'kubernetes' is not an executor" in res.err


def test_bad_template_touches_no_state(cli, spec_file, orch_home, tmp_path, monkeypatch):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "sbatch.sh.j2").write_text("#!/bin/bash\n{% if %}\n")
    monkeypatch.setenv("ORCH_TEMPLATES", str(templates))
    res = cli("submit", spec_file("t", GOOD), "--executor", "local")
    assert res.code == 2 and "sbatch.sh.j2, line 2" in res.err
    assert not (orch_home / "logs").exists()
