"""The rooms of the package import only downwards: the layering the README's picture shows.

Read from the source with ``ast`` (no imports run), so a new upward import
fails here before it tangles the flow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Modules every room may use: errors, class tables, device choice, plain settings.
BASE = {"glnet_cli.errors", "glnet_cli.classes", "glnet_cli.device", "glnet_cli.openmp",
        "glnet_cli.signals", "glnet_cli.progress_callback", "glnet_cli.architecture"}

#: Room -> the rooms (prefixes) it may import, besides BASE and itself.
ALLOWED = {
    "models": set(),
    "glnet_cli.io": {"models"},
    "glnet_cli.inference": {"glnet_cli.io", "models"},
    "glnet_cli.training": {"glnet_cli.io", "glnet_cli.inference.grid",
                           "glnet_cli.inference.memory", "glnet_cli.evaluation.metrics",
                           "models"},
    "glnet_cli.evaluation": {"glnet_cli.io"},
    "glnet_cli.vector": {"glnet_cli.io"},
}

#: The CLI's display and parsing: library rooms never import them.
CLI_ONLY = ("click", "rich", "glnet_cli.cli", "glnet_cli.commands", "glnet_cli.options",
            "glnet_cli.progress", "glnet_cli.tables")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _room(module: str) -> str | None:
    return next((room for room in ALLOWED if _within(module, room)), None)


def _library_modules() -> list[Path]:
    paths = sorted((ROOT / "glnet_cli").rglob("*.py")) + sorted((ROOT / "models").rglob("*.py"))
    return [p for p in paths if _room(_module_name(p)) or _module_name(p) in BASE]


@pytest.mark.parametrize("path", _library_modules(), ids=lambda p: _module_name(p))
def test_imports_go_downwards(path):
    module = _module_name(path)
    room = _room(module)
    allowed = ({room} | ALLOWED[room] if room else set()) | BASE
    ours = {n for n in _imports(path) if _within(n, "glnet_cli") or _within(n, "models")}
    upward = sorted(name for name in ours if not any(_within(name, ok) for ok in allowed))
    assert not upward, f"{module} imports {upward}; its room may use {sorted(allowed)}"
    cli = sorted(name for name in _imports(path) if any(_within(name, c) for c in CLI_ONLY))
    assert not cli, f"{module} (library) imports the CLI's {cli}"


def test_base_modules_import_only_each_other():
    for module in BASE:
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.exists():
            continue
        ours = {n for n in _imports(path) if _within(n, "glnet_cli") or _within(n, "models")}
        assert ours <= BASE, f"{module} imports {sorted(ours - BASE)}"


def test_every_library_module_is_in_a_room():
    """A new module at the top of glnet_cli/ must be a room, a base module, the CLI or a shim."""
    top = {p.stem for p in (ROOT / "glnet_cli").glob("*.py")}
    cli = {"__init__", "__main__", "cli", "options", "progress", "tables", "info"}
    shims = {"segment", "train", "vectorize", "evaluate", "checkpoint"}
    base = {m.split(".")[-1] for m in BASE}
    assert top <= cli | shims | base, sorted(top - cli - shims - base)


def test_shims_only_re_export():
    """The README's old import paths re-export; they hold no code of their own."""
    for name in ("segment", "train", "vectorize", "evaluate", "checkpoint"):
        tree = ast.parse((ROOT / "glnet_cli" / f"{name}.py").read_text())
        kinds = {type(node).__name__ for node in tree.body}
        assert kinds <= {"Expr", "ImportFrom"}, (name, kinds)
