"""One training step side by side: the reference GLNet's Trainer vs glnet's step, stages 2 and 3.

Run from the project checkout, with the project installed in the active environment:

    pip install --no-deps --target "${TMPDIR:-/tmp}/refdeps" opencv-python-headless pillow   # once
    REF_DEPS="${TMPDIR:-/tmp}/refdeps" python benchmarks/train_step_bench.py "$(mktemp -d)"

Options: --tile 1024 (tile side, px), --tiles 2 (tiles per batch), --size 508 (size_g =
size_p), --steps 3 (timed steps after one warm-up step), --stages 2,3, --precision auto (glnet's
side: what `glnet train` computes in on this machine; fp32 for a like-for-like step). The
defaults are the paper's setting: ResNet-50 FPN, size_g = size_p = 508, sub-batch 6, focal loss
gamma 3 + 0.15 feature-map regulariser, Adam (weight decay 5e-4), on the CPU; the reference in
fp32. A quick look: --tile 512 --size 256. (1016 px tiles with 508 px crops stop the reference:
its last crop of the global feature map rounds one column past the edge.)

The batch is the same for both: TILES blocky random uint8 RGB tiles with blocky random labels
(7 classes), the global view shrunk by PIL bilinear resize as the reference does, inputs / 255.
The weights are the same: deterministic random ones in the reference's layout (as
../shared/bench/ref_bench.py makes them), loaded by the reference and converted for glnet with
models/convert.load_reference (what `glnet convert-reference` does).

  reference  ../shared/reference/GLNet (MIT licence), copied to WORKDIR and patched there to run
             on the CPU (its .cuda() calls removed, no ImageNet download); one step is one call of
             its helper.Trainer.train with the model, optimiser and loss its train script builds.
  glnet      the step TrainingLoop runs: step_inputs + STAGE_LOSSES[stage] over the units of the
             batch, backward, confusion-matrix update, Adam step, on Samples built from the same
             tiles (reading tiles, done by the DataLoader, is not in the step; the reference's
             Trainer crops and converts its PIL images inside its step).

Each (side, stage) runs in its own process; its peak memory is that process's VmHWM.
Prints one table: stage, median s/step of each, speed ratio (goal >= 1.5x), peak MB of each
(goal: glnet <= reference). Exit 0 when every goal holds.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared")
REFERENCE = os.path.join(SHARED, "reference", "GLNet")
sys.path.insert(0, os.path.join(SHARED, "bench"))
from ref_bench import DET_WEIGHTS  # noqa: E402

N_CLASSES, SUB_BATCH, LR = 7, 6, {2: 2e-5, 3: 5e-5}

COMMON = r"""
import json, sys, time
import numpy as np, torch
def peak_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024
def timed(step, steps, **extra):
    # Wall and CPU (all threads) seconds of each step after the first (a warm-up).
    walls, cpus = [], []
    for _ in range(steps + 1):
        w, c = time.perf_counter(), time.process_time()
        loss = step()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    print(json.dumps({'times': walls[1:], 'cpu': cpus[1:], 'loss': float(loss),
                      'peak_mb': peak_mb(), **extra}))
"""

# The reference-layout weights ref_bench.py makes (its DET_WEIGHTS), for n classes.
MAKE_WEIGHTS = DET_WEIGHTS + r"""
import sys, torch.nn as nn
sys.path.insert(0, sys.argv[1])
from models.fpn_global_local_fmreg_ensemble import fpn
sd = det_weights(nn.DataParallel(fpn(int(sys.argv[4]))).state_dict())
torch.save({k: v for k, v in sd.items() if 'local' not in k}, sys.argv[2])
torch.save(sd, sys.argv[3])
"""

# argv: reference copy, batch.npz, stage-1 file, full file, stage, size, steps, lr
REF_STEP = COMMON + r"""
sys.path.insert(0, sys.argv[1])
from PIL import Image
import helper
from utils.loss import FocalLoss
data = np.load(sys.argv[2])
stage, size, steps, lr = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8])
model, global_fixed = helper.create_model_load_weights(
    int(data['n_classes']), mode=stage, path_g=sys.argv[3], path_g2l=sys.argv[4])
