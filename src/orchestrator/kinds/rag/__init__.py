"""The `rag` kind: retrieval over a document corpus, answers with citations, the WattBot score."""
