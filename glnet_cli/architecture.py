"""What a model file may describe: the trunks glnet builds and the sizes it accepts.

Plain values, so that the model-file checks (io/) and the commands' ``--help``
share them without importing torch or the training code.
"""

from __future__ import annotations

#: The trunks :func:`models.backbone.build_backbone` builds (tests check that they agree).
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
#: Sides (pixels) a global view or a local crop may have: a ResNet needs 32 to
#: reach its coarsest level; beyond 16384 no device holds the activations.
SIZE_RANGE = (32, 16384)