optimizer = helper.get_optimizer(model, mode=stage, learning_rate=lr)
trainer = helper.Trainer(FocalLoss(gamma=3), optimizer, int(data['n_classes']), (size, size),
                         (size, size), int(data['sub_batch']), mode=stage, lamb_fmreg=0.15)
trainer.set_train(model)
sample = {'image': [Image.fromarray(i) for i in data['images']],
          'label': [Image.fromarray(l) for l in data['labels']],
          'id': list(range(len(data['images'])))}
timed(lambda: trainer.train(sample, model, global_fixed).item(), steps)
"""

# argv: batch.npz, stage-1 file, full file, stage, size, steps, lr, precision
GLNET_STEP = COMMON + r"""
import functools
from PIL import Image
from glnet_cli.device import autocast, resolve_precision
from glnet_cli.evaluation.metrics import ConfusionMatrix
from glnet_cli.inference.grid import crop_grid, top_lefts
from glnet_cli.training.dataset import MIN_OVERLAP, Sample
from glnet_cli.training.steps import STAGE_LOSSES, step_inputs
from models.convert import load_reference
from models.losses import FocalLoss
data = np.load(sys.argv[1])
stage, size, steps, lr = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
n_classes, sub_batch, device = int(data['n_classes']), int(data['sub_batch']), torch.device('cpu')

