"""The model file: round trip and every kind of bad file."""

from __future__ import annotations

import pytest
import torch

from glnet_cli.checkpoint import (FORMAT_VERSION, InputScaling, ModelInfo, load_model,
                                  read_info, save_model)
from glnet_cli.classes import DEEPGLOBE
from glnet_cli.errors import ModelFileError
from models.glnet import GLNet


def tiny_model_file(path, l2g: bool = True, bands: int = 3) -> tuple[GLNet, ModelInfo]:
    torch.manual_seed(0)
    model = GLNet(len(DEEPGLOBE), "resnet18", bands, width=16, l2g=l2g).eval()
    info = ModelInfo(config=model.config, classes=DEEPGLOBE, size_g=64, size_p=32,
                     context_size=128, scaling=InputScaling.fixed("uint8", bands),
                     stage=3 if l2g else 2, gsd=0.5, provenance={"epochs": [1, 1, 1]})
    save_model(path, model, info)
    return model, info


def test_round_trip_gives_identical_outputs(tmp_path):
    path = tmp_path / "model.pt"
    model, info = tiny_model_file(path)
    loaded = load_model(path)
    assert loaded.info.to_dict() == info.to_dict()
    assert loaded.model.has_l2g and loaded.model.stage == 3
    image, patches = torch.rand(1, 3, 64, 64), torch.rand(4, 3, 32, 32)
    tl, ratio = [(0, 0), (0, 0.5), (0.5, 0), (0.5, 0.5)], (0.5, 0.5)
    with torch.no_grad():
        a = model.reference_forward(image, patches, tl, ratio)
        b = loaded.model.reference_forward(image, patches, tl, ratio)
    assert all(torch.isfinite(a[k]).all() and torch.equal(a[k], b[k]) for k in a)
    assert read_info(path).classes.names == DEEPGLOBE.names
    assert not list(tmp_path.glob(".glnet-*"))


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match=r"missing\.pt: model file not found"):
        load_model(tmp_path / "missing.pt")


def test_truncated_file(tmp_path):
    path = tmp_path / "model.pt"
    tiny_model_file(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"model\.pt: not a readable model file"):
        load_model(path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelFileError, match=r"model\.pt: not a readable model file"):
        load_model(path)


def test_foreign_files(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(ModelFileError, match="not a glnet model file"):
        load_model(plain)
    reference = tmp_path / "reference.pth"
    torch.save({"module.fpn_global.toplayer.weight": torch.zeros(2)}, reference)
    with pytest.raises(ModelFileError, match="convert it with 'glnet convert-reference'"):
        load_model(reference)
    code = tmp_path / "code.pt"
    torch.save({"format": "glnet-model", "obj": ModelInfo}, code)
    with pytest.raises(ModelFileError, match="code.pt"):
        load_model(code)
    with pytest.raises(ModelFileError, match="is a folder"):
        load_model(tmp_path)


def test_newer_format_and_damaged_metadata(tmp_path):
    path = tmp_path / "model.pt"
    tiny_model_file(path, l2g=False)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="newer than this glnet understands"):
        load_model(path)
    payload["format_version"] = FORMAT_VERSION
    del payload["state_dict"]["aggregate.weight"]
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="damaged or incomplete"):
        load_model(path)


def test_scaling_refuses_another_dtype():
    scaling = InputScaling.fixed("uint8", 3)
    scaling.check("uint8", "scene.tif")
    from glnet_cli.errors import InputError
    with pytest.raises(InputError, match="scene.tif: the model was trained on uint8"):
        scaling.check("uint16", "scene.tif")
    stats = InputScaling.from_stats("uint16", [100.0], [1100.0])
    stats.check("float32", "x.tif")
    import numpy as np
    assert np.allclose(stats.apply(np.array([[[100, 600, 1100]]], dtype=np.uint16)),
                       [[[0.0, 0.5, 1.0]]])
