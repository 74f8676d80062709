"""The index of a (corpus, chunking, embedder) and the retrievers over it.

    index/<key>/chunks.jsonl   one chunk per line {id, doc_id, text}
    index/<key>/bm25/          bm25s's saved index (always built: it is cheap)
    index/<key>/dense.npy      unit-norm chunk embeddings (when an embedder is named)
    index/<key>/index.json     written LAST: the index is complete when it is readable

Retrievers: `bm25` (bm25s), `dense` (sentence-transformers, cosine), `hybrid` (reciprocal-rank
fusion of both: Σ 1/(rrf_k + rank)). The key is a content hash (`index_key`), so a changed
document, chunking or embedder makes a new index and an unchanged one is reused as is.
bm25s and sentence-transformers are imported only when an index is built or searched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from orchestrator.core import paths
from orchestrator.core.errors import UserError
from orchestrator.core.files import SCHEMA_VERSION, append_jsonl, read_json, read_jsonl, write_json_atomic
from orchestrator.kinds.rag.chunking import Chunk, Chunking

RetrieverName = Literal["bm25", "dense", "hybrid"]
INDEX_INFO = paths.RAG_INDEX_INFO_FILE


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    doc_id: str
    score: float
    text: str


def embedder_fingerprint(embedder: str | None) -> str:
    """A hub name as is; a local directory by its files' names, sizes and config contents."""
    if embedder is None:
        return ""
    p = Path(embedder)
    if not p.is_dir():
        return embedder
    h = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        h.update(f"{f.relative_to(p)}\0{f.stat().st_size}\0".encode())
        if f.suffix == ".json" and f.stat().st_size < 1 << 20:
            h.update(f.read_bytes())
    return h.hexdigest()


