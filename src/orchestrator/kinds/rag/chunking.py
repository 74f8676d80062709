"""Documents → chunks of about `size` words with `overlap` words shared by neighbours; `by:
paragraph` packs whole paragraphs (blank-line separated) and splits only those longer than `size`.
A chunk's id is `<doc id>#<n>`; it keeps its document id, which answers cite."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.kinds.rag.corpus import Document


class Chunking(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(200, ge=8)  # words
    overlap: int = Field(40, ge=0)
    by: Literal["words", "paragraph"] = "paragraph"

    @model_validator(mode="after")
    def _overlap(self) -> Chunking:
        if self.overlap >= self.size:
            raise ValueError(f"chunking.overlap ({self.overlap}) must be smaller than chunking.size ({self.size})")
        return self


@dataclass(frozen=True)
class Chunk:
    id: str
    doc_id: str
    text: str


def _windows(words: list[str], size: int, overlap: int) -> list[list[str]]:
    step, out = size - overlap, []
    for start in range(0, max(1, len(words)), step):
        out.append(words[start : start + size])
        if start + size >= len(words):
            break
    return [w for w in out if w]


def chunk_document(doc: Document, cfg: Chunking) -> list[Chunk]:
    if cfg.by == "words":
        pieces = [" ".join(w) for w in _windows(doc.text.split(), cfg.size, cfg.overlap)]
    else:
        pieces, current = [], []  # current: words of the paragraphs packed so far
        for para in re.split(r"\n\s*\n", doc.text):
            words = para.split()
            if not words:
                continue
            if current and len(current) + len(words) > cfg.size:
                pieces.append(" ".join(current))
                current = current[-cfg.overlap :] if cfg.overlap else []
            if len(words) > cfg.size:  # a paragraph longer than a chunk: windows of it
                windows = _windows(current + words, cfg.size, cfg.overlap)
                pieces += [" ".join(w) for w in windows[:-1]]
                current = windows[-1]
            else:
                current += words
        if current:
            pieces.append(" ".join(current))
    return [Chunk(f"{doc.id}#{i}", doc.id, text) for i, text in enumerate(pieces)]


def chunk_corpus(docs: list[Document], cfg: Chunking) -> list[Chunk]:
    return [c for d in docs for c in chunk_document(d, cfg)]
