"""Pictures of a training run: loss and metric curves, and predictions on validation tiles.

matplotlib is imported inside the writers only (and drawn with its Agg canvas,
never through pyplot), so commands that do not plot never load it. Both
writers publish their PNG atomically: a viewer refreshing it between epochs
never sees a half-written file.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from glnet_cli.io.png import write_png

if TYPE_CHECKING:
    from glnet_cli.classes import ClassTable
    from glnet_cli.training.state import EpochRecord

#: At most this many tiles in a preview, so the picture stays small and quick to draw.
MAX_PREVIEW_ROWS = 4
#: The colour of unlabelled pixels (``ignore_index``) and of ids outside the class table.
IGNORE_COLOR = (128, 128, 128)
_DPI = 80


def display_rgb(image: np.ndarray) -> np.ndarray:
    """A network input (bands, H, W), any bands and scaling, as uint8 (H, W, 3) for display.

    The first three bands are shown as RGB (fewer than three: the first band as
    grey), each stretched between its 2nd and 98th percentile, as GIS viewers
    do, so that normalised or 16-bit inputs look like a photograph.
    """
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] == 0:
        raise ValueError(f"expected an image of shape (bands, H, W), got {array.shape}")
    bands = array[:3] if array.shape[0] >= 3 else np.repeat(array[:1], 3, axis=0)
    out = np.zeros(bands.shape, dtype=np.uint8)
    for i, band in enumerate(bands):
        finite = np.isfinite(band)
        if not finite.any():
            continue
        low, high = np.percentile(band[finite], (2, 98))
        span = high - low if high > low else 1.0
        scaled = np.clip((np.where(finite, band, low) - low) / span, 0.0, 1.0)
        out[i] = np.round(scaled * 255).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(1, 2, 0))


def write_curves(history: Sequence["EpochRecord"], monitor: str, path: str) -> None:
    """``MODEL.curves.png``: losses (top) and the monitored metric (bottom) per epoch.

    Epochs are numbered over the whole run, stage boundaries are drawn and
    labelled, and the epoch ``MODEL.best.pt`` holds (the last one flagged
    ``best``) is starred. Missing values (no validation) leave gaps.
    """
    from matplotlib.figure import Figure

    x = np.arange(1, len(history) + 1)
    train = _series(history, "train_loss")
    val = _series(history, "val_loss")
    metric = _series(history, "monitor")
    fig = Figure(figsize=(8, 6), dpi=_DPI)
    loss_ax, metric_ax = fig.subplots(2, 1, sharex=True)
    _plot(loss_ax, x, train, "train loss")
    _plot(loss_ax, x, val, "validation loss")
    loss_ax.set_ylabel("loss")
    _plot(metric_ax, x, metric, monitor)
    metric_ax.set_ylabel(monitor)
    metric_ax.set_xlabel("epoch")
    if np.isnan(metric).all():
        metric_ax.text(0.5, 0.5, "no validation", transform=metric_ax.transAxes,
                       ha="center", va="center", color="grey")
    best = [i for i, record in enumerate(history) if getattr(record, "best", False)]
    if best and not math.isnan(metric[best[-1]]):
        i = best[-1]
        metric_ax.plot([x[i]], [metric[i]], marker="*", markersize=14, color="tab:red",
                       linestyle="none", label=f"best: epoch {x[i]} ({metric[i]:.3f})")
    for ax in (loss_ax, metric_ax):
        _mark_stages(ax, history)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="small")
    if len(history):
        loss_ax.set_xlim(0.5, len(history) + 0.5)
    fig.suptitle(f"Training curves (monitored: {monitor})")
    _save(fig, path)


def write_preview(rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                  classes: "ClassTable", path: str, ignore_index: int = 255) -> None:
    """``MODEL.preview.png``: image, truth and prediction of a few tiles, in the class colours.

    Each row is (uint8 (H, W, 3) image, (H, W) truth ids, (H, W) predicted ids);
    only the first :data:`MAX_PREVIEW_ROWS` are drawn. Unlabelled pixels are grey.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = list(rows)[:MAX_PREVIEW_ROWS]
    if not rows:
        raise ValueError("a preview needs at least one (image, truth, prediction) row")
    palette = _palette(classes, ignore_index)
    fig = Figure(figsize=(7.5, 2.5 * len(rows) + 0.8), dpi=_DPI)
    axes = fig.subplots(len(rows), 3, squeeze=False)
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.3 / (2.5 * len(rows) + 0.8),
                        bottom=0.7 / (2.5 * len(rows) + 0.8), wspace=0.04, hspace=0.08)
    for r, (image, truth, prediction) in enumerate(rows):
        panels = (np.asarray(image), _colorize(truth, palette), _colorize(prediction, palette))
        for c, (panel, title) in enumerate(zip(panels, ("image", "truth", "prediction"))):
            ax = axes[r][c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_axis_off()
            if r == 0:
                ax.set_title(title, fontsize="medium")
    handles = [Patch(facecolor=_fractions(info.color), edgecolor="black", label=info.name)
               for info in classes]
    handles.append(Patch(facecolor=_fractions(IGNORE_COLOR), edgecolor="black",
                         label="no label"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6),
               fontsize="small", frameon=False)
    _save(fig, path)


def _series(history: Sequence[Any], name: str) -> np.ndarray:
    """A record field per epoch as floats, NaN where absent or None (so the plot shows a gap)."""
    values = [getattr(record, name, None) for record in history]
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def _plot(ax: Any, x: np.ndarray, y: np.ndarray, label: str) -> None:
    if not np.isnan(y).all():
        ax.plot(x, y, marker="o", markersize=3, label=label)


def _mark_stages(ax: Any, history: Sequence[Any]) -> None:
    """A dashed line where the stage changes, and each stage's name at the top of its span."""
    starts = [i for i, record in enumerate(history)
              if i == 0 or record.stage != history[i - 1].stage]
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(history)
        if start > 0:
            ax.axvline(start + 0.5, color="grey", linestyle="--", linewidth=1)
        ax.text((start + end) / 2 + 0.5, 0.98, f"stage {history[start].stage}",
                transform=ax.get_xaxis_transform(), ha="center", va="top",
                fontsize="small", color="dimgrey")


def _palette(classes: "ClassTable", ignore_index: int) -> np.ndarray:
    """A 256-entry RGB lookup: class colours, grey for ``ignore_index`` and unknown ids."""
    palette = np.tile(np.asarray(IGNORE_COLOR, dtype=np.uint8), (256, 1))
    for info in classes:
        if 0 <= info.id < 256 and info.id != ignore_index:
            palette[info.id] = info.color
    return palette


def _fractions(color: tuple[int, int, int]) -> tuple[float, float, float]:
    """An 8-bit RGB colour as matplotlib takes it: fractions of 255."""
    red, green, blue = color
    return red / 255, green / 255, blue / 255


def _colorize(ids: np.ndarray, palette: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"expected a (H, W) array of class ids, got shape {ids.shape}")
    inside = (ids >= 0) & (ids < 256)
    return palette[np.where(inside, ids, 255).astype(np.intp)]


def _save(fig: Any, path: str) -> None:
    """Render with Agg (no pyplot, no global state) and publish atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    write_png(path, lambda tmp: fig.savefig(tmp, format="png", dpi=_DPI), drawer="matplotlib",
              overwrite=True)
