"""Writes a corrupted copy of any array dataset's test split in the CIFAR-10-C file layout
(Hendrycks & Dietterich 2019): `DIR/<corruption>.npy` holds the N test images under each
severity 1-5 in five consecutive blocks ([5N, H, W, C] uint8) and `DIR/labels.npy` the labels
tiled five times, with the CIFAR-10-C (32x32) parameters of `harness.data.corruptions`.

    python -m harness.data.corrupt --npz=data/cifar10.npz --output_dir=data/generated/cifar10-c

An existing folder is replaced only when it is a suite written here, and only once the new
one is complete; any other folder or file at `--output_dir` is refused and left as it is.
Its output is always marked as generated (`GENERATED.json`, read by `harness.data.cifar_c`),
so it is scored as the `generated_c` suite and never mistaken for the published CIFAR-10-C.
Generation is deterministic: severity s of corruption k on chunk i draws from
`default_rng([seed, k, s, i])`.
"""
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from harness.core import cli
from harness.data.corruptions import CORRUPTIONS
from harness.core.durable import sync_path
from harness.core.errors import UserError
from harness.store import readers
from harness.core.progress import draws_bars

MARKER = "GENERATED.json"
VERSION = 1  # of the corruption code: a cached suite of another version is made again
SEVERITIES = (1, 2, 3, 4, 5)
CHUNK = 500  # images corrupted at once: part of the seeding, so fixed


def corrupt(images: np.ndarray, corruption: str, severity: int, rng: np.random.Generator
            ) -> np.ndarray:
    """uint8 images [N, H, W, C] -> their corrupted copies, cast as Hendrycks cast them
    (np.uint8 of the 0-255 result: truncation)."""
    out = CORRUPTIONS[corruption](images.astype(np.float64) / 255.0, severity, rng)
    return np.clip(out, 0, 255).astype(np.uint8)


def generate(images: np.ndarray, labels: np.ndarray, out_dir: Path, *, source: str,
             seed: int = 0, corruptions: Sequence[str] = tuple(CORRUPTIONS),
             fingerprint: str | None = None, progress: bool = True) -> Path:
    """Writes the corrupted suite of `images` [N, H, W, C] (C = 1 or 3) into `out_dir`,
    whole or not at all: it is built beside it and renamed into place. `fingerprint`
    (recorded in the marker) identifies the source images of a cached suite."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise UserError(f"{source}: test images must be uint8 [N, H, W, 1 or 3] to corrupt, "
                        f"got {images.dtype} {images.shape}")
    unknown = sorted(set(corruptions) - set(CORRUPTIONS))
    if unknown:
        raise UserError(f"unknown corruption(s) {', '.join(unknown)}; known: "
                        f"{', '.join(CORRUPTIONS)}")
    check_replaceable(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        count = len(images)
        steps = tqdm(total=len(corruptions) * len(SEVERITIES), desc=f"corrupting {source}",
                     disable=not draws_bars(progress), leave=False)
        for name in corruptions:
            target = np.lib.format.open_memmap(staging / f"{name}.npy", mode="w+",
                                               dtype=np.uint8,
                                               shape=(5 * count,) + images.shape[1:])
            index = list(CORRUPTIONS).index(name)
            for severity in SEVERITIES:
                block = (severity - 1) * count
                for chunk, start in enumerate(range(0, count, CHUNK)):
                    rng = np.random.default_rng([seed, index, severity, chunk])
                    stop = min(start + CHUNK, count)
                    target[block + start:block + stop] = corrupt(images[start:stop], name,
                                                                 severity, rng)
                steps.update()
            target.flush()
            del target
        steps.close()
        np.save(staging / "labels.npy", np.tile(labels.astype(np.int64), len(SEVERITIES)))
        marker = {"generated_by": "harness.data.corrupt", "version": VERSION,
                  "source": source, "seed": seed,
                  "images": count, "corruptions": list(corruptions),
                  "fingerprint": fingerprint,
                  "note": "generated with Hendrycks' CIFAR-10-C settings; not the published "
                          "CIFAR-10-C"}
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        for written in (*staging.iterdir(), staging):  # on the disk before the rename
            sync_path(written)
        retired = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        if out_dir.exists():
            os.replace(out_dir, retired)
        os.replace(staging, out_dir)
        sync_path(out_dir.parent)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def check_replaceable(out_dir: Path) -> None:
    """Only a missing or empty folder, or a suite written here (it has the marker), is
    replaced: any other folder may hold a user's files."""
    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise UserError(f"{out_dir} is a file; give a folder to write the suite into")
        if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
            raise UserError(f"{out_dir} was not written by harness.data.corrupt (it has no "
                            f"{MARKER}); it is left as it is: choose another folder")
    except OSError as error:
        raise UserError(f"cannot use {out_dir} ({error.strerror}); choose another "
                        f"folder") from error


def read_marker(folder: Path) -> dict | None:
    """The generation record of a folder written here, None for any other folder."""
    return readers.generation_marker(folder, MARKER)


def load_test_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """x_test as [N, H, W, C] (grey [N, H, W] gains a channel) and y_test of an npz."""
    if not path.is_file():
        raise UserError(f"{path} not found: give an .npz with x_test and y_test")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if not {"x_test", "y_test"} <= set(arrays.files):
                raise UserError(f"{path} lacks x_test/y_test")
            images, labels = arrays["x_test"], arrays["y_test"]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise UserError(f"{path} is not a readable .npz archive ({error})") from error
    if images.ndim == 3:
        images = images[..., None]
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{path}: y_test must be {len(images)} integer labels, got "
                        f"{labels.dtype} {labels.shape}")
    return images, labels


def random_subset(images: np.ndarray, labels: np.ndarray, limit: int | None, seed: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """`limit` test images drawn at random (seeded), kept in test-set order: a test split
    stored class by class (as a CIFAR-10 decoded folder by folder is) still gives every class,
    where its first `limit` images would be one class."""
    if limit is None or limit >= len(labels):
        return images, labels
    chosen = np.sort(np.random.default_rng(seed).choice(len(labels), limit, replace=False))
    return images[chosen], labels[chosen]


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.data.corrupt", __doc__.split("\n\n")[0])
    parser.path("npz", None, "array dataset whose x_test/y_test are corrupted", required=True)
    parser.path("output_dir", None, "folder to write", required=True)
    parser.integer("seed", 0, "seed of the corruptions and of --limit's draw")
    parser.strings("corruptions", CORRUPTIONS, "comma-separated names")
    parser.integer("limit", None, "corrupt LIMIT test images drawn at random (seeded by --seed)")
    parser.progress()
    args = parser.parse(argv)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    check_replaceable(args.output_dir)
    images, labels = load_test_split(args.npz)
    images, labels = random_subset(images, labels, args.limit, args.seed)
    names = [name for name in args.corruptions if name]
    out = generate(images, labels, args.output_dir, source=str(args.npz), seed=args.seed,
                   corruptions=names, progress=args.progress)
    print(f"wrote {len(names)} corruptions x 5 severities of {len(images)} images to {out} "
          f"(generated, not the published CIFAR-10-C)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
