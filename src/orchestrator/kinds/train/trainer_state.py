"""trainer_state.pt: what a resumed arm needs beyond the weights (checkpoint.py writes the file).

Optimizers, critic, RNG states, epoch, step, data position, early stopping (validation's and the
held-out one's: the evaluation results consumed so far), wall time, last metrics.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from orchestrator.kinds.train import checkpoint, distributed
from orchestrator.kinds.train.early_stop import EarlyStopping


def gather(trainer, epoch: int) -> dict:
    """The state after `epoch`; every learner takes part (whole tensors are gathered from shards)."""
    t, has_critic = trainer, trainer.critic is not None
    optimizer = distributed.optimizer_state(t.policy, t.optimizer)
    critic = distributed.full_state_dict(t.critic) if has_critic else None
    critic_optimizer = distributed.optimizer_state(t.critic, t.critic_optimizer) if has_critic else None
    return {
        "epoch": epoch,
        "step": t.step,
        "optimizer": optimizer,
        "critic": critic,
        "critic_optimizer": critic_optimizer,
        "learners": t.world.size,
        "rng": {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "mtl": t.aggregator.generator.get_state() if t.aggregator is not None else None,
        },
        "data_position": {"next_epoch": epoch + 1, "batch": 0},
        "early_stopping": t.early_stopping.to_dict(),
        "wall_time_s": t.wall_time_s,
        "last_val": t.last_val,
        "last_metrics": t.last_metrics,
        "heldout": t.heldout.state.to_dict() if t.heldout is not None else None,
    }


def restore(trainer, directory: Path) -> None:
    t = trainer
    state, _ = checkpoint.load_state(directory)
    t.resumed_state = state
    distributed.load_optimizer_state(t.policy, t.optimizer, state["optimizer"])
    if t.critic is not None:
        distributed.load_full_state_dict(t.critic, state["critic"])
        distributed.load_optimizer_state(t.critic, t.critic_optimizer, state["critic_optimizer"])
    t.epoch, t.step, t.wall_time_s = state["epoch"], state["step"], state["wall_time_s"]
    t.last_val, t.last_metrics = state["last_val"], state["last_metrics"]
    t.early_stopping = EarlyStopping.from_dict(state["early_stopping"])
    if t.aggregator is not None and state["rng"].get("mtl") is not None:
        t.aggregator.generator.set_state(state["rng"]["mtl"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
