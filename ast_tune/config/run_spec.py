"""The spec of one training run: :class:`RunSpec` and its sections, frozen and validated.

A RunSpec holds everything one training run reads: the data (:class:`DataSpec`), the model, the
batch (samples per forward pass, per training worker) and gradient accumulation, epochs and dense
warm-up epochs, precision, seed, checkpoint interval (epochs), AST sample selection
(:class:`SparsitySpec`: significance and threshold in nats, activation as a fraction of samples)
and SGD with its learning-rate schedule (:class:`OptimSpec`: LRs per optimizer step). Units are
in each field's comment. Build one with :func:`ast_tune.config.spec.build` or
:func:`ast_tune.config.spec.apply_overrides`; a bad value raises :class:`~ast_tune.config.spec.SpecError`.
"""

from __future__ import annotations

import dataclasses

from ast_tune.config.spec import SpecError, check_choice, check_range

DATA_KINDS = ("digits", "imagefolder", "imagenet")
MODELS = ("small_resnet", "resnet18", "resnet50")
MODES = ("dense", "mask", "inline", "skip")
THRESHOLD_UPDATES = ("additive", "multiplicative")
SCHEDULES = ("constant", "step", "cosine", "onecycle", "two_stage")
PRECISIONS = ("fp32", "amp", "bf16")
DECODERS = ("pil", "torchvision")


