"""Pareto ranks, crowding distance and hypervolume on ``[N, D]`` numpy arrays.

One convention inside: every column is minimised. Objectives whose mode is ``"max"`` are
flipped at the edge (:func:`as_minimisation`), so callers pass values in their own units and
directions, e.g. ``val_top1`` in % with mode ``"max"``. Rows holding NaN or inf (failed
trials) are never ranked and never enter the front or the hypervolume. The non-dominated sort
and the hypervolume come from moocore.
"""

from __future__ import annotations

from collections.abc import Sequence

import moocore
import numpy as np

from ast_tune.config.columns import MODES


def objective_signs(modes: Sequence[str]) -> np.ndarray:
    """Multipliers that turn each objective into one to minimise.

    Args:
        modes: One of ``"min"``/``"max"`` per objective.

    Returns:
        A float array ``[D]``: ``+1.0`` for ``"min"``, ``-1.0`` for ``"max"``.

    Raises:
        ValueError: ``modes`` is empty or a mode is not one of :data:`MODES`.
    """
    if len(modes) == 0:
        raise ValueError("modes: must name at least one objective; got none")
    for i, mode in enumerate(modes):
        if mode not in MODES:
            raise ValueError(f"modes[{i}]: must be one of {', '.join(MODES)}; got {mode!r}")
    return np.array([1.0 if mode == "min" else -1.0 for mode in modes])


def as_minimisation(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Flip the ``"max"`` columns of ``values`` so that every column is minimised.

    Args:
        values: ``[N, D]`` objective values in their own units.
        modes: ``D`` modes, ``"min"`` or ``"max"``.

    Returns:
        A new float ``[N, D]`` array; NaN and inf are kept (with their sign flipped).

    Raises:
        ValueError: ``values`` is not 2-D, has a column count other than ``len(modes)``, or
            ``modes`` is empty or holds a mode other than ``"min"``/``"max"``.
    """
    signs = objective_signs(modes)
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(modes):
        raise ValueError(f"values: must have shape [N, {len(modes)}] (one column per mode); "
                         f"got shape {list(values.shape)}")
    return values * signs


def pareto_ranks(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Non-dominated sorting: the front each row belongs to.

    Args:
        values: ``[N, D]`` objective values in their own units.
        modes: ``D`` modes, ``"min"`` or ``"max"``.

    Returns:
        An int array ``[N]``: 1 for the non-dominated front, 2 for the front left once it is
        removed, and so on; 0 for rows with any NaN/inf (not ranked). Duplicates share a rank.
    """
    points = as_minimisation(values, modes)
    finite = np.isfinite(points).all(axis=1)
    ranks = np.zeros(len(points), dtype=int)
    if finite.any():
        ranks[finite] = moocore.pareto_rank(points[finite]) + 1
    return ranks


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of the points of one front.

    The distance of a point is the sum, over objectives, of the gap between its two
    neighbours along that objective, divided by the objective's range. It does not depend on
    the objectives' directions, so values may be passed flipped or not.

    Args:
        points: ``[N, D]`` finite values, mutually non-dominated.

    Returns:
        A float array ``[N]``; the extreme points of each objective get ``inf``. Objectives
        with zero range add nothing. With ``N <= 2`` every point is extreme.
    """
    points = np.asarray(points, dtype=float)
    distance = np.zeros(len(points))
    if len(points) <= 2:
        return np.full(len(points), np.inf)
    for column in points.T:
        span = column.max() - column.min()
        if span == 0:
            continue
        order = np.argsort(column, kind="stable")
        distance[order[1:-1]] += (column[order[2:]] - column[order[:-2]]) / span
        distance[order[[0, -1]]] = np.inf
    return distance


def hypervolume(values: np.ndarray, modes: Sequence[str], *, reference: Sequence[float]) -> float:
    """Volume of objective space dominated by ``values`` and bounded by ``reference``.

    Args:
        values: ``[N, D]`` objective values in their own units.
        modes: ``D`` modes, ``"min"`` or ``"max"``.
        reference: ``D`` values in the objectives' own units and directions: the worst
            acceptable value of each, e.g. ``[0.0, 0.0]`` for two accuracies to maximise.

    Returns:
        The hypervolume, in the product of the objectives' units. Rows with NaN/inf and rows
        not strictly better than ``reference`` in every objective add nothing; no rows, 0.0.

    Raises:
        ValueError: ``reference`` has the wrong length or is not finite.
    """
    points = as_minimisation(values, modes)
    ref = np.asarray(reference, dtype=float)
    if ref.shape != (len(modes),) or not np.isfinite(ref).all():
        raise ValueError(f"reference: must be {len(modes)} finite values; got {list(reference)}")
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        return 0.0
    return float(moocore.hypervolume(points, ref=ref * objective_signs(modes)))


def front_order(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Row order for a results table: by Pareto rank, then by the first objective, best first.

    Args:
        values: ``[N, D]`` objective values in their own units.
        modes: ``D`` modes, ``"min"`` or ``"max"``.

    Returns:
        An int array ``[N]`` of row indices. Unranked rows (NaN/inf) come last; ties keep
        their input order.
    """
    ranks = pareto_ranks(values, modes)
    first = as_minimisation(values, modes)[:, 0]
    rank_key = np.where(ranks == 0, np.iinfo(int).max, ranks)
    return np.lexsort((first, rank_key))
