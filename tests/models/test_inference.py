"""A GLNet prepared for inference predicts what the original predicts, with less."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch import nn

from models.glnet import GLNet, LocalToGlobalCanvas
from models.inference import fold_batchnorm, prepare_for_inference
from tests.models.test_glnet import crops_of

N_CLASSES = 3


def trained_looking(backbone: str = "resnet18", l2g: bool = True) -> GLNet:
    """A tiny GLNet whose BatchNorms hold statistics far from the identity (a fresh copy)."""
    model, rng = _trained_looking(backbone, l2g)
    torch.set_rng_state(rng)  # as if just built: the same random numbers follow
    return copy.deepcopy(model)


@functools.lru_cache(maxsize=1)  # the model the next tests ask for again
def _trained_looking(backbone: str, l2g: bool) -> tuple[GLNet, torch.Tensor]:
    """Built once (random initialisation is most of a tiny model's cost), with the RNG state
    the build left."""
    torch.manual_seed(0)
    model = GLNet(N_CLASSES, backbone, 3, width=16, l2g=l2g)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.3, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval(), torch.get_rng_state()


def predict(model: GLNet, stage: int) -> torch.Tensor:
    """Aggregated logits of four crops of a fixed image, as segment computes them."""
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 64, 64, generator=generator)
    patches = torch.rand(4, 3, 32, 32, generator=generator)
    tl, ratio = crops_of()
    with torch.inference_mode():
        context = model.global_pyramid(image)
        final = context
        if stage == 3:
            final = model.l2g_pyramid(image, model.merge_local(context, patches, tl, ratio))
        local = model.local_pyramid(patches, context, tl, ratio)
        return model.aggregated(local.ps3, final.ps3, tl, ratio)[0].float()


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_folding_batchnorm_keeps_the_outputs(backbone):
    model = trained_looking(backbone)
    trunk = model.global_branch.backbone
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before = trunk(x)
        fold_batchnorm(trunk)
        after = trunk(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in trunk.modules())
    assert trunk.layer1[0].conv1.bias is not None
    for a, b in zip(before, after):
        assert (a - b).abs().max() <= 1e-4 * a.abs().max()


@pytest.mark.parametrize("stage", [2, 3])
def test_prepared_model_predicts_what_the_model_predicts(stage):
    expected = predict(trained_looking(), stage)
    prepared = prepare_for_inference(trained_looking(), stage)
    assert prepared.has_l2g == (stage == 3)
    assert not any(p.requires_grad for p in prepared.parameters())
    assert torch.allclose(predict(prepared, stage), expected, atol=1e-4, rtol=1e-4)


def test_stage2_local_branch_returns_only_ps3_and_frees_the_levels():
    model = prepare_for_inference(trained_looking(), 2)
    tl, ratio = crops_of()
    with torch.inference_mode():
        context = model.global_pyramid(torch.rand(1, 3, 64, 64))
        trunk = model.local_branch.backbone(torch.rand(4, 3, 32, 32))
        local = model.local_branch.head(trunk, context.shared().map(lambda t: t[:, :, :2, :2]
                                                                    .expand(4, -1, -1, -1)))
        aggregated = model.aggregated(local.ps3, context.ps3, tl, ratio)
    assert trunk == []  # the trunk's maps were released as soon as P2 existed
    assert local.tensors() == [] and local.ps3.shape == (4, 32, 8, 8)
    assert context.c  # the global branch keeps its levels: the local branch reads them
    assert aggregated[1] is None  # no feature-map regulariser at inference


@pytest.mark.parametrize("stage", [2, 3])
def test_bf16_runs_the_local_branch_in_bf16_and_predicts_close_to_fp32(stage):
    expected = predict(trained_looking(), stage)
    prepared = prepare_for_inference(trained_looking(), stage, torch.bfloat16)
    per_crop = [prepared.local_branch, prepared.aggregate]
    per_block = [prepared.global_branch] + ([prepared.l2g_branch] if stage == 3 else [])
    assert {p.dtype for m in per_crop for p in m.parameters()} == {torch.bfloat16}
    assert {p.dtype for m in per_block for p in m.parameters()} == {torch.float32}
    logits = predict(prepared, stage)
    assert (logits.argmax(1) == expected.argmax(1)).float().mean() >= 0.95
    assert torch.allclose(logits, expected, atol=0.05 * expected.abs().max().item())


def test_local_to_global_canvas_sums_in_float32():
    features = GLNet(N_CLASSES, "resnet18", 3, width=16).eval()
    with torch.no_grad():
        pyramid = features.global_pyramid(torch.rand(1, 3, 64, 64)).shared()
    half = pyramid.map(lambda t: t.to(torch.bfloat16))
    canvas = LocalToGlobalCanvas(half)
    assert {t.dtype for t in canvas.sums.tensors()} == {torch.float32}
