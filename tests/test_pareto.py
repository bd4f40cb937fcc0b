"""Pareto helpers on hand-computed points.

The main set is six trials with two objectives to maximise (accuracy, savings):

    P0 (0.9, 0.1)  front          P3 (0.5, 0.5)  dominated by P1 -> rank 2
    P1 (0.6, 0.6)  front          P4 (0.1, 0.1)  dominated by P3 -> rank 3
    P2 (0.2, 0.8)  front          P5 (nan, 0.9)  failed trial -> rank 0 (not ranked)
"""

from __future__ import annotations

import numpy as np
import pytest

from ast_tune.results.pareto import as_minimisation, crowding_distance, front_order, hypervolume, pareto_ranks

MAXMAX = ("max", "max")
POINTS = np.array([[0.9, 0.1], [0.6, 0.6], [0.2, 0.8], [0.5, 0.5], [0.1, 0.1], [np.nan, 0.9]])


def test_ranks_put_front_first_and_leave_nan_rows_unranked():
    assert pareto_ranks(POINTS, MAXMAX).tolist() == [1, 1, 1, 2, 3, 0]


def test_as_minimisation_flips_only_max_columns():
    flipped = as_minimisation(np.array([[1.0, 2.0]]), ["max", "min"])
    assert flipped.tolist() == [[-1.0, 2.0]]


def test_modes_decide_which_point_dominates():
    points = np.array([[1.0, 1.0], [2.0, 2.0]])
    assert pareto_ranks(points, ["min", "min"]).tolist() == [1, 2]
    assert pareto_ranks(points, ["max", "max"]).tolist() == [2, 1]
    assert pareto_ranks(points, ["min", "max"]).tolist() == [1, 1]


def test_unknown_mode_is_rejected_with_allowed_values():
    with pytest.raises(ValueError, match=r"modes\[1\]: must be one of min, max; got 'maximize'"):
        pareto_ranks(POINTS, ["max", "maximize"])


def test_column_count_must_match_modes():
    with pytest.raises(ValueError, match=r"shape \[N, 3\]"):
        pareto_ranks(POINTS, ["max", "max", "min"])


def test_crowding_distance_of_a_four_point_front():
    # Both objectives span 4. (1,2): x-neighbours 0,3 -> 3/4; y-neighbours 1,4 -> 3/4.
    # (3,1): x-neighbours 1,4 -> 3/4; y-neighbours 0,2 -> 2/4. The extremes are inf.
    front = np.array([[0.0, 4.0], [1.0, 2.0], [3.0, 1.0], [4.0, 0.0]])
    assert crowding_distance(front).tolist() == [np.inf, 1.5, 1.25, np.inf]


def test_crowding_distance_is_inf_for_two_points():
    assert crowding_distance(np.array([[0.0, 1.0], [1.0, 0.0]])).tolist() == [np.inf, np.inf]


def test_hypervolume_of_a_staircase():
    # Front sorted by accuracy: 0.9*0.1 + 0.6*(0.6-0.1) + 0.2*(0.8-0.6) = 0.09 + 0.30 + 0.04.
    # P3 and P4 lie under the staircase; the NaN row is ignored.
    assert hypervolume(POINTS, MAXMAX, reference=[0.0, 0.0]) == pytest.approx(0.43)


def test_hypervolume_ignores_points_worse_than_the_reference():
    # (error to minimise, savings to maximise); reference error 0.5, savings 0.0.
    values = np.array([[0.2, 0.5], [0.7, 0.9]])
    assert hypervolume(values, ["min", "max"], reference=[0.5, 0.0]) == pytest.approx(0.3 * 0.5)


def test_hypervolume_of_only_failed_trials_is_zero():
    values = np.array([[np.nan, 0.5], [np.inf, 0.1]])
    assert hypervolume(values, MAXMAX, reference=[0.0, 0.0]) == 0.0


def test_hypervolume_rejects_a_reference_of_the_wrong_length():
    with pytest.raises(ValueError, match="reference: must be 2 finite values"):
        hypervolume(POINTS, MAXMAX, reference=[0.0])


def test_front_order_sorts_by_rank_then_accuracy_with_failed_rows_last():
    shuffled = POINTS[[3, 2, 5, 0, 4, 1]]  # P3, P2, P5, P0, P4, P1
    # rank 1 by accuracy: P0 (row 3), P1 (row 5), P2 (row 1); then P3 (0), P4 (4); P5 (2) last.
    assert front_order(shuffled, MAXMAX).tolist() == [3, 5, 1, 0, 4, 2]


def _brute_force_ranks(points: np.ndarray) -> list[int]:
    """Peel fronts by checking every pair (minimisation); NaN rows get 0."""
    ranks = [0] * len(points)
    remaining = {i for i, p in enumerate(points) if np.isfinite(p).all()}
    rank = 1
    while remaining:
        front = {i for i in remaining
                 if not any(np.all(points[j] <= points[i]) and np.any(points[j] < points[i])
                            for j in remaining)}
        for i in front:
            ranks[i] = rank
        remaining -= front
        rank += 1
    return ranks


def test_ranks_agree_with_brute_force_dominance_on_random_points():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 6, size=(80, 3)).astype(float)  # small ints: ties and duplicates
    values[rng.choice(80, size=5, replace=False), rng.integers(0, 3)] = np.nan
    modes = ["max", "min", "max"]
    ranks = pareto_ranks(values, modes)
    assert ranks.max() > 2  # several fronts, so the comparison means something
    assert ranks.tolist() == _brute_force_ranks(as_minimisation(values, modes))
