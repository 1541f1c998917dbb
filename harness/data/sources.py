"""The datasets users train on: CIFAR-10/100 in their published format (torchvision's classes,
with its checksums), any array set as `.npz`, and scikit-learn's embedded digits."""
import os
import zipfile
from pathlib import Path

import gin
import numpy as np
import torch

from harness.data.registry import DATASETS, Splits
from harness.data.arrays import ArrayDataset, channel_stats
from harness.core.errors import UserError

DEFAULT_DATA_DIR = os.environ.get("FREETICKETS_DATA", "data")


def arrays_to_splits(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                     y_test: np.ndarray, num_classes: int | None = None) -> Splits:
    """uint8 images [N, H, W, C] or [N, H, W] and integer labels -> normalised-by-train splits."""
    images = {}
    for split, x in (("train", x_train), ("test", x_test)):
        if x.dtype != np.uint8 or x.ndim not in (3, 4):
            raise UserError(f"{name}: x_{split} must be uint8 images [N, H, W(, C)], got "
                            f"{x.dtype} {x.shape}")
        if len(x) == 0:
            raise UserError(f"{name}: x_{split} is empty; a dataset needs train and test "
                            f"images")
        tensor = torch.from_numpy(np.ascontiguousarray(x))
        images[split] = tensor.unsqueeze(1) if x.ndim == 3 else tensor.permute(0, 3, 1, 2)
    labels = {}
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise UserError(f"{name}: y_{split} must be {len(x)} integer labels, got "
                            f"{y.dtype} {y.shape}")
        labels[split] = torch.from_numpy(y.astype(np.int64))
    if images["train"].shape[1:] != images["test"].shape[1:]:
        raise UserError(f"{name}: train images {tuple(images['train'].shape[1:])} and test "
                        f"images {tuple(images['test'].shape[1:])} differ in shape")
    classes = int(max(labels["train"].max(), labels["test"].max())) + 1
    if num_classes is None and classes > len(labels["train"]):
        raise UserError(f"{name}: the labels imply {classes} classes, more than the "
                        f"{len(labels['train'])} train images; number the classes 0..K-1")
    num_classes = num_classes or classes
    if classes > num_classes or min(labels["train"].min(), labels["test"].min()) < 0:
        raise UserError(f"{name}: labels must lie in [0, {num_classes})")
    mean, std = channel_stats(images["train"])
    make = lambda split: ArrayDataset(images[split], labels[split], num_classes, mean, std)
    return Splits(name, make("train"), make("test"))


@DATASETS.register("digits")
@gin.configurable("digits")
def digits(test_fraction: float = 0.2) -> Splits:
    """scikit-learn's 8x8 handwritten digits (1797 images, shipped inside scikit-learn): the
    offline dataset of tests, `make demo` and the smoke scale. The split is fixed (seed 0),
    stratified, and independent of the experiment seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, bunch.target, test_size=test_fraction, random_state=0, stratify=bunch.target)
    return arrays_to_splits("digits", x_train, y_train, x_test, y_test, num_classes=10)


@DATASETS.register("npz")
@gin.configurable("npz")
def npz(path: str = "data/cifar10.npz") -> Splits:
    """Any array dataset in one `.npz`: x_train, y_train, x_test, y_test (uint8 images
    [N, H, W, C] or [N, H, W]; integer labels); an optional `classes` array names them.
    `make cifar10-npz` writes the shared CIFAR-10 copy in this form."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"npz dataset {file} not found: set npz.path to an .npz with x_train, "
                        f"y_train, x_test, y_test (for CIFAR-10: make cifar10-npz)")
    try:
        with np.load(file, allow_pickle=False) as arrays:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(arrays.files)
            if missing:
                raise UserError(f"{file} lacks {', '.join(sorted(missing))}: an npz dataset "
                                f"needs x_train, y_train, x_test, y_test")
            num_classes = len(arrays["classes"]) if "classes" in arrays.files else None
            return arrays_to_splits(file.name, arrays["x_train"], arrays["y_train"],
                                    arrays["x_test"], arrays["y_test"], num_classes)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise UserError(f"{file} is not a readable .npz archive ({error}): re-create it") \
            from error


