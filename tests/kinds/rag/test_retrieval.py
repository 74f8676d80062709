"""Corpus → chunks → bm25 / dense / hybrid retrieval on the tiny corpus (one real PDF)."""

from __future__ import annotations

import pytest
import rag_data

from orchestrator.kinds.rag import corpus, retrieval
from orchestrator.kinds.rag.chunking import Chunking, chunk_document
from orchestrator.kinds.rag.corpus import Document

ANSWERABLE = [q for q in rag_data.QUESTIONS if q[4]]


def test_corpus_reads_every_format_and_ids_are_stems(rag_files):
    docs = {d.id: d for d in corpus.load(rag_files["corpus"])}
    assert set(docs) == set(rag_data.DOCS)
    assert "1287 MWh" in docs["gpu_energy"].text  # from the PDF, through pypdf
    assert "700 watts" in docs["hardware"].text and "<p>" not in docs["hardware"].text


def test_metadata_csv_names_ids_and_urls(rag_files, tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text(f"id,title,url,path\npaper1,Energy,https://x/1,{rag_files['corpus']}/water.md\n")
    (doc,) = corpus.load(meta)
    assert (doc.id, doc.url) == ("paper1", "https://x/1") and "5.6 billion" in doc.text


def test_chunking_sizes_overlap_and_paragraphs():
    doc = Document("d", " ".join(f"w{i}" for i in range(25)))
    chunks = chunk_document(doc, Chunking(size=10, overlap=2, by="words"))
    assert [c.id for c in chunks] == ["d#0", "d#1", "d#2"]
    assert chunks[1].text.split()[:2] == ["w8", "w9"]  # two words shared with the previous chunk
    para = Document("p", "a b c\n\nd e f\n\n" + " ".join("x" * 1 for _ in range(3)))
    assert [c.text for c in chunk_document(para, Chunking(size=8, overlap=0))] == ["a b c d e f", "x x x"]
    with pytest.raises(ValueError):
        Chunking(size=10, overlap=10)


@pytest.fixture(scope="module")
def index(rag_files, tmp_path_factory):
    cfg = Chunking(size=16, overlap=4)
    key = retrieval.index_key(corpus.fingerprint(rag_files["corpus"]), cfg, str(rag_files["encoder"]))
    out = tmp_path_factory.mktemp("idx") / key
    info = retrieval.build(str(rag_files["corpus"]), cfg, str(rag_files["encoder"]), out, log=lambda m: None)
    assert info["built"] and info["n_docs"] == 4
    assert retrieval.build(str(rag_files["corpus"]), cfg, str(rag_files["encoder"]), out)["built"] is False
    return retrieval.Index(out)


def recall(index, retriever, k):
    hits = index.search([q[1] for q in ANSWERABLE], retriever, k)
    return sum(bool(set(q[4]) & {h.doc_id for h in row}) for q, row in zip(ANSWERABLE, hits)) / len(ANSWERABLE)


def test_bm25_recall(index):
    assert recall(index, "bm25", 1) == 1.0


def test_dense_and_hybrid_recall(index):
    # A random-weight encoder still keeps word identity through mean pooling: recall@2 is high.
    assert recall(index, "dense", 2) >= 0.75
    assert recall(index, "hybrid", 2) == 1.0
    assert len(index.search(["water"], "hybrid", 3)[0]) == 3


def test_key_changes_with_content_chunking_and_embedder(rag_files, tmp_path):
    fp = corpus.fingerprint(rag_files["corpus"])
    base = retrieval.index_key(fp, Chunking(), None)
    assert base == retrieval.index_key(fp, Chunking(), None)
    assert base != retrieval.index_key(fp, Chunking(size=100), None)
    assert base != retrieval.index_key(fp, Chunking(), str(rag_files["encoder"]))
    copy = tmp_path / "c"
    rag_data.write_corpus(copy)
    (copy / "carbon.txt").write_text("changed")
    assert corpus.fingerprint(copy) != fp


def test_rrf():
    assert retrieval.rrf([[(1, 9.0), (2, 8.0)], [(2, 0.9), (3, 0.5)]], rrf_k=0)[0] == (2, 1 / 2 + 1 / 1)
