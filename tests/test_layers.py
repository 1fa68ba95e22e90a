"""The rooms of the package import only downwards: the layering the README's picture shows.

Read from the source with ``ast`` (no imports run), so a new upward import, or
a file opened outside io/, fails here before it tangles the flow. The package's
one public face, its lazy exports, is checked here too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
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
    """A new module at the top of glnet_cli/ must be a room, a base module or the CLI."""
    top = {p.stem for p in (ROOT / "glnet_cli").glob("*.py")}
    cli = {"__init__", "__main__", "cli", "options", "progress", "tables"}
    base = {m.split(".")[-1] for m in BASE}
    assert top <= cli | base, sorted(top - cli - base)


#: Library modules outside io/ that may open files, and why: none of them user files.
OPEN_EXEMPT = {
    "glnet_cli.inference.memory": "reads /proc/self/statm and status: system probing",
    "glnet_cli.device": "reads /proc/cpuinfo: system probing",
}
#: Calls that open a file: ``open()``, and attribute calls named like these
#: (``rasterio.open``, ``fiona.open``, ``Path.read_text``, ...).
_OPENING_ATTRIBUTES = {"open", "read_text", "write_text", "read_bytes", "write_bytes"}
_OPENING_TORCH = {"load", "save"}


def _file_openings(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open":
            found.append(f"line {node.lineno}: open()")
        elif isinstance(func, ast.Attribute) and (
                func.attr in _OPENING_ATTRIBUTES
                or (func.attr in _OPENING_TORCH and isinstance(func.value, ast.Name)
                    and func.value.id == "torch")):
            found.append(f"line {node.lineno}: {ast.unparse(func)}()")
    return found


@pytest.mark.parametrize(
    "path", [p for p in _library_modules() if _within(_module_name(p), "glnet_cli")
             and not _within(_module_name(p), "glnet_cli.io")],
    ids=lambda p: _module_name(p))
def test_only_io_opens_files(path):
    """The README's promise: outside io/, glnet_cli's library code opens no file."""
    module = _module_name(path)
    openings = _file_openings(path)
    if module in OPEN_EXEMPT:
        assert openings, f"{module} opens no file now; drop it from OPEN_EXEMPT"
        return
    assert not openings, f"{module} opens files ({openings}); do it in glnet_cli/io"


def test_the_python_api_is_exported_lazily():
    """``from glnet_cli import X`` works for every public name, without torch at import."""
    import glnet_cli

    for name in glnet_cli.__all__:
        assert getattr(glnet_cli, name) is not None, name
    assert set(glnet_cli.__all__) <= set(dir(glnet_cli))
    with pytest.raises(AttributeError, match="no attribute 'Segmentor'"):
        glnet_cli.Segmentor  # noqa: B018


def test_importing_the_package_loads_no_torch():
    """The names resolve on first use: ``import glnet_cli`` (``glnet --help``) stays light."""
    probe = ("import sys, glnet_cli; print('torch' in sys.modules); "
             "glnet_cli.Segmenter; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.split()
    assert out == ["False", "True"]