def _torchvision_cifar(cls, name: str, num_classes: int, data_dir: str, download: bool
                       ) -> Splits:
    root = Path(data_dir)
    splits = {}
    for train in (True, False):
        try:
            dataset = cls(root=str(root), train=train, download=download)
        except RuntimeError as error:  # torchvision: not found or checksum mismatch
            raise UserError(f"{name} not found or corrupt under {root.resolve()} ({error}); "
                            f"set {name}.data_dir to the folder holding it, or use the npz "
                            f"dataset") from error
        except OSError as error:  # download attempted without network
            raise UserError(f"{name} is not under {root.resolve()} and could not be "
                            f"downloaded ({error}); set {name}.data_dir to the folder holding "
                            f"it, or use the npz dataset") from error
        splits[train] = (dataset.data, np.asarray(dataset.targets))
    return arrays_to_splits(name, *splits[True], *splits[False], num_classes)


@DATASETS.register("cifar10")
@gin.configurable("cifar10")
def cifar10(data_dir: str = DEFAULT_DATA_DIR, download: bool = True) -> Splits:
    """CIFAR-10 through torchvision (python pickles, md5-checked); downloads when online."""
    import torchvision
    return _torchvision_cifar(torchvision.datasets.CIFAR10, "cifar10", 10, data_dir, download)


@DATASETS.register("cifar100")
@gin.configurable("cifar100")
def cifar100(data_dir: str = DEFAULT_DATA_DIR, download: bool = True) -> Splits:
    """CIFAR-100 (fine labels) through torchvision; downloads when online."""
    import torchvision
    return _torchvision_cifar(torchvision.datasets.CIFAR100, "cifar100", 100, data_dir,
                              download)


@DATASETS.register("imagenet")
@gin.configurable("imagenet")
def imagenet(data_dir: str = f"{DEFAULT_DATA_DIR}/imagenet", num_classes: int = 1000,
             train_examples: int | None = 1_281_167, val_examples: int | None = 50_000,
             crop: int = 224, resize: int = 256, num_workers: int = 8) -> Splits:
    """ImageNet (ILSVRC-2012) in its standard layout, `<data_dir>/train/<wnid>/*.JPEG` and
    `<data_dir>/val/<wnid>/*.JPEG`, streamed from disk (harness/data/folders.py): the class
    count and the number of images of each split are checked when the set is opened (None
    skips a count). `crop`/`resize`: the crop side and the evaluation's short side (224/256,
    torchvision's references/classification); the tiny scale lowers them."""
    from harness.data.folders import FolderDataset, scan_folders
    from harness.data.imagenet import IMAGENET_MEAN, IMAGENET_STD, check_classes

    root = Path(data_dir)
    if not (root / "train").is_dir():
        raise UserError(f"ImageNet not found: {root / 'train'} is not a folder; set "
                        f"imagenet.data_dir to the folder holding train/ and val/ (for the "
                        f"tiny scale: python -m harness.data.tiny_imagenet --output_dir={root})")
    classes, train = scan_folders(root / "train")
    if len(classes) != num_classes:
        raise UserError(f"{root / 'train'} holds {len(classes)} class folders, but "
                        f"imagenet.num_classes = {num_classes}")
    check_classes(root / "train", classes)  # none of them empty
    check_classes(root / "val", classes)
    _, val = scan_folders(root / "val")
    for split, samples, expected in (("train", train, train_examples),
                                     ("val", val, val_examples)):
        if expected is not None and len(samples) != expected:
            raise UserError(f"{root / split} holds {len(samples)} files, but "
                            f"imagenet.{split}_examples = {expected}: the copy is incomplete "
                            f"or has extra files")
    make = lambda samples: FolderDataset(tuple(samples), num_classes, crop, resize,
                                         IMAGENET_MEAN, IMAGENET_STD, num_workers)
    return Splits("imagenet", make(train), make(val))
