"""One image file scaled down so its short side is a given number of px, written atomically.

The copy looks to the loaders as the original does: they open files with PIL (or torchvision.io) and
convert to RGB without applying the EXIF orientation, so the copy keeps the original's pixel
orientation and carries its EXIF orientation tag (viewers that apply it still show it upright).
The file's name, and so its extension, stays; the data are written in the format the extension
names (JPEG for ``.jpg``/``.jpeg``, PNG for ``.png``, …), so a listing of the copy is the original's.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

from PIL import Image

from ast_tune.atomic import atomic_path
from ast_tune.data.decode import UNREADABLE

RESIZED, KEPT, UNREADABLE_FILE = "resized", "kept", "unreadable"  # what became of a file
_ORIENTATION = 0x0112  # the EXIF tag
_DRAFT_GAP = 2  # JPEG draft decoding stops at >= 2× the target size; the rest is a Lanczos resize
_QUALITY_FORMATS = ("JPEG", "WEBP")  # the formats ``quality`` applies to; the others are lossless


def _new_file_mode() -> int:
    """The permission bits ``open()`` gives a new file under this process's umask (``cp`` gives a copy)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _new_file_mode()  # atomic writes start from a private temporary file; the copy is readable as cp's


def shrunk_size(size: tuple[int, int], short_side: int) -> tuple[int, int]:
    """``(width, height)`` px of an image of ``size`` scaled so its short side is ``short_side`` px."""
    scale = short_side / min(size)
    return tuple(max(1, round(side * scale)) for side in size)  # type: ignore[return-value]


def shrink_file(source: Path, target: Path, *, short_side: int, quality: int) -> tuple[str, str]:
    """Write ``source`` scaled down to a short side of ``short_side`` px at ``target``, atomically.

    An image whose short side is ``short_side`` or less, and a file PIL cannot read, are copied byte for
    byte (never upscaled, and an unreadable file keeps its place in the listing).

    Args:
        quality: JPEG (and WebP) quality, 1–95; other formats are saved lossless.

    Returns:
        ``(outcome, reason)``: :data:`RESIZED`, :data:`KEPT` (copied as it is) or :data:`UNREADABLE_FILE`
        with PIL's one-line reason (empty otherwise).

    Raises:
        OSError: ``target`` could not be written.
    """
    try:
        with Image.open(source) as image:
            if min(image.size) <= short_side:
                image.load()  # reads it through, so a corrupt small file is named unreadable too
                small = None
            else:
                small, orientation = _shrunk(image, short_side), _orientation(image)
    except UNREADABLE as err:
        copy_file(source, target)
        return UNREADABLE_FILE, " ".join(str(err).split())
    if small is None:
        copy_file(source, target)
        return KEPT, ""
    fmt = Image.registered_extensions()[target.suffix.lower()]
    options: dict = {"quality": quality} if fmt in _QUALITY_FORMATS else {}
    if orientation not in (None, 1):
        options["exif"] = Image.Exif()
        options["exif"][_ORIENTATION] = orientation
    with atomic_path(target) as tmp:
        small.save(tmp, format=fmt, **options)
        tmp.chmod(FILE_MODE)
    return RESIZED, ""


def _shrunk(image: Image.Image, short_side: int) -> Image.Image:
    """``image`` as RGB with its short side ``short_side`` px; a JPEG is decoded at a reduced scale first."""
    size = shrunk_size(image.size, short_side)
    image.draft("RGB", (size[0] * _DRAFT_GAP, size[1] * _DRAFT_GAP))
    return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation tag; None without one, or when the EXIF block is broken (the loader never reads it)."""
    try:
        return image.getexif().get(_ORIENTATION)
    except (SyntaxError, ValueError, OSError, struct.error):
        return None


def copy_file(source: Path, target: Path) -> None:
    """``source`` copied byte for byte to ``target``, atomically, readable as a copy by ``cp`` is."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
        tmp.chmod(FILE_MODE)
