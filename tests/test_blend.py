"""Blending helpers: the partial upsampling equals torch's bilinear resize."""

import pytest
import torch
import torch.nn.functional as F

from glnet_cli.blend import upsample_region


@pytest.mark.parametrize("size_in, size_out", [((16, 16), (64, 64)), ((127, 120), (508, 480)),
                                               ((5, 7), (20, 31))])
def test_region_upsampling_equals_slicing_the_full_resize(size_in, size_out):
    maps = torch.rand(3, *size_in)
    full = F.interpolate(maps[None], size=size_out, mode="bilinear", align_corners=False)[0]
    for rows, cols in ((slice(0, size_out[0]), slice(0, size_out[1])),
                       (slice(3, 11), slice(size_out[1] - 9, size_out[1])),
                       (slice(size_out[0] // 2, size_out[0]), slice(1, 2))):
        region = upsample_region(maps, size_out, rows, cols)
        assert torch.allclose(region, full[:, rows, cols], atol=1e-6)
