"""Reference-layout state dicts and an independent oracle of the reference's forward pass.

The oracle computes straight from the reference's key names with functional
calls (torchvision's ResNet for the trunks, which the reference's own ResNet
matches key for key), so it shares no code with ``models/``: if our modules or
the key mapping drift from the reference semantics, the comparison fails.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models import resnet18, resnet50

WIDTH = 256  # the reference's FPN width


def _conv(shape: tuple[int, ...], gen: torch.Generator) -> dict[str, torch.Tensor]:
    fan_in = shape[1] * shape[2] * shape[3]
    return {"weight": torch.randn(shape, generator=gen) / fan_in ** 0.5,
            "bias": torch.randn(shape[0], generator=gen) * 0.05}


def _resnet_state(name: str, gen: torch.Generator, bands: int) -> dict[str, torch.Tensor]:
    with torch.device("meta"):  # the names and shapes only: no weights to initialise
        net = {"resnet50": resnet50, "resnet18": resnet18}[name](weights=None)
        if bands != 3:
            net.conv1 = torch.nn.Conv2d(bands, 64, 7, 2, 3, bias=False)
    state = {}
    for key, value in net.state_dict().items():
        if key.startswith("fc."):
            continue
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
            continue
        if key.endswith("running_var"):
            value = torch.rand(value.shape, generator=gen) + 0.5
        elif key.endswith("running_mean"):
            value = torch.randn(value.shape, generator=gen) * 0.1
        elif key.endswith("bn1.weight") or ".bn" in key and key.endswith("weight") \
                or "downsample.1.weight" in key:
            value = torch.rand(value.shape, generator=gen) + 0.5
        elif key.endswith("bias"):
            value = torch.randn(value.shape, generator=gen) * 0.05
        elif value.dim() == 4:
            fan_in = value.shape[1] * value.shape[2] * value.shape[3]
            value = torch.randn(value.shape, generator=gen) * (2.0 / fan_in) ** 0.5
        state[key] = value
    return state


def _channels(name: str) -> tuple[int, int, int, int]:
    return (256, 512, 1024, 2048) if name == "resnet50" else (64, 128, 256, 512)


def fpn_global_shapes(name: str, n_classes: int) -> dict[str, tuple[int, ...]]:
    """Every conv of ``fpn_global`` as GLNET.md lists it, with its weight shape."""
    c2, c3, c4, c5 = _channels(name)
    w, h = WIDTH, WIDTH // 2
    shapes = {"toplayer": (w, c5, 1, 1), "latlayer1": (w, c4, 1, 1),
              "latlayer2": (w, c3, 1, 1), "latlayer3": (w, c2, 1, 1),
              "classify": (n_classes, 4 * h, 3, 3), "smooth": (4 * h, 8 * h, 3, 3),
              "toplayer_ext": (w, 2 * c5, 1, 1), "latlayer1_ext": (w, 2 * c4, 1, 1),
              "latlayer2_ext": (w, 2 * c3, 1, 1), "latlayer3_ext": (w, 2 * c2, 1, 1)}
    for i in range(1, 5):
        shapes[f"smooth{i}_1"] = (w, w, 3, 3)
        shapes[f"smooth{i}_2"] = (h, w, 3, 3)
        shapes[f"smooth{i}_1_ext"] = (w, 2 * w, 3, 3)
        shapes[f"smooth{i}_2_ext"] = (h, 2 * w, 3, 3)
    return shapes


def fpn_local_shapes(name: str, n_classes: int) -> dict[str, tuple[int, ...]]:
    c2, c3, c4, c5 = _channels(name)
    w, h = WIDTH, WIDTH // 2
    shapes = {"toplayer": (w, 2 * c5, 1, 1), "latlayer1": (w, 2 * c4, 1, 1),
              "latlayer2": (w, 2 * c3, 1, 1), "latlayer3": (w, 2 * c2, 1, 1),
              "smooth": (4 * h, 8 * h, 3, 3), "classify": (n_classes, 4 * h, 3, 3)}
    for i in range(1, 5):
        shapes[f"smooth{i}_1"] = (w, 2 * w, 3, 3)
        shapes[f"smooth{i}_2"] = (h, 2 * w, 3, 3)
    return shapes


def reference_state_dict(n_classes: int = 7, seed: int = 0, backbone: str = "resnet50",
                         bands: int = 3) -> dict[str, torch.Tensor]:
    """A full ``module.``-prefixed state dict of the reference network, random weights."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for branch in ("global", "local"):
        for key, value in _resnet_state(backbone, gen, bands).items():
            state[f"module.resnet_{branch}.{key}"] = value
    for module, shapes in (("fpn_global", fpn_global_shapes(backbone, n_classes)),
                           ("fpn_local", fpn_local_shapes(backbone, n_classes))):
        for name, shape in shapes.items():
            for param, value in _conv(shape, gen).items():
                state[f"module.{module}.{name}.{param}"] = value
    for param, value in _conv((n_classes, 4 * WIDTH, 3, 3), gen).items():
        state[f"module.ensemble_conv.{param}"] = value
    return state


# -- the oracle ---------------------------------------------------------------

