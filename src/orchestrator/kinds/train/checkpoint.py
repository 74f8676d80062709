"""Checkpoints: checkpoints/<experiment>/<arm>/epoch_<N>/ plus `latest` and `best` pointers.

A checkpoint directory is written under a temporary name and renamed into place, and the
`latest` pointer (a text file naming the directory) is replaced after it, so a kill at any moment
leaves the previous complete checkpoint as `latest`. The directory loads with
`from_pretrained` as is (model + tokenizer); `trainer_state.pt` holds what resuming needs
(optimizers, critic, RNG states, epoch, step, data position, early stopping); `meta.json`
describes it for evaluation jobs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from orchestrator.core import paths

EPOCH_RE = re.compile(r"^epoch_(\d+)$")


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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

    final = paths.checkpoint_dir(experiment, arm, epoch)
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, state_dict=state_dict)
    tokenizer.save_pretrained(tmp)
    torch.save(trainer_state, tmp / "trainer_state.pt")
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    for f in tmp.iterdir():
        with open(f, "rb+") as fh:
            os.fsync(fh.fileno())
    if final.exists():  # the same epoch saved again (a resumed run redoing it): replace
        old = root / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    if best:
        _write_text_atomic(paths.best_checkpoint_file(experiment, arm), final.name + "\n")
    _write_text_atomic(paths.latest_checkpoint_file(experiment, arm), final.name + "\n")
    return final


def _pointer(file: Path) -> Path | None:
    try:
        name = file.read_text().strip()
    except OSError:
        return None
    target = file.parent / name
    return target if EPOCH_RE.match(name) and (target / "trainer_state.pt").is_file() else None


def latest(experiment: str, arm: str) -> Path | None:
    """The newest complete checkpoint, or None."""
    return _pointer(paths.latest_checkpoint_file(experiment, arm))


def best(experiment: str, arm: str) -> Path | None:
    return _pointer(paths.best_checkpoint_file(experiment, arm))


def epochs(experiment: str, arm: str) -> list[int]:
    root = paths.arm_checkpoints_dir(experiment, arm)
    if not root.is_dir():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir() if (m := EPOCH_RE.match(p.name)) and p.is_dir())


def prune(experiment: str, arm: str, keep_last: int) -> list[int]:
    """Delete checkpoints other than the last `keep_last` and the best; leftovers of interrupted
    writes too. Returns the epochs deleted."""
    root = paths.arm_checkpoints_dir(experiment, arm)
    for p in root.glob(".epoch_*"):
        shutil.rmtree(p, ignore_errors=True)
    keep = set(epochs(experiment, arm)[-keep_last:])
    for pointer in (latest(experiment, arm), best(experiment, arm)):
        if pointer is not None:
            keep.add(int(EPOCH_RE.match(pointer.name).group(1)))
    gone = [e for e in epochs(experiment, arm) if e not in keep]
    for e in gone:
        shutil.rmtree(paths.checkpoint_dir(experiment, arm, e), ignore_errors=True)
    return gone


def load_state(directory: Path) -> tuple[dict, dict]:
    import torch

    state = torch.load(directory / "trainer_state.pt", map_location="cpu", weights_only=False)
    return state, json.loads((directory / "meta.json").read_text())
