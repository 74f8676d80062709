"""The layer table of docs/architecture.md, enforced: which folder of src/orchestrator may import
which. Every import counts, at module level or inside a function (a lazy import is still a
dependency); names in strings (the kind registry's `module:attribute` references) are not imports."""

from __future__ import annotations

import ast
from pathlib import Path

import orchestrator

PACKAGE = Path(orchestrator.__file__).resolve().parent

# folder → the folders it may import besides itself; `kinds/*` stands for every kind's folder.
MAY_IMPORT = {
    "core": set(),
    "executors": {"core"},
    "scoring": {"core"},
    "generation": {"core", "scoring"},
    "reporting": {"core", "scoring"},
    "kinds/*": {"core", "generation", "scoring", "reporting", "kinds"},
    "cli": {"core", "executors", "scoring", "generation", "reporting", "kinds", "kinds/*"},
}
# the package's own modules (__main__.py, gpu_check.py: commands) stand where cli/ does
MAY_IMPORT[""] = MAY_IMPORT["cli"] | {"cli"}


def layer(parts: tuple[str, ...]) -> str:
    """The folder a module belongs to: `kinds/<kind>` for a kind, else the top folder ('' for the
    package's own modules; `kinds` for the kinds package's __init__)."""
    if not parts:
        return ""
    if parts[0] == "kinds" and len(parts) > 1:
        return f"kinds/{parts[1]}"
    return parts[0]


def module_parts(path: Path) -> tuple[str, ...]:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return parts if path.parent != PACKAGE else ()


def imports(path: Path) -> set[tuple[str, ...]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "orchestrator"]
        for name in names:
            parts = tuple(name.split("."))
            if parts[0] == "orchestrator" and len(parts) > 1:
                found.add(parts[1:])
    return found


def edges() -> dict[tuple[str, str], list[str]]:
    """(importing folder, imported folder) → the modules that do it."""
    out: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        src = layer(module_parts(path))
        for target in imports(path):
            dst = layer(target if target[0] != "kinds" or len(target) > 1 else target)
            if dst != src:
                out.setdefault((src, dst), []).append(str(path.relative_to(PACKAGE)))
    return out


def allowed(src: str, dst: str) -> bool:
    rule = MAY_IMPORT["kinds/*" if src.startswith("kinds/") else src]
    return dst in rule or (dst.startswith("kinds/") and "kinds/*" in rule)


def test_every_import_follows_the_layer_table():
    broken = {
        f"{src} imports {dst}: {', '.join(sorted(set(mods)))}"
        for (src, dst), mods in edges().items()
        if not allowed(src, dst)
    }
    assert not broken, "imports against the layer table (docs/architecture.md):\n" + "\n".join(sorted(broken))


def test_the_check_sees_a_break(tmp_path, monkeypatch):
    """The scan itself: a kind importing another kind, or core importing reporting, is caught."""
    assert not allowed("kinds/judge", "kinds/inference") and not allowed("core", "reporting")
    assert not allowed("reporting", "kinds/rag") and not allowed("generation", "kinds/train")
    assert allowed("kinds/rag", "reporting") and allowed("cli", "kinds/eval") and allowed("kinds/echo", "core")
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    from orchestrator.kinds.train import spec\n    import orchestrator.reporting.table\n"
    )
    assert imports(probe) == {("kinds", "train"), ("reporting", "table")}
