"""Which samples AST trains on: significance, the Sundew PI controller, and subset selection.

A sample's significance is ``loss_weight·CE + entropy_weight·H(softmax)`` in nats. The Sundew
controller moves a threshold after every batch so that the EMA of the activation rate (the fraction
of samples trained on) tracks a target; samples at or above the threshold are trained on, with a
top-k floor. With several workers every count is all-reduced first, so all ranks hold the same
threshold at every step. Torch only: no Ray here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ast_tune.config.run_spec import SparsitySpec
from ast_tune.core import distributed


@torch.no_grad()
def significance(logits: torch.Tensor, targets: torch.Tensor, *, loss_weight: float = 0.7,
                 entropy_weight: float = 0.3) -> torch.Tensor:
    """Per-sample significance in nats: ``loss_weight·CE(logits, y) + entropy_weight·H(softmax)``."""
    logits = logits.detach().float()
    log_p = F.log_softmax(logits, dim=1)
    ce = F.nll_loss(log_p, targets, reduction="none")
    entropy = -(log_p.exp() * log_p).sum(dim=1)
    return loss_weight * ce + entropy_weight * entropy


def min_keep(batch: int, fraction: float) -> int:
    """The top-k floor: at least ``max(2, ceil(fraction·batch))`` samples, never more than the batch."""
    return min(batch, max(2, math.ceil(fraction * batch)))


class SundewController:
    """The reference library's PI controller on the significance threshold (docs/design.md, "The AST algorithm").

    Per step, with activation ``a``: ``ema = (1-α)·ema + α·a``; ``error = ema - target``; the integral
    accumulates ``error`` (clamped to ±100) only while ``threshold_min < threshold < threshold_max``
    and otherwise decays ×0.9 (anti-windup); then ``threshold += kp·error + ki·integral``, clamped
    to ``[threshold_min, threshold_max]``. The EMA starts at the target, so the first step is neutral.
    With ``threshold_update="multiplicative"`` (off by default) the same step is taken in the log
    domain, ``threshold ·= exp(kp·error + ki·integral)``, so the gains do not depend on the scale of
    significance; the rest is unchanged.
    """

    INTEGRAL_LIMIT = 100.0
    INTEGRAL_DECAY = 0.9

    def __init__(self, spec: SparsitySpec) -> None:
        self.spec = spec
        self.threshold = spec.initial_threshold  # nats
        self.ema = spec.target_activation
        self.integral = 0.0

    def update(self, activation: float) -> float:
        """Feed one step's realised activation (a fraction); return the new threshold in nats."""
        s = self.spec
        self.ema = (1 - s.ema_alpha) * self.ema + s.ema_alpha * activation
        error = self.ema - s.target_activation
        if s.threshold_min < self.threshold < s.threshold_max:
            self.integral = max(-self.INTEGRAL_LIMIT, min(self.INTEGRAL_LIMIT, self.integral + error))
        else:
            self.integral *= self.INTEGRAL_DECAY
        step = s.kp * error + s.ki * self.integral
        if s.threshold_update == "multiplicative":
            self.threshold *= math.exp(step)
        else:
            self.threshold += step
        self.threshold = self._clamped(self.threshold)
        return self.threshold

    def start_at(self, threshold: float) -> None:
        """Restart as if settled at ``threshold`` (nats, clamped): the EMA on the target, no integral."""
        self.threshold = self._clamped(threshold)
        self.ema, self.integral = self.spec.target_activation, 0.0

    def _clamped(self, threshold: float) -> float:
        return max(self.spec.threshold_min, min(self.spec.threshold_max, threshold))

    def state_dict(self) -> dict[str, float]:
        return {"threshold": self.threshold, "ema": self.ema, "integral": self.integral}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.threshold, self.ema, self.integral = state["threshold"], state["ema"], state["integral"]


