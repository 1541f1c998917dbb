"""The dataset registry: the loaders by name, and the published geometry of the families
(harness/data/facts.py) for planning FLOPs before the data is read."""
from dataclasses import dataclass
from typing import Callable

from harness.data.arrays import ArrayDataset
from harness.data.facts import FAMILIES
from harness.core.registry import Registry


@dataclass(frozen=True)
class Splits:
    name: str
    train: ArrayDataset
    test: ArrayDataset


DATASETS: Registry[Callable[[], Splits]] = Registry("dataset")


# Published sizes by dataset name, so FLOPs can be planned without the data on disk.
PUBLISHED_GEOMETRY = {name: facts.geometry for name, facts in FAMILIES.items() if facts.geometry}
