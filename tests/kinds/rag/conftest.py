from __future__ import annotations

import pytest
import rag_data


@pytest.fixture(scope="session")
def rag_files(tmp_path_factory):
    """corpus/, train_QA.csv and a tiny encoder, built once per session."""
    root = tmp_path_factory.mktemp("rag")
    (root / "prompt.j2").write_text(
        "{% for c in chunks %}[{{ c.doc_id }}] {{ c.text }}\n{% endfor %}Q: {{ question }}\nA:"
    )
    return {
        "prompt": root / "prompt.j2",
        "corpus": rag_data.write_corpus(root / "corpus"),
        "questions": rag_data.write_questions(root / "train_QA.csv"),
        "encoder": rag_data.build_encoder(root / "encoder"),
    }