class BatchSelector:
    """Chooses the significant samples of each batch and steps the controller (modes inline, mask)."""

    def __init__(self, spec: SparsitySpec, controller: SundewController, device: torch.device) -> None:
        self.spec = spec
        self.controller = controller
        self.device = device

    def choose(self, scores: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Boolean keep-mask for ``scores``, and the global number of samples kept (all ranks).

        Samples with ``score >= threshold`` are kept; if fewer than the floor, the top-k by score.
        The controller is then stepped with the global activation.
        """
        keep = scores >= self.controller.threshold
        floor = min_keep(scores.numel(), self.spec.min_keep_fraction)
        if int(keep.sum()) < floor:
            keep = torch.zeros_like(keep)
            keep[torch.topk(scores, floor).indices] = True
        kept, total = distributed.all_reduce_sum([float(keep.sum()), float(scores.numel())], self.device)
        self.controller.update(kept / total)
        return keep, kept


class SamplePool:
    """``inline`` with ``sparsity.pool``: the selected samples of several batches, held on the device.

    Each scored batch adds its kept samples (and the global number kept, which the selector has
    already all-reduced), so ``global_count`` is the pool's size summed over all ranks and is the
    same on every rank: every rank reaches :meth:`full` at the same step and trains together. A
    rank's share may be uneven; each scored batch adds at least one sample per rank.
    """

    def __init__(self, size: int, world_size: int) -> None:
        self.size = size  # samples per rank
        self.world_size = world_size
        self._x: list[torch.Tensor] = []
        self._y: list[torch.Tensor] = []
        self.global_count = 0.0  # samples pooled on all ranks

    def add(self, x: torch.Tensor, y: torch.Tensor, kept_global: float) -> None:
        self._x.append(x)
        self._y.append(y)
        self.global_count += kept_global

    def full(self) -> bool:
        """True once the ranks together hold ``size × world_size`` samples or more."""
        return self.global_count >= self.size * self.world_size

    def take(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """This rank's whole pool (inputs, targets) and the global count; the pool is then empty."""
        x, y, count = torch.cat(self._x), torch.cat(self._y), self.global_count
        self._x, self._y, self.global_count = [], [], 0.0
        return x, y, count


class ScoreTable:
    """``skip`` mode: each sample's significance from the last time it was trained on.

    Samples never scored hold +inf, so they are always trained on. At the start of an epoch,
    samples below the threshold are left out (not loaded, not forwarded), except a random
    ``refresh_fraction`` of them, kept so their scores refresh.
    """

    def __init__(self, size: int, spec: SparsitySpec) -> None:
        self.spec = spec
        self.scores = torch.full((size,), math.inf)  # nats, on the CPU
        self._updated = torch.zeros(size, dtype=torch.bool)
        self._sorted = self.scores.clone()

    def plan_epoch(self, threshold: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Dataset indices to train on this epoch, and a bool flag per index: kept only to refresh.

        At least the top-k floor of :func:`min_keep` (over the whole data set) is trained: when the
        threshold and the refresh draw leave fewer, the highest scores make it up. The draw uses
        ``generator``; seed it identically on every rank so all ranks agree.
        """
        significant = self.scores >= threshold
        draw = torch.rand(self.scores.shape, generator=generator)
        refresh = ~significant & (draw < self.spec.refresh_fraction)
        floor = min_keep(self.scores.numel(), self.spec.min_keep_fraction)
        if int((significant | refresh).sum()) < floor:
            significant = torch.zeros_like(significant)
            significant[torch.topk(self.scores, floor).indices] = True
            refresh &= ~significant
        indices = torch.nonzero(significant | refresh).flatten()
        return indices, refresh[indices]

    def predicted_activation(self, threshold: float) -> float:
        """Fraction of the dataset the next epoch would train on at ``threshold`` (refresh included).

        Reads the table as sorted by :meth:`synchronise`, so one call costs O(log N).
        """
        below = int(torch.searchsorted(self._sorted, torch.tensor([threshold]), side="left"))
        share = 1 - below / len(self._sorted)
        return share + self.spec.refresh_fraction * (1 - share)

    def threshold_for(self, activation: float) -> float:
        """The threshold (nats) at which the next epoch trains on ``activation`` of the dataset.

        The inverse of :meth:`predicted_activation`: of the share left after refresh, the
        ``round(share · N)``-th largest score (ties at it are all kept); +inf when that is none.
        """
        refresh = self.spec.refresh_fraction
        share = (activation - refresh) / (1 - refresh) if refresh < 1 else 1.0
        kept = round(min(1.0, max(0.0, share)) * len(self._sorted))
        return float(self._sorted[-kept]) if kept else math.inf

    def settle(self, controller: SundewController, steps: int) -> None:
        """Step ``controller`` ``steps`` times on the activation this table predicts.

        Called once per epoch with one step per batch of the full epoch, trained or skipped, so the
        controller runs on the same clock as in ``inline`` mode. The table is identical on every
        rank after :meth:`synchronise`, so every rank reaches the same threshold.
        """
        for _ in range(steps):
            controller.update(self.predicted_activation(controller.threshold))

    def update(self, indices: torch.Tensor, scores: torch.Tensor) -> None:
        """Remember fresh scores for the dataset ``indices`` trained on in this step."""
        indices = indices.cpu()
        self.scores[indices] = scores.float().cpu()
        self._updated[indices] = True

    def synchronise(self, device: torch.device) -> None:
        """Merge every rank's updates of this epoch into one table (max where ranks overlap)."""
        if distributed.initialised():
            missing = torch.full_like(self.scores, -math.inf)
            fresh = distributed.all_reduce_(torch.where(self._updated, self.scores, missing).to(device), op="max")
            fresh = fresh.cpu()
            seen = fresh > -math.inf
            self.scores[seen] = fresh[seen]
        self._updated.zero_()
        self._sorted = torch.sort(self.scores).values

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"scores": self.scores.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.scores = state["scores"].clone()
        self._updated = torch.zeros(len(self.scores), dtype=torch.bool)
        self._sorted = torch.sort(self.scores).values