def index_key(corpus_fingerprint: str, chunking: Chunking, embedder: str | None) -> str:
    text = json.dumps([corpus_fingerprint, chunking.model_dump(mode="json"), embedder_fingerprint(embedder)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_complete(index_dir: Path) -> bool:
    try:
        return read_json(Path(index_dir) / INDEX_INFO).get("schema_version") == SCHEMA_VERSION
    except (OSError, ValueError):
        return False


def _tokenize(texts: list[str]) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


def _encoder(embedder: str, device: str = "cpu"):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(embedder, device=None if device == "auto" else device)


def _encode(model, texts: list[str], batch_size: int = 64):
    import numpy as np

    emb = model.encode(
        texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
    )
    return np.asarray(emb, dtype="float32")


def build(
    corpus: str, chunking: Chunking, embedder: str | None, index_dir: Path, *, device: str = "cpu", log=print
) -> dict:
    """Build the index into `index_dir` (aside, then renamed), or reuse it when complete.
    Returns index.json's content (`built`: whether this call built it)."""
    from orchestrator.kinds.rag import chunking as chunking_mod
    from orchestrator.kinds.rag import corpus as corpus_mod

    index_dir = Path(index_dir)
    if is_complete(index_dir):
        log(f"index {index_dir.name}: complete, reused")
        return {**read_json(index_dir / INDEX_INFO), "built": False}
    t0 = time.perf_counter()
    docs = corpus_mod.load(corpus)
    chunks = chunking_mod.chunk_corpus(docs, chunking)
    if not chunks:
        raise UserError(f"corpus {corpus}: no text in any document (scanned PDFs need OCR first)")
    tmp = index_dir.with_name(f".{index_dir.name}.{os.getpid()}.tmp")  # one per builder: none clobbers another
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    append_jsonl(tmp / "chunks.jsonl", [{"id": c.id, "doc_id": c.doc_id, "text": c.text} for c in chunks])
    import bm25s

    t_bm25 = time.perf_counter()
    retriever = bm25s.BM25()
    retriever.index(_tokenize([c.text for c in chunks]), show_progress=False)
    retriever.save(str(tmp / "bm25"), show_progress=False)
    bm25_s = time.perf_counter() - t_bm25
    dense_s = None
    if embedder is not None:
        import numpy as np

        t_dense = time.perf_counter()
        np.save(tmp / "dense.npy", _encode(_encoder(embedder, device), [c.text for c in chunks]))
        dense_s = time.perf_counter() - t_dense
    info = {
        "schema_version": SCHEMA_VERSION,
        "key": index_dir.name,
        "corpus": str(corpus),
        "chunking": chunking.model_dump(mode="json"),
        "embedder": embedder,
        "n_docs": len(docs),
        "n_chunks": len(chunks),
        "docs": {d.id: {"title": d.title, "url": d.url} for d in docs},
        "build_s": {"total": time.perf_counter() - t0, "bm25": bm25_s, "dense": dense_s},
    }
    write_json_atomic(tmp / INDEX_INFO, info)
    if is_complete(index_dir):  # another job finished the same index meanwhile: theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(index_dir, ignore_errors=True)
        tmp.rename(index_dir)
    log(f"index {index_dir.name}: {len(docs)} documents → {len(chunks)} chunks in {info['build_s']['total']:.1f}s")
    return {**info, "built": True}


class Index:
    """A complete index on disk, loaded for searching."""

    def __init__(self, index_dir: Path, device: str = "cpu") -> None:
        self.dir = Path(index_dir)
        if not is_complete(self.dir):
            raise UserError(f"index {self.dir} is missing or incomplete: its index stage has not finished")
        self.info = read_json(self.dir / INDEX_INFO)
        self.chunks = [Chunk(r["id"], r["doc_id"], r["text"]) for r in read_jsonl(self.dir / "chunks.jsonl").records]
        self.device = device
        self._bm25 = self._dense = self._encoder = None

    @property
    def docs(self) -> dict[str, dict]:
        return self.info["docs"]

    def _bm25_ranks(self, queries: list[str], k: int) -> list[list[tuple[int, float]]]:
        import bm25s

        if self._bm25 is None:
            self._bm25 = bm25s.BM25.load(str(self.dir / "bm25"))
        k = min(k, len(self.chunks))
        # An empty query (only stopwords) gets a placeholder token: bm25s needs one per query.
        tokens = [t or ["\u2205"] for t in _tokenize(queries)]
        ids, scores = self._bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [[(int(i), float(s)) for i, s in zip(row_i, row_s) if s > 0] for row_i, row_s in zip(ids, scores)]

    def _dense_ranks(self, queries: list[str], k: int) -> list[list[tuple[int, float]]]:
        import numpy as np

        if self.info.get("embedder") is None:
            raise UserError(f"index {self.dir.name} has no embeddings: name an `embedder` for dense/hybrid retrieval")
        if self._dense is None:
            self._dense = np.load(self.dir / "dense.npy")
            self._encoder = _encoder(self.info["embedder"], self.device)
        sims = _encode(self._encoder, queries) @ self._dense.T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return [[(int(i), float(sims[q, i])) for i in row] for q, row in enumerate(top)]

    def search(self, queries: list[str], retriever: RetrieverName, k: int, rrf_k: int = 60) -> list[list[Hit]]:
        if retriever == "bm25":
            ranked = self._bm25_ranks(queries, k)
        elif retriever == "dense":
            ranked = self._dense_ranks(queries, k)
        else:
            depth = max(k * 4, 20)  # fuse deeper lists than we keep, so fusion can promote
            ranked = [
                rrf([a, b], rrf_k)[:k]
                for a, b in zip(self._bm25_ranks(queries, depth), self._dense_ranks(queries, depth))
            ]
        return [
            [Hit(self.chunks[i].id, self.chunks[i].doc_id, s, self.chunks[i].text) for i, s in row] for row in ranked
        ]


def rrf(rankings: list[list[tuple[int, float]]], rrf_k: int = 60) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion: each item scores Σ 1/(rrf_k + rank) over the lists it is in."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, (i, _) in enumerate(ranking, 1):
            scores[i] = scores.get(i, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(scores.items(), key=lambda x: (-x[1], x[0]))


def index_dir(key: str) -> Path:
    return paths.rag_index_dir(key)
