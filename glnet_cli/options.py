"""Options shared by several commands, declared once."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import click


class BandsType(click.ParamType):
    """``3,2,1``: 1-based band indexes, in the order the model expects them."""

    name = "bands"

    def convert(self, value: Any, param: Optional[click.Parameter],
                ctx: Optional[click.Context]) -> list[int]:
        if isinstance(value, list):
            return value
        try:
            bands = [int(v) for v in str(value).split(",") if v.strip()]
        except ValueError:
            self.fail(f"{value!r}: give 1-based band numbers such as 3,2,1", param, ctx)
        if not bands or min(bands) < 1:
            self.fail(f"{value!r}: band numbers start at 1", param, ctx)
        return bands


class KeyValueType(click.ParamType):
    """``KEY=VALUE`` pairs, as rio's ``--co``."""

    name = "key=value"

    def convert(self, value: Any, param: Optional[click.Parameter],
                ctx: Optional[click.Context]) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, val = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"{value!r}: expected KEY=VALUE", param, ctx)
        return key.strip().upper(), val.strip()


class IntListType(click.ParamType):
    """``1,3``: a comma-separated list of integers."""

    name = "ints"

    def convert(self, value: Any, param: Optional[click.Parameter],
                ctx: Optional[click.Context]) -> list[int]:
        if isinstance(value, list):
            return value
        try:
            return [int(v) for v in str(value).split(",") if v.strip()]
        except ValueError:
            self.fail(f"{value!r}: expected comma-separated integers such as 1,3", param, ctx)


overwrite_opt = click.option(
    "--overwrite", is_flag=True, help="Replace the output if it exists.")
quiet_opt = click.option(
    "-q", "--quiet", is_flag=True, help="No progress display; errors and the summary only.")


def device_option(default: str) -> Callable[[Any], Any]:
    """``--device``, defaulting to ``default`` (a library default where the command has one)."""
    return click.option("--device", default=default, show_default=True,
                        help="auto (CUDA when present), cpu, cuda or cuda:N.")


def precision_option(default: str) -> Callable[[Any], Any]:
    """``--precision``; ``default`` is the command's library default, so both agree."""
    return click.option(
        "--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default=default,
        show_default=True,
        help="Arithmetic precision. auto: segment uses bf16 where the device computes it "
             "natively (CUDA GPUs since Ampere, CPUs with AVX512-BF16 or AMX), fp16 on older "
             "GPUs, fp32 elsewhere; train uses fp32. fp16 needs a GPU.")


class BatchSizeType(click.ParamType):
    """``auto`` (None: chosen from the memory budget) or a positive number."""

    name = "auto|n"

    def convert(self, value: Any, param: Optional[click.Parameter],
                ctx: Optional[click.Context]) -> Optional[int]:
        if value is None or isinstance(value, int):
            return value
        if str(value).strip().lower() == "auto":
            return None
        try:
            size = int(value)
        except ValueError:
            size = 0
        if size < 1:
            self.fail(f"{value!r}: use auto or a number of crops (1 or more)", param, ctx)
        return size


def batch_size_option(help: str, default: Optional[int]) -> Callable[[Any], Any]:
    """``--batch-size`` defaulting to the command's library ``default``; None is ``auto``.

    With ``auto`` as its default, the option takes ``auto`` or a number; otherwise a number
    only. Segment's batch is crops per pass, which ``auto`` sizes to the memory; train's is
    tiles per optimiser step, which changes the training itself.
    """
    size = BatchSizeType() if default is None else click.IntRange(min=1)
    return click.option("--batch-size", type=size, default=default or "auto", show_default=True,
                        help=help)


def bands_option(default: Optional[Sequence[int]]) -> Callable[[Any], Any]:
    """``--bands``; ``default`` is the command's library default (None: the first N)."""
    return click.option(
        "--bands", type=BandsType(), default=default,
        help="1-based input bands in model order, e.g. 3,2,1 (default: the first N).")


bands_opt = bands_option(None)
creation_opt = click.option(
    "--co", "creation_options", type=KeyValueType(), multiple=True,
    help="GDAL creation option KEY=VALUE for the output; repeatable.")
model_opt = click.option(
    "-m", "--model", "model_path", envvar="GLNET_MODEL", type=click.Path(dir_okay=False),
    default=None, help="Model file (default: $GLNET_MODEL).")
classes_opt = click.option(
    "--classes", default=None,
    help="Class table: 'deepglobe', a JSON/YAML file of id/name/color, or a number of classes.")