@dataclasses.dataclass(frozen=True)
class SubsetSpec:
    """A proxy of a classification data set: some of its classes, and some train images of each.

    The classes are a seeded choice among the train class folders (sorted by name), the same in
    train and val; val keeps every image of them, train ``per_class`` images of each (a seeded
    choice; all of them when None). Labels are renumbered ``0 .. classes - 1`` in name order.
    """

    classes: int  # how many classes to keep
    per_class: int | None = None  # train images kept per class; None = all
    seed: int = 0  # seeds the choice of classes and of images

    def __post_init__(self) -> None:
        check_range("classes", self.classes, low=1)
        if self.per_class is not None:
            check_range("per_class", self.per_class, low=1)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Where the samples come from.

    ``digits`` is the embedded default (sklearn's UCI handwritten digits, no download);
    ``imagefolder`` reads ``root/train/<class>/*`` and ``root/val/<class>/*``; ``imagenet`` reads the
    Kaggle layout under ``root`` (``ILSVRC/Data/CLS-LOC/{train,val}`` and ``LOC_val_solution.csv``).
    """

    kind: str = "digits"
    root: str | None = None  # dataset root directory; required unless kind is digits
    image_size: int = 32  # px, side of the square network input (224 for ImageNet)
    num_workers: int = -1  # DataLoader worker processes per training worker; -1 = auto
    val_fraction: float = 0.2  # digits only: share of the 1,797 images held out for validation
    subset: SubsetSpec | None = None  # a class subset (a proxy task); None = every class
    decoder: str = "pil"  # image files: pil (PIL + torchvision transforms) | torchvision (torchvision.io,
    #                       on the training GPU when there is one; see ast_tune.data.decode)

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, DATA_KINDS)
        if self.kind != "digits" and not self.root:
            raise SpecError("root", f"required for kind {self.kind}")
        check_range("image_size", self.image_size, low=8)
        check_range("num_workers", self.num_workers, low=-1)
        check_range("val_fraction", self.val_fraction, low=0, high=1, low_open=True, high_open=True)
        check_choice("decoder", self.decoder, DECODERS)


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

    mode: str = "inline"  # dense | mask | inline | skip
    target_activation: float = 0.4  # wanted fraction of samples trained on
    initial_threshold: float = 3.0  # nats; skip starts from its score table instead
    kp: float = 0.005  # nats of threshold per unit of activation error, per batch
    ki: float = 0.0001  # nats per unit of accumulated error, per batch
    ema_alpha: float = 0.1  # weight of the newest batch in the activation EMA
    loss_weight: float = 0.7
    entropy_weight: float = 0.3
    threshold_min: float = 0.5  # nats; also the lower edge of the anti-windup band
    threshold_max: float = 10.0  # nats; also the upper edge of the anti-windup band
    min_keep_fraction: float = 0.1  # top-k floor: keep at least max(2, ceil(f·batch)) per batch
    score_bn: str = "train"  # inline: BatchNorm mode of the no-grad scoring forward (train | eval); see README
    refresh_fraction: float = 0.1  # skip: share of predicted-insignificant samples still trained
    reweight: bool = False  # skip: weight the refreshed low-score samples by 1/refresh_fraction
    threshold_update: str = "additive"  # additive (seed) | multiplicative (log domain)
    anneal_epochs: int = 0  # final epochs trained dense, controller frozen; at most epochs − warmup_epochs act
    pool: bool = False  # inline: pool the selected samples of several batches, then one forward+backward
    pool_size: int = 0  # inline pooling: samples per rank that trigger a forward+backward; 0 = batch_size

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_range("target_activation", self.target_activation, low=0, high=1, low_open=True)
        for key in ("kp", "ki", "loss_weight", "entropy_weight"):
            check_range(key, getattr(self, key), low=0)
        check_range("ema_alpha", self.ema_alpha, low=0, high=1, low_open=True)
        check_range("threshold_min", self.threshold_min, low=0)
        check_range("threshold_max", self.threshold_max, low=self.threshold_min, low_open=True)
        check_range("initial_threshold", self.initial_threshold, low=self.threshold_min,
                    high=self.threshold_max)
        check_range("min_keep_fraction", self.min_keep_fraction, low=0, high=1)
        check_choice("score_bn", self.score_bn, ("eval", "train"))
        check_range("refresh_fraction", self.refresh_fraction, low=0, high=1)
        check_choice("threshold_update", self.threshold_update, THRESHOLD_UPDATES)
        check_range("anneal_epochs", self.anneal_epochs, low=0)
        check_range("pool_size", self.pool_size, low=0)
        if self.threshold_update == "multiplicative":
            check_range("threshold_min", self.threshold_min, low=0, low_open=True)


@dataclasses.dataclass(frozen=True)
class OptimSpec:
    """SGD and its learning-rate schedule.

    LRs are per optimizer step of ``batch_size × grad_accum × world_size`` samples. ``two_stage`` is
    the plan's: ``warmup_lr`` during the dense warm-up epochs, then ``lr``. The other schedules span
    all epochs from ``lr`` and ignore ``warmup_lr``.
    """

    lr: float = 0.005
    warmup_lr: float = 0.01
    schedule: str = "two_stage"  # constant | step | cosine | onecycle | two_stage
    step_epochs: int = 30  # step: multiply the LR by gamma every step_epochs epochs
    gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        check_range("lr", self.lr, low=0, low_open=True)
        check_range("warmup_lr", self.warmup_lr, low=0, low_open=True)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_range("step_epochs", self.step_epochs, low=1)
        check_range("gamma", self.gamma, low=0, high=1, low_open=True)
        check_range("momentum", self.momentum, low=0, high=1, high_open=True)
        check_range("weight_decay", self.weight_decay, low=0)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything one training run needs; the engine reads nothing else."""

    data: DataSpec = DataSpec()
    model: str = "small_resnet"  # small_resnet | resnet18 | resnet50
    pretrained: str | None = None  # path of a local torchvision state_dict file, or none
    batch_size: int = 128  # samples per forward pass, per training worker
    grad_accum: int = 1  # forward passes per optimizer step
    epochs: int = 10
    warmup_epochs: int = 2  # dense epochs before AST selection starts
    precision: str = "fp32"  # fp32 | amp (fp16 autocast + GradScaler, CUDA only) | bf16 (autocast, no scaler)
    channels_last: bool = True  # CUDA only: model and batches in NHWC memory format
    seed: int = 0
    checkpoint_every: int = 10  # epochs between checkpoints; the last epoch is always saved
    sparsity: SparsitySpec = SparsitySpec()
    optim: OptimSpec = OptimSpec()

    def __post_init__(self) -> None:
        check_workload_fields(self)
        check_range("grad_accum", self.grad_accum, low=1)
        check_range("warmup_epochs", self.warmup_epochs, low=0, high=self.epochs)
        check_range("seed", self.seed, low=0, high=2**32 - 1)  # numpy's seed range


def check_workload_fields(spec: RunSpec | object) -> None:
    """RunSpec's checks of the fields a sweep's ``workload`` sets too (model, batch_size, epochs,
    precision, checkpoint_every; None = not set), so that both validate them alike."""
    check_choice("model", spec.model, MODELS)
    check_range("batch_size", spec.batch_size, low=1)
    check_range("epochs", spec.epochs, low=1)
    check_choice("precision", spec.precision, PRECISIONS)
    if spec.checkpoint_every is not None:
        check_range("checkpoint_every", spec.checkpoint_every, low=1)
