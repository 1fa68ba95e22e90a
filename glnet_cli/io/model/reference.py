"""Turn the reference implementation's released checkpoints into a glnet model file."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

from glnet_cli.errors import InputError, ReferenceCheckpointError
from glnet_cli.io.paths import check_distinct, check_output

if TYPE_CHECKING:
    from glnet_cli.classes import ClassTable
    from glnet_cli.io.model.checkpoint import ModelFile

#: How the released DeepGlobe models were trained: whole 2448 x 2448 images
#: seen by the global branch as 508 x 508, crops of 508, 0.5 m pixels.
DEEPGLOBE_CONTEXT = {"context_size": 2448, "size_g": 508, "size_p": 508, "gsd": 0.5}


def convert_reference(stage1: str, output: str, classes: ClassTable,
                      stage2: Optional[str] = None, stage3: Optional[str] = None,
                      context_size: int = 2448, size_g: int = 508, size_p: int = 508,
                      gsd: Optional[float] = 0.5, *, overwrite: bool = False) -> ModelFile:
    """Load the reference files, check them, and save our model file at ``output``.

    ``output`` may replace an existing file only with ``overwrite``, and never
    one of the reference files.
    """
    # torch: imported here, so that `glnet convert-reference --help` reads DEEPGLOBE_CONTEXT fast.
    from glnet_cli.io.model.checkpoint import InputScaling, ModelFile, ModelInfo, save_model
    from models.convert import ReferenceLayoutError, load_reference

    for label, path in (("--stage1", stage1), ("--stage2", stage2), ("--stage3", stage3)):
        if path is not None and not os.path.isfile(path):
            raise InputError(f"{path}: no such file ({label})")
    check_distinct([output], [stage1, stage2, stage3])
    check_output(output, overwrite)
    try:
        model = load_reference(stage1, stage2, stage3, n_classes=len(classes))
    except ReferenceLayoutError as exc:
        raise ReferenceCheckpointError(str(exc)) from None
    info = ModelInfo(
        config=model.config, classes=classes, size_g=size_g, size_p=size_p,
        context_size=context_size, gsd=gsd,
        scaling=InputScaling.fixed("uint8", model.config.in_channels),
        stage=model.stage,
        provenance={"source": "VITA-Group/GLNet reference checkpoints",
                    "files": [os.path.basename(p) for p in (stage1, stage2, stage3) if p]},
    )
    save_model(output, model, info, overwrite=overwrite)
    return ModelFile(model, info)
