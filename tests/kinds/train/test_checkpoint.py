"""Training's checkpoints: HF-loadable model + tokenizer and trainer state through the contract's
atomic writer and retention (core/checkpoints.py), and back for resuming."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from orchestrator.core import checkpoints, paths
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
        checkpoints.prune("exp", "arm", keep_last=2)
    assert checkpoints.epochs("exp", "arm") == [2, 4, 5]  # last two plus the best
    assert checkpoints.latest("exp", "arm") == paths.checkpoint_dir("exp", "arm", 5)
    assert checkpoints.best("exp", "arm") == paths.checkpoint_dir("exp", "arm", 2)
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
    assert checkpoints.latest("exp", "arm").name == "epoch_1"
    checkpoints.prune("exp", "arm", keep_last=3)
    assert not half.exists()
    # a pointer naming a directory without trainer state is not trusted
    paths.latest_checkpoint_file("exp", "arm").write_text("epoch_9\n")
    assert checkpoints.latest("exp", "arm") is None


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
