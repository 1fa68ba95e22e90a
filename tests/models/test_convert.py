"""Import of reference checkpoints: every key accounted for, every mismatch refused."""

from __future__ import annotations

import pytest
import torch

from models.convert import ReferenceLayoutError, load_reference, map_reference
from models.glnet import GLNet
from tests.models.reference_layout import fpn_global_shapes, fpn_local_shapes, reference_state_dict


@pytest.fixture(scope="module")
def files() -> dict[int, dict[str, torch.Tensor]]:
    """Stage files as training would leave them: frozen parts equal to the earlier stage's."""
    s1 = reference_state_dict(seed=1)
    s2 = {**reference_state_dict(seed=2), **{k: v for k, v in s1.items() if "_global." in k}}
    s3 = {**reference_state_dict(seed=3), **{k: v for k, v in s2.items() if "_local." in k}}
    return {1: s1, 2: s2, 3: s3}


@pytest.mark.slow
def test_layout_has_every_key_of_glnet_md(files):
    keys = set(files[1])
    for name in list(fpn_global_shapes("resnet50", 7)) + ["smooth"]:
        assert f"module.fpn_global.{name}.weight" in keys
    assert "module.fpn_global.smooth3_2_ext.bias" in keys
    assert "module.resnet_local.layer4.2.bn3.running_var" in keys
    assert "module.resnet_global.layer1.0.downsample.1.weight" in keys
    assert files[1]["module.fpn_local.toplayer.weight"].shape == (256, 4096, 1, 1)
    assert files[1]["module.ensemble_conv.weight"].shape == (7, 1024, 3, 3)
    assert set(fpn_local_shapes("resnet50", 7)) == {
        k.split(".")[2] for k in keys if k.startswith("module.fpn_local.")}
    assert not any(".fc." in k for k in keys)


@pytest.mark.parametrize("stages", [(1,), (1, 2), (1, 3), (1, 2, 3)])
def test_every_key_is_consumed(files, stages):
    with torch.device("meta"):  # names and shapes are all the mapping reads
        model = GLNet(7, "resnet50", l2g=3 in stages)
    given = {s: files[s] for s in stages}
    mapping = map_reference(model, given)
    total = sum(len(files[s]) for s in stages)
    assert len(mapping.loaded) + len(mapping.unused) == total
    ours = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert ours <= set(mapping.state)
    top = max(stages)
    loaded_from_top = {key for (label, key) in mapping.loaded if label == f"stage-{top} file"}
    if top == 3:
        ext = {k[len("module."):] for k in files[3] if "_ext." in k}
        assert ext <= loaded_from_top
        assert "fpn_global.smooth.weight" in loaded_from_top
    if top >= 2:
        assert "ensemble_conv.weight" in loaded_from_top
        assert "fpn_local.smooth.weight" in loaded_from_top
    assert all(reason for reason in mapping.unused.values())


def test_stage_weights_land_where_they_belong(files):
    model = load_reference(files[1], files[2], files[3])
    assert torch.equal(model.global_branch.head.toplayer.weight,
                       files[1]["module.fpn_global.toplayer.weight"])
    assert torch.equal(model.l2g_branch.head.toplayer.weight,
                       files[3]["module.fpn_global.toplayer_ext.weight"])
    assert torch.equal(model.l2g_branch.backbone.conv1.weight,
                       files[3]["module.resnet_global.conv1.weight"])
    assert torch.equal(model.local_branch.head.smooth_2[2].bias,
                       files[3]["module.fpn_local.smooth3_2.bias"])
    assert torch.equal(model.aggregate.weight, files[3]["module.ensemble_conv.weight"])
    assert model.stage == 3 and not model.training


def test_wrong_shape_is_refused_naming_the_key(files):
    bad = dict(files[2])
    bad["module.fpn_local.smooth.weight"] = torch.zeros(512, 512, 3, 3)
    with pytest.raises(ReferenceLayoutError,
                       match=r"stage-2 file: module.fpn_local.smooth.weight is \(512, 512, 3, 3\)"):
        load_reference(files[1], bad)


def test_missing_key_is_refused_naming_the_key(files):
    bad = {k: v for k, v in files[2].items() if k != "module.fpn_local.latlayer2.weight"}
    with pytest.raises(ReferenceLayoutError,
                       match="missing keys: stage-2 file: module.fpn_local.latlayer2.weight"):
        load_reference(files[1], bad)
    bad3 = {k: v for k, v in files[3].items() if k != "module.fpn_global.smooth2_1_ext.bias"}
    with pytest.raises(ReferenceLayoutError, match="module.fpn_global.smooth2_1_ext.bias"):
        load_reference(files[1], files[2], bad3)


def test_unexpected_key_is_refused(files):
    bad = {**files[2], "module.decoder.weight": torch.zeros(1)}
    with pytest.raises(ReferenceLayoutError, match="unexpected keys: stage-2 file: decoder.weight"):
        load_reference(files[1], bad)


def test_files_not_trained_together_are_refused(files):
    with pytest.raises(ReferenceLayoutError, match="global branch differs from the stage-1"):
        load_reference(reference_state_dict(seed=9), files[2])


def test_class_count_mismatch_is_refused(files):
    with pytest.raises(ReferenceLayoutError, match="7 classes, not 5"):
        load_reference(files[1], n_classes=5)
