"""RAG retrieval: index build time and query throughput, bm25 (bm25s) vs dense (a tiny local
sentence encoder, CPU) over 10,000 synthetic chunks; then index reuse (the second build of the
same corpus, chunking and embedder builds nothing).

    python benchmarks/bench_rag.py [--smoke]        (--smoke: 50 documents, 50 queries)
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

from common import Figures, parse_args

N_DOCS, PARAS_PER_DOC, WORDS_PER_PARA, QUERIES = 1000, 10, 40, 500
TOPICS = [f"topic{i}" for i in range(200)]
WORDS = [f"w{i}" for i in range(3000)] + TOPICS


def corpus(root: Path, n_docs: int) -> None:
    rng = random.Random(0)
    root.mkdir(parents=True)
    for d in range(n_docs):
        paras = [" ".join(rng.choices(WORDS, k=WORDS_PER_PARA)) for _ in range(PARAS_PER_DOC)]
        (root / f"doc{d:04d}.txt").write_text("\n\n".join(paras))


def main() -> int:
    args = parse_args(__doc__)
    n_docs, n_queries = (50, 50) if args.smoke else (N_DOCS, QUERIES)
    from orchestrator.generation.tiny import build_encoder
    from orchestrator.kinds.rag import corpus as corpus_mod
    from orchestrator.kinds.rag import retrieval
    from orchestrator.kinds.rag.chunking import Chunking

    tmp = Path(tempfile.mkdtemp(prefix="bench-rag-"))
    corpus(tmp / "corpus", n_docs)
    encoder = str(build_encoder(tmp / "encoder", WORDS))
    cfg = Chunking(size=WORDS_PER_PARA, overlap=0, by="paragraph")  # one chunk per paragraph
    key = retrieval.index_key(corpus_mod.fingerprint(tmp / "corpus"), cfg, encoder)
    where = tmp / "indexes" / key
    info = retrieval.build(str(tmp / "corpus"), cfg, encoder, where, log=lambda m: None)
    t = time.perf_counter()
    again = retrieval.build(str(tmp / "corpus"), cfg, encoder, where, log=lambda m: None)
    reuse_s = time.perf_counter() - t
    index = retrieval.Index(where, device="cpu")
    rng = random.Random(1)
    queries = [" ".join(rng.choices(WORDS, k=8)) for _ in range(n_queries)]
    rates = {}
    for name in ("bm25", "dense", "hybrid"):
        index.search(queries[:5], name, 5)  # load the index / the encoder first
        t = time.perf_counter()
        index.search(queries, name, 5)
        rates[name] = n_queries / (time.perf_counter() - t)
    b = info["build_s"]
    print(f"chunks: {info['n_chunks']} from {info['n_docs']} documents")
    print(
        f"index build: bm25 {b['bm25']:.2f} s, dense (tiny encoder, CPU) {b['dense']:.2f} s, total {b['total']:.2f} s"
    )
    print(f"dense / bm25 build time: {b['dense'] / b['bm25']:.1f}x")
    print(", ".join(f"{k} {v:,.0f} queries/s" for k, v in rates.items()))
    print(f"bm25 / dense query throughput: {rates['bm25'] / rates['dense']:.1f}x")
    print(f"second build of the same index: built={again['built']} in {reuse_s * 1000:.1f} ms")
    figures = Figures("rag", args.smoke)
    figures.add(f"bm25 queries/s over {info['n_chunks']:,} chunks ({os.cpu_count()} cores)", rates["bm25"])
    figures.add("query throughput, bm25 / dense (tiny encoder)", rates["bm25"] / rates["dense"], unit="x")
    figures.add("index build time, dense / bm25", b["dense"] / b["bm25"], unit="x")
    figures.add("second build of the same index rebuilt anything (0: reused)", float(again["built"]), ("<=", 0))
    figures.save()
    return 0 if info["n_chunks"] == n_docs * PARAS_PER_DOC and again["built"] is False else 1


if __name__ == "__main__":
    sys.exit(main())
