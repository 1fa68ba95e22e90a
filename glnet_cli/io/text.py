"""Small text files named on the command line: class-table files and scene listings.

Only the reading is done here; a class table is parsed by
:mod:`glnet_cli.classes`, which every room may use and so opens no file.
"""

from __future__ import annotations

import os

from glnet_cli.classes import NAMED_TABLES, ClassTable, named_table, parse_class_table
from glnet_cli.errors import InputError


def load_class_table(spec: str) -> ClassTable:
    """A named table, a JSON/YAML file, or ``N`` for N generic classes."""
    table = named_table(spec)
    if table is not None:
        return table
    if not os.path.isfile(spec):
        raise InputError(
            f"{spec}: not a known class table ({', '.join(NAMED_TABLES)}), a number of classes, "
            "or an existing JSON/YAML file")
    return parse_class_table(spec, _read(spec))


def read_listing(path: str) -> list[str]:
    """The scenes an ``@list.txt`` file names, one a line: ``#`` comments and blank lines
    skipped, relative paths taken from the listing's folder."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: list file not found")
    lines = [ln.strip() for ln in _read(path).split("\n") if ln.strip() and not ln.startswith("#")]
    base = os.path.dirname(os.path.abspath(path))
    return [ln if os.path.isabs(ln) else os.path.join(base, ln) for ln in lines]


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()
