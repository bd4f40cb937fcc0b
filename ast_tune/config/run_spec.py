"""The spec of one training run: :class:`RunSpec` and its sections, frozen and validated.

A RunSpec holds everything one training run reads: the data (:class:`DataSpec`), the model, the
batch (samples per forward pass, per training worker) and gradient accumulation, epochs and dense
warm-up epochs, precision, seed, checkpoint interval (epochs), AST sample selection
(:class:`SparsitySpec`: significance and threshold in nats, activation as a fraction of samples)
and SGD with its learning-rate schedule (:class:`OptimSpec`: LRs per optimizer step). Each field's
unit, allowed values and meaning are in its :func:`~ast_tune.config.keys.key` (``docs/spec.md`` lists
them). Build one with :func:`ast_tune.config.spec.build` or :func:`ast_tune.config.spec.apply_overrides`;
a bad value raises :class:`~ast_tune.config.spec.SpecError`.
"""

from __future__ import annotations

import dataclasses

from ast_tune.config.keys import REQUIRED, check_keys, key
from ast_tune.config.spec import SpecError, check_range

DATA_KINDS = ("digits", "imagefolder", "imagenet")
MODELS = ("small_resnet", "resnet18", "resnet50")
MODES = ("dense", "mask", "inline", "skip")
THRESHOLD_UPDATES = ("additive", "multiplicative")
SCHEDULES = ("constant", "step", "cosine", "onecycle", "two_stage")
PRECISIONS = ("fp32", "amp", "bf16")
DECODERS = ("pil", "torchvision")  # what data.decoder: auto chooses between


