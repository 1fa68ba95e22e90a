"""The memory estimate behind --dry-run and --batch-size auto."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from glnet_cli.inference.memory import (
    MB,
    NetworkShape,
    auto_batch_size,
    crop_bytes,
    estimate,
    largest_auto_batch,
    peak_rss,
)

RESNET50 = (256, 512, 1024, 2048)
PAPER_BF16 = NetworkShape(508, 508, RESNET50, 256, 2, 2)
TINY = NetworkShape(128, 128, (64, 128, 256, 512), 32, 2, 2)


def test_a_paper_crop_in_bf16_is_about_what_a_run_measures():
    assert 120 * MB < crop_bytes(PAPER_BF16) < 150 * MB  # measured 134 MB a crop
    fp32 = NetworkShape(508, 508, RESNET50, 256, 4, 2)
    assert crop_bytes(fp32) == 2 * crop_bytes(PAPER_BF16)
    assert crop_bytes(NetworkShape(508, 508, RESNET50, 256, 2, 3)) > crop_bytes(PAPER_BF16)


@pytest.mark.parametrize("net, on_gpu, largest", [(PAPER_BF16, False, 1), (TINY, False, 6),
                                                  (PAPER_BF16, True, 6)])
def test_batches_grow_only_where_they_buy_speed(net, on_gpu, largest):
    assert largest_auto_batch(net, on_gpu) == largest


def test_auto_batch_is_the_largest_that_fits_and_at_least_one():
    assert auto_batch_size(lambda size: size <= 4, 6) == 4
    assert auto_batch_size(lambda size: True, 2) == 2
    assert auto_batch_size(lambda size: False, 6) == 1


def test_estimate_puts_the_network_on_the_device_it_runs_on():
    host = estimate(PAPER_BF16, 2, 200 * MB, 30 * MB, 64 * MB, on_gpu=False)
    assert host.gpu is None and host.gpu_mb is None
    assert host.host["weights"] == 200
    assert host.host["activations (2 crops of 508 px)"] == pytest.approx(
        2 * crop_bytes(PAPER_BF16) / MB)
    assert host.host_mb >= sum(host.host.values())
    gpu = estimate(PAPER_BF16, 2, 200 * MB, 30 * MB, 64 * MB, on_gpu=True)
    assert "weights" not in gpu.host and not any(k.startswith("activations") for k in gpu.host)
    assert gpu.gpu["weights"] == 200
    assert gpu.gpu_mb == pytest.approx(sum(gpu.gpu.values()))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_peak_memory_is_this_process_own_not_the_one_that_started_it():
    """Linux carries getrusage's maxrss over exec: a child would report this process's peak."""
    ballast = np.ones(2048 * MB, dtype=np.uint8)  # this process now peaks above 2 GB
    assert peak_rss() >= ballast.nbytes
    code = "from glnet_cli.inference.memory import MB, peak_rss; print(peak_rss() / MB)"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
    del ballast
    assert 10 < float(child.stdout) < 2048  # importing torch is ~600 MB of it
