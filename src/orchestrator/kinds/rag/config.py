"""A retrieval configuration (one value of an ablation grid) and the answer prompt. Pure pydantic:
the spec and the job share it without importing bm25s or sentence-transformers."""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.kinds.rag.chunking import Chunking

DEFAULT_PROMPT = """\
Answer the question using ONLY the context. Each passage starts with its document id in brackets.
{% for c in chunks %}
[{{ c.doc_id }}] {{ c.text }}
{% endfor %}
Question: {{ question }}

Reply with one JSON object: {"answer": "<short answer>", "answer_value": <number or short text>, \
"answer_unit": "<unit>", "ref_id": ["<ids of the documents you used>"], "explanation": "<one sentence>"}.
If the context does not answer the question, reply {"answer": "is_blank", "answer_value": "is_blank", \
"answer_unit": "is_blank", "ref_id": [], "explanation": "is_blank"}.
"""


class Retrieval(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    retriever: Literal["bm25", "dense", "hybrid"] = "bm25"
    top_k: int = Field(5, ge=1, le=100)
    embedder: str | None = None  # sentence-transformers model: a hub name or a local directory
    rrf_k: int = Field(60, ge=0)  # hybrid: reciprocal-rank fusion constant
    chunking: Chunking = Field(default_factory=Chunking)
    max_chunk_chars: int | None = Field(None, ge=16)  # cut each passage in the prompt (small contexts)
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,60}$")  # the run-name label

    @model_validator(mode="after")
    def _embedder(self) -> Retrieval:
        if self.retriever != "bm25" and not self.embedder:
            raise ValueError(f"retriever {self.retriever} needs an `embedder` (a sentence-transformers model)")
        return self

    def label(self, varying: set[str] = frozenset()) -> str:  # type: ignore[assignment]
        """`bm25-k5`, plus the grid's other varying keys (`-c200`, `-rrf30`, `-e1`)."""
        if self.name:
            return self.name
        parts = [self.retriever, f"k{self.top_k}"]
        if "chunking" in varying:
            parts.append(f"c{self.chunking.size}o{self.chunking.overlap}{self.chunking.by[0]}")
        if "rrf_k" in varying:
            parts.append(f"rrf{self.rrf_k}")
        return "-".join(parts)


def expand(base: Retrieval, grid: dict[str, list[Any]] | None) -> list[Retrieval]:
    """The grid's product over `base` (one config without a grid); labels name what varies."""
    if not grid:
        return [base]
    keys = sorted(grid)
    configs = [
        Retrieval.model_validate({**base.model_dump(), **dict(zip(keys, values))})
        for values in itertools.product(*(grid[k] for k in keys))
    ]
    varying = {k for k in keys if len(grid[k]) > 1}
    embedders = list(dict.fromkeys(c.embedder for c in configs))
    out = []
    for c in configs:
        label = c.label(varying)
        if "embedder" in varying:
            label += f"-e{embedders.index(c.embedder)}"
        out.append(c.model_copy(update={"name": label}))
    return out
