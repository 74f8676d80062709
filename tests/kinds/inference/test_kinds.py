"""The inference and sweep kinds: GPU counts per model, arrays per resource shape, skipping,
options as spec keys (--set), and real runs through the test cluster on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import FIXTURES
from orchestrator.core.plan import stages_of
from orchestrator.core.spec import load_spec

FIX = FIXTURES / "inference"
NINE = {
    "llama-3.2-1b-8bit": 1,
    "qwen2.5-1.5b-8bit": 1,
    "mistral-7b-v0.3-8bit": 1,
    "llama-3.1-8b-fp16": 1,
    "qwen3-8b": 1,
    "mistral-7b-instruct-v0.3": 1,
    "llama-3.1-70b": 4,
    "qwen2.5-72b-4bit": 1,  # transformers + bitsandbytes 4-bit, ~56 GB
    "mistral-large-2407": 4,
}


def gpus_by_run(spec) -> dict[str, int]:
    return {u.run: s.resources.gpus_per_node for s in stages_of(spec) for u in s.units}


def test_coqa_sweep_dry_run_renders_nine_models_with_their_gpus(cli, orch_home):
    res = cli("submit", "coqa-sweep", "--dry-run", "--executor", "slurm")
    assert res.code == 0, res.err
    assert "stage infer-1gpu: submit array of 7" in res.out and "stage infer-4gpu: submit array of 2" in res.out
    assert res.out.count("#SBATCH --gpus-per-node=4") == 1 and res.out.count("#SBATCH --gpus-per-node=1") == 1
    spec = load_spec("coqa-sweep")
    assert gpus_by_run(spec) == {f"{m}__coqa": g for m, g in NINE.items()}
    unit = next(u for s in stages_of(spec) for u in s.units if u.run == "mistral-large-2407__coqa")
    assert unit.args.model.quantization == "awq" and unit.args.model.tensor_parallel_size == 4
    assert unit.outputs == ("predictions.jsonl", "results.json", "summary.json")
    assert not (orch_home / "logs" / "coqa-sweep" / "_jobs").exists()  # nothing submitted


@pytest.mark.vllm
def test_coqa_sweep_passes_the_submit_checks_of_the_installed_engines(orch_home):
    """Every model's quantization is one its engine runs: the vLLM ones name methods the installed
    vLLM lists (nothing of the seed study is refused), the rest are bitsandbytes widths."""
    spec = load_spec("coqa-sweep")
    spec.check_submit()
    assert len(spec.selected_models()) == 9


def test_sweep_skips_models_that_cannot_fit_with_a_reason(cli, orch_home):
    res = cli("submit", "coqa-sweep", "--dry-run", "--executor", "slurm", "--set", "gpu_memory_gb=16")
    assert res.code == 0, res.err
    assert "skipping mistral-large-2407" in res.err and "needs 5 GPUs of 16 GB; at most 4" in res.err
    gpus = gpus_by_run(load_spec("coqa-sweep", ["gpu_memory_gb=16"]))
    assert "mistral-large-2407__coqa" not in gpus and len(gpus) == 8
    assert gpus["llama-3.1-8b-fp16__coqa"] == 2 and gpus["llama-3.1-70b__coqa"] == 4  # 20 GB → 2 × 16 GB
    # 16 GB GPUs: the fp16 7–8B models need 2 (one array), the 8-bit 1–7B ones 1 (another)
    assert "stage infer-2gpu: submit array of 3" in res.out and "stage infer-1gpu: submit array of 3" in res.out


def test_inference_kind_refuses_a_model_that_cannot_fit(cli, spec_file):
    path = spec_file(
        "big", "kind: inference\nmodels: [mistral-large-2407]\ntasks: [coqa]\nmax_gpus: 2\ntensor_parallel_size: 4\n"
    )
    assert cli("submit", path, "--dry-run").code == 2  # unknown key
    path = spec_file("big", "kind: inference\nmodels: [mistral-large-2407]\ntasks: [coqa]\nmax_gpus: 2\n")
    res = cli("submit", path, "--dry-run", "--executor", "slurm")
    assert res.code == 2 and "mistral-large-2407" in res.err and "at most 2" in res.err


def test_options_are_spec_keys_overridable_with_set(orch_home):
    spec = load_spec("coqa-sweep", ["only_models=[qwen2.5-1.5b-8bit, llama-3.1-70b]", "limit=5", "smoke=true"])
    units = [u for s in stages_of(spec) for u in s.units]
    assert sorted(u.run for u in units) == ["llama-3.1-70b__coqa", "qwen2.5-1.5b-8bit__coqa"]
    assert all(u.args.limit == 5 and u.args.smoke is True for u in units)
    done = orch_home / "logs" / "coqa-sweep" / "qwen2.5-1.5b-8bit__coqa"
    done.mkdir(parents=True)
    (done / "summary.json").write_text("{}")
    spec = load_spec("coqa-sweep", ["only_models=[qwen2.5-1.5b-8bit, llama-3.1-70b]", "skip_existing=true"])
    assert [u.run for s in stages_of(spec) for u in s.units] == ["llama-3.1-70b__coqa"]


@pytest.mark.parametrize(
    "text,needle",
    [
        ("models: [nope]\ntasks: [coqa]", "models[0] (nope)"),
        ("models: [tiny]\ntasks: [nope]", "tasks[0] (nope)"),
        ("models: [tiny]\ntasks: [coqa]\nonly_models: [other]", "only_models: other not in models"),
        ("models: [tiny, tiny]\ntasks: [coqa]", "tiny listed twice"),
        ("models: [{config: tiny, quantization: 3bit}]\ntasks: [coqa]", "quantization"),
        ("models: [tiny]\ntasks: [{task: coqa, prompt: '{{ story '}]", "jinja syntax error"),
        ("models: [tiny]\ntasks: [{task: coqa, dataset: {data_files: x.txt}}]", "not supported"),
    ],
)
def test_bad_specs_exit_2_naming_the_field(cli, spec_file, text, needle):
    res = cli("submit", spec_file("bad", "kind: sweep\n" + text + "\n"), "--dry-run")
    assert res.code == 2 and needle in res.err, res.err


def _tiny_spec(spec_file, name: str, tasks: str) -> Path:
    return spec_file(
        name,
        f"""\
