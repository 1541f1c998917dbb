"""A tiny folder in ImageNet's layout, of real JPEGs, for the `tiny` scale and the tests:

    python -m harness.data.tiny_imagenet --output_dir=data/tiny-imagenet

writes `train/<wnid>/*.JPEG` and `val/<wnid>/*.JPEG` (10 classes; 8 train and 2 val images
per class, 40x48 pixels; each class a colour plus noise, so a network can learn it). The
wnids are the first ten of ImageNet's sorted class list. The folder is built beside its
target and renamed into place, with a `MARKER` file that says this generator wrote it: a folder
it wrote is left alone (done before), any other non-empty folder is refused with exit 2.
"""
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from harness.core import cli
from harness.core.errors import UserError

MARKER = ".written-by-harness.data.tiny_imagenet"

WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331",
         "n01498041", "n01514668", "n01514859", "n01518878")


def write_tiny_imagenet(root: Path, classes: int = 10, train_per_class: int = 8,
                        val_per_class: int = 2, size: tuple[int, int] = (40, 48),
                        seed: int = 0) -> Path:
    from PIL import Image
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for label, wnid in enumerate(WNIDS[:classes]):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            colour = np.array([(label * 97) % 256, (label * 57 + 80) % 256, (label * 31) % 256])
            for index in range(count):
                noise = rng.integers(-40, 41, size=(*size, 3))
                pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{index}.JPEG", quality=90)
    return root


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.Flags("python -m harness.data.tiny_imagenet", __doc__)
    parser.path("output_dir", None, "the folder to write", required=True)
    root = parser.parse(argv).output_dir
    if (root / MARKER).is_file():
        print(f"{root} was written before; left alone")
        return 0
    if root.exists() and not (root.is_dir() and not any(root.iterdir())):
        raise UserError(f"{root} exists and was not written by this generator; it is left as "
                        f"it is: choose another --output_dir")
    staging = root.with_name(f".{root.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # a staging folder of an interrupted call
    write_tiny_imagenet(staging)
    (staging / MARKER).write_text("")
    if root.is_dir():
        root.rmdir()  # empty: nothing of anyone's is lost
    os.replace(staging, root)
    print(f"wrote a tiny ImageNet-layout folder to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
