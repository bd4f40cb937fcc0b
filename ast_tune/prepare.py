"""Make a resized copy of an image tree that the loaders read as they read the original.

    python -m ast_tune.prepare /data/imagenet /data/imagenet-256                 # short side 256 px (serves 224)
    python -m ast_tune.prepare /data/imagenet /data/imagenet-183 --image-size 160
    python -m ast_tune.prepare SRC DST --short-side 320 --quality 95 --workers 16

SRC is an ImageFolder tree (``train/<class>/``, ``val/<class>/``) or Kaggle's ImageNet layout
(``ILSVRC/Data/CLS-LOC/{train,val}``, ``LOC_val_solution.csv``). DST gets the same files under the
same names, train and val, each image scaled down (never up) so its short side is ``--short-side`` px;
point ``data.root`` at DST with the same ``data.kind``. Killed or interrupted, the same command
continues where it stopped; ``DST/manifest.json`` is written when the copy is complete.
Exit codes: 0 done (or already prepared), 1 a file could not be written, 2 bad input (one line naming
the flag), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ast_tune.config.cli import CliParser, os_error_line, run_main
from ast_tune.config.presets import CONSERVATIVE
from ast_tune.config.spec import SpecError, check_range
from ast_tune.data.loaders import available_cpus
from ast_tune.data.prepare import MANIFEST, Settings, destination_state, list_source, prepare, tidy
from ast_tune.data.sources import tree_kind, val_short_side

DEFAULT_IMAGE_SIZE = CONSERVATIVE.data.image_size  # px, the ImageNet presets' network input
DEFAULT_QUALITY = 90


def _parser() -> argparse.ArgumentParser:
    parser = CliParser(prog="python -m ast_tune.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("src", type=Path, metavar="SRC", help="the tree to copy")
    parser.add_argument("dst", type=Path, metavar="DST", help="where the copy goes: new, empty, or a copy to finish")
    parser.add_argument("--image-size", type=int, help=f"px, the data.image_size the copy must serve; sets the "
                                                       f"default --short-side (default {DEFAULT_IMAGE_SIZE})")
    parser.add_argument("--short-side", type=int, metavar="PX",
                        help="px, the short side images are scaled down to (default: what validation resizes "
                             f"to at --image-size, {val_short_side(DEFAULT_IMAGE_SIZE)} at {DEFAULT_IMAGE_SIZE})")
    parser.add_argument("--quality", type=int, default=DEFAULT_QUALITY,
                        help=f"JPEG quality of the scaled-down images, 1-95 (default {DEFAULT_QUALITY})")
    parser.add_argument("--workers", type=int, default=available_cpus(),
                        help="processes that resize at once (default: the CPUs this process may use)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Make, finish or confirm the copy; see the module docstring for the exit codes."""
    return run_main(lambda: _main(argv), failures={OSError: os_error_line}, log_level=logging.INFO,
                    interrupted="interrupted: every file written is whole; run the same command to continue")


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    settings = _settings(args)
    dst = args.dst.absolute()
    if destination_state(dst, settings) == "done":
        tidy(dst)
        print(f"{dst}: already prepared from {settings.source} with these settings ({MANIFEST})")
        return 0
    record = prepare(dst, settings, list_source(settings), workers=args.workers)
    total = Counter()
    for counts in record["splits"].values():
        total.update(counts)
    print(f"prepared {total['images']} images of {settings.source} in {dst} (short side {settings.short_side} px, "
          f"serves data.image_size up to {record['max_image_size']}): {total['resized']} scaled down, "
          f"{total['kept']} already small and copied, {total['unreadable']} unreadable (copied as they were, "
          f"listed in {MANIFEST})")
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    """The checked flags; SpecError naming the flag (or SRC, DST) before anything is read or written."""
    image_size = DEFAULT_IMAGE_SIZE if args.image_size is None else args.image_size
    check_range("--image-size", image_size, low=8)
    short_side = val_short_side(image_size) if args.short_side is None else args.short_side
    check_range("--short-side", short_side, low=8)
    if args.image_size is not None and short_side < val_short_side(image_size):
        raise SpecError("--short-side", f"must be >= {val_short_side(image_size)}, what validation resizes to at "
                                        f"--image-size {image_size}; got {short_side}")
    check_range("--quality", args.quality, low=1, high=95)
    check_range("--workers", args.workers, low=1)
    src = args.src.resolve()
    if not src.is_dir():
        raise SpecError("SRC", f"no such directory {args.src}")
    kind = tree_kind(src)
    if kind is None:
        raise SpecError("SRC", f"{args.src} is neither an ImageFolder tree (train/<class>/, val/<class>/) nor "
                               "Kaggle's ImageNet layout (ILSVRC/Data/CLS-LOC/train/<wnid>/)")
    dst = args.dst.resolve()
    if dst == src or src in dst.parents:
        raise SpecError("DST", f"must lie outside SRC ({src}); got {args.dst}")
    return Settings(source=str(src), kind=kind, short_side=short_side, quality=args.quality)


if __name__ == "__main__":
    raise SystemExit(main())
