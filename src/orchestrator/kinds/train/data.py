"""Training data in verl's parquet schema, and the synthetic domains of the tiny preset.

One row: {"data_source": str, "prompt": [{"role", "content"}, ...], "ability": str,
"reward_model": {"style": "rule", "ground_truth": str}, "extra_info": {"index": int, ...}}.
Existing verl files load as they are; only `prompt` and `reward_model.ground_truth` are required.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

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


def arithmetic_rows(n: int, seed: int, max_operand: int = 4) -> list[dict]:
    """'a+b=' -> the single-digit sum (operands 0..max_operand)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(0, max_operand), rng.randint(0, max_operand)
        rows.append(_row("synthetic/arithmetic", f"{a}+{b}=", str(a + b), "math", i))
    return rows


def copy_rows(n: int, seed: int, alphabet: str = "abcdefgh") -> list[dict]:
    """'copy: x' -> 'x' for a single letter x of `alphabet`."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        x = rng.choice(alphabet)
        rows.append(_row("synthetic/copy", f"copy: {x}", x, "string", i))
    return rows


SYNTHETIC = {"arithmetic": arithmetic_rows, "copy": copy_rows}


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


def write_synthetic(domain: str, prepare_dir: str | Path, n_train: int, n_val: int, seed: int) -> tuple[Path, Path]:
    """A synthetic domain's train and val files under a prepare run dir (paths.prepared_data;
    disjoint seeds). Returns (train, val)."""
    if domain not in SYNTHETIC:
        raise UserError(f"no synthetic generator {domain!r}; known: {sorted(SYNTHETIC)}")
    make = SYNTHETIC[domain]
    train, val = make(n_train, seed), make(n_val, seed + 10_000)
    for split, rows in (("train", train), ("val", val)):
        for r in rows:
            r["extra_info"]["split"] = split
    return (
        write_parquet(train, paths.prepared_data(Path(prepare_dir), domain, "train")),
        write_parquet(val, paths.prepared_data(Path(prepare_dir), domain, "val")),
    )
