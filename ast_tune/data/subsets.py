"""Which classes and images a proxy subset (``data.subset``) keeps: seeded, and the same on every call.

Pure choices over labels and indices; :func:`ast_tune.data.sources.take_subset` applies them to datasets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ast_tune.config.run_spec import SubsetSpec
from ast_tune.config.spec import SpecError


def chosen_labels(num_classes: int, subset: SubsetSpec) -> list[int]:
    """The labels (of ``0 .. num_classes - 1``, class-name order) that ``subset`` keeps, ascending.

    Raises:
        SpecError: ``subset.classes`` is more than the data has.
    """
    if subset.classes > num_classes:
        raise SpecError("data.subset.classes", f"must be <= {num_classes}, the classes the data has; "
                                               f"got {subset.classes}")
    rng = np.random.default_rng([subset.seed, num_classes])
    return sorted(int(label) for label in rng.choice(num_classes, size=subset.classes, replace=False))


def kept_indices(labels: Sequence[int], keep: Mapping[int, int] | Sequence[int], *, per_class: int | None,
                 seed: int) -> list[int]:
    """Ascending indices of the items whose label is in ``keep``; at most ``per_class`` of each (a seeded choice)."""
    by_class: dict[int, list[int]] = {label: [] for label in keep}
    for index, label in enumerate(labels):
        if label in by_class:
            by_class[label].append(index)
    rng = np.random.default_rng([seed, len(labels)])
    kept = []
    for label in sorted(by_class):
        indices = by_class[label]
        if per_class is not None and per_class < len(indices):
            indices = rng.choice(indices, size=per_class, replace=False).tolist()
        kept.extend(indices)
    return sorted(kept)
