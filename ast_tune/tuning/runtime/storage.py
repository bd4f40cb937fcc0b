"""Storage every node must see: a marker the driver writes under ``storage.root``, read by each run as it starts.

On a multi-node cluster ``storage.root`` must be one filesystem that every node mounts at the same path
(docs/clusters.md, "Shared storage"): every run keeps its checkpoints there, and a run started again on
another node continues from them. Nothing else would notice a node whose ``storage.root`` is its own
disk until a checkpoint went missing, so the driver writes :data:`MARKER` (a token new for each driver)
into ``results/<name>/`` before any trial starts, and every run reads it as it starts on its node
(:func:`check_marker`: each rank, and the trial's own process); a node that cannot read it, or reads
another token, fails the run at once with one line naming the node and the path, and the sweep then
says that ``storage.root`` is not shared (:func:`not_shared_line`). Checking per run also
covers the nodes an autoscaler adds later.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Mapping
from pathlib import Path

from ast_tune import atomic
from ast_tune.tuning.runtime.nodes import node_id

MARKER = "storage_marker.json"  # in results/<name>/: {"token": ...}, written by the driver
NOT_SHARED = "StorageNotShared"  # how the reason of a run that failed the check begins


@dataclasses.dataclass(frozen=True)
class StorageMarker:
    """Where the driver wrote the marker and the token it holds."""

    path: str
    token: str


def write_marker(directory: Path) -> StorageMarker:
    """Write a new marker into ``directory`` (``results/<name>``), atomically; what the runs will check."""
    marker = StorageMarker(str(Path(directory).resolve() / MARKER), secrets.token_hex(16))
    atomic.write_text(Path(marker.path), json.dumps({"token": marker.token}))
    return marker


def check_marker(marker: StorageMarker | None) -> str | None:
    """The one-line reason this node cannot read ``marker`` as the driver wrote it; None when it can (or no marker)."""
    if marker is None:
        return None
    try:
        token = json.loads(Path(marker.path).read_text())["token"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        why = getattr(err, "strerror", None) or repr(err)
        return f"{NOT_SHARED}: node {node_id()} cannot read {marker.path} ({why})"
    if token != marker.token:
        return f"{NOT_SHARED}: node {node_id()} reads another driver's marker at {marker.path}"
    return None


def not_shared_line(reasons: Mapping[str, str | None], root: str) -> str | None:
    """What the sweep says when runs failed :func:`check_marker`: ``reasons`` by trial id (their errors); or None."""
    trials = [trial_id for trial_id, reason in reasons.items() if reason and reason.startswith(NOT_SHARED)]
    if not trials:
        return None
    return (f"storage.root {root} is not shared by every node: trial(s) {', '.join(trials)} could not read the "
            "driver's marker on their node; mount it at the same path on every node (docs/clusters.md)")
