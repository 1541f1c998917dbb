"""Corrupted test sets in the CIFAR-10-C layout (Hendrycks & Dietterich 2019), published or
generated: `<corruption>.npy` ([5N, H, W, C] uint8, severities 1-5 in consecutive blocks of N)
and `labels.npy` ([5N] integers). The block size is N = len(labels) / 5, so small mirrors work.

Files are memory-mapped and streamed batch by batch (all of CIFAR-10-C is 2.9 GB); every file
is checked when the folder is opened, so a broken one fails before any training.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from harness.data.arrays import ArrayDataset
from harness.data.corrupt import SEVERITIES, read_marker
from harness.core.errors import UserError


@dataclass(frozen=True)
class Archive:
    title: str
    folder: str
    url: str
    md5: str


# Zenodo records 2535967 and 3555552 (Hendrycks), with the MD5s Zenodo lists.
PUBLISHED = {
    "cifar10_c": Archive("CIFAR-10-C", "CIFAR-10-C",
                         "https://zenodo.org/record/2535967/files/CIFAR-10-C.tar",
                         "56bf5dcef84df0e2308c6dcbcbbd8499"),
    "cifar100_c": Archive("CIFAR-100-C", "CIFAR-100-C",
                          "https://zenodo.org/record/3555552/files/CIFAR-100-C.tar",
                          "11f0ed0f1191edbf9fa23466ae6021d3"),
}


@dataclass(frozen=True)
class CorruptedFolder:
    """A checked folder: one read-only memory map per corruption, the labels in memory."""

    folder: Path
    images: dict[str, np.ndarray]
    labels: np.ndarray

    @property
    def block(self) -> int:
        return len(self.labels) // len(SEVERITIES)

    def batches(self, corruption: str, severity: int, batch_size: int, test: ArrayDataset
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The severity's block, read batch by batch and normalised like `test`.

        Batches are read from the file, not sliced from the memory map: pages touched
        through a map stay in the process's resident memory, which then grows by a whole
        file (150 MB for a CIFAR-10-C corruption) per corruption scored."""
        first = (severity - 1) * self.block
        images = self.images[corruption]
        shape = images.shape[1:]
        size = int(np.prod(shape))
        for start in range(first, first + self.block, batch_size):
            stop = min(start + batch_size, first + self.block)
            chunk = np.fromfile(images.filename, dtype=np.uint8, count=(stop - start) * size,
                                offset=images.offset + start * size)
            chunk = torch.from_numpy(chunk.reshape(stop - start, *shape))
            chunk = chunk.permute(0, 3, 1, 2).to(test.device, non_blocking=True)
            labels = torch.from_numpy(self.labels[start:stop].astype(np.int64))
            yield test.normalize(chunk), labels.to(test.device)


def open_folder(folder: Path, corruptions: Sequence[str], image_shape: tuple[int, int, int],
                num_classes: int) -> CorruptedFolder:
    """Opens and checks `folder` for images of shape (C, H, W) = `image_shape`."""
    labels_file = folder / "labels.npy"
    labels = _load(labels_file, mmap=False)
    if (labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or len(labels) == 0
            or len(labels) % len(SEVERITIES)):
        raise UserError(f"{labels_file}: expected integer labels [5N] (5 severities x N "
                        f"images), got {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise UserError(f"{labels_file}: labels must lie in [0, {num_classes}) for this "
                        f"model, found [{labels.min()}, {labels.max()}]")
    blocks = labels.reshape(len(SEVERITIES), -1)
    if not (blocks == blocks[0]).all():
        raise UserError(f"{labels_file}: the 5 severity blocks of {blocks.shape[1]} labels "
                        f"differ; a severity is missing or the labels belong to other files")
    channels, height, width = image_shape
    images = {}
    for name in corruptions:
        file = folder / f"{name}.npy"
        array = _load(file, mmap=True)
        if array.dtype != np.uint8 or array.shape[1:] != (height, width, channels):
            raise UserError(f"{file}: expected uint8 images [5N, {height}, {width}, "
                            f"{channels}], got {array.dtype} {array.shape}")
        if len(array) != len(labels):
            raise UserError(f"{file}: {len(array)} images but {labels_file} has "
                            f"{len(labels)} labels (5 severities x {len(labels) // 5}); a "
                            f"severity is missing or the files do not belong together")
        images[name] = array
    return CorruptedFolder(folder, images, labels)


def _load(file: Path, mmap: bool) -> np.ndarray:
    if not file.is_file():
        raise UserError(f"{file} not found")
    try:
        return np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UserError(f"{file} is not a readable .npy file ({error})") from error


def published_folder(name: str, data_dir: str, download: bool) -> Path:
    """`<data_dir>/CIFAR-10-C` (or -100-C), downloaded (MD5-checked) when absent and
    `download`; a folder written by `harness.data.corrupt` is refused."""
    archive = PUBLISHED[name]
    folder = Path(data_dir) / archive.folder
    if not (folder / "labels.npy").is_file():
        if not download:
            raise UserError(f"{archive.title} not found: {folder}/labels.npy is missing; set "
                            f"{name}.data_dir to the folder holding {archive.folder}/")
        from torchvision.datasets.utils import download_and_extract_archive
        try:
            download_and_extract_archive(archive.url, download_root=str(folder.parent),
                                         md5=archive.md5, remove_finished=True)
        except (OSError, RuntimeError) as error:  # offline, or a checksum mismatch
            raise UserError(f"{archive.title} is not under {folder.resolve()} and could not "
                            f"be downloaded ({error}); set {name}.data_dir to the folder "
                            f"holding {archive.folder}/") from error
    if read_marker(folder) is not None:
        raise UserError(f"{folder} was written by harness.data.corrupt, not published as "
                        f"{archive.title}; score it with the 'generated_c' suite "
                        f"(generated_c.path)")
    return folder