@dataclasses.dataclass(frozen=True)
class SubsetSpec:
    """A proxy of a classification data set: some of its classes, and some train images of each.

    The classes are a seeded choice among the train class folders (sorted by name), the same in
    train and val; val keeps every image of them, train ``per_class`` images of each (a seeded
    choice; all of them when None). Labels are renumbered ``0 .. classes - 1`` in name order.
    """

    classes: int = key(REQUIRED, "how many classes to keep", unit="classes", low=1)
    per_class: int | None = key(None, "train images kept per class; null: all of them", unit="images", low=1)
    seed: int = key(0, "random seed of the choice of classes and of images")

    def __post_init__(self) -> None:
        check_keys(self)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Where the samples come from.

    ``digits`` is the embedded default (sklearn's UCI handwritten digits, no download);
    ``imagefolder`` reads ``root/train/<class>/*`` and ``root/val/<class>/*``; ``imagenet`` reads the
    Kaggle layout under ``root`` (``ILSVRC/Data/CLS-LOC/{train,val}`` and ``LOC_val_solution.csv``).
    """

    kind: str = key("digits", "data set: embedded digits, a train/val class-folder tree, or ImageNet's Kaggle layout",
                    choices=DATA_KINDS)
    root: str | None = key(None, "data set root directory; required unless kind is digits")
    image_size: int = key(32, "side of the square network input (224 for ImageNet)", unit="px", low=8)
    num_workers: int = key(-1, "DataLoader worker processes per training worker; -1: min(8, CPUs - 1), at least 1",
                           unit="processes", low=-1)
    val_fraction: float = key(0.2, "digits only: share of the 1,797 images held out for validation",
                              unit="fraction", low=0, high=1, low_open=True, high_open=True)
    subset: SubsetSpec | None = key(None, "a class subset (a proxy task); null: every class")
    decoder: str = key("auto", "image files: pil (PIL decodes), torchvision (torchvision.io, on the training GPU "
                       "when there is one), or auto: torchvision.io in the loader workers on a copy `python -m "
                       "ast_tune.prepare` made (its manifest.json in root), pil elsewhere", choices=("auto", *DECODERS))

    def __post_init__(self) -> None:
        check_keys(self)
        if self.kind != "digits" and not self.root:
            raise SpecError("root", f"required for kind {self.kind}")


@dataclasses.dataclass(frozen=True)
class SparsitySpec:
    """How AST picks the samples it trains on (docs/design.md, "The AST algorithm").

    Significance ``s = loss_weight·CE + entropy_weight·H`` in nats. The Sundew PI controller moves
    ``threshold`` (nats) after every batch so that the EMA of the activation rate tracks
    ``target_activation``; samples with ``s >= threshold`` are trained on.

    ``threshold_update``: ``additive`` is the reference library's (adaptive-sparse-training 1.0.1)
    ``threshold += kp·error + ki·integral``, with ``kp``/``ki`` in nats. ``multiplicative`` moves the
    threshold in the log domain, ``threshold ·= exp(kp·error + ki·integral)``, with ``kp``/``ki``
    dimensionless (natural-log units of threshold per unit of activation error); it needs
    ``threshold_min > 0``. The log-domain step is scale-free, so fixed gains keep working when
    significance shrinks over a run, as it does on digits while the model learns.
    """

    mode: str = key("inline", "dense: every sample; mask: full step, loss masked; inline: score, then train the "
                    "selected; skip: predicted-insignificant samples are not loaded", choices=MODES)
    target_activation: float = key(0.4, "wanted fraction of samples trained on", unit="fraction",
                                   low=0, high=1, low_open=True)
    initial_threshold: float = key(3.0, "significance threshold at the first AST batch; skip starts from its "
                                   "score table instead", unit="nats", low="threshold_min", high="threshold_max")
    kp: float = key(0.005, "proportional gain: threshold step per unit of activation error, per batch",
                    unit="nats; none when multiplicative", low=0)
    ki: float = key(0.0001, "integral gain: threshold step per unit of accumulated error, per batch",
                    unit="nats; none when multiplicative", low=0)
    ema_alpha: float = key(0.1, "weight of the newest batch in the activation EMA; 1: no smoothing",
                           unit="fraction", low=0, high=1, low_open=True)
    loss_weight: float = key(0.7, "weight of the cross-entropy in a sample's significance", low=0)
    entropy_weight: float = key(0.3, "weight of the prediction entropy in a sample's significance", low=0)
    threshold_min: float = key(0.5, "lowest threshold, and lower edge of the anti-windup band; > 0 when "
                               "threshold_update is multiplicative", unit="nats", low=0)
    threshold_max: float = key(10.0, "highest threshold, and upper edge of the anti-windup band", unit="nats",
                               low="threshold_min", low_open=True)
    min_keep_fraction: float = key(0.1, "top-k floor: at least max(2, ceil(f·batch)) samples kept per batch",
                                   unit="fraction", low=0, high=1)
    score_bn: str = key("train", "inline: BatchNorm mode of the no-grad scoring forward", choices=("eval", "train"))
    refresh_fraction: float = key(0.1, "skip: share of the predicted-insignificant samples still trained, so "
                                  "their scores refresh", unit="fraction", low=0, high=1)
    reweight: bool = key(False, "skip: weight the refreshed low-score samples by 1/refresh_fraction")
    threshold_update: str = key("additive", "additive: threshold += kp·error + ki·integral; multiplicative: "
                                "threshold ·= exp(kp·error + ki·integral)", choices=THRESHOLD_UPDATES)
    anneal_epochs: int = key(0, "final epochs trained dense with the controller frozen (at most the epochs "
                             "after the warm-up)", unit="epochs", low=0)
    pool: bool = key(False, "inline: pool the selected samples of several batches, then one forward+backward")
    pool_size: int = key(0, "inline pooling: pooled samples per rank that trigger a forward+backward; "
                         "0: batch_size", unit="samples", low=0)

    def __post_init__(self) -> None:
        check_keys(self)
        if self.threshold_update == "multiplicative":
            check_range("threshold_min", self.threshold_min, low=0, low_open=True)


@dataclasses.dataclass(frozen=True)
class OptimSpec:
    """SGD and its learning-rate schedule.

    LRs are per optimizer step of ``batch_size × grad_accum × world_size`` samples. ``two_stage`` is
    the plan's: ``warmup_lr`` during the dense warm-up epochs, then ``lr``. The other schedules span
    all epochs from ``lr`` and ignore ``warmup_lr``.
    """

    lr: float = key(0.005, "SGD learning rate per optimizer step: after the warm-up (two_stage), else where "
                    "the schedule starts (onecycle: its peak)", low=0, low_open=True)
    warmup_lr: float = key(0.01, "two_stage only: learning rate of the dense warm-up epochs", low=0, low_open=True)
    schedule: str = key("two_stage", "learning-rate schedule; all but two_stage span every epoch from lr",
                        choices=SCHEDULES)
    step_epochs: int = key(30, "step only: epochs between two multiplications of the LR by gamma", unit="epochs",
                           low=1)
    gamma: float = key(0.1, "step only: factor applied to the LR every step_epochs", low=0, high=1, low_open=True)
    momentum: float = key(0.9, "SGD momentum", low=0, high=1, high_open=True)
    weight_decay: float = key(1e-4, "SGD L2 weight decay", low=0)

    def __post_init__(self) -> None:
        check_keys(self)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything one training run needs; the engine reads nothing else."""

    data: DataSpec = key(DataSpec(), "where the samples come from")
    model: str = key("small_resnet", "network: a small ResNet for 32 px inputs, or torchvision's ResNet-18 / -50",
                     choices=MODELS)
    pretrained: str | None = key(None, "path of a local torchvision state_dict file to start from; null: random "
                                 "initialisation")
    batch_size: int = key(128, "samples per forward pass, per training worker", unit="samples", low=1)
    grad_accum: int = key(1, "forward passes per optimizer step", unit="forward passes", low=1)
    epochs: int = key(10, "epochs of the run", unit="epochs", low=1)
    warmup_epochs: int = key(2, "dense epochs before AST selection starts", unit="epochs", low=0, high="epochs")
    precision: str = key("fp32", "fp32; amp: fp16 autocast + GradScaler, CUDA only; bf16: autocast, no scaler",
                         choices=PRECISIONS)
    channels_last: bool = key(True, "CUDA only: model and batches in NHWC memory format")
    seed: int = key(0, "random seed of the weights' initialisation, the shuffling and skip's refresh draws",
                    low=0, high=2**32 - 1)  # numpy's seed range
    checkpoint_every: int = key(10, "epochs between checkpoints; the last epoch is always saved", unit="epochs",
                                low=1)
    sparsity: SparsitySpec = key(SparsitySpec(), "how AST selects the samples it trains on")
    optim: OptimSpec = key(OptimSpec(), "SGD and its learning-rate schedule")

    def __post_init__(self) -> None:
        check_keys(self)
