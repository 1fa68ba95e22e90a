"""``glnet convert-reference`` end to end, and the CLI's error reporting."""

from __future__ import annotations

import os

import pytest
import torch

from glnet_cli.io.model.checkpoint import load_model
from models.convert import load_reference
from tests.helpers import run_glnet, run_glnet_process
from tests.models.reference_layout import reference_state_dict


def test_help_lists_the_commands():
    result = run_glnet("--help")
    assert result.exit_code == 0
    assert "convert-reference" in result.output


@pytest.mark.slow
def test_converted_model_runs_like_the_reference(tmp_path):
    s1 = reference_state_dict(seed=1)
    s2 = {**reference_state_dict(seed=2), **{k: v for k, v in s1.items() if "_global." in k}}
    paths = []
    for i, state in enumerate((s1, s2), start=1):
        paths.append(tmp_path / f"stage{i}.pth")
        torch.save(state, paths[-1])
    out = tmp_path / "deepglobe.pt"
    args = ["convert-reference", "--stage1", paths[0], "--stage2", paths[1], "--classes",
            "deepglobe", "-o", out]
    result = run_glnet(*args)
    assert result.exit_code == 0, result.output
    loaded = load_model(out)
    assert loaded.info.stage == 2 and loaded.info.context_size == 2448
    assert loaded.info.size_g == 508 and loaded.info.scaling.scale[0] == 1 / 255
    assert loaded.info.classes.names[1] == "urban"
    reference = load_reference(s1, s2)
    image, patches = torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64)
    tl, ratio = [(0.0, 0.0), (0.0, 0.5)], (0.5, 0.5)
    with torch.no_grad():
        a = loaded.model.reference_forward(image, patches, tl, ratio)
        b = reference.reference_forward(image, patches, tl, ratio)
    assert torch.equal(a["aggregated"], b["aggregated"])

    again = run_glnet(*args)
    assert again.exit_code == 2
    assert "deepglobe.pt: already exists (use --overwrite" in again.stderr


def test_bad_reference_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    result = run_glnet("convert-reference", "--stage1", bad, "-o", tmp_path / "m.pt")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.pth" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "m.pt").exists()
    missing = run_glnet("convert-reference", "--stage1", tmp_path / "no.pth", "-o",
                        tmp_path / "m.pt")
    assert missing.exit_code == 2 and "no.pth: no such file" in missing.stderr


def test_output_that_is_a_reference_file_is_refused(tmp_path):
    stage1 = tmp_path / "stage1.pth"
    torch.save(reference_state_dict(backbone="resnet18"), stage1)
    before = stage1.read_bytes()
    result = run_glnet("convert-reference", "--stage1", stage1, "-o", stage1, "--overwrite")
    assert result.exit_code == 2
    assert result.stderr == (f"glnet: error: {stage1}: is the same file as the input {stage1}; "
                             "choose another output\n")
    assert stage1.read_bytes() == before


@pytest.mark.slow
def test_full_disk_keeps_the_previous_model(tmp_path):
    """RLIMIT_FSIZE in a child process stands in for a full disk."""
    stage1 = tmp_path / "stage1.pth"
    torch.save(reference_state_dict(backbone="resnet18"), stage1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.pt").write_bytes(b"the previous model")
    done = run_glnet_process("convert-reference", "--stage1", stage1, "-o", out / "model.pt",
                             "--overwrite", env={"OMP_NUM_THREADS": "1"},
                             file_size_limit=1 << 20)
    assert done.returncode == 1, done.stderr
    assert done.stderr == (f"glnet: error: {out / 'model.pt'}: writing failed: File too large; "
                           "nothing was written\n")
    assert os.listdir(out) == ["model.pt"]
    assert (out / "model.pt").read_bytes() == b"the previous model"
