"""Training pictures: the curves and preview PNGs, the display stretch, and the lazy matplotlib."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glnet_cli.classes import ClassInfo, ClassTable
from glnet_cli.training.pictures import display_rgb, write_curves, write_preview
from glnet_cli.training.state import EpochRecord

CLASSES = ClassTable([ClassInfo(0, "background", (0, 0, 0)),
                      ClassInfo(1, "building", (255, 0, 0)),
                      ClassInfo(2, "water", (0, 0, 255))])


def history(epochs=(3, 2, 2), validation: bool = True) -> list[EpochRecord]:
    """Records of a run over three stages; ``monitor`` and ``val_loss`` set as attributes."""
    records, best = [], -1.0
    for stage, count in enumerate(epochs, start=1):
        for epoch in range(1, count + 1):
            n = len(records)
            record = EpochRecord(stage=stage, epoch=epoch, epochs=count, train_loss=1.0 / (n + 1),
                                 train_miou=None, lr=1e-3, seconds=1.0)
            score = 0.1 * n if validation and n != 5 else None
            record.val_loss = None if score is None else 1.2 / (n + 1)
            record.monitor = score
            record.best = score is not None and score > best
            best = max(best, score or best)
            records.append(record)
    return records


def read_png(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def no_partials(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".glnet-partial-" in p.name]


@pytest.mark.parametrize("validation", [True, False], ids=["validation", "no-validation"])
def test_curves_over_three_stages(tmp_path, validation):
    path = tmp_path / "m.curves.png"
    write_curves(history(validation=validation), "miou_fg", str(path))
    pixels = read_png(path)
    assert 300 <= pixels.shape[0] <= 1200 and 300 <= pixels.shape[1] <= 1200
    assert pixels.std() > 10  # something was drawn
    assert no_partials(tmp_path)


def test_curves_rewritten_each_epoch_and_before_the_new_fields(tmp_path):
    path = tmp_path / "m.curves.png"
    records = history()
    for n in range(1, len(records) + 1):  # rewritten in place every epoch, as training does
        write_curves(records[:n], "val_loss", str(path))
    first = path.read_bytes()
    # Records of today's EpochRecord (no monitor / val_loss fields) plot too.
    old = [EpochRecord(stage=1 + i // 2, epoch=1 + i % 2, epochs=2, train_loss=0.5, lr=1e-3,
                       train_miou=None, seconds=1.0) for i in range(4)]
    write_curves(old, "miou", str(path))
    assert path.read_bytes() != first and read_png(path).size
    write_curves([], "miou", str(path))  # nothing yet: an empty chart, no error
    assert read_png(path).size and no_partials(tmp_path)


def test_preview_draws_the_classes_in_their_colours(tmp_path):
    size = 48
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[:, : size // 2] = 200
    truth = np.full((size, size), 2, dtype=np.uint8)  # all water (blue)
    truth[:4] = 255  # unlabelled strip: grey
    prediction = np.ones((size, size), dtype=np.int64)  # all building (red)
    path = tmp_path / "m.preview.png"
    write_preview([(image, truth, prediction)] * 2, CLASSES, str(path))
    pixels = read_png(path).astype(int)
    height, width = pixels.shape[:2]
    assert 100 <= height <= 800 and 300 <= width <= 800

    def count(colour, columns) -> int:
        region = pixels[:, columns]
        return int((np.abs(region - np.array(colour)).sum(axis=2) < 40).sum())

    left, middle, right = slice(0, width // 3), slice(width // 3, 2 * width // 3), \
        slice(2 * width // 3, width)
    red, blue = (255, 0, 0), (0, 0, 255)
    # The prediction column is red and the truth column blue; the legend's swatches are small.
    assert count(red, right) > 5000 and count(red, middle) < 500 and count(red, left) < 500
    assert count(blue, middle) > 5000 and count(blue, right) < 500
    assert count((128, 128, 128), middle) > 200  # the unlabelled strip
    assert no_partials(tmp_path)


def test_preview_keeps_few_rows_and_needs_one(tmp_path):
    row = (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), np.uint8),
           np.zeros((16, 16), np.uint8))
    write_preview([row] * 4, CLASSES, str(tmp_path / "four.png"))
    write_preview([row] * 9, CLASSES, str(tmp_path / "nine.png"))
    assert read_png(tmp_path / "nine.png").shape == read_png(tmp_path / "four.png").shape
    with pytest.raises(ValueError, match="at least one"):
        write_preview([], CLASSES, str(tmp_path / "none.png"))
    assert not (tmp_path / "none.png").exists() and no_partials(tmp_path)


def test_display_rgb_stretches_each_band():
    rng = np.random.default_rng(0)
    image = np.stack([rng.normal(0, 1, (20, 30)), rng.uniform(100, 4000, (20, 30)),
                      np.full((20, 30), 7.0), rng.normal(size=(20, 30))]).astype(np.float32)
    rgb = display_rgb(image)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    for band in range(2):  # 2nd..98th percentile span the full range
        assert rgb[..., band].min() == 0 and rgb[..., band].max() == 255
        assert 0.01 < (rgb[..., band] == 255).mean() < 0.05
    assert (rgb[..., 2] == 0).all()  # a constant band does not divide by zero
    grey = display_rgb(image[1:2])
    assert grey.shape == (20, 30, 3)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 0] == rgb[..., 1]).all()
    with_nan = image.copy()
    with_nan[0, 0, 0] = np.nan
    assert display_rgb(with_nan)[0, 0, 0] == 0


def test_matplotlib_is_imported_only_when_drawing(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import glnet_cli.cli
        import glnet_cli.training.pictures as pictures
        from glnet_cli.classes import DEEPGLOBE
        assert "matplotlib" not in sys.modules, "imported with the module"
        pictures.display_rgb(np.zeros((3, 4, 4)))
        assert "matplotlib" not in sys.modules, "imported by display_rgb"
        zeros = np.zeros((4, 4), np.uint8)
        pictures.write_preview([(np.zeros((4, 4, 3), np.uint8), zeros, zeros)], DEEPGLOBE,
                               {str(tmp_path / "p.png")!r})
        assert "matplotlib" in sys.modules
        assert "matplotlib.pyplot" not in sys.modules
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
