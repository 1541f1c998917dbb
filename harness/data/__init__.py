"""Dataset registry. A loader returns the train and test splits on the CPU, as `ArrayDataset`s
(moved to the device once) or as `FolderDataset`s streamed from disk (harness/data/folders.py:
ImageNet), which answer the same calls."""
from harness.data import sources  # noqa: F401  the loaders, registered by name
from harness.data.facts import Geometry
from harness.data.registry import DATASETS, PUBLISHED_GEOMETRY, Splits

__all__ = ["DATASETS", "PUBLISHED_GEOMETRY", "Geometry", "Splits"]
