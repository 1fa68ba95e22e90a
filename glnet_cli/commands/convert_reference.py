"""``glnet convert-reference``: import the released reference checkpoints."""

from __future__ import annotations

from typing import Optional

import click

from glnet_cli.architecture import SIZE_RANGE
from glnet_cli.io.model.reference import DEEPGLOBE_CONTEXT
from glnet_cli.options import overwrite_opt

_FILE = click.Path(dir_okay=False)


@click.command("convert-reference")
@click.option("--stage1", required=True, type=_FILE, help="fpn_deepglobe_global.pth")
@click.option("--stage2", type=_FILE, help="fpn_deepglobe_global2local.pth")
@click.option("--stage3", type=_FILE, help="fpn_deepglobe_local2global.pth")
@click.option("--classes", default="deepglobe", show_default=True,
              help="Class table: 'deepglobe' or a JSON/YAML file.")
@click.option("-o", "--output", required=True, type=_FILE, help="Model file to write.")
@click.option("--context-size", type=click.IntRange(min=1),
              default=DEEPGLOBE_CONTEXT["context_size"], show_default=True,
              help="Full-resolution pixels (a side) the global branch saw in training.")
@click.option("--size-g", type=click.IntRange(*SIZE_RANGE), default=DEEPGLOBE_CONTEXT["size_g"],
              show_default=True, help="Global view size used in training.")
@click.option("--size-p", type=click.IntRange(*SIZE_RANGE), default=DEEPGLOBE_CONTEXT["size_p"],
              show_default=True, help="Local crop size used in training.")
@click.option("--gsd", type=float, default=DEEPGLOBE_CONTEXT["gsd"], show_default=True,
              help="Ground sampling distance of the training data (m/pixel).")
@overwrite_opt
def convert_reference_command(stage1: str, stage2: Optional[str], stage3: Optional[str],
                              classes: str, output: str, context_size: int, size_g: int,
                              size_p: int, gsd: float, overwrite: bool) -> None:
    """Convert the reference GLNet's released checkpoints into a glnet model file.

    \b
    Example:
      glnet convert-reference --stage1 fpn_deepglobe_global.pth \\
        --stage2 fpn_deepglobe_global2local.pth \\
        --stage3 fpn_deepglobe_local2global.pth --classes deepglobe -o deepglobe.pt
    """
    from glnet_cli.io.model.reference import convert_reference
    from glnet_cli.io.text import load_class_table  # here, so that --help starts at once

    result = convert_reference(stage1, output, load_class_table(classes), stage2, stage3,
                               context_size, size_g, size_p, gsd, overwrite=overwrite)
    click.echo(f"wrote {output}: stage {result.info.stage}, {result.model.config.backbone}, "
               f"{len(result.info.classes)} classes")
