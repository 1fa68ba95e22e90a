"""glnet_cli/training/augment.py: a crop of the augmented tile is a window of the file."""

from __future__ import annotations

import numpy as np
import pytest

from glnet_cli.io.raster.windows import Box
from glnet_cli.training.augment import Augment


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_augment_windows_match_the_augmented_tile(flip, turns):
    full = np.arange(2 * 7 * 11).reshape(2, 7, 11)
    aug = Augment(flip, turns)
    turned = aug.apply(full)
    assert turned.shape[-2:] == aug.shape(7, 11)
    for box in (Box(0, 0, 3, 4), Box(2, 1, 5, 2), Box(1, 3, 2, 3)):
        src = aug.source_box(box, 7, 11)
        window = full[:, src.row:src.bottom, src.col:src.right]
        np.testing.assert_array_equal(aug.apply(window),
                                      turned[:, box.row:box.bottom, box.col:box.right])
