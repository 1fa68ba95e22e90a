"""The model file: round trip, every kind of bad file, every field checked, safe writes."""

from __future__ import annotations

import copy
import functools
import os
import stat
import subprocess
import sys
import textwrap
from dataclasses import asdict

import numpy as np
import pytest
import torch

from glnet_cli.classes import DEEPGLOBE
from glnet_cli.errors import InputError, ModelFileError, OutputExistsError
from glnet_cli.io.model.checkpoint import (
    FORMAT_VERSION,
    InputScaling,
    ModelInfo,
    load_model,
    read_info,
    save_model,
)
from glnet_cli.io.model.schema import check_payload
from models.glnet import GLNet
from tests.helpers import run_glnet, write_raster


def tiny_model_file(path, l2g: bool = True, bands: int = 3) -> tuple[GLNet, ModelInfo]:
    """A tiny DeepGlobe model saved at ``path``; the network (a fresh copy) and its metadata."""
    model, info, rng = _tiny_model(l2g, bands)
    torch.set_rng_state(rng)  # as if just built: the same random numbers follow
    save_model(path, model, info)
    return copy.deepcopy(model), copy.deepcopy(info)


@functools.lru_cache(maxsize=2)
def _tiny_model(l2g: bool, bands: int) -> tuple[GLNet, ModelInfo, torch.Tensor]:
    """Built once per kind (random initialisation is most of a tiny model's cost)."""
    torch.manual_seed(0)
    model = GLNet(len(DEEPGLOBE), "resnet18", bands, width=16, l2g=l2g).eval()
    info = ModelInfo(config=model.config, classes=DEEPGLOBE, size_g=64, size_p=32,
                     context_size=128, scaling=InputScaling.fixed("uint8", bands),
                     stage=3 if l2g else 2, gsd=0.5, provenance={"epochs": [1, 1, 1]})
    return model, info, torch.get_rng_state()


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
    assert os.listdir(tmp_path) == ["model.pt"]


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


def test_damaged_weights_name_the_tensor(tmp_path):
    path = tmp_path / "model.pt"
    tiny_model_file(path, l2g=False)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["local_branch.head.smooth.bias"][0] = float("nan")
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match=r"model\.pt: state_dict: local_branch\.head\.smooth"
                                             r"\.bias holds NaN or infinite values"):
        load_model(path)
    del payload["state_dict"]["local_branch.head.smooth.bias"]
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match=r"state_dict: 1 tensor\(s\) of the architecture "
                                             r"\(resnet18, width 16\) are missing, first "
                                             r"local_branch\.head\.smooth\.bias"):
        load_model(path)


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> dict:
    """A valid stage-3 payload (3 bands, 7 classes) to damage one field at a time."""
    path = tmp_path_factory.mktemp("schema") / "model.pt"
    tiny_model_file(path)
    return torch.load(path, weights_only=True)


def _set(payload: dict, dotted: str, value) -> dict:
    """A copy of ``payload`` with one field replaced (``None`` deletes it)."""
    edited = copy.deepcopy({k: v for k, v in payload.items() if k != "state_dict"})
    edited["state_dict"] = dict(payload["state_dict"])
    *parents, last = dotted.split(".")
    node = edited
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is None:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return edited


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("field, value, message", [
    ("format_version", 0, "format_version: 0 is not a valid version (a whole number from 1)"),
    ("format_version", -5, "format_version: -5 is not a valid version (a whole number from 1)"),
    ("format_version", "1",
     "format_version: '1' is not a valid version (a whole number from 1)"),
    ("format_version", FORMAT_VERSION + 1, "format_version: 2: made by a newer glnet (this one "
                                           "reads up to version 1); upgrade glnet"),
    ("stage", 9, "stage: 9 is not in 1..3"),
    ("stage", 0, "stage: 0 is not in 1..3"),
    ("stage", True, "stage: True is not a whole number"),
    ("architecture.size_g", -64, "architecture.size_g: -64 is not in 32..16384"),
    ("architecture.size_p", 3.5, "architecture.size_p: 3.5 is not a whole number"),
    ("architecture.size_p", 10**6, "architecture.size_p: 1000000 is not in 32..16384"),
    ("architecture.backbone", "vgg16", "architecture.backbone: 'vgg16' is not one of resnet18, "
                                       "resnet34, resnet50, resnet101"),
    ("architecture.in_channels", 0, "architecture.in_channels: 0 is not in 1..1024"),
    ("architecture.width", None, "architecture.width: missing"),
    ("architecture.dropout", 0.1, "architecture.dropout: not a field this glnet knows"),
    ("context.size", 0, "context.size: 0 is not in 1..1048576"),
    ("context.gsd", -0.5, "context.gsd: -0.5 is not a positive finite number"),
    ("context.gsd", INF, "context.gsd: inf is not a positive finite number"),
    ("context", None, "context: missing"),
    ("input_scaling.scale", [1 / 255, NAN, 1 / 255], "input_scaling.scale: nan is not a finite "
                                                     "number"),
    ("input_scaling.scale", [1.0, 0.0, 1.0], "input_scaling.scale: 0.0 is not positive"),
    ("input_scaling.offset", [0.0, 0.0], "input_scaling.offset: 2 values for 3 band(s)"),
    ("input_scaling.mode", "magic", "input_scaling.mode: 'magic' is not one of dtype-range, "
                                    "stats"),
    ("input_scaling.dtype", "int8", "input_scaling.dtype: 'int8' is not uint8, uint16"),
    ("input_scaling.dtype", "rgb", "input_scaling.dtype: 'rgb' is not uint8, uint16"),
    ("classes.1.id", 0, "classes[1].id: 0 is used twice"),
    ("classes.1.id", 300, "classes[1].id: 300 is not in 0..254"),
    ("classes.6.id", 9, "classes: ids must be 0..6 without gaps, found [0, 1, 2, 3, 4, 5, 9]"),
    ("classes.2.color", [0, 0, 256], "classes[2].color: [0, 0, 256] is not three values 0..255 "
                                     "(R, G, B)"),
    ("classes.2.name", "", "classes[2].name: '' is not a non-empty text"),
    ("classes", "deepglobe", "classes: expected a list of classes, found str"),
    ("l2g", False, "l2g: says false, but the file holds l2g_branch weights"),
    ("provenance", [1], "provenance: expected a mapping of fields, found list"),
])
def test_every_field_is_checked(payload, field, value, message):
    with pytest.raises(ModelFileError) as err:
        check_payload(_set(payload, field, value), "model.pt")
    assert str(err.value) == f"model.pt: {message}"


