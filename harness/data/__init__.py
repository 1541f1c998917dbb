"""Dataset registry. A loader returns the train and test splits on the CPU, as `ArrayDataset`s
(moved to the device once) or as `FolderDataset`s streamed from disk (harness/data/folders.py:
ImageNet), which answer the same calls.

The registry and its loaders (torch) load on the first use of `DATASETS`, `PUBLISHED_GEOMETRY`
or `Splits`, not with the package: a table reading a dataset's facts (harness/data/facts.py)
or a command printing its --help needs neither."""
from harness.data.facts import Geometry

__all__ = ["DATASETS", "PUBLISHED_GEOMETRY", "Geometry", "Splits"]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'harness.data' has no attribute {name!r}")
    from harness.data import registry, sources  # noqa: F401  the loaders, registered by name

    return getattr(registry, name)
