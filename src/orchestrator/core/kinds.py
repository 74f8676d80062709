"""Job kinds are plugins: the `Kind` contract and the one registry of kinds.

A kind is everything one sort of job is: its spec model (validation and a pure `plan()`), the
typed records its jobs write, a reader that turns its result files into rows of the shared
results table, and its sections (markdown, plots, files) of `orchestrate report`. The registry
maps kind names to `module:attribute` references, so a kind's code is imported only when it is
used; kinds of other installed packages register through the entry-point group
`orchestrator.kinds` (`echo = my_package:KIND`). Commands look a kind up by the name a spec
gives or the registry recorded at submit, never by comparing names.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from orchestrator.core.errors import UserError
from orchestrator.core.refs import load_ref

if TYPE_CHECKING:
    from orchestrator.core.spec import BaseSpec

ENTRY_POINT_GROUP = "orchestrator.kinds"

# Built-in kinds: name → the `Kind` object in the kind's package (light: it names the heavy parts).
# The order is the readers' (a folder goes to the first kind that claims it; the kind recorded at
# submit reads first): RAG runs hold inference files too, so `rag` comes before `inference`.
KINDS: dict[str, str] = {
    "rag": "orchestrator.kinds.rag:KIND",
    "train": "orchestrator.kinds.train:KIND",
    "eval": "orchestrator.kinds.eval:KIND",
    "judge": "orchestrator.kinds.judge:KIND",
    "inference": "orchestrator.kinds.inference:INFERENCE",
    "sweep": "orchestrator.kinds.inference:SWEEP",
    "command": "orchestrator.kinds.command:KIND",
}


@dataclass
class Section:
    """A kind's part of `orchestrate report` (the shared frame puts the parts together).

    `context` is plain data merged into the report context (what `reporting.report.build` returns);
    `template` (a jinja file, usually beside the kind's report code) renders it, with the whole
    context, to markdown. `order` places the markdown and the recommendations among the other
    kinds' (the frame's failed-runs advice sits at 50); `overview` puts the markdown inside the
    Overview, before the jobs table. `plots` draws PNGs (name → bytes) when the report is written,
    so matplotlib loads only then; `files` are written beside report.md."""

    context: dict[str, Any]
    template: Path | None = None
    order: int = 50
    overview: bool = False
    recommendations: list[str] = field(default_factory=list)
    plots: Callable[[], dict[str, bytes]] | None = None
    files: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Kind(Protocol):
    """What the orchestrator asks of a job kind."""

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> type[BaseSpec]:
        """The spec model: validation, `plan()` (pure), `check_submit()` (the world)."""
        ...

    @property
    def records(self) -> tuple[type, ...]:
        """The typed files its jobs write; its reader uses the same models."""
        ...

    def read(self, reader: Any, run_dir: Path) -> bool:
        """Put the results under `run_dir` (a folder of logs/<experiment>/) into the table through
        `reader` (reporting.readers.Reader); False when the folder is not this kind's."""
        ...

    def sections(self, results: Any, options: Any) -> list[Section]:
        """Its sections of the shared report, from the results table (reporting.table.Results)."""
        ...

    def write_report(self, experiment: str, out: Path, fmt: str) -> Path | None:
        """A report of its own (instead of the shared frame), or None for the shared one."""
        ...


@dataclass(frozen=True)
class PluginKind:
    """A `Kind` made of references, so that naming it imports nothing heavy. `report` is a module
    with `read(reader, run_dir) -> bool`, `sections(results, options) -> list[Section]` and,
    optionally, `write_report(experiment, out, fmt) -> Path | None`; a kind without it has no
    results of its own (e.g. `command`)."""

    name: str
    spec_ref: str  # "module:Class" of its BaseSpec subclass
    records_ref: tuple[str, ...] = ()  # "module:Model" of the files its jobs write
    report: str | None = None  # module name

    @property
    def spec(self) -> type[BaseSpec]:
        return load_ref(self.spec_ref)

    @property
    def records(self) -> tuple[type, ...]:
        return tuple(load_ref(r) for r in self.records_ref)

    def _report(self) -> ModuleType | None:
        return importlib.import_module(self.report) if self.report else None

    def read(self, reader: Any, run_dir: Path) -> bool:
        module = self._report()
        return bool(module and module.read(reader, run_dir))

    def sections(self, results: Any, options: Any) -> list[Section]:
        module = self._report()
        return list(module.sections(results, options)) if module else []

    def write_report(self, experiment: str, out: Path, fmt: str) -> Path | None:
        module = self._report()
        own = getattr(module, "write_report", None)
        return own(experiment, out, fmt) if own else None


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, str]:
    """Kinds other installed packages register (entry-point group `orchestrator.kinds`). Scanning
    the installed packages takes ~0.3 s here, so a built-in kind is found without it."""
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def refs() -> dict[str, str]:
    """Every kind name → its reference: built-in first, then those of other packages (a package
    cannot replace a built-in kind)."""
    out = dict(KINDS)
    for name, ref in _entry_points().items():
        out.setdefault(name, ref)
    return out


def names() -> list[str]:
    return sorted(refs())


def get(name: str) -> Kind:
    """The kind called `name`; UserError (exit 2) naming the known kinds, or what is wrong with
    the registered object."""
    ref = KINDS.get(name) or _entry_points().get(name)
    if ref is None:
        raise UserError(f"kind: {name!r} is not a job kind; use one of: {', '.join(names())}")
    return _load(name, ref)


@functools.cache
def _load(name: str, ref: str) -> Kind:
    try:
        obj = load_ref(ref)
    except ValueError as e:
        raise UserError(f"kind {name!r} is registered as {ref!r}, which cannot be loaded: {e}") from None
    from orchestrator.core.spec import BaseSpec

    if isinstance(obj, type) and issubclass(obj, BaseSpec):  # a kind that is only a spec
        return PluginKind(name, ref)
    if not isinstance(obj, Kind):
        raise UserError(
            f"kind {name!r} is registered as {ref!r}, which is a {type(obj).__name__}, not a Kind "
            "(see orchestrator.core.kinds.PluginKind)"
        )
    return obj


def all_kinds() -> list[Kind]:
    """Every registered kind, in registry order (built-in first)."""
    return [_load(n, r) for n, r in refs().items()]
