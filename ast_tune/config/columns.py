"""The result schema in one place: column names, the metrics an objective may name, trial statuses.

See docs/design.md, "Files under results/<name>/". Units: accuracies in percent; ``energy_savings``
and ``activation_rate`` as fractions in [0, 1]; ``energy_savings`` is COUNTED (the reference library's
1 − (active + 0.01·skipped)/total), ``speedup`` is MEASURED (dense baseline train seconds / this run's
train seconds, same hardware); times in seconds; memory in MiB; energy in joules (NVML, GPU only: NaN
elsewhere, never invented).
"""

from __future__ import annotations

#: One row per epoch of one run, as ``engine.fit`` reports it.
EPOCH_METRICS = (
    "epoch",  # 1-based count of finished epochs
    "phase",  # "warmup" (dense), "ast" or "anneal" (the final dense epochs)
    "train_loss",  # mean CE over the samples trained on, nats
    "val_top1",
    "val_top5",
    "lr",  # LR at the end of the epoch
    "activation_rate",  # realised fraction of samples trained on (not the EMA)
    "target_activation",
    "threshold",  # nats, at the end of the epoch
    "energy_savings",  # counted
    "train_seconds",  # wall clock of the training phase only
    "data_seconds",  # of train_seconds, the time the loop waited on the loader (measured)
    "samples_per_second",  # samples seen (loaded) per train second
    "speedup",  # measured; NaN when no baseline was timed
    "energy_j",  # NVML energy of the epoch, GPU only
    "max_memory_mb",  # CUDA max allocated, or process RSS on CPU
)

#: ``epochs.parquet`` adds the trial's identity, final status and parameters (``param.<name>``).
EPOCH_TABLE_KEYS = ("trial_id", "status")

#: Share of an epoch's (or a trial's) train seconds spent waiting on the data loader above which the run
#: is loader-bound: its measured speedup then measures the loader, not AST.
DATA_BOUND = 1 / 3

#: ``trials.parquet`` / ``trials.csv``: one row per trial, plus every ``param.<name>``; ``data_wait`` is
#: ``data_seconds / train_seconds`` (a fraction).
TRIAL_COLUMNS = (
    "trial_id", "status", "epochs_done", "val_top1", "val_top5", "energy_savings", "speedup",
    "activation_rate", "train_seconds", "data_seconds", "data_wait", "energy_j", "pareto_rank", "on_front",
    # the plan's question (ast_tune.results.verdict), known once a trial's epochs are in
    "top1_drop", "time_to_target_s", "speedup_to_target", "tracking_error_mean", "tracking_error_max",
    "feasible", "verdict",
)

#: Trial metrics known only from a trial's whole epoch history (and the baseline's), never per epoch:
#: ``top1_drop`` (points of final top-1 below the baseline's), ``time_to_target_s`` (train seconds until
#: top-1 first reaches the target), ``speedup_to_target`` (×, the baseline's time to it / the trial's),
#: ``tracking_error_mean`` / ``_max`` (points of |activation − target| over the AST epochs).
OUTCOME_METRICS = ("top1_drop", "time_to_target_s", "speedup_to_target", "tracking_error_mean",
                   "tracking_error_max")
#: Trial-table columns a ``constraints:`` entry may bound.
CONSTRAINT_METRICS = ("val_top1", "val_top5", "energy_savings", "speedup", "activation_rate", "train_seconds",
                      *OUTCOME_METRICS)

PARAM_PREFIX = "param."

#: How a column is shown in the Markdown and HTML tables: (header with its unit, format spec, scale).
#: Format ``"d"``: as an integer; ``""``: as text.
SHOWN = {
    "trial_id": ("trial", "", 1),
    "epochs_done": ("epochs", "d", 1),
    "val_top1": ("top-1 (%)", ".2f", 1),
    "val_top5": ("top-5 (%)", ".2f", 1),
    "energy_savings": ("energy savings, counted (%)", ".1f", 100),
    "speedup": ("speedup, measured (×)", ".2f", 1),
    "activation_rate": ("activation (%)", ".1f", 100),
    "train_seconds": ("train time (s)", ".1f", 1),
    "data_seconds": ("of which waiting on data (s)", ".1f", 1),
    "data_wait": ("waiting on data (%)", ".0f", 100),
    "energy_j": ("energy (J)", ".0f", 1),
    "speedup_to_target": ("speedup to target, measured (×)", ".2f", 1),
    "time_to_target_s": ("time to target (s)", ".1f", 1),
    "tracking_error_mean": ("tracking error, mean (points)", ".1f", 1),
    "tracking_error_max": ("tracking error, max (points)", ".1f", 1),
    "verdict": ("verdict", "", 1),
}


def shown(*names: str) -> tuple[tuple[str, str, str, float], ...]:
    """``(column, header, format, scale)`` of each of ``names``, in that order (:data:`SHOWN`)."""
    return tuple((name, *SHOWN[name]) for name in names)

#: The metrics an objective or the scheduler may name: reported every epoch (Tune and Optuna read
#: them there) AND a column of the trials table (the Pareto front ranks them there).
OBJECTIVE_METRICS = ("val_top1", "val_top5", "energy_savings", "speedup", "activation_rate",
                     "train_seconds", "energy_j")
#: What an objective may name: those, and the outcome metrics known once a trial has ended (Optuna
#: is told them then; the schedulers, which rank every rung, may not name them).
RANKED_METRICS = (*OBJECTIVE_METRICS, *OUTCOME_METRICS)
#: How an objective is optimised.
MODES = ("min", "max")
#: Objectives when a sweep spec names none.
DEFAULT_OBJECTIVES = (("val_top1", "max"), ("energy_savings", "max"), ("speedup", "max"))

#: A trial's final ``status`` in the journal and the tables: ran all its epochs; stopped early by
#: the scheduler; failed (``reason`` says why); or no end was recorded (the sweep was interrupted).
TERMINATED, STOPPED, ERROR, INTERRUPTED = "TERMINATED", "STOPPED", "ERROR", "INTERRUPTED"
#: The statuses that may enter the Pareto front (and be promoted): real trials, some just shorter.
FRONT_STATUSES = (TERMINATED, STOPPED)


def may_rank(status: object) -> bool:
    """Whether a trial with ``status`` (compared upper-case) may enter the front."""
    return str(status).upper() in FRONT_STATUSES
