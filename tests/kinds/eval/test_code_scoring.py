"""Code tasks are judged by running the candidate in the sandbox; other scorers on known answers."""

from __future__ import annotations

import json

import pytest

from conftest import FIXTURES
from orchestrator.scoring.code_scorers import decode_test_cases, extract_code
from orchestrator.scoring.registry import score


def records(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / "data" / "code" / f"{name}.jsonl").read_text().splitlines()]


def test_humaneval_correct_and_wrong_candidates():
    rec = records("humaneval")[0]
    assert score("humaneval", rec["canonical_solution"], record=rec) == 1.0  # a completion of the prompt
    whole = "Here it is:\n```python\ndef add(a, b):\n    return b + a\n```\n"
    assert score("humaneval", whole, record=rec) == 1.0  # a restated function replaces the stub
    assert score("humaneval", "    return a - b\n", record=rec) == 0.0
    assert score("humaneval", "    while True:\n        pass\n", record=rec, timeout_s=2) == 0.0  # contained


def test_mbpp_correct_and_wrong_candidates():
    rec = records("mbpp")[1]
    assert score("mbpp", f"```python\n{rec['code']}\n```", record=rec) == 1.0
    assert score("mbpp", "```python\ndef is_not_prime(n):\n    return False\n```", record=rec) == 0.0
    assert score("mbpp", "def is_not_prime(n):\n    import sys; sys.exit(0)\n", record=rec) == 0.0


def test_livecodebench_stdin_and_functional_tests():
    stdin_rec, functional_rec = records("livecodebench")
    assert len(decode_test_cases(stdin_rec["private_test_cases"])) == 1  # the release's compressed form
    assert (
        score("livecodebench", "```python\na, b = map(int, input().split())\nprint(a + b)\n```", record=stdin_rec)
        == 1.0
    )
    # passes the public case (1 2 → 3) but not the private one (10 -4 → 6)
    assert score("livecodebench", "```python\nprint(3)\n```", record=stdin_rec) == 0.0
    good = "```python\nclass Solution:\n    def double(self, x: int) -> int:\n        return 2 * x\n```"
    assert score("livecodebench", good, record=functional_rec) == 1.0
    assert score("livecodebench", good.replace("2 * x", "x + 3"), record=functional_rec) == 0.0


def test_pickled_test_cases_other_than_text_are_refused():
    import base64
    import pickle
    import zlib

    from orchestrator.core.errors import UserError

    evil = base64.b64encode(zlib.compress(pickle.dumps(print))).decode()
    with pytest.raises(UserError):
        decode_test_cases(evil)


@pytest.mark.parametrize(
    "scorer, prediction, gold, expected",
    [
        ("math", "so the answer is \\boxed{\\frac{3}{4}}", "\\frac{3}{4}", 1.0),
        ("math", "\\boxed{0.75}", "\\frac{3}{4}", 1.0),
        ("math", "\\boxed{25}", 25, 1.0),
        ("math", "\\boxed{24}", 25, 0.0),
        ("mcq", "The gas is nitrogen. Answer: B", "B", 1.0),
        ("mcq", "Answer: C", "B", 0.0),
        ("exact", "Alice is in 2, so Answer: Bob.", "Bob", 1.0),
        ("exact", "Answer: red, blue, green", "red, blue, green", 1.0),
        ("exact", "Answer: blue, red, green", "red, blue, green", 0.0),
        ("json", '```json\n{"rev": "ba"}\n```', '{"rev": "ba"}', 1.0),
        ("json", '```json\n{"output": 6}\n```', "6", 1.0),
        ("json", "```json\n7\n```", "6", 0.0),
        ("grid", "The output is [[0, 0], [1, 1]]", [[0, 0], [1, 1]], 1.0),
        ("grid", "[[0, 0], [1, 0]]", [[0, 0], [1, 1]], 0.0),
        ("table", "Answer: 1,200", ["1200"], 1.0),
        ("table", "Answer: c; a", ["a", "c"], 1.0),
        ("table", "Answer: a", ["a", "c"], 0.0),
        ("table", "Answer: 20%", "20", 1.0),
    ],
)
def test_text_scorers(scorer, prediction, gold, expected):
    assert score(scorer, prediction, gold) == expected


def test_extract_code_prefers_last_python_block():
    text = "```\nold\n```\nthen\n```python\nnew = 1\n```"
    assert extract_code(text) == "new = 1\n" and extract_code("x = 2") == "x = 2"
