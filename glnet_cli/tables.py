"""The CLI's tables: one way to build them and one way to print them (rich; commands only)."""

from __future__ import annotations

from typing import Any, Collection, Iterable, Sequence, Union

from rich.console import Console
from rich.table import Table

from glnet_cli.progress import stderr_console


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
          right: Collection[str] = (), title_left: bool = False) -> Table:
    """A titled table; cells are shown as ``str`` (None as empty), ``right`` columns right-aligned.

    Cells may hold rich markup (a colour swatch). ``title_left`` suits a title
    that is a sentence (a training epoch's figures) rather than a heading.
    """
    built = Table(title=title, title_justify="left" if title_left else "center")
    for column in columns:
        built.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        built.add_row(*("" if cell is None else str(cell) for cell in row))
    return built


def key_value_table(title: str, pairs: Iterable[tuple[str, Any]], *,
                    right: bool = False) -> Table:
    """An ``item | value`` table; a value of None reads ``none``."""
    return table(title, ("item", "value"),
                 ((name, "none" if value is None else value) for name, value in pairs),
                 right={"value"} if right else ())


def print_tables(*items: Union[Table, str], err: bool = False) -> None:
    """Tables (and lines of text after them) on stdout, or on stderr with ``err``.

    stderr is the progress bar's console, so a table printed while a bar runs
    (a training epoch's) lands above the bar instead of tearing it.
    """
    (stderr_console if err else Console()).print(*items)
