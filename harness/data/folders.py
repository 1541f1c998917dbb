"""Training and evaluation sets streamed from class folders (`<root>/<class>/<image>`), for
sets far too large to live on the device (ImageNet's 1.28M JPEGs).

DataLoader workers decode and augment each image on the CPU into uint8 tensors (pinned when
the device is a GPU, workers kept across epochs); the batch is copied to the device without
blocking and normalised there, as `ArrayDataset` normalises its batches. The augmentation is
torchvision's `references/classification` recipe for ResNet-50: RandomResizedCrop + horizontal
flip for training, resize of the short side + centre crop for evaluation.

Reproducible and resumable: an epoch's order is the permutation its seed draws, and each
image's augmentation is seeded by (epoch seed, image index), so a batch does not depend on
which worker made it, how many workers there are, or whether the run resumed mid-epoch.
"""
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import torch

from harness.data.arrays import Standardized
from harness.core.errors import UserError

UNREADABLE = "unreadable image"


class UnreadableImage(UserError):
    """A file of the set could not be opened or decoded; its message names the file."""


@dataclass(frozen=True)
class FolderTransform:
    """Training: RandomResizedCrop(crop) + flip; evaluation: Resize(resize) + CenterCrop(crop).
    Returns uint8 [3, crop, crop]."""

    crop: int
    resize: int
    train: bool

    def build(self):
        from torchvision import transforms
        steps = ([transforms.RandomResizedCrop(self.crop), transforms.RandomHorizontalFlip()]
                 if self.train else
                 [transforms.Resize(self.resize), transforms.CenterCrop(self.crop)])
        return transforms.Compose([*steps, transforms.PILToTensor()])


class _Images(torch.utils.data.Dataset):
    """Items are keyed (image index, seed): the seed of its augmentation travels with the
    key, so workers that persist across epochs need no message from the training process."""

    def __init__(self, samples: tuple[tuple[str, int], ...], transform: FolderTransform):
        self.samples = samples
        self.transform = transform
        self._built = None

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]):
        from PIL import Image, UnidentifiedImageError
        index, seed = key
        if self._built is None:
            self._built = self.transform.build()
        path, label = self.samples[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise UnreadableImage(f"{UNREADABLE} {path} ({error}): replace or remove it") \
                from None
        # Seeded per image, in a forked RNG so that a loader without workers leaves the
        # training process's own RNG alone.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((seed * 1_000_003 + index) % 2**63)
            return self._built(image), label


class _Keys(torch.utils.data.Sampler):
    """Keys (index, seed) of this process's rows of every global batch of the epoch's
    permutation, from batch `skip` on; the incomplete last batch is dropped. Set per epoch
    (`start`) in the training process, where the loader calls it."""

    def __init__(self, size: int, batch_size: int, rank: int, world: int):
        self.size, self.batch_size, self.rank, self.world = size, batch_size, rank, world
        self.seed, self.skip = 0, 0

    def start(self, seed: int, skip: int) -> None:
        self.seed, self.skip = seed, skip

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed))
        local = self.batch_size // self.world
        for start in range(self.skip * self.batch_size, self.size - self.batch_size + 1,
                           self.batch_size):
            offset = start + self.rank * local
            yield from ((index, self.seed) for index in order[offset:offset + local].tolist())

    def __len__(self):
        return (self.size // self.batch_size - self.skip) * (self.batch_size // self.world)


class _Ordered(torch.utils.data.Sampler):
    def __init__(self, size: int):
        self.size = size

    def __iter__(self):
        return ((index, 0) for index in range(self.size))

    def __len__(self):
        return self.size


@dataclass(frozen=True)
class FolderDataset(Standardized):
    """A class-folder image set, answering the calls of `ArrayDataset` that training and
    evaluation make (harness/data/arrays.py)."""

    samples: tuple[tuple[str, int], ...]
    num_classes: int
    crop: int
    resize: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_workers: int = 4
    device: torch.device = torch.device("cpu")
    non_blocking: bool = True
    _loaders: dict = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.crop, self.crop)

    def to(self, device) -> "FolderDataset":
        return replace(self, device=torch.device(device), _loaders={})

    def subset(self, index: torch.Tensor) -> "FolderDataset":
        return replace(self, samples=tuple(self.samples[i] for i in index.tolist()),
                       _loaders={})

    def _loader(self, train: bool, batch_size: int, sampler):
        """One loader per (split, batch, shard), kept with its workers across epochs."""
        key = (train, batch_size, getattr(sampler, "rank", 0), getattr(sampler, "world", 1))
        if key not in self._loaders:
            images = _Images(self.samples, FolderTransform(self.crop, self.resize, train))
            workers = self.num_workers
            self._loaders[key] = torch.utils.data.DataLoader(
                images, batch_size=batch_size // key[3], sampler=sampler,
                num_workers=workers, pin_memory=self.device.type == "cuda",
                persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                # Its own generator: the workers' base seed is never drawn from the training
                # process's RNG, whose draws (dropout) must not depend on the loader.
                generator=torch.Generator().manual_seed(0))
        return self._loaders[key]

    def _stream(self, loader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        try:
            for images, labels in loader:
                yield (self.normalize(images.to(self.device, non_blocking=self.non_blocking)),
                       labels.to(self.device, non_blocking=self.non_blocking))
        except UnreadableImage as error:  # from a worker: its message carries a traceback
            found = re.search(rf"{UNREADABLE} .*", str(error))
            raise UserError(found.group(0) if found else str(error)) from None

    def epoch_batches(self, batch_size: int, augment, generator: torch.Generator, *,
                      skip: int = 0, generator_state: torch.Tensor | None = None,
                      shard: tuple[int, int] = (0, 1)
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One training epoch under the contract of `arrays.train_batches`; the folder's own
        augmentation replaces `augment` (a CIFAR crop does not apply to ImageNet)."""
        del augment
        seed = generator.initial_seed()
        if generator_state is not None:
            generator.set_state(generator_state)
        rank, world = shard
        loader = self._loader(True, batch_size, _Keys(len(self), batch_size, rank, world))
        loader.sampler.start(seed, skip)
        return self._stream(loader)

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._stream(self._loader(False, batch_size, _Ordered(len(self))))


def scan_folders(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """The sorted class folders of `root` and every file in them, labelled by folder index
    (torchvision's ImageFolder order)."""
    from harness.data.imagenet import class_folders
    classes = class_folders(root)
    samples = [(str(path), label) for label, name in enumerate(classes)
               for path in sorted((root / name).iterdir()) if path.is_file()]
    return classes, samples
