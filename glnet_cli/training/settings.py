"""The paper's training settings and glnet's training defaults, as plain values.

Kept apart from :mod:`glnet_cli.training.train` so that ``glnet train --help`` shows
them without importing torch.
"""

from __future__ import annotations

#: The paper's epochs and learning rates, stage by stage.
PAPER_EPOCHS = (120, 50, 120)
PAPER_LR = (5e-5, 2e-5, 5e-5)
WEIGHT_DECAY = 5e-4
#: The model file a run writes when no -o is given, in the current folder.
DEFAULT_OUTPUT = "model.pt"
