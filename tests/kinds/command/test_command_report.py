"""`orchestrate report` of a pipeline of commands: its jobs and the files each unit wrote."""

from __future__ import annotations

from pathlib import Path

from helpers import wait_final


def test_report_of_hello_lists_jobs_and_outputs(cli, orch_home):
    assert cli("submit", "hello", "--executor", "local").code == 0
    assert set(t.state for t in wait_final("hello", timeout=300).values()) == {"COMPLETED"}
    res = cli("report", "hello")
    assert res.code == 0, res.err
    text = Path(res.out.strip().splitlines()[-1]).read_text()
    assert "## Outputs" in text
    for i in range(3):
        assert f"| count-{i} | `logs/hello/count-{i}/count.txt` | 1 |" in text
