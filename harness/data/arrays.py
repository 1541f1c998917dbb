"""Image arrays that live on the training device, and batched augmentation on that device.

Every dataset is held as one uint8 tensor [N, C, H, W] plus int64 labels, moved to the device
once. Batches are sliced from it and augmented there (pad-and-crop, horizontal flip) in one
vectorised operation, so no per-sample Python runs in the training loop.

The training loop draws its batches through one seam, `epoch_batches` (below): an
`ArrayDataset` here, or a set streamed from image folders (harness/data/folders.py), which
answers the same calls.
"""
from dataclasses import dataclass, replace
from typing import Iterator

import gin
import torch
import torch.nn.functional as F

from harness.core.errors import UserError, check_integer


class Standardized:
    """The one place of the input convention, for every dataset with per-channel `mean` and
    `std` on the [0, 1] scale."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> model inputs in the default dtype: (x / 255 - mean) / std."""
        return self.standardize(images.to(torch.get_default_dtype()) / 255.0)

    def standardize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Images on [0, 1] -> model inputs (attacks perturb the pixels, then standardize)."""
        mean = torch.tensor(self.mean, device=pixels.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=pixels.device).view(1, -1, 1, 1)
        return (pixels - mean) / std


@dataclass(frozen=True)
class ArrayDataset(Standardized):
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    num_classes: int
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale
    std: tuple[float, ...]

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.images.shape[0]} images but labels of shape "
                             f"{tuple(self.labels.shape)}")
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise ValueError("mean/std need one value per channel")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device) -> "ArrayDataset":
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def subset(self, index: torch.Tensor) -> "ArrayDataset":
        index = index.to(self.images.device)
        return replace(self, images=self.images[index], labels=self.labels[index])


    def epoch_batches(self, batch_size: int, augment: "Augment", generator: torch.Generator,
                      *, skip: int = 0, generator_state: torch.Tensor | None = None,
                      shard: tuple[int, int] = (0, 1)
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The training seam: one epoch as `train_batches` draws it (see there)."""
        return train_batches(self, batch_size, augment, generator, skip=skip,
                             generator_state=generator_state, shard=shard)

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every example once, in order, the last batch possibly smaller."""
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            yield self.normalize(self.images[start:stop]), self.labels[start:stop]


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images on the [0, 1] scale (train split only)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in images.split(4096):  # chunks keep float copies of a 50k-image set small
        x = chunk.to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-6).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


PADDING_MODES = ("zeros", "reflect")


@gin.configurable
@dataclass(frozen=True)
class Augment:
    """The standard CIFAR augmentation: pad by `padding` and crop back at a random offset,
    then flip horizontally with probability 1/2. `padding=0, hflip=False` disables it.

    `padding_mode` 'reflect' (default) or 'zeros' (torchvision's RandomCrop default and
    uncertainty-baselines). The paper is silent (App. C); the official FreeTickets loader pads
    by reflection (`sparselearning/utils.py` get_cifar10_dataloaders: F.pad(..., mode='reflect')
    before RandomCrop(32)), and where the paper is silent the authors' code decides. Its
    CIFAR-100 loader (`get_cifar100_dataloaders`: RandomCrop(32, padding=4)) pads zeros: a
    CIFAR-100 row faithful to it binds `Augment.padding_mode = 'zeros'`."""

    padding: int = 4
    hflip: bool = True
    padding_mode: str = "reflect"

    def __post_init__(self):
        check_integer("Augment.padding", self.padding, 0)
        if self.padding_mode not in PADDING_MODES:
            raise UserError(f"Augment.padding_mode must be one of {', '.join(PADDING_MODES)}, "
                            f"got {self.padding_mode!r}")

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        batch, _, height, width = images.shape
        device = images.device
        if self.padding > 0:
            pad = self.padding
            padded = (F.pad(images, (pad, pad, pad, pad)) if self.padding_mode == "zeros" else
                      F.pad(images.float(), (pad, pad, pad, pad), mode="reflect")
                      .to(images.dtype))
            dy = torch.randint(0, 2 * pad + 1, (batch, 1, 1), device=device, generator=generator)
            dx = torch.randint(0, 2 * pad + 1, (batch, 1, 1), device=device, generator=generator)
            rows = (torch.arange(height, device=device).view(1, height, 1) + dy)
            cols = (torch.arange(width, device=device).view(1, 1, width) + dx)
            flat = rows * (width + 2 * pad) + cols  # [B, H, W] index into the padded plane
            planes = padded.flatten(2)  # [B, C, (H+2p)(W+2p)]
            index = flat.flatten(1).unsqueeze(1).expand(-1, images.shape[1], -1)
            images = planes.gather(2, index).view_as(images)
        if self.hflip:
            flip = torch.rand(batch, device=device, generator=generator) < 0.5
            images = torch.where(flip.view(batch, 1, 1, 1), images.flip(3), images)
        return images


def train_batches(dataset: ArrayDataset, batch_size: int, augment: Augment,
                  generator: torch.Generator, *, skip: int = 0,
                  generator_state: torch.Tensor | None = None, shard: tuple[int, int] = (0, 1)
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled, augmented, normalised batches; the incomplete last batch is
    dropped (as in uncertainty-baselines' steps_per_epoch = N // batch_size).

    The contract every training set keeps (`epoch_batches`): the epoch's order is a function
    of `generator`'s seed alone; `skip` leaves out the first batches and `generator_state`
    (the generator's state saved at that point) continues the draws from there, so that a run
    resumed mid-epoch sees what it would have seen. `shard = (rank, world)`: each of `world`
    processes gets its own contiguous `batch_size / world` rows of every global batch; the
    global batch is drawn and augmented whole on every process, so that the processes
    together train on exactly what one process would."""
    rank, world = shard
    order = torch.randperm(len(dataset), device=dataset.device, generator=generator)
    if generator_state is not None:
        generator.set_state(generator_state)
    rows = slice(rank * batch_size // world, (rank + 1) * batch_size // world)
    for start in range(skip * batch_size, len(dataset) - batch_size + 1, batch_size):
        index = order[start:start + batch_size]
        images = augment(dataset.images[index], generator)
        yield dataset.normalize(images[rows]), dataset.labels[index][rows]


def split_holdout(dataset: ArrayDataset, fraction: float, seed: int
                  ) -> tuple[ArrayDataset, ArrayDataset | None]:
    """Hold a seeded random `fraction` of the train set out as a validation set."""
    if fraction <= 0:
        return dataset, None
    if not fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    held = holdout_count(len(dataset), fraction)
    return dataset.subset(order[held:]), dataset.subset(order[:held])


def holdout_count(size: int, fraction: float) -> int:
    return max(1, int(round(fraction * size))) if fraction > 0 else 0


def take(dataset: ArrayDataset, count: int | None, seed: int) -> ArrayDataset:
    """A seeded random subset of `count` examples (all of them when count is None)."""
    if count is None or count >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return dataset.subset(order[:count].sort().values)

