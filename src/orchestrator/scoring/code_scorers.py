"""Code scorers: the candidate is judged by running the record's tests in the sandbox
(`sandbox.py`: own process, time limit, memory/CPU rlimits, no network, throw-away directory),
not by a gold answer. Each takes `(prediction, gold, *, record, timeout_s)` and returns
`{"accuracy": 1.0}` when every test passes, else `{"accuracy": 0.0}`.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import re
import zlib
from collections.abc import Mapping
from typing import Any

from orchestrator.core.errors import UserError
from orchestrator.scoring.sandbox import check_candidate, run_program
from orchestrator.scoring.scorers import fenced_blocks


def extract_code(text: str) -> str:
    """The last fenced code block (```python ... ```), else the whole text."""
    blocks = fenced_blocks(text)
    python = [b for lang, b in blocks if lang.lower() in ("python", "py", "python3", "")]
    return (python or [b for _, b in blocks] or [text])[-1]


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def score_humaneval(prediction: str, gold: Any = None, *, record: Mapping, timeout_s: float = 10.0) -> dict[str, float]:
    """HumanEval: `prompt` (signature + docstring) + completion, then `test` and check(entry_point).
    A completion that restates the whole function (a fenced block defining entry_point) replaces
    the prompt's stub, keeping the prompt's imports."""
    code = extract_code(prediction)
    entry = record["entry_point"]
    if re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE):
        imports = "\n".join(line for line in record["prompt"].splitlines() if line.startswith(("import ", "from ")))
        program = f"{imports}\n{code}"
    else:
        program = record["prompt"] + code
    return {
        "accuracy": float(check_candidate(program, record["test"], entry_point=entry, timeout_s=timeout_s)["passed"])
    }


def score_mbpp(prediction: str, gold: Any = None, *, record: Mapping, timeout_s: float = 10.0) -> dict[str, float]:
    """MBPP: the extracted program, then `test_setup_code` and every assert of `test_list`."""
    tests = [record.get("test_setup_code") or "", *record["test_list"], *(record.get("challenge_test_list") or [])]
    passed = check_candidate(extract_code(prediction), [t for t in tests if t], timeout_s=timeout_s)["passed"]
    return {"accuracy": float(passed)}


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


def score_livecodebench(
    prediction: str, gold: Any = None, *, record: Mapping, timeout_s: float = 10.0
) -> dict[str, float]:
    """LiveCodeBench: every public and private test passes. `stdin` tests feed input and compare
    stdout line by line; `functional` tests call Solution().<func_name>(*args) (args: one JSON
    value per input line) and compare with the JSON output."""
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
            if res.status != "ok" or _json_or_none(
                res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
            ) != json.loads(case["output"]):
                return {"accuracy": 0.0}
        else:
            res = run_program(code, stdin=case["input"], timeout_s=timeout_s)
            if res.status != "ok" or not _same_output(res.stdout, case["output"]):
                return {"accuracy": 0.0}
    return {"accuracy": 1.0}
