"""Suite files: the shipped reasoning suite, the tiny fixture suite, and bad suites (exit 2)."""

from __future__ import annotations

import re

import pytest

from conftest import FIXTURES, TINY_SUITE
from orchestrator.core.errors import SpecError, UserError
from orchestrator.generation.examples import build_examples
from orchestrator.kinds.eval.suites import load_suite


def read_examples(task) -> list[dict]:
    return build_examples(task, seeded=False)


def render_prompt(task, row: dict) -> str:
    return row["prompt"]


DOMAINS = {
    "math": {"aime", "math500", "amc"},
    "logic": {"zebra_puzzles", "ordering_puzzles"},
    "code": {"humaneval", "mbpp", "livecodebench"},
    "science": {"supergpqa"},
    "simulation": {"codeio", "arc_agi"},
    "tabular": {"hitab", "multihiertt"},
}


def test_reasoning_suite_reads_every_documented_format():
    """The shipped suite against local files in the documented formats: every record loads
    through datasets, has its id and gold, and renders its prompt."""
    suite = load_suite("reasoning", data_root=FIXTURES / "data")
    assert {d: {t.name for t in suite.tasks if t.domain == d} for d in suite.domains} == DOMAINS
    assert suite.task("aime").generation.samples == 8 and suite.task("humaneval").resources == {"cpus_per_task": 4}
    for task in suite.tasks:
        rows = read_examples(task)
        assert len(rows) >= 2 and len({r["id"] for r in rows}) == len(rows)
        id_field = re.fullmatch(r"'(.+)' \| field\(idx\)", task.id).group(1)
        assert not any(r["id"].isdigit() and len(r["id"]) == 1 and id_field not in r["row"] for r in rows)
        for r in rows:
            assert render_prompt(task, r).strip()
            if task.scorer not in ("humaneval", "mbpp", "livecodebench"):
                assert r["gold"] is not None
    assert "Nitrogen" in render_prompt(suite.task("supergpqa"), read_examples(suite.task("supergpqa"))[0])
    assert "B) Nitrogen" in render_prompt(suite.task("supergpqa"), read_examples(suite.task("supergpqa"))[0])


def test_tiny_suite_inherits_reasoning_with_small_budgets():
    suite = load_suite(TINY_SUITE)
    assert suite.data_root == (FIXTURES / "data").resolve()
    assert {t.name for t in suite.tasks} == set().union(*DOMAINS.values())
    assert all(t.generation.max_new_tokens == 8 and t.generation.samples == 1 for t in suite.tasks)
    assert suite.task("math500").prompt == load_suite("reasoning").task("math500").prompt
    assert [t.name for t in suite.select(["code", "aime"])] == ["aime", "humaneval", "mbpp", "livecodebench"]
    with pytest.raises(UserError, match="neither a task nor a domain"):
        suite.select(["nope"])


def test_data_root_from_env_when_suite_names_none(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCH_EVAL_DATA", str(tmp_path))
    suite = load_suite("reasoning")
    assert suite.data_root == tmp_path.resolve()
    assert str(tmp_path / "math" / "aime_2024.jsonl") in " ".join(suite.missing_data())


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            "domains: {math: {t: {data: x.csv, prompt: p, scorer: math}}}",
            "domains.math.t.data: data file 'x.csv' must end in",
        ),
        ("domains: {math: {t: {data: x.jsonl, prompt: p, scorer: nope}}}", "unknown scorer 'nope'"),
        ("domains: {math: {t: {data: x.jsonl, scorer: math}}}", "domains.math.t.prompt: required key is missing"),
        (
            "domains: {math: {t: {data: x.jsonl, prompt: p, scorer: math, max_token: 3}}}",
            "max_token: unknown key; valid keys here",
        ),
        ("domains: {math: {t: {data: x.jsonl, prompt: '{{ a ', scorer: math}}}", "not a valid jinja2 template"),
        ("domains: {math: {t: {data: ../x.jsonl, prompt: p, scorer: math}}}", "relative to the data root"),
        (
            "domains: {a: {t: {data: x.jsonl, prompt: p, scorer: math}}, b: {t: {data: y.jsonl, prompt: p, scorer: math}}}",
            "task 't' is in both domains",
        ),
        (
            "domains: {math: {t: {data: x.jsonl, prompt: p, scorer: math, samples: 0}}}",
            "samples: Input should be greater",
        ),
        ("domain: {}", "domain: unknown key"),
        ("base: nothing-like-this\n", "no suite 'nothing-like-this'"),
    ],
)
def test_bad_suite_is_refused_naming_file_and_key(tmp_path, body, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(body + "\n")
    with pytest.raises(UserError) as e:
        load_suite(path)
    assert expected in str(e.value)
    if isinstance(e.value, SpecError):
        assert str(path) in str(e.value)


def test_bad_suite_exits_2_before_anything_is_submitted(cli, tmp_path, make_experiment):
    make_experiment("exp", {"a": [0.1]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("domains: {math: {t: {data: x.jsonl, prompt: p, scorer: nope}}}\n")
    res = cli("eval-evolution", "exp", "--suite", bad, "--executor", "local")
    assert res.code == 2 and "unknown scorer 'nope'" in res.err and str(bad) in res.err
    missing = cli("eval", "exp", "--suite", "reasoning", "--data-root", tmp_path / "nowhere", "--executor", "local")
    assert missing.code == 2 and str(tmp_path / "nowhere" / "math" / "aime_2024.jsonl") in missing.err
    assert "no tracked jobs" in cli("status", "exp-eval").out
