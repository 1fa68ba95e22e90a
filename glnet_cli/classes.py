"""Class tables: ids, names and colours of the classes a model predicts.

A table is chosen by name (``deepglobe``) or read from a JSON or YAML file
holding a list of ``{"id": 1, "name": "urban", "color": [0, 255, 255]}``; the
file is read by :func:`glnet_cli.io.text.load_class_table`, parsed here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from glnet_cli.errors import InputError

#: The label value that marks "no label" (left out of losses and metrics).
IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    color: tuple[int, int, int]


class ClassTable:
    """An ordered set of classes with contiguous ids 0..n-1."""

    def __init__(self, classes: Iterable[ClassInfo]) -> None:
        self.classes = sorted(classes, key=lambda c: c.id)
        ids = [c.id for c in self.classes]
        if ids != list(range(len(ids))):
            raise InputError(f"class ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        if not 1 <= len(ids) <= 254:
            raise InputError(f"a class table needs 1 to 254 classes, got {len(ids)}")

    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self):
        return iter(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def name_of(self, class_id: int) -> str:
        return self.classes[class_id].name if 0 <= class_id < len(self) else str(class_id)

    def to_list(self) -> list[dict]:
        return [{"id": c.id, "name": c.name, "color": list(c.color)} for c in self.classes]

    @classmethod
    def from_list(cls, items: Sequence[dict], source: str = "class table") -> "ClassTable":
        try:
            return cls(ClassInfo(int(i["id"]), str(i["name"]),
                                 _rgb(i.get("color", _default_color(int(i["id"])))))
                       for i in items)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: each class needs an id and a name ({exc})") from None

    def colors_to_index(self, rgb: np.ndarray, source: str = "mask") -> np.ndarray:
        """Decode an RGB colour-coded mask (3, H, W) into class ids; unknown colours raise."""
        packed = (rgb[0].astype(np.int32) << 16) | (rgb[1].astype(np.int32) << 8) | rgb[2]
        lookup = {(c.color[0] << 16) | (c.color[1] << 8) | c.color[2]: c.id for c in self.classes}
        out = np.full(packed.shape, IGNORE_INDEX, dtype=np.uint8)
        known = np.zeros(packed.shape, dtype=bool)
        for value, class_id in lookup.items():
            hit = packed == value
            out[hit] = class_id
            known |= hit
        if not known.all():
            bad = packed[~known][0]
            colour = (int(bad >> 16) & 255, int(bad >> 8) & 255, int(bad) & 255)
            raise InputError(f"{source}: colour {colour} is not in the class table")
        return out

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """A GDAL colour table: class colours, and transparent black for nodata."""
        table = {c.id: (*c.color, 255) for c in self.classes}
        table[IGNORE_INDEX] = (0, 0, 0, 0)
        return table


def _rgb(values: Iterable[Any]) -> tuple[int, int, int]:
    """A colour as three ints (ValueError unless it has three values)."""
    rgb = [int(v) for v in values]
    if len(rgb) != 3:
        raise ValueError(f"colour {rgb}: give three values, red, green and blue")
    return rgb[0], rgb[1], rgb[2]


def _default_color(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct colour for tables that name none."""
    rng = np.random.default_rng(class_id + 7)
    return _rgb(rng.integers(40, 256, 3))


DEEPGLOBE = ClassTable([
    ClassInfo(0, "unknown", (0, 0, 0)),
    ClassInfo(1, "urban", (0, 255, 255)),
    ClassInfo(2, "agriculture", (255, 255, 0)),
    ClassInfo(3, "rangeland", (255, 0, 255)),
    ClassInfo(4, "forest", (0, 255, 0)),
    ClassInfo(5, "water", (0, 0, 255)),
    ClassInfo(6, "barren", (255, 255, 255)),
])

#: The tables a spec may name.
NAMED_TABLES = {"deepglobe": DEEPGLOBE}


def generic_table(n_classes: int) -> ClassTable:
    """``class_0 .. class_{n-1}``, for masks that come with no table."""
    return ClassTable(ClassInfo(i, f"class_{i}", _default_color(i)) for i in range(n_classes))


def named_table(spec: str) -> Optional[ClassTable]:
    """The table ``spec`` names (``deepglobe``, or ``N`` for N generic classes); None if none.

    A spec naming no table is a file, which :mod:`glnet_cli.io.text` reads.
    """
    if spec.lower() in NAMED_TABLES:
        return NAMED_TABLES[spec.lower()]
    if spec.isdigit():
        return generic_table(int(spec))
    return None


def parse_class_table(path: str, text: str) -> ClassTable:
    """The table in the JSON/YAML ``text`` of the file ``path`` (YAML by its suffix)."""
    items = _parse(path, text)
    if isinstance(items, dict) and "classes" in items:
        items = items["classes"]
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a list of classes with id, name and color")
    return ClassTable.from_list(items, path)


def _parse(path: str, text: str) -> object:
    if path.lower().endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise InputError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), "
                             "or give the table as JSON") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def table_from_tags(tags: dict, n_classes: Optional[int] = None) -> Optional[ClassTable]:
    """The class table glnet writes into mask tags (``GLNET_CLASSES``), if any."""
    raw = tags.get("GLNET_CLASSES")
    if raw:
        try:
            return ClassTable.from_list(json.loads(raw), "mask tags")
        except (InputError, json.JSONDecodeError):
            return None
    return generic_table(n_classes) if n_classes else None
