"""Named starting points: the plan's three configurations, a dense baseline, and a quickstart.

``conservative``, ``aggressive`` and ``ultra`` are Configurations 1–3 of the plan (the ImageNet-1K
validation plan) for ResNet-50 on ImageNet-1K, value for value. Where the plan leaves a value unsaid
(batch size; Ultra's gains and LRs), the Conservative value is used: the plan bases it on its
ImageNet-100 production setting. ``baseline`` is Conservative trained dense. ``quickstart`` is the
embedded default: digits and the small ResNet on a CPU, with a log-domain (multiplicative) threshold
update whose gains do not depend on digits' shrinking loss scale.
"""

from __future__ import annotations

import dataclasses

from ast_tune.config.run_spec import DataSpec, OptimSpec, RunSpec, SparsitySpec
from ast_tune.config.spec import SpecError

_IMAGENET = DataSpec(kind="imagenet", root="/data/imagenet", image_size=224)

CONSERVATIVE = RunSpec(
    data=_IMAGENET,
    model="resnet50",
    batch_size=256,  # not in the plan; torchvision's reference recipe
    epochs=100,
    warmup_epochs=10,
    checkpoint_every=10,
    sparsity=SparsitySpec(mode="inline", target_activation=0.40, initial_threshold=3.0,
                          kp=0.005, ki=0.0001, ema_alpha=0.1),
    optim=OptimSpec(schedule="two_stage", warmup_lr=0.01, lr=0.005, momentum=0.9, weight_decay=1e-4),
)

AGGRESSIVE = dataclasses.replace(
    CONSERVATIVE,
    epochs=50,
    warmup_epochs=5,
    sparsity=dataclasses.replace(CONSERVATIVE.sparsity, target_activation=0.30, initial_threshold=4.0,
                                 kp=0.008, ki=0.00015),
    optim=dataclasses.replace(CONSERVATIVE.optim, warmup_lr=0.02, lr=0.01),
)

ULTRA = dataclasses.replace(
    CONSERVATIVE,
    epochs=30,
    warmup_epochs=0,
    precision="amp",
    grad_accum=4,
    sparsity=dataclasses.replace(CONSERVATIVE.sparsity, target_activation=0.20, initial_threshold=5.0),
)

BASELINE = dataclasses.replace(
    CONSERVATIVE, sparsity=dataclasses.replace(CONSERVATIVE.sparsity, mode="dense")
)

QUICKSTART = RunSpec(
    data=DataSpec(kind="digits", image_size=32),
    model="small_resnet",
    batch_size=64,  # 23 controller steps per epoch on digits' 1,437 training images
    epochs=10,
    warmup_epochs=1,  # mode, target and warm-up: benchmarks/defaults_experiment.py (docs/benchmarks.md)
    checkpoint_every=5,
    # digits' significance shrinks as the model learns, so the threshold moves in the log domain
    # (scale-free gains; floor 1e-4 nats) and the EMA is off
    sparsity=SparsitySpec(mode="skip", target_activation=0.3, initial_threshold=0.5, threshold_min=1e-4,
                          threshold_update="multiplicative", kp=1.5, ki=0.5, ema_alpha=1.0),
    optim=OptimSpec(schedule="cosine", lr=0.05),
)



@dataclasses.dataclass(frozen=True)
class Preset:
    """A named starting point: its RunSpec and one line of what it is."""

    spec: RunSpec
    meaning: str


PRESETS: dict[str, Preset] = {
    "conservative": Preset(CONSERVATIVE, "the plan's Configuration 1: ResNet-50 on ImageNet-1K, 100 epochs, "
                                         "40 % activation"),
    "aggressive": Preset(AGGRESSIVE, "the plan's Configuration 2: 50 epochs, 30 % activation, higher gains and LRs"),
    "ultra": Preset(ULTRA, "the plan's Configuration 3: 30 epochs, 20 % activation, AMP, 4 accumulated passes, "
                           "no warm-up"),
    "baseline": Preset(BASELINE, "conservative with sparsity.mode dense: every sample of every epoch trained"),
    "quickstart": Preset(QUICKSTART, "the embedded default: digits and the small ResNet on a CPU, skip selection "
                                     "with a log-domain threshold"),
}


def get_preset(name: str) -> RunSpec:
    """The RunSpec of the preset called ``name``; SpecError listing the allowed names otherwise."""
    if name not in PRESETS:
        raise SpecError("preset", f"must be one of {', '.join(PRESETS)}; got {name!r}")
    return PRESETS[name].spec
