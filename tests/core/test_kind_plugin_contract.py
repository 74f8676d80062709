"""Contract: a job kind is a plugin. A kind written OUTSIDE the tree (a temporary package `echo_kind`
with an `orchestrator.kinds` entry point: one job that writes a typed record) goes through
`submit --dry-run`, `submit --executor local`, `status`, `wait` and `report`, with no file under
src/ changed: the package and its .dist-info (entry_points.txt, what `pip install` writes) sit on
PYTHONPATH, which the CLI and the local jobs inherit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import orchestrator
from orchestrator.core import kinds
from orchestrator.core.errors import SpecError, UserError
from orchestrator.core.spec import BaseSpec, load_spec

SRC = Path(orchestrator.__file__).resolve().parents[1]

# Every file a user writes to add the kind, all in one folder of their own package (+ its metadata).
ECHO = {
    "echo_kind/__init__.py": '''
"""The `echo` kind: one job that says a message back."""
from orchestrator.core.kinds import PluginKind

KIND = PluginKind("echo", "echo_kind.spec:EchoSpec", records_ref=("echo_kind.records:Echo",), report="echo_kind.report")
''',
    "echo_kind/records.py": '''
from typing import Literal

from pydantic import BaseModel

FILE = "echo.json"


class Echo(BaseModel):
    """What the job writes (echo.json); the reader reads it with the same model."""

    schema_version: Literal[1] = 1
    message: str
    length: int
''',
    "echo_kind/spec.py": """
from typing import Literal

from orchestrator.core.plan import Stage, Unit, UnitArgs
from orchestrator.core.spec import BaseSpec

from echo_kind.records import FILE


class EchoArgs(UnitArgs):
    message: str


class EchoSpec(BaseSpec):
    kind: Literal["echo"] = "echo"
    message: str

    def plan(self) -> list[Stage]:
        unit = Unit("say", "echo_kind.job:say", EchoArgs(message=self.message), outputs=(FILE,))
        return [Stage("echo", self.resources, self.env, (unit,))]
""",
    "echo_kind/job.py": """
from pathlib import Path

from orchestrator.core.files import write_atomic

from echo_kind.records import FILE, Echo


def say(run_dir: str, experiment: str, *, message: str) -> int:
    print(message)
    write_atomic(Path(run_dir) / FILE, Echo(message=message, length=len(message)).model_dump_json())
    return 0
""",
    "echo_kind/report.py": """
from pathlib import Path

from orchestrator.core.kinds import Section
from orchestrator.reporting.table import Row, relative

from echo_kind.records import FILE, Echo


def read(reader, run_dir: Path) -> bool:
    path = run_dir / FILE
    if not path.exists():
        return False
    echo = Echo.model_validate_json(path.read_text())
    reader.res.rows.append(
        Row("echo", reader.exp, run=run_dir.name, metric="length", value=echo.length, detail=echo.message, file=relative(path))
    )
    return True


def sections(res, options) -> list[Section]:
    said = [{"run": r.run, "message": r.detail, "length": r.value} for r in res.of("echo")]
    if not said:
        return []
    return [Section({"echo": said}, Path(__file__).with_name("report.md.j2"), order=80, recommendations=["Echo heard."])]
""",
    "echo_kind/report.md.j2": """\
{% if echo %}

## Echo

