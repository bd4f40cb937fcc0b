"""What a sweep records of a prepared copy (``python -m ast_tune.prepare``) its ``data.root`` points at.

:func:`copy_record` is ``run.json``'s record of the copy: its ``manifest.json`` (source, short side, quality,
``max_image_size``, per split the images resized, kept and unreadable), with the list of unreadable files
replaced by their count (the manifest keeps the list). :func:`size_warning` is the one line a sweep prints
when ``data.image_size`` exceeds the copy's ``max_image_size``: validation would then upsample the copy's
images, and a copy prepared for that size (``--image-size``) serves the sweep as the original would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ast_tune.config.run_spec import DataSpec
from ast_tune.config.spec import SpecError
from ast_tune.data.decode import MANIFEST


def copy_record(data: DataSpec) -> dict[str, Any] | None:
    """The record of the prepared copy at ``data.root`` (module docstring); None when it is no prepared copy.

    Raises:
        SpecError: its ``manifest.json`` is not a JSON object (key ``data.root``).
    """
    path = Path(data.root, MANIFEST) if data.root else None
    if path is None or not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SpecError("data.root", f"{path}: cannot read the prepared copy's manifest ({type(err).__name__})") \
            from None
    if not isinstance(manifest, Mapping):
        raise SpecError("data.root", f"{path}: the prepared copy's manifest must be a JSON object")
    unreadable = manifest.get("unreadable") or []
    return {"root": str(data.root), **{k: v for k, v in manifest.items() if k != "unreadable"},
            "unreadable_files": len(unreadable)}


def size_warning(data: DataSpec, record: Mapping[str, Any] | None) -> str | None:
    """One line when ``data.image_size`` (px) exceeds the copy's ``max_image_size``, else None."""
    largest = (record or {}).get("max_image_size")
    if not isinstance(largest, int) or data.image_size <= largest:
        return None
    return (f"warning: data.image_size {data.image_size} px exceeds the {largest} px the copy at {data.root} serves "
            f"(prepared at short side {record.get('short_side')} px): validation upsamples its images; prepare a "
            f"copy with python -m ast_tune.prepare SRC DST --image-size {data.image_size}")
