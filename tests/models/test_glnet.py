"""GLNet's branches, stages and feature sharing, on tiny configurations."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

from models.convert import load_reference
from models.fpn import Pyramid, SharedFeatures
from models.glnet import GLNet, LocalToGlobalCanvas, coverage_template
from tests.models.reference_layout import oracle, reference_state_dict

N_CLASSES = 3


def tiny(backbone: str = "resnet18", bands: int = 3, l2g: bool = False) -> GLNet:
    """A tiny GLNet made from seed 0 (a fresh copy: tests change their model)."""
    model, rng = _tiny(backbone, bands, l2g)
    torch.set_rng_state(rng)  # as if just built: the same random numbers follow
    return copy.deepcopy(model)


@functools.lru_cache(maxsize=1)  # the model the next tests ask for again
def _tiny(backbone: str, bands: int, l2g: bool) -> tuple[GLNet, torch.Tensor]:
    """Built once (random initialisation is most of a tiny model's cost), with the RNG state
    the build left."""
    torch.manual_seed(0)
    return GLNet(N_CLASSES, backbone, bands, width=16, l2g=l2g), torch.get_rng_state()


def crops_of(size: int = 64, patch: int = 32):
    starts = [0, size - patch]
    tl = [(r / size, c / size) for r in starts for c in starts]
    return tl, (patch / size, patch / size)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34",
                                      pytest.param("resnet50", marks=pytest.mark.slow),
                                      pytest.param("resnet101", marks=pytest.mark.slow)])
@pytest.mark.parametrize("bands", [1, 3, 4])
def test_output_shapes_every_stage(backbone, bands):
    model = tiny(backbone, bands, l2g=True).eval()
    image = torch.rand(1, bands, 64, 64)
    patches = torch.rand(4, bands, 32, 32)
    tl, ratio = crops_of()
    with torch.no_grad():
        assert model.global_pyramid(image).logits.shape == (1, N_CLASSES, 16, 16)
        model.l2g_branch = None  # the stage-2 model
        out2 = model.reference_forward(image, patches, tl, ratio)
        model.add_l2g_branch()
        model.eval()
        out3 = model.reference_forward(image, patches, tl, ratio)
    for out in (out2, out3):
        assert out["aggregated"].shape == (4, N_CLASSES, 8, 8)
        assert out["local"].shape == (4, N_CLASSES, 8, 8)
        assert out["global"].shape == (1, N_CLASSES, 16, 16)
        assert out["fmreg"].dim() == 0 and torch.isfinite(out["fmreg"])
    assert not torch.allclose(out2["global"], out3["global"])


def _bn_stats(module: torch.nn.Module) -> list[torch.Tensor]:
    return [b.clone() for name, b in module.named_buffers() if "running" in name]


def test_stage2_freezes_global_branch():
    model = tiny()
    trainable = model.set_stage(2)
    model.train()
    before = _bn_stats(model.global_branch)
    local_before = _bn_stats(model.local_branch)
    tl, ratio = crops_of()
    out = model.reference_forward(torch.rand(1, 3, 64, 64), torch.rand(4, 3, 32, 32), tl, ratio)
    (out["aggregated"].mean() + out["local"].mean() + out["fmreg"]).backward()
    assert all(p.grad is None for p in model.global_branch.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_stats(model.global_branch)))
    assert not model.global_branch.training and model.local_branch.training
    assert any(not torch.equal(a, b) for a, b in zip(local_before, _bn_stats(model.local_branch)))
    assert model.aggregate.weight.grad is not None
    assert {id(p) for p in trainable} == {
        id(p) for m in (model.local_branch, model.aggregate) for p in m.parameters()}


def test_stage3_freezes_global_and_local_branches():
    model = tiny()
    model.set_stage(3)
    model.train()
    frozen = [model.global_branch, model.local_branch]
    before = [_bn_stats(m) for m in frozen]
    tl, ratio = crops_of()
    out = model.reference_forward(torch.rand(1, 3, 64, 64), torch.rand(4, 3, 32, 32), tl, ratio)
    (out["global"].mean() + out["aggregated"].mean()).backward()
    for module, stats in zip(frozen, before):
        assert all(p.grad is None for p in module.parameters())
        assert all(torch.equal(a, b) for a, b in zip(stats, _bn_stats(module)))
        assert not module.training
    assert model.l2g_branch.training
    assert all(p.grad is not None for p in model.l2g_branch.head.parameters())


def test_stage1_trains_only_global_branch():
    model = tiny()
    model.set_stage(1)
    model.train()
    model.global_pyramid(torch.rand(2, 3, 64, 64)).logits.mean().backward()
    assert all(p.grad is not None for p in model.global_branch.parameters())
    assert all(not p.requires_grad for p in model.local_branch.parameters())


def _pattern(channels: int, h: int, w: int) -> torch.Tensor:
    rows = torch.arange(h).view(h, 1).float() * 1000
    cols = torch.arange(w).view(1, w).float()
    return (rows + cols).expand(1, channels, h, w).clone()


def test_g2l_cuts_the_region_each_crop_covers():
    model = tiny()
    received = {}

    def spy(c, shared=None):
        received["shared"] = shared

    model.local_branch.head.forward = spy
    maps = [_pattern(4, 16, 16) for _ in range(4)]
    pyramid = Pyramid(maps, maps, maps, maps, maps[0], maps[0])
    # A 64 x 64 image seen as 16 x 16 maps: crops of 32 at (0, 32) and (16, 32).
    tl, ratio = [(0.0, 0.5), (0.25, 0.5)], (0.5, 0.5)
    model.local_pyramid(torch.rand(2, 3, 32, 32), pyramid, tl, ratio)
    shared = received["shared"]
    for tensor in shared.tensors():
        assert tensor.shape == (2, 4, 8, 8)
        assert torch.equal(tensor[0, 0], maps[0][0, 0, 0:8, 8:16])
        assert torch.equal(tensor[1, 0], maps[0][0, 0, 4:12, 8:16])
    assert shared.c[0][1, 0, 0, 0] == 4 * 1000 + 8


def test_l2g_pastes_regions_and_divides_by_overlap_count():
    # A 32 x 32 image, crops of 16 at rows/cols 0, 8, 16; global maps are 8 x 8.
    starts = [0, 8, 16]
    tl = [(r / 32, c / 32) for r in starts for c in starts]
    ratio = (0.5, 0.5)
    like = SharedFeatures(*([torch.zeros(1, 2, 8, 8)],) * 4)
    canvas = LocalToGlobalCanvas(like)
    values = torch.arange(1, 10).float()
    local = SharedFeatures(*([values.view(9, 1, 1, 1).expand(9, 2, 4, 4).clone()],) * 4)
    canvas.add(local, tl, ratio)
    merged = canvas.finish(coverage_template(tl, (16, 16), (32, 32)))
    grid = values.view(3, 3)
    # Feature rows/cols 0-1: crop 0 only; 2-3: crops 0,1; 4-5: crops 1,2; 6-7: crop 2.
    covering = [[0], [0], [0, 1], [0, 1], [1, 2], [1, 2], [2], [2]]
    for y in range(8):
        for x in range(8):
            expected = grid[covering[y]][:, covering[x]].mean()
            assert torch.allclose(merged.c[0][0, :, y, x], expected.expand(2))


@pytest.mark.slow
@pytest.mark.parametrize("stages", [(1, 2), (1, 2, 3)], ids=["stage2", "stage3"])
def test_reference_forward_matches_the_reference(stages):
    base = reference_state_dict(n_classes=7, seed=1)
    files = {1: base}
    if 2 in stages:  # stage 2 keeps the stage-1 global branch and trains the local one
        files[2] = {**reference_state_dict(n_classes=7, seed=2),
                    **{k: v for k, v in base.items() if "_global." in k}}
    if 3 in stages:  # stage 3 keeps the local branch and retrains the global one
        files[3] = {**reference_state_dict(n_classes=7, seed=3),
                    **{k: v for k, v in files[2].items() if "_local." in k}}
    model = load_reference(*(files.get(s) for s in (1, 2, 3)), n_classes=7)
    gen = torch.Generator().manual_seed(5)
    image = torch.rand(1, 3, 64, 64, generator=gen)
    size, patch = 112, 64
    starts = [0, 48]
    tl = [(r / size, c / size) for r in starts for c in starts]
    patches = torch.rand(4, 3, patch, patch, generator=gen)
    ratio = (patch / size, patch / size)
    with torch.no_grad():
        ours = model.reference_forward(image, patches, tl, ratio)
        theirs = oracle(files, image, patches, tl, ratio)
    for key in ("aggregated", "local", "global", "fmreg"):
        error = (ours[key] - theirs[key]).abs().max() / theirs[key].abs().max()
        assert error < 1e-5, f"{key}: relative error {error:.2e}"
