"""The train kind's entry points (what a unit runs inside its job) and their typed arguments.

    prepare       tiny preset's first stage: a tiny random model and synthetic verl parquet data
    train_entry   one arm: PPOTrainer setup / train / cleanup (kinds/train/recipe.py)

The spec builds each unit's arguments as the model declared here (validated when the plan is
made); the runner passes its fields as keyword arguments. This module stays light (the spec
imports it while rendering): the trainer, torch and transformers load when an entry point runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import Field

from orchestrator.core import paths
from orchestrator.core.plan import UnitArgs
from orchestrator.generation.tiny import build_model
from orchestrator.kinds.train.config import TrainConfig
from orchestrator.kinds.train.data import SPLITS, write_synthetic


class PrepareArgs(UnitArgs):
    domains: list[str] = Field(min_length=1)
    tiny_model: dict[str, int] = Field(default_factory=dict)  # kwargs of generation.tiny.build_model
    n_train: int = Field(ge=1)
    n_val: int = Field(ge=1)
    n_heldout: int = Field(32, ge=1)  # the held-out split (demo suite), prompts in neither train nor val
    seed: int = 0

    def outputs(self) -> tuple[str, ...]:
        """The files that prove the stage finished, relative to its run dir."""
        here = Path()
        return (
            str(paths.prepared_model(here) / "config.json"),
            *(str(paths.prepared_data(here, d, s)) for d in self.domains for s in SPLITS),
        )

    def describe(self) -> str:
        return (
            f"tiny model + synthetic data for {', '.join(self.domains)} "
            f"({self.n_train} train / {self.n_val} val / {self.n_heldout} held-out rows each), CPU"
        )


def prepare(
    run_dir: str,
    experiment: str,
    domains: list[str],
    tiny_model: dict[str, int],
    n_train: int,
    n_val: int,
    seed: int,
    n_heldout: int = 32,
) -> int:
    """Tiny preset's first stage: a tiny random model and synthetic verl parquet files
    (train and val for the trainer, heldout for the demo suite)."""
    build_model(paths.prepared_model(Path(run_dir)), seed=seed, **tiny_model)
    for i, d in enumerate(domains):
        write_synthetic(d, Path(run_dir), n_train, n_val, seed + i, n_heldout)
    print(f"prepared {run_dir}: model/ and data/ for {', '.join(domains)}", file=sys.stderr)
    return 0


class TrainArgs(UnitArgs):
    arm: str
    config: dict[str, Any]  # the arm's TrainConfig (shared config + the arm's overrides), as JSON
    layout: str = ""  # where the work runs (learners, GPUs, rollout workers), printed by the job

    def train_config(self) -> TrainConfig:
        return TrainConfig.model_validate(self.config)

    def describe(self) -> str:
        cfg = self.train_config()
        method = cfg.mtl.method if cfg.mtl.enabled else "summed domain gradients"
        steps = f"{cfg.algorithm.advantage.upper()}, {method}, {cfg.trainer.epochs} epoch(s)"
        return f"arm {self.arm}: {steps}, model {cfg.model}; {self.layout}"


def train_entry(run_dir: str, experiment: str, arm: str, config: dict, layout: str = "") -> int:
    """One arm of a training experiment, resumed from its latest complete checkpoint if any."""
    from orchestrator.kinds.train.recipe import PPOTrainer  # torch, transformers: in the job only

    if layout:
        print(f"arm {arm}: {layout}", file=sys.stderr, flush=True)
    trainer = PPOTrainer(TrainConfig.model_validate(config), experiment, arm, run_dir)
    ok = False
    try:
        trainer.setup()
        trainer.train()
        ok = True
    finally:
        trainer.cleanup(ok)
    return 0
