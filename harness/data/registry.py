"""The dataset registry and the facts known of a dataset before its files are read."""
from dataclasses import dataclass
from typing import Callable

from harness.data.arrays import ArrayDataset
from harness.registry import Registry


@dataclass(frozen=True)
class Splits:
    name: str
    train: ArrayDataset
    test: ArrayDataset


DATASETS: Registry[Callable[[], Splits]] = Registry("dataset")


@dataclass(frozen=True)
class Geometry:
    train_examples: int
    image_shape: tuple[int, int, int]
    num_classes: int


# Published sizes, so FLOPs can be planned without the data on disk.
PUBLISHED_GEOMETRY = {
    "cifar10": Geometry(50_000, (3, 32, 32), 10),
    "cifar100": Geometry(50_000, (3, 32, 32), 100),
    "imagenet": Geometry(1_281_167, (3, 224, 224), 1000),
}
