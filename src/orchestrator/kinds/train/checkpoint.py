"""What training adds to the checkpoint contract (core/checkpoints.py: complete, latest, best,
pins, retention): the files of one checkpoint and reading them back to resume.

    epoch_<N>/   HF files (from_pretrained as is), trainer_state.pt (what resuming needs),
                 meta.json (written last, by core's `write`)
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.core import checkpoints, paths
from orchestrator.core.errors import UserError
from orchestrator.core.records import CheckpointMeta


def save(
    experiment: str,
    arm: str,
    epoch: int,
    model,
    tokenizer,
    trainer_state: dict,
    meta: dict,
    best: bool = False,
    state_dict: dict | None = None,
) -> Path:
    """Write epoch_<epoch>/ atomically, then point `latest` (and `best` if `best`) at it.

    state_dict: the model's whole weights when `model` itself holds only a shard (FSDP)."""
    import torch

    def fill(directory: Path) -> None:
        model.save_pretrained(directory, state_dict=state_dict)
        tokenizer.save_pretrained(directory)
        torch.save(trainer_state, directory / paths.CHECKPOINT_STATE)

    return checkpoints.write(experiment, arm, epoch, fill, meta, best)


def load_state(directory: Path) -> tuple[dict, dict]:
    """(trainer state, meta) of a checkpoint, for resuming."""
    import torch

    state_file = directory / paths.CHECKPOINT_STATE
    if not state_file.is_file():
        raise UserError(f"cannot resume from {directory}: no {paths.CHECKPOINT_STATE} (not written by the trainer)")
    state = torch.load(state_file, map_location="cpu", weights_only=False)
    return state, CheckpointMeta.read(directory / paths.CHECKPOINT_META).model_dump(exclude_unset=True)
