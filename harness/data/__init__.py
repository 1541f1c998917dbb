"""Dataset registry. A loader returns the train and test splits as `ArrayDataset`s on the CPU;
the experiment moves them to the device once."""
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

# Registers the loaders.
from harness.data import sources  # noqa: E402,F401
