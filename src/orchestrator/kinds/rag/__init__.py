"""The `rag` kind: retrieval over a document corpus, answers with citations, the WattBot score."""

from orchestrator.core.kinds import PluginKind

KIND = PluginKind("rag", "orchestrator.kinds.rag.spec:RagSpec", report="orchestrator.kinds.rag.report")