{% for e in echo %}
- {{ e.run }} said "{{ e.message }}" ({{ e.length | num(0) }} characters)
{% endfor %}
{% endif %}
""",
    "echo_kind-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: echo-kind\nVersion: 0.1\n",
    "echo_kind-0.1.dist-info/entry_points.txt": "[orchestrator.kinds]\necho = echo_kind:KIND\n",
}

SPEC = "kind: echo\nmessage: hello plugin\nresources: {time: '00:05:00'}\n"


@pytest.fixture
def echo_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    for name, text in ECHO.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text.lstrip("\n"))
    return site


def test_a_kind_from_another_package_runs_through_every_command(echo_site, orch_home, tmp_path):
    assert not echo_site.is_relative_to(SRC)  # nothing of the kind is in the orchestrator's tree
    spec = tmp_path / "echo-exp.yaml"
    spec.write_text(SPEC)
    env = {
        **os.environ,
        "ORCH_HOME": str(orch_home),
        "PYTHONPATH": os.pathsep.join([str(echo_site), str(SRC), os.environ.get("PYTHONPATH", "")]),
    }

    def orchestrate(*args: str, code: int = 0) -> str:
        res = subprocess.run(
            [sys.executable, "-m", "orchestrator", *args], env=env, capture_output=True, text=True, timeout=300
        )
        assert res.returncode == code, f"orchestrate {' '.join(args)}: {res.returncode}\n{res.stdout}\n{res.stderr}"
        return res.stdout

    dry = orchestrate("submit", str(spec), "--executor", "local", "--dry-run")
    assert "stage echo: submit 1 job" in dry and "say  message=hello plugin" in dry and "nothing submitted" in dry

    assert "stage echo: job" in orchestrate("submit", str(spec), "--executor", "local")
    assert "kinds:" in (listed := orchestrate("list")) and "echo" in listed.split("kinds:")[1].splitlines()[0]
    assert any(line.split()[:2] == ["echo-exp", "echo"] for line in listed.splitlines())  # the recorded kind

    assert "1 done" in orchestrate("wait", "echo-exp", "--timeout", "240", "--interval", "0.5")
    (job,) = json.loads(orchestrate("status", "echo-exp", "--json"))
    assert job["state"] == "COMPLETED" and job["tasks"][0]["run"] == "say"
    record = json.loads((orch_home / "logs" / "echo-exp" / "say" / "echo.json").read_text())
    assert record == {"schema_version": 1, "message": "hello plugin", "length": 12}

    report = Path(orchestrate("report", "echo-exp").strip())
    md = report.read_text()
    assert '## Echo\n\n- say said "hello plugin" (12 characters)\n' in md and "- Echo heard." in md
    assert "| echo-exp | echo | 1 | COMPLETED 1 |" in md  # the frame's jobs table, as for any kind
    table = json.loads((report.parent / "results.json").read_text())
    assert [(r["run"], r["metric"], r["value"]) for r in table["rows"] if r["source"] == "echo"] == [
        ("say", "length", 12)
    ]


def test_the_plugin_kind_object_meets_the_protocol(echo_site, monkeypatch):
    monkeypatch.syspath_prepend(str(echo_site))
    monkeypatch.setitem(kinds.KINDS, "echo", "echo_kind:KIND")  # as its entry point names it
    kind = kinds.get("echo")
    assert isinstance(kind, kinds.Kind) and kind.name == "echo"
    (record,) = kind.records
    assert record.__name__ == "Echo" and record(message="hi", length=2).schema_version == 1
    assert [s.name for s in kind.spec.model_validate({"kind": "echo", "name": "e", "message": "m"}).plan()] == ["echo"]


def test_kind_registry_errors_name_the_kinds_and_the_fix(monkeypatch, tmp_path):
    spec = tmp_path / "x.yaml"
    spec.write_text("kind: nope\n")
    with pytest.raises(SpecError, match=r"kind: 'nope' is not a job kind; use one of: .*command.*train"):
        load_spec(spec)
    monkeypatch.setitem(kinds.KINDS, "broken", "orchestrator.core.kinds:ENTRY_POINT_GROUP")
    with pytest.raises(UserError, match=r"kind 'broken' is registered as .*which is a str, not a Kind"):
        kinds.get("broken")
    monkeypatch.setitem(kinds.KINDS, "missing", "no_such_package.kind:KIND")
    with pytest.raises(UserError, match=r"kind 'missing' .* cannot be loaded: .*cannot import 'no_such_package.kind'"):
        kinds.get("missing")


def test_every_built_in_kind_meets_the_contract():
    for name in kinds.KINDS:
        kind = kinds.get(name)
        assert isinstance(kind, kinds.Kind) and kind.name == name
        assert issubclass(kind.spec, BaseSpec) and kind.spec.plan is not BaseSpec.plan, name
