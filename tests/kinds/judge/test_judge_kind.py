"""The `judge` kind: spec validation, plan, rendered scripts (no secrets), the vLLM variant, and a
run through the local executor."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from chat_server import ChatServer
from judge_data import mixed, prediction, read_jsonl, write_predictions

from helpers import wait_final
from orchestrator.core import paths
from orchestrator.core.errors import SpecError
from orchestrator.core.plan import stages_of
from orchestrator.core.render import python_for, render_stage
from orchestrator.core.spec import load_spec

KEY_ENV = "ORCH_TEST_JUDGE_KEY"
KEY = "sk-kind-test-51c0ffee"


@pytest.fixture
def judge_env(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("ORCH_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ORCH_JUDGE_MODEL", "judge-model")


def spec_text(inputs: str, judge: str = "", extra: str = "") -> str:
    return f"""\
kind: judge
resources: {{time: "5", mem: 300M}}
inputs: {inputs}
judge: {{api_key_env: {KEY_ENV}{judge}}}
{extra}"""


def test_files_input_plans_one_array_task_per_file(tmp_path, spec_file, orch_home, judge_env):
    a = write_predictions(tmp_path / "m1__gsm8k" / "predictions.jsonl", [prediction(0)])
    b = write_predictions(tmp_path / "extra.jsonl", [prediction(1)])
    path = spec_file("j", spec_text(f"{{files: [{a}, extra.jsonl]}}", extra="num_workers: 4"))
    (stage,) = stages_of(load_spec(path, ["num_workers=32"]))
    assert [u.run for u in stage.units] == ["m1__gsm8k", "extra"]
    assert [u.args.predictions for u in stage.units] == [str(a), str(b.resolve())]
    assert {u.args.config.num_workers for u in stage.units} == {32}  # --set overrides the file
    assert stage.units[0].outputs == (paths.JUDGED_FILE, paths.JUDGE_SUMMARY_FILE)
    assert stage.units[0].entry == "orchestrator.kinds.judge.job:judge_run"


def test_experiment_input_finds_its_runs(spec_file, orch_home, judge_env):
    for run in ("tiny__gsm8k", "tiny__coqa"):
        write_predictions(paths.run_dir("infer", run) / paths.PREDICTIONS_FILE, [prediction(0)])
    paths.run_dir("infer", "no-preds").mkdir()
    (stage,) = stages_of(load_spec(spec_file("j", spec_text("{experiment: infer}"))))
    assert [u.run for u in stage.units] == ["tiny__coqa", "tiny__gsm8k"]
    (stage,) = stages_of(load_spec(spec_file("j2", spec_text("{experiment: infer, runs: [tiny__coqa]}"))))
    assert [u.run for u in stage.units] == ["tiny__coqa"]
    # an experiment that has produced nothing yet: nothing planned (render works), submit refuses
    nothing = load_spec(spec_file("j3", spec_text("{experiment: nothing-here}")))
    (stage,) = stages_of(nothing)
    assert stage.units == ()
    with pytest.raises(SpecError, match="no predictions.jsonl under"):
        nothing.check_submit()
    with pytest.raises(SpecError, match="inputs.runs: no predictions.jsonl for tiny__medqa"):
        stages_of(load_spec(spec_file("j4", spec_text("{experiment: infer, runs: [tiny__medqa]}"))))


@pytest.mark.parametrize(
    "body, message",
    [
        ("inputs: {experiment: x}\njudge: {api_key: sk-123}", "keys never go in specs"),
        ("inputs: {experiment: x}\njudge: {base_url: 'http://h/v1; rm -rf /'}", "judge.base_url"),
        ("inputs: {experiment: x, files: [a.jsonl]}", "exactly one of"),
        ("inputs: {files: [a.jsonl], runs: [r]}", "give the experiment too"),
        ("inputs: {experiment: x}\ntags: [math]", "upper-case"),
        ("inputs: {experiment: x}\ndomains: {gsm8k: CODE}", "not one of tags"),
        ("inputs: {experiment: x}\njudge: {prompt: 'grade {question}'}", "{prediction}"),
        ("inputs: {experiment: x}\njudge: {type: regex}", "judge.type"),
        ("inputs: {experiment: x}\nnum_workers: 0", "num_workers"),
        ("inputs: {experiment: x}\njudge: {server: {model: /m}, base_url: 'http://h/v1'}", "exclude each other"),
        ("inputs: {experiment: x}\njudge: {api_key_env: 'MY KEY'}", "api_key_env"),
    ],
)
def test_bad_specs_exit_2(cli, spec_file, body, message, judge_env):
    res = cli("submit", spec_file("bad", f"kind: judge\n{body}\n"), "--dry-run", "--executor", "local")
    assert res.code == 2 and message in res.err, res.err


def test_missing_endpoint_or_key_in_the_environment_is_refused_before_submitting(cli, spec_file, tmp_path, monkeypatch):
    preds = write_predictions(tmp_path / "p.jsonl", [prediction(0)])
    path = spec_file("j", spec_text(f"{{files: [{preds}]}}"))
    for var in ("ORCH_JUDGE_BASE_URL", "ORCH_JUDGE_MODEL", KEY_ENV):
        monkeypatch.delenv(var, raising=False)
    res = cli("submit", path, "--executor", "local")
    assert res.code == 2
    for var in ("ORCH_JUDGE_BASE_URL", "ORCH_JUDGE_MODEL", KEY_ENV):
        assert f"${var}" in res.err
    assert not paths.registry_file().exists() or "j" not in cli("status", "--json").out
    # a rule-based judge needs none of them
    assert (
        cli(
            "submit",
            spec_file("r", spec_text(f"{{files: [{preds}]}}", ", type: exact")),
            "--dry-run",
            "--executor",
            "local",
        ).code
        == 0
    )


def test_shipped_spec_renders_without_key_endpoint_or_inputs(cli, monkeypatch):
    """Rendering is pure: no key, endpoint or model exported, and the input experiment does not exist."""
    for var in ("OPENAI_API_KEY", "ORCH_JUDGE_BASE_URL", "ORCH_JUDGE_MODEL"):
        monkeypatch.delenv(var, raising=False)
    res = cli("render", "judge-tagging")
    assert res.code == 0, res.err
    assert "#SBATCH" in res.out and "submitit.core._submit" in res.out
    res = cli("submit", "judge-tagging", "--executor", "local")  # submitting checks the world
    assert res.code == 2
    for problem in ("$OPENAI_API_KEY", "$ORCH_JUDGE_BASE_URL", "$ORCH_JUDGE_MODEL", "no predictions.jsonl under"):
        assert problem in res.err, res.err
    assert not paths.registry_file().exists() or "judge-tagging" not in cli("status", "--json").out


def test_shipped_spec_renders_and_holds_no_key(cli, tmp_path, judge_env, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    preds = write_predictions(tmp_path / "p.jsonl", mixed(3))
    res = cli(
        "submit",
        "judge-tagging",
        "--dry-run",
        "--executor",
        "slurm" if _has_sbatch() else "local",
        "--set",
        f"inputs={{files: [{preds}]}}",
        "--set",
        "num_workers=3",
    )
    assert res.code == 0, res.err
    assert "stage judge: submit 1 job" in res.out and "submitit.core._submit" in res.out
    assert KEY not in res.out


def _has_sbatch() -> bool:
    import shutil

    return shutil.which("sbatch") is not None


def test_vllm_server_template(spec_file, tmp_path, orch_home, judge_env):
    preds = [write_predictions(tmp_path / f"r{i}" / "predictions.jsonl", [prediction(i)]) for i in range(2)]
    path = spec_file(
        "jv",
        spec_text(
            f"{{files: [{preds[0]}, {preds[1]}]}}",
            ", model: judge, server: {model: '/models/my judge', port_base: 21000, "
            "args: [--max-model-len, '4096', '--dtype=bfloat16']}",
        ),
    )
    spec = load_spec(path)
    (stage,) = stages_of(spec)
    script = render_stage(spec.name, stage)
    assert (
        f"{shlex.quote(python_for(stage))} -m vllm.entrypoints.openai.api_server --model '/models/my judge' --served-model-name judge"
        in script
    )
    assert '--host 127.0.0.1 --port "${judge_port}" --max-model-len 4096 --dtype=bfloat16' in script
    assert "judge_port=$(( 21000 + ${SLURM_JOB_ID:-0} % 1000 ))" in script
    assert 'export ORCH_JUDGE_BASE_URL="http://127.0.0.1:${judge_port}/v1"' in script
    assert '"${ORCH_JUDGE_BASE_URL}/models"' in script and "did not answer" in script
    assert script.index("judge server ready") < script.index("submitit.core._submit")  # wait, then judge
    assert "#SBATCH --array=0-1%2" in script
    assert "#SBATCH --signal=USR2@120" in script  # requeued at the time limit; resumes from judged.jsonl
    assert KEY not in script and KEY_ENV not in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)  # valid shell
    # the job may run without a key against its own server
    assert all(u.args.config.key_required is False and u.args.config.base_url is None for u in stage.units)


def test_local_executor_end_to_end(cli, spec_file, tmp_path, orch_home, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    preds = write_predictions(tmp_path / "tiny__mixed" / "predictions.jsonl", mixed(9))
    with ChatServer(key=KEY) as server:
        path = spec_file(
            "jl",
            spec_text(f"{{files: [{preds}]}}", f", base_url: '{server.url}', model: judge-model", "num_workers: 3"),
        )
        res = cli("submit", path, "--executor", "local")
        assert res.code == 0, res.err
        t = wait_final("jl", timeout=120)["tiny__mixed"]
    assert t.state == "COMPLETED", t.reason
    judged = read_jsonl(paths.run_dir("jl", "tiny__mixed") / paths.JUDGED_FILE)
    assert len(judged) == 9 and sum(r["verdict"]["correct"] for r in judged) == 6
    assert server.max_in_flight <= 3
    leaked = [p for p in orch_home.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaked == []


def test_experiment_with_unfinished_runs_is_waited_for(spec_file, orch_home, judge_env):
    import os

    from orchestrator.core.registry import Registry

    write_predictions(paths.run_dir("infer", "tiny__gsm8k") / paths.PREDICTIONS_FILE, [prediction(0)])
    reg = Registry()
    reg.add_experiment("infer", "inference", "", "{}")
    # local jobs whose controller (this process) is alive and has not finished: still running;
    # tiny__coqa has written nothing yet, `prepare` will write no predictions at all
    reg.add_job(
        str(os.getpid()),
        "local",
        "infer",
        "infer",
        str(orch_home),
        None,
        [("tiny__gsm8k", [paths.PREDICTIONS_FILE]), ("tiny__coqa", [paths.PREDICTIONS_FILE])],
        [],
    )
    reg.add_job(str(os.getpid()), "local", "infer", "prepare", str(orch_home), None, [("prepare", ["model"])], [])
    reg.close()
    (stage,) = stages_of(load_spec(spec_file("j", spec_text("{experiment: infer}"))))
    assert [u.run for u in stage.units] == ["tiny__coqa", "tiny__gsm8k"]
    assert stage.after_runs == ("infer/tiny__coqa", "infer/tiny__gsm8k")
    assert stage.units[0].args.predictions == str(paths.run_dir("infer", "tiny__coqa") / paths.PREDICTIONS_FILE)


def test_submit_refuses_a_run_that_ended_without_predictions(spec_file, orch_home, judge_env):
    """The plan reads the registry as recorded (no scheduler call); submit brings it up to date and
    refuses to judge a run that has ended without writing its predictions."""
    import subprocess
    import sys

    from orchestrator.core.registry import Registry

    write_predictions(paths.run_dir("infer", "tiny__gsm8k") / paths.PREDICTIONS_FILE, [prediction(0)])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a local controller that has exited without writing anything
    reg = Registry()
    reg.add_experiment("infer", "inference", "", "{}")
    reg.add_job(
        str(gone.pid), "local", "infer", "infer", str(orch_home), None, [("tiny__coqa", [paths.PREDICTIONS_FILE])], []
    )
    reg.close()
    spec = load_spec(spec_file("j", spec_text("{experiment: infer}")))
    (stage,) = stages_of(spec)
    assert [u.run for u in stage.units] == ["tiny__coqa", "tiny__gsm8k"]  # as recorded: still pending
    with pytest.raises(SpecError, match="tiny__coqa of 'infer' ended without predictions.jsonl"):
        spec.check_submit()
    only = load_spec(spec_file("j2", spec_text("{experiment: infer, runs: [tiny__gsm8k]}")))
    only.check_submit()  # the ended run is not asked for
