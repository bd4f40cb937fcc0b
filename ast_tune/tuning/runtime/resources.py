"""What a trial holds on Ray, and how many trials fit at once: the resource arithmetic lives here only.

:func:`worker_resources` (one training worker), :func:`trial_resources` (a Tune trial's own process),
:func:`trial_need` (a whole running trial), :func:`torch_threads`; :func:`concurrency` caps the
trials at once so every running trial's resources fit; :func:`resources_line` says it in one line.
"""

from __future__ import annotations

import logging
import math

from ast_tune.config.spec import SpecError
from ast_tune.config.sweep_spec import DRIVER_CPUS, SweepSpec, Workload

log = logging.getLogger(__name__)


def worker_resources(workload: Workload) -> dict[str, float]:
    """What one training worker (a DDP rank) holds: ``cpus_per_worker`` CPUs and, if any, its GPUs."""
    return {"CPU": workload.cpus_per_worker, **({"GPU": workload.gpus_per_worker} if workload.gpus_per_worker else {})}


def trial_resources(workload: Workload) -> dict[str, float]:
    """What a Tune trial's own process holds: a one-worker run trains in it; a larger one only drives Train."""
    if workload.workers > 1:
        return {"CPU": DRIVER_CPUS}
    return {"CPU": workload.cpus_per_worker + DRIVER_CPUS, "GPU": workload.gpus_per_worker}


def trial_need(workload: Workload) -> dict[str, float]:
    """Everything one running trial holds: its process and (more than one worker) its Train workers."""
    return {"CPU": workload.workers * workload.cpus_per_worker + DRIVER_CPUS,
            "GPU": workload.workers * workload.gpus_per_worker}


def torch_threads(workload: Workload) -> int:
    """Torch threads of one training worker: its CPUs, rounded, at least 1."""
    return max(1, round(workload.cpus_per_worker))


def concurrency(spec: SweepSpec, cluster: dict[str, float], *, autoscaling: bool) -> int:
    """Trials at once: ``search.max_concurrent``, capped so that every running trial's workers fit.

    On an autoscaling cluster it is ``search.max_concurrent`` whatever is up now: trials that do
    not fit yet wait for the nodes they make the autoscaler add.

    Raises:
        SpecError: one trial does not fit a fixed (non-autoscaling) cluster.
    """
    need = trial_need(spec.workload)
    fits = min(math.floor(cluster[kind] / amount + 1e-9) for kind, amount in need.items() if amount > 0)
    if fits < 1 and not autoscaling:
        raise SpecError("workload", f"a trial needs {need['CPU']:g} CPUs and {need['GPU']:g} GPUs; this Ray "
                                    f"cluster has {cluster['CPU']:g} CPUs and {cluster['GPU']:g} GPUs")
    if autoscaling:  # the cluster grows for the trials that wait
        return spec.search.max_concurrent
    if fits < spec.search.max_concurrent:
        log.info("search.max_concurrent %d capped to %d: that many trials fit", spec.search.max_concurrent, fits)
    return min(spec.search.max_concurrent, fits)


def resources_line(spec: SweepSpec) -> str:
    """What one trial holds, e.g. ``8 × 1 GPU + 8 CPU Ray Train workers (+0.05 CPU for the trial driver) ...``."""
    w = spec.workload
    gpus = f" × {w.gpus_per_worker:g} GPU + {w.cpus_per_worker:g} CPU" if w.gpus_per_worker else \
        f" × {w.cpus_per_worker:g} CPU"
    where = f"Ray Train workers (+{DRIVER_CPUS:g} CPU for the trial driver), placement {w.placement}" \
        if w.workers > 1 else "worker, in the trial's own process"
    return (f"trial resources: {w.workers}{gpus} {where}; up to {spec.search.max_concurrent} trials at once; "
            f"{spec.search.num_trials} trials of {w.epochs} epochs")
