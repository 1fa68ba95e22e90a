"""Blending: the partial upsampling is torch's bilinear resize, the argmax torch's argmax."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from glnet_cli.classes import IGNORE_INDEX
from glnet_cli.inference.blend import CropResult, TileBlender, first_argmax, upsample_region_t
from glnet_cli.io.raster.windows import Box


@pytest.mark.parametrize("size_in, size_out", [((16, 16), (64, 64)), ((127, 120), (508, 480)),
                                               ((5, 7), (20, 31))])
def test_region_upsampling_equals_slicing_the_full_resize(size_in, size_out):
    maps = torch.rand(3, *size_in)
    full = F.interpolate(maps[None], size=size_out, mode="bilinear", align_corners=False)[0]
    for rows, cols in ((slice(0, size_out[0]), slice(0, size_out[1])),
                       (slice(3, 11), slice(size_out[1] - 9, size_out[1])),
                       (slice(size_out[0] // 2, size_out[0]), slice(1, 2))):
        region = upsample_region_t(maps.half(), size_out, rows, cols)
        assert region.dtype == torch.float32
        assert region.shape == (3, cols.stop - cols.start, rows.stop - rows.start)
        expected = F.interpolate(maps.half().float()[None], size=size_out, mode="bilinear",
                                 align_corners=False)[0]
        assert torch.allclose(region.transpose(1, 2), expected[:, rows, cols], atol=1e-6)
        assert torch.allclose(region.transpose(1, 2), full[:, rows, cols], atol=2e-3)


def test_first_argmax_is_torch_argmax_with_ties_to_the_first_class():
    torch.manual_seed(0)
    values = torch.rand(7, 40, 50)
    values[2, :10] = 2.0  # ties for the maximum: the first class must win
    values[5, :10] = 2.0
    index = first_argmax(values)
    assert index.dtype == torch.uint8
    assert torch.equal(index.long(), values.argmax(dim=0))
    assert (index[:10] == 2).all()


def test_a_tile_is_the_weighted_vote_of_its_crops_and_nodata_where_none_was_valid():
    # Two crops of 8 px over a 6 x 12 tile; the left one says class 0, the right one class 1.
    left = torch.tensor([[[0.75]], [[0.25]]]).expand(2, 2, 2).half()
    right = torch.tensor([[[0.125]], [[0.875]]]).expand(2, 2, 2).half()
    valid = np.ones((8, 8), dtype=bool)
    invalid_right = valid.copy()
    invalid_right[:, 6:] = False
    crops = [CropResult(Box(0, 0, 8, 8), left, valid),
             CropResult(Box(0, 4, 8, 8), right, invalid_right)]
    tile = TileBlender(8, 2, 2, probabilities=True).finish(Box(0, 0, 6, 12), crops)
    assert tile.classes.shape == (6, 12) and tile.classes.dtype == np.uint8
    assert (tile.classes[:, :4] == 0).all()  # the left crop alone
    assert (tile.classes[:, 8:10] == 1).all()  # the right crop alone
    assert (tile.classes[:, 10:] == IGNORE_INDEX).all()  # only the right crop, invalid there
    assert (tile.probabilities[:, :, 10:] == 0).all()
    # Where only one crop counts, the probabilities are its own, as bytes.
    assert (tile.probabilities[:, :, 1] == [[191], [64]]).all()
