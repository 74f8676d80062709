"""Suite scorers: `(prediction, record, task) -> score in [0, 1]` for one generation.

Text tasks reuse `orchestrator.scoring.scorers` (math-verify equivalence, multiple choice, exact match);
code tasks run the candidate in `orchestrator.scoring.sandbox` (own process, time limit, memory/CPU
rlimits, no network, throw-away directory). A score of 1 means correct.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import re
import zlib
from collections.abc import Callable
from typing import Any

from orchestrator.core.errors import UserError
from orchestrator.scoring import scorers as text_scorers

SuiteScorer = Callable[[str, dict, Any], float]

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str:
    """The last fenced code block (```python ... ```), else the whole text."""
    blocks = _FENCE.findall(text)
    python = [b for lang, b in blocks if lang.lower() in ("python", "py", "python3", "")]
    return (python or [b for _, b in blocks] or [text])[-1]


def final_answer(text: str) -> str:
    """The answer a reasoning model states last: \\boxed{...}, else what follows the last
    "answer:"/"answer is", else the last non-empty line."""
    boxed = text_scorers.extract_boxed(text)
    if boxed is not None:
        return boxed
    m = list(re.finditer(r"(?i)answer\s*(?:is|:)\s*", text))
    if m:
        return text[m[-1].end() :].strip().split("\n")[0].strip().rstrip(".")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------- text


def score_math(prediction: str, record: dict, gold: Any) -> float:
    return text_scorers.score_math(prediction, str(gold))["accuracy"]


def score_mcq(prediction: str, record: dict, gold: Any) -> float:
    return text_scorers.score_mcq(prediction, str(gold))["accuracy"]


def score_exact(prediction: str, record: dict, gold: Any) -> float:
    golds = gold if isinstance(gold, list) else [gold]
    return text_scorers.score_exact(final_answer(prediction), [str(g) for g in golds])["em"]


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def score_json(prediction: str, record: dict, gold: Any) -> float:
    """CodeI/O: the predicted value (a ```json block, \\boxed{} or stated answer) equals the gold
    value as JSON ({"a": 1} == {"a":1}); a gold stored as a JSON string is parsed first."""
    blocks = [b for lang, b in _FENCE.findall(prediction) if lang.lower() in ("json", "")]
    candidate = blocks[-1].strip() if blocks else final_answer(prediction)
    want = _loads(gold) if isinstance(gold, str) and _loads(gold) is not None else gold
    got = _loads(candidate)
    if got is None:
        return float(text_scorers.normalize_answer(candidate) == text_scorers.normalize_answer(str(want)))
    if isinstance(got, dict) and "output" in got and not (isinstance(want, dict) and "output" in want):
        got = got["output"]  # CodeI/O answers are often {"output": value}
    if isinstance(want, dict) and "output" in want and not (isinstance(got, dict) and "output" in got):
        want = want["output"]
    return float(got == want)


_GRID = re.compile(r"\[\s*\[[\d\s,\[\]]*\]\s*\]")


def score_grid(prediction: str, record: dict, gold: Any) -> float:
    """ARC-AGI: the last grid ([[...], ...]) in the prediction equals the gold output grid exactly."""
    grids = _GRID.findall(prediction)
    got = _loads(grids[-1]) if grids else None
    return float(got is not None and got == gold)


def score_table(prediction: str, record: dict, gold: Any) -> float:
    """HiTab / MultiHiertt: numbers within 0.1% (percent signs and commas ignored), text after
    normalisation; a list gold needs the same multiset of values, in any order."""
    answer = final_answer(prediction).replace("%", "").strip()
    golds = [str(g).replace("%", "").strip() for g in (gold if isinstance(gold, list) else [gold])]
    if len(golds) == 1:
        return float(text_scorers.values_equal(answer, golds[0]))
    parts = [p.strip() for p in re.split(r"[;|]|,\s+", answer) if p.strip()]
    if len(parts) != len(golds):
        return 0.0
    left = list(golds)
    for p in parts:
        match = next((g for g in left if text_scorers.values_equal(p, g)), None)
        if match is None:
            return 0.0
        left.remove(match)
    return 1.0


# --------------------------------------------------------------------------- code


def score_humaneval(prediction: str, record: dict, gold: Any, timeout_s: float = 10.0) -> float:
    """HumanEval: `prompt` (signature + docstring) + completion, then `test` and check(entry_point).
    A completion that restates the whole function (a fenced block defining entry_point) replaces
    the prompt's stub, keeping the prompt's imports."""
    from orchestrator.scoring.sandbox import check_candidate

    code = extract_code(prediction)
    entry = record["entry_point"]
    if re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE):
        imports = "\n".join(line for line in record["prompt"].splitlines() if line.startswith(("import ", "from ")))
        program = f"{imports}\n{code}"
    else:
        program = record["prompt"] + code
    return float(check_candidate(program, record["test"], entry_point=entry, timeout_s=timeout_s)["passed"])


def score_mbpp(prediction: str, record: dict, gold: Any, timeout_s: float = 10.0) -> float:
    """MBPP: the extracted program, then `test_setup_code` and every assert of `test_list`."""
    from orchestrator.scoring.sandbox import check_candidate

    tests = [record.get("test_setup_code") or "", *record["test_list"], *(record.get("challenge_test_list") or [])]
    return float(check_candidate(extract_code(prediction), [t for t in tests if t], timeout_s=timeout_s)["passed"])


class _StringsOnly(pickle.Unpickler):
    def find_class(self, module, name):  # a test-case blob is a pickled str: refuse anything else
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a test-case blob")


def decode_test_cases(value: Any) -> list[dict]:
    """LiveCodeBench test cases: a list, a JSON string, or the release's base64(zlib(pickle(json)))."""
    if isinstance(value, list):
        return value
    if not value:
        return []
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        raw = zlib.decompress(base64.b64decode(value))
        text = _StringsOnly(io.BytesIO(raw)).load()
        return json.loads(text)
    except Exception as e:  # noqa: BLE001 -- any decoding failure is a data-format problem
        raise UserError(f"LiveCodeBench test cases are neither JSON nor base64(zlib(pickle(json))): {e}") from None


def _same_output(got: str, want: str) -> bool:
    g = [line.rstrip() for line in got.strip().splitlines()]
    w = [line.rstrip() for line in want.strip().splitlines()]
    return g == w


def score_livecodebench(prediction: str, record: dict, gold: Any, timeout_s: float = 10.0) -> float:
    """LiveCodeBench: every public and private test passes. `stdin` tests feed input and compare
    stdout line by line; `functional` tests call Solution().<func_name>(*args) (args: one JSON
    value per input line) and compare with the JSON output."""
    from orchestrator.scoring.sandbox import run_program

    code = extract_code(prediction)
    cases = decode_test_cases(record.get("public_test_cases")) + decode_test_cases(record.get("private_test_cases"))
    if not cases:
        raise UserError(f"LiveCodeBench record {record.get('question_id', record.get('_id'))}: no test cases")
    meta = record.get("metadata") or {}
    meta = json.loads(meta) if isinstance(meta, str) and meta else meta
    for case in cases:
        if case.get("testtype", "stdin") == "functional":
            func = meta.get("func_name")
            if not func:
                raise UserError("LiveCodeBench functional test without metadata.func_name")
            args = [json.loads(line) for line in case["input"].splitlines() if line.strip()]
            harness = (
                f"{code}\n\nimport json as _j\n_args = _j.loads({json.dumps(json.dumps(args))})\n"
                f"_r = Solution().{func}(*_args) if 'Solution' in globals() else {func}(*_args)\n"
                f"print(_j.dumps(_r))\n"
            )
            res = run_program(harness, timeout_s=timeout_s)
            if res.status != "ok" or _loads(
                res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
            ) != json.loads(case["output"]):
                return 0.0
        else:
            res = run_program(code, stdin=case["input"], timeout_s=timeout_s)
            if res.status != "ok" or not _same_output(res.stdout, case["output"]):
                return 0.0
    return 1.0


CODE_SCORERS = {"humaneval", "mbpp", "livecodebench"}

SUITE_SCORERS: dict[str, Callable[..., float]] = {
    "math": score_math,
    "mcq": score_mcq,
    "exact": score_exact,
    "json": score_json,
    "grid": score_grid,
    "table": score_table,
    "humaneval": score_humaneval,
    "mbpp": score_mbpp,
    "livecodebench": score_livecodebench,
}


def load_suite_scorer(ref: str) -> Callable[..., float]:
    """A registered name, or "package.module:function" taking (prediction, record, gold)."""
    if ref in SUITE_SCORERS:
        return SUITE_SCORERS[ref]
    return text_scorers.load_scorer(ref)


def score(ref: str, prediction: str, record: dict, gold: Any, timeout_s: float = 10.0) -> float:
    fn = load_suite_scorer(ref)
    value = fn(prediction, record, gold, timeout_s=timeout_s) if ref in CODE_SCORERS else fn(prediction, record, gold)
    if isinstance(value, dict):  # a user scorer may return metrics; "score" (or the only value) counts
        value = value.get("score", next(iter(value.values())) if len(value) == 1 else None)
    if value is None:
        raise UserError(f"scorer {ref}: return a number in [0, 1] or a dict with 'score'")
    return float(value)
