"""Training data in verl's parquet schema, and the synthetic domains of the tiny preset.

One row: {"data_source": str, "prompt": [{"role", "content"}, ...], "ability": str,
"reward_model": {"style": "rule", "ground_truth": str}, "extra_info": {"index": int, ...}}.
Existing verl files load as they are; only `prompt` and `reward_model.ground_truth` are required.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.core import files, paths
from orchestrator.core.errors import UserError


@dataclass(frozen=True)
class Example:
    domain: str  # the spec's domain name (the reward function is chosen by it)
    index: int  # position in its file: a stable id across epochs and resumes
    messages: list[dict]  # chat messages, as in verl's `prompt`
    ground_truth: str
    data_source: str


def load_verl_parquet(path: str | Path, domain: str, limit: int | None = None) -> list[Example]:
    """Rows of a verl-style parquet file as Examples (through datasets.load_dataset)."""
    import datasets

    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file for domain {domain!r} not found: {path}")
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
    missing = {"prompt", "reward_model"} - set(ds.column_names)
    if missing:
        raise UserError(f"{path}: missing verl columns {sorted(missing)} (have {ds.column_names})")
    out = []
    for i, row in enumerate(ds):
        if limit is not None and i >= limit:
            break
        prompt = row["prompt"]
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        out.append(
            Example(domain, i, messages, str(row["reward_model"]["ground_truth"]), row.get("data_source") or domain)
        )
    if not out:
        raise UserError(f"{path}: no rows for domain {domain!r}")
    return out


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of n examples in a (1-based) epoch: a pure function of (seed, epoch),
    so a resumed run visits the data in the same order as an uninterrupted one."""
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


# --------------------------------------------------------------------------- synthetic domains
#
# A synthetic domain is a finite set of distinct prompts (its keys: 25 sums, 8 letters). A share
# of them, chosen from the seed, is reserved for the held-out split: train and val sample only the
# others, so a held-out score measures answers to prompts the policy was never trained or
# validated on. (Sampling the held-out rows from all keys would repeat training prompts: with 25
# sums and 64 training rows nearly every held-out prompt would be a training prompt, and the
# held-out-best checkpoint would simply be the reward-best one.)

HELDOUT_SHARE = 0.25  # of a domain's keys; at least one key stays on each side
SPLITS = ("train", "val", "heldout")
_SPLIT_SEED = {"train": 0, "val": 10_000, "heldout": 20_000}  # disjoint row seeds per split
_PARTITION_SEED = 30_000  # which keys are held out


def arithmetic_keys(max_operand: int = 4) -> list[tuple[int, int]]:
    """'a+b=' -> the single-digit sum (operands 0..max_operand)."""
    return [(a, b) for a in range(max_operand + 1) for b in range(max_operand + 1)]


def arithmetic_row(key: tuple[int, int], index: int) -> dict:
    a, b = key
    return _row("synthetic/arithmetic", f"{a}+{b}=", str(a + b), "math", index)


def copy_keys(alphabet: str = "abcdefgh") -> list[str]:
    """'copy: x' -> 'x' for a single letter x of `alphabet`."""
    return list(alphabet)


def copy_row(key: str, index: int) -> dict:
    return _row("synthetic/copy", f"copy: {key}", key, "string", index)


SYNTHETIC: dict[str, tuple[Callable[[], list], Callable[[Any, int], dict]]] = {
    "arithmetic": (arithmetic_keys, arithmetic_row),
    "copy": (copy_keys, copy_row),
}


def heldout_keys(domain: str, seed: int) -> list:
    """The keys reserved for the held-out split: a pure function of (domain, seed)."""
    keys = SYNTHETIC[domain][0]()
    k = min(len(keys) - 1, max(1, round(HELDOUT_SHARE * len(keys))))
    return sorted(random.Random(seed + _PARTITION_SEED).sample(keys, k))


def synthetic_rows(domain: str, split: str, n: int, seed: int) -> list[dict]:
    """n rows of `split` (train / val: the keys not held out; heldout: the held-out keys),
    deterministic from (domain, split, n, seed)."""
    if domain not in SYNTHETIC:
        raise UserError(f"no synthetic generator {domain!r}; known: {sorted(SYNTHETIC)}")
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: one of {SPLITS}")
    make_keys, make_row = SYNTHETIC[domain]
    held = heldout_keys(domain, seed)
    keys = held if split == "heldout" else [k for k in make_keys() if k not in held]
    rng = random.Random(seed + _SPLIT_SEED[split])
    rows = [make_row(rng.choice(keys), i) for i in range(n)]
    for r in rows:
        r["extra_info"]["split"] = split
    return rows


def _row(source: str, prompt: str, answer: str, ability: str, index: int) -> dict:
    return {
        "data_source": source,
        "prompt": [{"role": "user", "content": prompt}],
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {"index": index, "split": ""},
    }


def write_parquet(rows: list[dict], path: str | Path) -> Path:
    """Write rows atomically (core.files.write_atomic)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    files.write_atomic(Path(path), sink.getvalue().to_pybytes())
    return Path(path)


def write_synthetic(
    domain: str, prepare_dir: str | Path, n_train: int, n_val: int, seed: int, n_heldout: int = 32
) -> dict[str, Path]:
    """A synthetic domain's train, val and held-out files under a prepare run dir
    (paths.prepared_data): split → path. The held-out prompts appear in neither train nor val."""
    sizes = {"train": n_train, "val": n_val, "heldout": n_heldout}
    return {
        split: write_parquet(
            synthetic_rows(domain, split, n, seed), paths.prepared_data(Path(prepare_dir), domain, split)
        )
        for split, n in sizes.items()
    }
