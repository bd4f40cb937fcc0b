"""A resized copy of an ImageFolder or Kaggle-ImageNet tree that every loader reads as it reads the original.

The work list is the loaders' own listing of the source (:func:`~ast_tune.data.sources.load_datasets`):
every train and val image under the same relative path and name, so the copy has the same classes,
the same files in the same order and so the same sample indices; a Kaggle tree's tables
(``LOC_val_solution.csv``, ``LOC_synset_mapping.txt``) are copied verbatim. Each image is written by
:func:`~ast_tune.data.shrink.shrink_file` (scaled down, never up; an unreadable file copied as it is).

What lies in the destination while it is made, and after:

- ``.prepare/settings.json``: written first; what the copy is made from and with. A second run with
  the same settings resumes, one with other settings is refused.
- ``.prepare/done.jsonl``: one line per finished file and its outcome, appended once the file is in
  place. A resume skips these files and writes the others again (each write is atomic, so a file is
  whole or absent; temporary files a kill left behind are removed).
- ``manifest.json``: written last, atomically (:func:`manifest`); its presence means the copy is
  complete. ``.prepare/`` is then removed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from ast_tune import atomic
from ast_tune.config.run_spec import DataSpec
from ast_tune.config.spec import SpecError
from ast_tune.data.decode import MANIFEST
from ast_tune.data.shrink import FILE_MODE, KEPT, RESIZED, UNREADABLE_FILE, copy_file, shrink_file
from ast_tune.data.sources import SYNSET_MAPPING, VAL_SOLUTION, load_datasets, val_short_side

log = logging.getLogger(__name__)

VERSION = 1  # of the manifest and of the copy's rules
_WORK = ".prepare"
_SETTINGS, _DONE = "settings.json", "done.jsonl"
_TABLES = {"imagefolder": (), "imagenet": (VAL_SOLUTION, SYNSET_MAPPING)}  # copied verbatim when present


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a copy is made from and with; a resume or a rerun must match them.

    Attributes:
        source: the source tree, an absolute path.
        kind: ``imagefolder`` or ``imagenet`` (Kaggle layout).
        short_side: px; images are scaled down, never up, so their short side is this.
        quality: JPEG (and WebP) quality, 1–95.
    """

    source: str
    kind: str
    short_side: int
    quality: int

    def as_dict(self) -> dict:
        return {"version": VERSION, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class Listing:
    """The source's files: ``images`` ``(relative path, split)`` in the loaders' order; ``tables`` verbatim."""

    images: tuple[tuple[str, str], ...]
    tables: tuple[str, ...]


def largest_image_size(short_side: int) -> int:
    """The largest ``data.image_size`` (px) whose validation resize (:func:`val_short_side`) is at most
    ``short_side`` px: the largest network input a copy serves without upsampling validation."""
    return max(size for size in range(8, short_side + 1) if val_short_side(size) <= short_side)


def list_source(settings: Settings) -> Listing:
    """The files the loaders read in ``settings.source``.

    Raises:
        SpecError: naming ``SRC``, when the loaders would refuse the tree.
    """
    root = Path(settings.source)
    log.info("listing %s", root)
    try:
        data = load_datasets(DataSpec(kind=settings.kind, root=str(root)))
    except SpecError as err:
        raise SpecError("SRC", err.message) from None
    images = {}  # a dict keeps the order and drops a val file the CSV names twice
    for split, dataset in (("train", data.train), ("val", data.val)):
        for path, _ in dataset.samples:
            images.setdefault(Path(path).relative_to(root).as_posix(), split)
    tables = tuple(name for name in _TABLES[settings.kind] if (root / name).is_file())
    return Listing(images=tuple(images.items()), tables=tables)


def destination_state(dst: Path, settings: Settings) -> str:
    """``new`` (absent or empty), ``resume`` (an unfinished copy with ``settings``) or ``done``.

    Raises:
        SpecError: naming ``DST``, when it holds something else, or a copy made with other settings.
    """
    if dst.exists() and not dst.is_dir():
        raise SpecError("DST", f"{dst} is not a directory")
    for state, record in (("done", dst / MANIFEST), ("resume", dst / _WORK / _SETTINGS)):
        if record.is_file():
            _check_same(record, settings)
            return state
    if dst.is_dir() and any(dst.iterdir()):
        raise SpecError("DST", f"{dst} is not empty and holds no prepared copy ({MANIFEST} or {_WORK}/); "
                               "choose a new or empty directory")
    return "new"


def _check_same(record: Path, settings: Settings) -> None:
    try:
        made = json.loads(record.read_text())
    except (OSError, ValueError) as err:
        raise SpecError("DST", f"{record} cannot be read: {err}") from None
    wanted = settings.as_dict()
    differ = [f"{key} {made.get(key)!r} there, {value!r} asked" for key, value in wanted.items()
              if made.get(key) != value]
    if differ:
        raise SpecError("DST", f"holds a copy made with other settings ({'; '.join(differ)}); "
                               "choose another DST or the same settings")


def prepare(dst: Path, settings: Settings, listing: Listing, *, workers: int) -> dict:
    """Make (or finish) the copy of ``listing`` at ``dst``; returns the manifest it wrote.

    Args:
        workers: processes that resize at once; 1 works in this process.

    Raises:
        OSError: a file could not be written.
    """
    work = dst / _WORK
    if (work / _SETTINGS).is_file():
        _remove_temporary_files(dst, listing)
    else:
        atomic.write_text(work / _SETTINGS, json.dumps(settings.as_dict(), indent=1) + "\n")
    for name in listing.tables:
        copy_file(Path(settings.source) / name, dst / name)
    done = _read_done(work / _DONE)
    todo = [path for path, _ in listing.images if path not in done]
    bar = tqdm(total=len(listing.images), initial=len(listing.images) - len(todo), unit="img", desc="prepare",
               file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 30, dynamic_ncols=True)
    with bar, (work / _DONE).open("a") as journal:
        if journal.tell() and not (work / _DONE).read_bytes().endswith(b"\n"):
            journal.write("\n")  # a torn last line stays apart from the next
        for path, outcome, reason in _shrink_all(todo, settings, dst, workers=workers):
            journal.write(json.dumps({"path": path, "outcome": outcome, "reason": reason}) + "\n")
            journal.flush()
            done[path] = (outcome, reason)
            bar.update()
    record = manifest(settings, listing, done)
    with atomic.atomic_path(dst / MANIFEST) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.chmod(FILE_MODE)
    shutil.rmtree(work)
    return record


def tidy(dst: Path) -> None:
    """Remove the ``.prepare/`` a kill left after the manifest of a complete copy was written."""
    if (dst / MANIFEST).is_file():
        shutil.rmtree(dst / _WORK, ignore_errors=True)


def manifest(settings: Settings, listing: Listing, done: dict[str, tuple[str, str]]) -> dict:
    """The manifest: the settings, ``max_image_size`` (:func:`largest_image_size`), per split the images
    and what became of them (``resized``, ``kept`` as they were, ``unreadable`` and copied as they were),
    and the unreadable files with their reasons."""
    splits: dict[str, Counter] = {}
    for path, split in listing.images:
        counts = splits.setdefault(split, Counter({"images": 0, RESIZED: 0, KEPT: 0, UNREADABLE_FILE: 0}))
        counts["images"] += 1
        counts[done[path][0]] += 1
    unreadable = [{"path": path, "reason": done[path][1]} for path, _ in sorted(listing.images)
                  if done[path][0] == UNREADABLE_FILE]
    return {**settings.as_dict(), "max_image_size": largest_image_size(settings.short_side),
            "splits": {split: dict(counts) for split, counts in splits.items()}, "unreadable": unreadable}


def _read_done(journal: Path) -> dict[str, tuple[str, str]]:
    """``{path: (outcome, reason)}`` of the journal's whole lines (a kill may have torn the last one)."""
    done = {}
    if journal.is_file():
        for line in journal.read_text().splitlines():
            try:
                entry = json.loads(line)
                done[entry["path"]] = (entry["outcome"], entry["reason"])
            except (ValueError, KeyError, TypeError):
                continue
    return done


def _remove_temporary_files(dst: Path, listing: Listing) -> None:
    """Remove what a killed atomic write leaves (``.<name>.<random>.tmp``) in the copy's folders."""
    folders = {(dst / path).parent for path, _ in listing.images} | {dst}
    for folder in folders:
        if folder.is_dir():
            for entry in os.scandir(folder):
                if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
                    os.unlink(entry.path)


def _shrink_all(paths: list[str], settings: Settings, dst: Path, *,
                workers: int) -> Iterator[tuple[str, str, str]]:
    """``(path, outcome, reason)`` of every relative ``path`` once its file is written, in any order."""
    task = functools.partial(_shrink_one, source=settings.source, dst=str(dst), short_side=settings.short_side,
                             quality=settings.quality)
    if workers == 1 or len(paths) <= 1:
        yield from map(task, paths)
        return
    chunk = max(1, min(16, len(paths) // (workers * 8)))
    # Workers come from a fork server, not a fork of this process: a fork of a process with threads
    # (Ray's, torch's, tqdm's monitor) can copy a lock another thread holds, and that worker then hangs.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with context.Pool(workers, initializer=_ignore_interrupts) as pool:
        yield from pool.imap_unordered(task, paths, chunksize=chunk)


def _shrink_one(path: str, *, source: str, dst: str, short_side: int, quality: int) -> tuple[str, str, str]:
    return (path, *shrink_file(Path(source, path), Path(dst, path), short_side=short_side, quality=quality))


def _ignore_interrupts() -> None:
    """Pool workers leave Ctrl-C to the parent, which stops them (no traceback from each)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