kind: inference
models: [tiny]
tasks:
{tasks}
device: cpu
limit: 3
batch_size: 2
wandb: {{enabled: false}}
resources: {{time: "15", mem: 2G}}
""",
    )


@pytest.mark.slurm
@pytest.mark.slow
def test_coqa_and_boolq_medqa_math_runs_through_slurm(cli, spec_file, slurm_home):
    from helpers import wait_final

    tasks = "".join(
        f"  - {{task: {t}, dataset: {{data_files: {FIX / f}}}, generation: {{max_new_tokens: 6}}}}\n"
        for t, f in [
            ("coqa", "coqa-dev.json"),
            ("boolq", "boolq.jsonl"),
            ("medqa", "medqa.jsonl"),
            ("math", "math.jsonl"),
        ]
    )
    path = _tiny_spec(spec_file, "tinyinf", tasks)
    res = cli("submit", path, "--executor", "slurm")
    assert res.code == 0, res.err
    assert "stage infer-cpu: array of 4" in res.out
    final = wait_final("tinyinf", timeout=600)
    assert {r: t.state for r, t in final.items()} == {
        f"tiny__{t}": "COMPLETED" for t in ("coqa", "boolq", "medqa", "math")
    }
    for task, metrics in [
        ("coqa", {"em", "f1", "em_in_domain", "f1_in_domain"}),  # mctest and cnn stories: in-domain
        ("boolq", {"accuracy"}),
        ("medqa", {"accuracy"}),
        ("math", {"accuracy"}),
    ]:
        run = slurm_home / "logs" / "tinyinf" / f"tiny__{task}"
        summary = json.loads((run / "summary.json").read_text())
        assert summary["n"] == 3 and set(summary["metrics"]) == metrics
        assert len((run / "predictions.jsonl").read_text().splitlines()) == 3
    assert (slurm_home / "models" / "tiny" / "config.json").exists()  # built by the first job
    status = cli("status", "tinyinf")  # the pass/fail table: 4 completed, 0 failed
    assert status.code == 0 and "COMPLETED" in status.out and "4/0/0/4" in status.out
