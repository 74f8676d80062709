"""Checkpoint layout, atomic pointers and retention (last K plus the best)."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from orchestrator.core import paths
from orchestrator.generation.tiny import build_model
from orchestrator.kinds.train import checkpoint


def _model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = build_model(tmp_path / "m", hidden=16, layers=1, heads=2)
    return AutoModelForCausalLM.from_pretrained(p), AutoTokenizer.from_pretrained(p)


def test_save_layout_pointers_and_retention(orch_home, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = _model(tmp_path)
    for epoch in (1, 2, 3, 4, 5):
        with torch.no_grad():
            next(model.parameters()).add_(1.0)  # each epoch's weights differ
        checkpoint.save(
            "exp", "arm", epoch, model, tok, {"epoch": epoch}, {"epoch": epoch, "step": epoch * 10}, best=(epoch == 2)
        )
        checkpoint.prune("exp", "arm", keep_last=2)
    assert checkpoint.epochs("exp", "arm") == [2, 4, 5]  # last two plus the best
    assert checkpoint.latest("exp", "arm") == paths.checkpoint_dir("exp", "arm", 5)
    assert checkpoint.best("exp", "arm") == paths.checkpoint_dir("exp", "arm", 2)
    assert paths.latest_checkpoint_file("exp", "arm").read_text().strip() == "epoch_5"
    d = paths.checkpoint_dir("exp", "arm", 5)
    # loadable as is: model + tokenizer, and the trainer state / metadata beside them
    loaded = AutoModelForCausalLM.from_pretrained(d)
    assert torch.equal(next(loaded.parameters()), next(model.parameters()))
    assert AutoTokenizer.from_pretrained(d)("ab")["input_ids"] == tok("ab")["input_ids"]
    state, meta = checkpoint.load_state(d)
    assert state == {"epoch": 5} and meta == {"epoch": 5, "step": 50}
    assert json.loads((d / "meta.json").read_text())["step"] == 50
    assert not list(d.parent.glob(".epoch_*"))  # no temporary directories left


def test_incomplete_checkpoint_is_never_latest(orch_home, tmp_path):
    model, tok = _model(tmp_path)
    checkpoint.save("exp", "arm", 1, model, tok, {"epoch": 1}, {"epoch": 1})
    # a kill during the next save leaves a temporary directory and the old pointer
    half = paths.arm_checkpoints_dir("exp", "arm") / ".epoch_2.tmp-999"
    half.mkdir()
    (half / "config.json").write_text("{}")
    assert checkpoint.latest("exp", "arm").name == "epoch_1"
    checkpoint.prune("exp", "arm", keep_last=3)
    assert not half.exists()
    # a pointer naming a directory without trainer state is not trusted
    paths.latest_checkpoint_file("exp", "arm").write_text("epoch_9\n")
    assert checkpoint.latest("exp", "arm") is None


@pytest.mark.parametrize("mask", [0o002, 0o077])
def test_checkpoint_files_get_the_callers_umask(orch_home, tmp_path, mask):
    """safetensors writes the weights through a private temp file; a checkpoint in a group
    directory must still be readable (and prunable) by the group under umask 002."""
    old = os.umask(mask)
    try:
        model, tok = _model(tmp_path)
        checkpoint.save("exp", "arm", 1, model, tok, {"epoch": 1}, {"epoch": 1}, best=True)
    finally:
        os.umask(old)
    arm = paths.arm_checkpoints_dir("exp", "arm")
    modes = {p.relative_to(arm).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in arm.rglob("*") if p.is_file()}
    assert {"epoch_1/model.safetensors", "epoch_1/trainer_state.pt", "epoch_1/meta.json", "latest", "best"} <= set(
        modes
    )
    assert {n: oct(m) for n, m in modes.items() if m != 0o666 & ~mask} == {}


def test_optimizer_state_is_keyed_by_parameter_name_and_old_checkpoints_still_load():
    from orchestrator.kinds.train import distributed

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    named = distributed.optimizer_state(model, opt)
    assert list(named["state"]) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert named["param_groups"][0]["params"] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    for saved in (named, opt.state_dict()):  # ours, and torch's index-keyed one (checkpoints before it)
        fresh = torch.optim.AdamW(model.parameters(), lr=0.1)
        distributed.load_optimizer_state(model, fresh, saved)
        for p in model.parameters():
            assert torch.equal(fresh.state[p]["exp_avg"], opt.state[p]["exp_avg"])
            assert torch.equal(fresh.state[p]["exp_avg_sq"], opt.state[p]["exp_avg_sq"])


def _fake(experiment: str, arm: str, epoch: int, reward: float, meta: bool = True) -> None:
    """A checkpoint directory as a writer that does not rename leaves it (meta.json last)."""
    d = paths.checkpoint_dir(experiment, arm, epoch)
    d.mkdir(parents=True)
    if meta:
        (d / paths.CHECKPOINT_META).write_text(json.dumps({"epoch": epoch, "metrics": {"val/reward_mean": reward}}))


def test_one_reader_complete_latest_best(orch_home):
    """The rules of checkpoint.read_arm, which the trainer, discovery and evaluation share."""
    for epoch, reward in ((1, 0.1), (2, 0.5), (3, 0.3)):
        _fake("exp", "arm", epoch, reward)
    _fake("exp", "arm", 4, 0.9, meta=False)  # no meta.json: being written, never complete
    found = checkpoint.read_arm("exp", "arm")
    assert [c.name for c in found.complete] == ["epoch_1", "epoch_2", "epoch_3"]
    assert any("epoch_4" in n for n in found.notes)
    # no pointers: latest is the highest complete epoch, best the best meta.json metric
    assert (found.latest.name, found.best.name) == ("epoch_3", "epoch_2")
    assert checkpoint.epochs("exp", "arm") == [1, 2, 3]
    # the training summary's best epoch beats the metric; the trainer's `best` pointer beats both
    summary = paths.run_dir("exp", "arm") / paths.SUMMARY_FILE
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps({"best": {"epoch": 1}}))
    assert checkpoint.read_arm("exp", "arm").best.name == "epoch_1"
    paths.best_checkpoint_file("exp", "arm").write_text("epoch_3\n")
    assert checkpoint.best("exp", "arm").name == "epoch_3"
    # the `latest` pointer names the latest; one naming no complete checkpoint gives none, and says so
    paths.latest_checkpoint_file("exp", "arm").write_text("epoch_2\n")
    assert checkpoint.latest("exp", "arm").name == "epoch_2"
    paths.latest_checkpoint_file("exp", "arm").write_text("epoch_4\n")
    found = checkpoint.read_arm("exp", "arm")
    assert found.latest is None and any("'latest' names 'epoch_4'" in n for n in found.notes)
    # retention keeps the last K, the latest and the best, and never touches what is being written
    paths.latest_checkpoint_file("exp", "arm").write_text("epoch_3\n")
    paths.best_checkpoint_file("exp", "arm").write_text("epoch_1\n")
    assert checkpoint.prune("exp", "arm", keep_last=1) == [2]
    assert checkpoint.epochs("exp", "arm") == [1, 3] and paths.checkpoint_dir("exp", "arm", 4).is_dir()
