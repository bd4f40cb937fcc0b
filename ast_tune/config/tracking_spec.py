"""The sweep spec's ``tracking:`` section: the experiment trackers every trial is logged to (none by default).

``mlflow: {uri, experiment}`` and ``wandb: {project, mode}``, either, both or neither; each needs its
optional extra (``pip install -e '.[mlflow]'``, ``'.[wandb]'``). What is logged: :mod:`ast_tune.tracking`.
Secrets come from the environment only (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``, ``WANDB_API_KEY``): a
tracking URI holding a password is refused.
"""

from __future__ import annotations

import dataclasses
import urllib.parse

from ast_tune.config.keys import REQUIRED, check_keys, key
from ast_tune.config.spec import SpecError

#: ``tracking.wandb.mode``: synced while the sweep runs, or written to run files for ``wandb sync`` later
WANDB_MODES = ("online", "offline")


@dataclasses.dataclass(frozen=True)
class MlflowSpec:
    """An MLflow tracking store: one MLflow run per study trial, found again by its tags on a resume."""

    uri: str | None = key(None, "the tracking store, e.g. sqlite:///mlflow.db or http://127.0.0.1:5000 (credentials "
                          "from MLFLOW_TRACKING_USERNAME/_PASSWORD); null: MLFLOW_TRACKING_URI from the environment")
    experiment: str | None = key(None, "the MLflow experiment the runs go to (made if missing); null: the sweep's "
                                 "name")

    def __post_init__(self) -> None:
        check_keys(self)
        if self.uri is not None and urllib.parse.urlsplit(self.uri).password is not None:
            raise SpecError("uri", "holds a password; give it in MLFLOW_TRACKING_PASSWORD (and the user in "
                                   "MLFLOW_TRACKING_USERNAME) in the environment instead")


@dataclasses.dataclass(frozen=True)
class WandbSpec:
    """A Weights & Biases project: one W&B run per study trial, its id made from the sweep's name and number."""

    project: str = key(REQUIRED, "the W&B project the runs go to")
    mode: str = key("online", "online: synced as the sweep runs (WANDB_API_KEY from the environment); offline: run "
                    "files under results/<name>/wandb, for wandb sync", choices=WANDB_MODES)

    def __post_init__(self) -> None:
        check_keys(self)


@dataclasses.dataclass(frozen=True)
class TrackingSpec:
    """The trackers every trial is logged to: its parameters, every epoch once, its end; the front and verdict."""

    mlflow: MlflowSpec | None = key(None, "log to MLflow (pip install -e '.[mlflow]'); null: not")
    wandb: WandbSpec | None = key(None, "log to Weights & Biases (pip install -e '.[wandb]'); null: not")

    def __post_init__(self) -> None:
        check_keys(self)