def sample(image, label):
    # What TileDataset gives for an un-augmented tile; the global view resized as the reference
    # does.
    h, w = label.shape
    boxes = crop_grid(h, w, size, min(MIN_OVERLAP, size // 4))
    small = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    chw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float() / 255
    return Sample('tile', (h, w), chw(small),
                  label_global=torch.from_numpy(np.asarray(
                      Image.fromarray(label).resize((size, size), Image.NEAREST))),
                  patches=torch.stack([chw(image[b.row:b.bottom, b.col:b.right]) for b in boxes]),
                  patch_labels=torch.stack([torch.from_numpy(label[b.row:b.bottom, b.col:b.right])
                                            for b in boxes]),
                  boxes=boxes, top_lefts=top_lefts(boxes, h, w), ratio=(size / h, size / w))

batch = [sample(i, l) for i, l in zip(data['images'], data['labels'])]
model = load_reference(sys.argv[2], sys.argv[3], sys.argv[3] if stage == 3 else None, n_classes)
optimizer = torch.optim.Adam(model.set_stage(stage), lr=lr, weight_decay=5e-4)
loss_module = STAGE_LOSSES[stage](model, FocalLoss(gamma=3.0))
model.stage = stage
model.train()
precision = resolve_precision(device, sys.argv[8], training=True)
cast = functools.partial(autocast, device, precision)
scores = ConfusionMatrix(n_classes)

def step():  # TrainingLoop._train_epoch's body, single process
    optimizer.zero_grad(set_to_none=True)
    units, inputs = step_inputs(stage, model, batch, device, sub_batch, cast)
    for args in inputs:
        with cast():
            loss, logits, target = loss_module(*args)
        loss.backward()
        loss.item()
        scores.update(target.cpu().numpy(), logits.argmax(1).cpu().numpy())
    optimizer.step()
    return loss.item()

timed(step, steps, precision=precision)
"""


def run(cmd, env=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd[:2])[:60]} ... {' '.join(cmd[3:])}\n"
                 f"{proc.stderr.strip()[-1500:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def reference_copy(work):
    """The reference, copied to WORKDIR and patched there to run on the CPU."""
    src = os.path.join(work, "reference")
    if not os.path.exists(src):
        shutil.copytree(REFERENCE, src)
        for rel in ("helper.py", "models/fpn_global_local_fmreg_ensemble.py", "utils/loss.py"):
            path = os.path.join(src, rel)
            text = open(path).read().replace(".cuda()", "")
            text = text.replace("resnet50(True)", "resnet50(False)")
            open(path, "w").write(text)
    return src


def make_batch(path, tiles, side):
    """Blocky random uint8 RGB tiles and blocky random labels of N_CLASSES classes."""
    import numpy as np
    rng = np.random.default_rng(side)
    cells = side // 32 + 1

    def block(a):
        return np.kron(a, np.ones((32, 32) + (1,) * (a.ndim - 2), np.uint8))[:side, :side]

    images = [block(rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)) for _ in range(tiles)]
    labels = [block(rng.integers(0, N_CLASSES, (cells, cells), dtype=np.uint8))
              for _ in range(tiles)]
    np.savez(path, images=np.stack(images), labels=np.stack(labels), n_classes=N_CLASSES,
             sub_batch=SUB_BATCH)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    parser.add_argument("--tile", type=int, default=1024, help="tile side in pixels")
    parser.add_argument("--tiles", type=int, default=2, help="tiles per batch")
    parser.add_argument("--size", type=int, default=508, help="size_g = size_p")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--stages", default="2,3")
    parser.add_argument("--precision", default="auto",
                        help="glnet's --precision (auto: what glnet train uses on this machine)")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    src = reference_copy(args.workdir)
    py = sys.executable
    ref_env = dict(os.environ, PYTHONPATH=os.environ.get("REF_DEPS", ""))
    stage1, full = (os.path.join(args.workdir, n) for n in ("stage1.pth", "full.pth"))
    if not os.path.exists(full):
        subprocess.run([py, "-c", MAKE_WEIGHTS, src, stage1, full, str(N_CLASSES)], env=ref_env,
                       check=True)
    npz = os.path.join(args.workdir, f"batch{args.tiles}x{args.tile}.npz")
    make_batch(npz, args.tiles, args.tile)
    print(f"{args.tiles} tiles of {args.tile} px, size_g = size_p = {args.size}, "
          f"sub-batch {SUB_BATCH}, ResNet-50 FPN, median of {args.steps} steps after a "
          f"warm-up step; the reference in fp32, glnet with --precision {args.precision}",
          flush=True)
    header = f"{'stage':>5} | {'reference s/step':>16} | {'glnet s/step':>12} | {'speed':>6} | " \
             f"{'reference peak MB':>17} | {'glnet peak MB':>13}"
    rows, ok = [], True
    for stage in (int(s) for s in args.stages.split(",")):
        tail = [str(stage), str(args.size), str(args.steps), str(LR[stage])]
        ref = run([py, "-c", REF_STEP, src, npz, stage1, full, *tail], ref_env)
        ours = run([py, "-c", GLNET_STEP, npz, stage1, full, *tail, args.precision])
        ref_s, our_s = statistics.median(ref["times"]), statistics.median(ours["times"])
        speed = ref_s / our_s
        ok = ok and speed >= 1.5 and ours["peak_mb"] <= ref["peak_mb"]
        rows.append(f"{stage:>5} | {ref_s:>16.2f} | {our_s:>12.2f} | {speed:>5.2f}x | "
                    f"{ref['peak_mb']:>17.0f} | {ours['peak_mb']:>13.0f}")
        for name, res in (("reference", ref), ("glnet", ours)):
            print(f"stage {stage} {name} ({res.get('precision', 'fp32')}): "
                  f"wall s {[round(t, 2) for t in res['times']]}, "
                  f"CPU s {[round(t, 2) for t in res['cpu']]}, last loss {res['loss']:.4f}",
                  flush=True)
    print(header, "-" * len(header), *rows, sep="\n")
    print(f"goals (speed >= 1.5x, glnet peak <= reference peak): {'met' if ok else 'NOT met'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