def test_metadata_must_agree_with_the_weights(payload):
    five = _set(_set(payload, "classes", payload["classes"][:5]), "architecture.n_classes", 5)
    with pytest.raises(ModelFileError, match=r"^model\.pt: classes: 5 classes, but the weights "
                                             r"\(global_branch\.head\.classify\.weight\) "
                                             r"predict 7$"):
        check_payload(five, "model.pt")
    with pytest.raises(ModelFileError, match=r"^model\.pt: classes: 5 classes, but "
                                             r"architecture\.n_classes is 7$"):
        check_payload(_set(payload, "classes", payload["classes"][:5]), "model.pt")
    four = _set(_set(payload, "architecture.in_channels", 4), "input_scaling",
                asdict(InputScaling.fixed("uint8", 4)))
    with pytest.raises(ModelFileError, match=r"architecture\.in_channels: 4 band\(s\), but the "
                                             r"weights take 3$"):
        check_payload(four, "model.pt")
    no_l2g = _set(payload, "l2g", False)
    no_l2g["state_dict"] = {k: v for k, v in payload["state_dict"].items()
                            if not k.startswith("l2g_branch.")}
    with pytest.raises(ModelFileError, match=r"stage: 3, but the file holds no local-to-global"):
        check_payload(no_l2g, "model.pt")
    check_payload(_set(no_l2g, "stage", 2), "model.pt")


@pytest.fixture
def crafted(payload, tmp_path):
    def write(field: str, value) -> str:
        path = tmp_path / "model.pt"
        torch.save(_set(payload, field, value), path)
        return str(path)
    return write


def test_a_crafted_file_is_one_line_in_every_command(crafted, tmp_path):
    """Context size 0 once planned 201,601 blocks (a 491 s hang); a NaN scale gave one class."""
    scene = write_raster(tmp_path / "scene.tif", np.zeros((3, 64, 64), np.uint8))
    path = crafted("context.size", 0)
    runs = [["info", path], ["segment", str(scene), "-o", str(tmp_path / "m.tif"),
                             "--model", path, "--dry-run"]]
    for args in runs:
        result = run_glnet(*args)
        assert result.exit_code == 2, result.output
        assert result.stderr == f"glnet: error: {path}: context.size: 0 is not in 1..1048576\n"
    path = crafted("input_scaling.scale", [NAN] * 3)
    result = run_glnet("segment", scene, "-o", tmp_path / "m.tif", "--model", path)
    assert result.exit_code == 2 and "input_scaling.scale: nan is not a finite number" in \
        result.stderr
    assert not (tmp_path / "m.tif").exists()


def test_model_files_follow_the_umask(tmp_path):
    """Not mkstemp's 0600: a model file is shared like any other output."""
    for umask, mode in ((0o022, 0o644), (0o002, 0o664)):
        old = os.umask(umask)
        try:
            path = tmp_path / f"u{umask:o}.pt"
            tiny_model_file(path, l2g=False)
        finally:
            os.umask(old)
        assert stat.S_IMODE(path.stat().st_mode) == mode


@pytest.mark.slow
def test_save_refuses_to_replace_and_full_disk_leaves_the_old_file(tmp_path):
    path = tmp_path / "model.pt"
    tiny_model_file(path, l2g=False)
    before = path.read_bytes()
    model = load_model(path)
    with pytest.raises(OutputExistsError, match="already exists"):
        save_model(path, model.model, model.info)
    script = textwrap.dedent(f"""
        import resource, sys
        from glnet_cli.errors import OutputWriteError
        from glnet_cli.io.model.checkpoint import load_model, save_model
        loaded = load_model({str(path)!r})
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        try:
            save_model({str(path)!r}, loaded.model, loaded.info, overwrite=True)
        except OutputWriteError as exc:
            print(exc, exc.exit_code)
            sys.exit(3)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 3, done.stderr
    assert done.stdout == f"{path}: writing failed: File too large; nothing was written 1\n"
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]


def test_scaling_refuses_another_dtype():
    scaling = InputScaling.fixed("uint8", 3)
    scaling.check("uint8", "scene.tif")
    with pytest.raises(InputError, match="scene.tif: the model was trained on uint8"):
        scaling.check("uint16", "scene.tif")
    stats = InputScaling.from_stats("uint16", [100.0], [1100.0])
    stats.check("float32", "x.tif")
    assert np.allclose(stats.apply(np.array([[[100, 600, 1100]]], dtype=np.uint16)),
                       [[[0.0, 0.5, 1.0]]])
