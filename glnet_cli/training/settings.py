"""Training recipes and defaults, as plain values.

Kept apart from the training code so that ``glnet train --help`` shows them
without importing torch.

Two recipes exist. ``paper`` is GLNet's published setting (Adam, poly decay,
focal loss, 120/50/120 epochs), tuned for ImageNet-initialised ResNet-50 on
DeepGlobe. ``auto`` is glnet's default: it picks learning rates and weight
decay from the start the backbone actually got (ImageNet weights, or random
ones when they cannot be had), warms up, decays on a cosine, balances classes
and starts the local branch from the trained global branch when there are no
ImageNet features to start from.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The paper's epochs and learning rates, stage by stage.
PAPER_EPOCHS = (120, 50, 120)
PAPER_LR = (5e-5, 2e-5, 5e-5)
WEIGHT_DECAY = 5e-4
#: The model file a run writes when no -o is given, in the current folder.
DEFAULT_OUTPUT = "model.pt"

RECIPES = ("auto", "paper")
#: --monitor's choices besides ``iou:CLASS`` (``loss`` is minimised, the rest maximised).
MONITORS = ("miou", "miou-all", "accuracy", "loss")
DEFAULT_MONITOR = "miou"
#: Share of a --time-limit each stage gets (renormalised over the stages run; what an
#: early-stopped stage leaves over goes to the stages after it).
STAGE_TIME_SHARES = (0.25, 0.5, 0.25)


@dataclass(frozen=True)
class Recipe:
    """What a recipe sets: every field may still be overridden by its option."""

    name: str
    epochs: tuple[int, int, int]
    lr: tuple[float, float, float]
    weight_decay: float
    #: Share of a stage's steps (or time) spent warming the learning rate up from 0.
    warmup: float
    #: ``cosine`` or ``poly`` (the reference's (1 - t)^0.9).
    schedule: str
    loss: str
    class_weights: str
    oversample: bool
    #: Start the local branch of stage 2 from the stage-1 global branch.
    local_from_global: bool
    #: Random brightness and contrast besides flips and turns.
    color_jitter: bool
    #: Least overlap of neighbouring training crops (the reference's 50 px; 0 tiles a
    #: tile with as few crops as cover it, which makes an epoch up to 2.25x cheaper).
    crop_overlap: int

    def describe(self, started_from: str) -> str:
        """One line saying which recipe runs, for the start of a run."""
        lr = "/".join(f"{v:g}" for v in self.lr)
        extras = ", local branch from the global one" if self.local_from_global else ""
        return (f"recipe {self.name} for {started_from} weights: lr {lr}, weight decay "
                f"{self.weight_decay:g}, {self.schedule} schedule with {self.warmup:.0%} warm-up, "
                f"loss {self.loss}, class weights {self.class_weights}"
                f"{', rare tiles oversampled' if self.oversample else ''}"
                f"{', colour jitter' if self.color_jitter else ''}{extras}")


PAPER = Recipe("paper", PAPER_EPOCHS, PAPER_LR, WEIGHT_DECAY, warmup=0.0, schedule="poly",
               loss="focal", class_weights="none", oversample=False, local_from_global=False,
               color_jitter=False, crop_overlap=50)
#: From ImageNet features: gentle rates, so the pretrained trunk is refined, not erased.
AUTO_PRETRAINED = Recipe("auto", (40, 20, 10), (2e-4, 1e-4, 1e-4), 1e-4, warmup=0.05,
                         schedule="cosine", loss="ce+dice", class_weights="auto",
                         oversample=True, local_from_global=False, color_jitter=True,
                         crop_overlap=0)
#: From random weights: BatchNorm nets train from scratch at Adam's usual 1e-3.
AUTO_SCRATCH = Recipe("auto", (60, 30, 15), (1e-3, 1e-3, 5e-4), 0.0, warmup=0.05,
                      schedule="cosine", loss="ce+dice", class_weights="auto",
                      oversample=True, local_from_global=True, color_jitter=True,
                      crop_overlap=0)


def recipe_for(name: str, imagenet_start: bool) -> Recipe:
    """The recipe ``name`` for a backbone that did (or did not) start from ImageNet weights."""
    if name == "paper":
        return PAPER
    return AUTO_PRETRAINED if imagenet_start else AUTO_SCRATCH
