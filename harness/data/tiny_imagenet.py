"""A tiny folder in ImageNet's layout, of real JPEGs, for the `tiny` scale and the tests:

    python -m harness.data.tiny_imagenet data/tiny-imagenet

writes `train/<wnid>/*.JPEG` and `val/<wnid>/*.JPEG` (10 classes; 8 train and 2 val images
per class, 40x48 pixels; each class a colour plus noise, so a network can learn it). The
wnids are the first ten of ImageNet's sorted class list. An existing folder is left alone.
"""
import sys
from pathlib import Path

import numpy as np

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


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit("usage: python -m harness.data.tiny_imagenet FOLDER")
    root = Path(argv[1])
    if root.exists():
        print(f"{root} exists; left alone")
        return
    write_tiny_imagenet(root)
    print(f"wrote a tiny ImageNet-layout folder to {root}")


if __name__ == "__main__":
    main(sys.argv)