def _up(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear")


def _c(state, prefix, name, x):
    w = state[f"{prefix}.{name}.weight"]
    return F.conv2d(x, w, state[f"{prefix}.{name}.bias"], padding=w.shape[-1] // 2)


def _trunk(state, prefix: str, name: str, bands: int, x: torch.Tensor):
    net = {"resnet50": resnet50, "resnet18": resnet18}[name](weights=None)
    if bands != 3:
        net.conv1 = torch.nn.Conv2d(bands, 64, 7, 2, 3, bias=False)
    sub = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
    net.load_state_dict(sub, strict=False)
    net.eval()
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    c2 = net.layer1(x)
    c3 = net.layer2(c2)
    c4 = net.layer3(c3)
    return [c2, c3, c4, net.layer4(c4)]


def _fpn(state, prefix, c, ext=None, suffix=""):
    """The reference FPN; ``ext`` = (c list, ps0, ps1, ps2): crops (resized here) for the
    local head, same-size canvases (concatenated as they are) for the L2G global head."""
    def cat(x, e):
        if e is None:
            return x
        return torch.cat([x, e if suffix else _up(e, x.shape[-2:])], 1)
    none4 = [None] * 4
    ec, e0, e1, e2 = ext if ext is not None else (none4, none4, none4, none4)
    c2, c3, c4, c5 = c
    p5 = _c(state, prefix, "toplayer" + suffix, cat(c5, ec[3]))
    p4 = _up(p5, c4.shape[-2:]) + _c(state, prefix, "latlayer1" + suffix, cat(c4, ec[2]))
    p3 = _up(p4, c3.shape[-2:]) + _c(state, prefix, "latlayer2" + suffix, cat(c3, ec[1]))
    p2 = _up(p3, c2.shape[-2:]) + _c(state, prefix, "latlayer3" + suffix, cat(c2, ec[0]))
    ps0 = [p5, p4, p3, p2]
    ps1 = [_c(state, prefix, f"smooth{i + 1}_1" + suffix, cat(p, e0[i])) for i, p in enumerate(ps0)]
    ps2 = [_c(state, prefix, f"smooth{i + 1}_2" + suffix, cat(p, e1[i])) for i, p in enumerate(ps1)]
    joined = [cat(p, e2[i]) for i, p in enumerate(ps2)]
    size = joined[3].shape[-2:]
    ps3 = torch.cat([_up(j, size) for j in joined[:3]] + [joined[3]], 1)
    if ext is not None:
        ps3 = _c(state, prefix, "smooth", ps3)
    return c, ps0, ps1, ps2, ps3, _c(state, prefix, "classify", ps3)


def _crop(f, tl, ratio):
    H, W = f.shape[-2:]
    h, w = int(round(H * ratio[0])), int(round(W * ratio[1]))
    out = []
    for top, left in tl:
        y, x = int(round(top * H)), int(round(left * W))
        out.append(f[0, :, y:y + h, x:x + w])
    return torch.stack(out)


def _crop_all(levels, tl, ratio):
    c, ps0, ps1, ps2 = levels[:4]
    return ([_crop(t, tl, ratio) for t in c], [_crop(t, tl, ratio) for t in ps0],
            [_crop(t, tl, ratio) for t in ps1], [_crop(t, tl, ratio) for t in ps2])


def _merge(local_levels, global_levels, tl, ratio, template):
    merged = []
    for group_l, group_g in zip(local_levels[:4], global_levels[:4]):
        out = []
        for fl, fg in zip(group_l, group_g):
            H, W = fg.shape[-2:]
            h, w = int(round(H * ratio[0])), int(round(W * ratio[1]))
            canvas = torch.zeros((1, fl.shape[1], H, W))
            for i, (top, left) in enumerate(tl):
                y, x = int(round(H * top)), int(round(W * left))
                canvas[:, :, y:y + h, x:x + w] += _up(fl[i:i + 1], (h, w))
            out.append(canvas / _up(template, (H, W)).expand_as(canvas))
        merged.append(out)
    return merged


def oracle(files: dict[int, dict[str, torch.Tensor]], image_global, patches, tl, ratio,
           backbone="resnet50", bands=3) -> dict[str, torch.Tensor]:
    """What the reference computes; ``files`` maps stage number -> state dict."""
    top = max(files)
    g2l_state = files[1] if top == 3 else files[2]
    context = _fpn(g2l_state, "module.fpn_global",
                   _trunk(g2l_state, "module.resnet_global", backbone, bands, image_global))
    model = files[top]
    local = _fpn(model, "module.fpn_local",
                 _trunk(model, "module.resnet_local", backbone, bands, patches),
                 ext=_crop_all(context, tl, ratio))
    final = context
    if top == 3:
        p = patches.shape[-1]
        size = (int(round(p / ratio[0])), int(round(p / ratio[1])))
        template = torch.zeros((1, 1) + size)
        for ty, tx in tl:
            y, x = int(round(ty * size[0])), int(round(tx * size[1]))
            template[..., y:y + p, x:x + p] += 1
        merged = _merge(local, context, tl, ratio, template)
        final = _fpn(model, "module.fpn_global",
                     _trunk(model, "module.resnet_global", backbone, bands, image_global),
                     ext=merged, suffix="_ext")
    g = _up(_crop(final[4], tl, ratio), local[4].shape[-2:])
    aggregated = _c(model, "module", "ensemble_conv", torch.cat([local[4], g], 1))
    return {"aggregated": aggregated, "local": local[5], "global": final[5],
            "fmreg": F.mse_loss(local[4], g)}
