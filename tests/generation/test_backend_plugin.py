"""A backend from another installed package (entry point group `orchestrator.backends`) is
accepted wherever a backend is named, and generates text through the one loop; an unknown name
is refused listing the registered backends."""

from __future__ import annotations

import json

import pytest

from helpers import FIXTURES
from orchestrator.core.errors import SpecError, UserError
from orchestrator.core.spec import load_spec
from orchestrator.generation import backends
from orchestrator.generation.models import ModelConfig, load_model
from orchestrator.generation.tasks import load_task
from orchestrator.kinds.eval.spec import EvalSpec
from orchestrator.kinds.inference.job import run_inference
from orchestrator.kinds.train.config import Rollout

ECHO = '''
from orchestrator.generation.backends.base import Generation


class EchoBackend:
    """Answers every prompt with its last word."""

    def __init__(self, model, batch_size=8, device="auto", **options):
        self.model = model

    def generate(self, requests):
        return [Generation(r.id, r.prompt.split()[-1], completion_tokens=1, finish_reason="stop") for r in requests]

    def close(self):
        pass
'''


@pytest.fixture
def echo_installed(tmp_path, monkeypatch):
    """A package `echo_backend` installed the way pip leaves it: a module and a .dist-info whose
    entry_points.txt registers `echo` in the group orchestrator.backends."""
    site = tmp_path / "site"
    (site / "echo_backend").mkdir(parents=True)
    (site / "echo_backend" / "__init__.py").write_text(ECHO)
    info = site / "echo_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-backend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[orchestrator.backends]\necho = echo_backend:EchoBackend\n")
    monkeypatch.syspath_prepend(str(site))
    backends.registered.cache_clear()
    yield
    backends.registered.cache_clear()


def test_an_entry_point_backend_is_accepted_by_every_kind_that_generates_text(
    echo_installed, tmp_path, spec_file, orch_home
):
    assert "echo" in backends.registered()
    model = {"name": "echo-model", "path": str(tmp_path / "no-weights"), "backend": "echo"}
    assert load_model(model).backend == "echo" and not load_model(model).remote
    qa = {"task": "qa", "dataset": {"data_files": str(FIXTURES / "inference" / "qa.jsonl")}}
    # inference: a model config naming it, and the spec-wide override
    spec = load_spec(
        spec_file("echo", f"kind: inference\nbackend: echo\nmodels: [{json.dumps(model)}]\ntasks: [{json.dumps(qa)}]\n")
    )
    assert [u.args.backend for s in spec.plan() for u in s.units] == ["echo"]
    # evaluation of checkpoints and training rollouts name backends too
    assert EvalSpec.model_validate({"experiment": "x", "backend": "echo"}).backend == "echo"
    with pytest.raises(ValueError, match="'echo' has no rollout worker; rollouts run on: transformers, vllm"):
        Rollout.model_validate({"backend": "echo"})
    # and the job generates with it, through the one generate → score → write loop
    run_dir = tmp_path / "run"
    assert run_inference(str(run_dir), "e", model=model, task=load_task(qa).model_dump(mode="json"), limit=2) == 0
    records = [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["prediction"] == r["prompt"].split()[-1] for r in records)


def test_an_unknown_backend_is_refused_listing_the_registered_ones(spec_file, orch_home):
    with pytest.raises(ValueError, match=r"backend 'echo' is unknown; registered backends: openai, transformers, vllm"):
        ModelConfig(name="m", path="/x", backend="echo")
    qa = {"task": "qa", "dataset": {"data_files": str(FIXTURES / "inference" / "qa.jsonl")}}
    text = f"kind: inference\nbackend: echo\nmodels: [{{name: m, path: /x}}]\ntasks: [{json.dumps(qa)}]\n"
    with pytest.raises(SpecError, match=r"backend: backend 'echo' is unknown; registered backends: openai, tr"):
        load_spec(spec_file("bad", text))
    with pytest.raises(SpecError, match="'openai' calls an API: name it in a model config"):
        load_spec(spec_file("api", text.replace("backend: echo", "backend: openai")))
    with pytest.raises(UserError, match="unknown"):
        backends.load_backend("echo", ModelConfig(name="m", path="/x"))
    assert Rollout.model_validate({"backend": "hf"}).backend == "transformers"  # the name specs used before
