"""Out-of-distribution sets of paper App. K, following Augustin et al. (2020) and Meinke & Hein
(2019): SVHN's test split; CIFAR-100's test split for CIFAR-10 models and CIFAR-10's for
CIFAR-100 models; Gaussian noise images. Any array dataset's test split can join as
'npz:<path>' (offline stand-ins for the downloadable sets).

Each set comes back as an `ArrayDataset` normalised like the model's own test set, so its
images enter the model exactly as in-distribution ones do.
"""
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from harness.data.arrays import ArrayDataset
from harness.data.corrupt import load_test_split
from harness.errors import UserError

# App. K's sets for each training set; other datasets default to the noise images alone.
DEFAULT_SETS = {"cifar10": ("svhn", "cifar100", "gaussian_noise"),
                "cifar100": ("svhn", "cifar10", "gaussian_noise")}


def gaussian_noise(like: ArrayDataset, seed: int = 0) -> torch.Tensor:
    """As many images as the test set, each pixel drawn from a Gaussian with the training
    set's per-channel mean and std, clipped to [0, 1] and quantised to uint8 (Hein et al.
    2019's noise images, matched to the data's first two moments)."""
    generator = torch.Generator().manual_seed(seed)
    mean = torch.tensor(like.mean).view(1, -1, 1, 1)
    std = torch.tensor(like.std).view(1, -1, 1, 1)
    noise = torch.randn((len(like),) + like.image_shape, generator=generator) * std + mean
    return (noise.clamp(0, 1) * 255).round().to(torch.uint8)


def _torchvision_test(name: str, data_dir: str, download: bool) -> np.ndarray:
    """SVHN / CIFAR-10 / CIFAR-100 test images [N, C, H, W] through torchvision (checksummed,
    downloaded when absent and `download`)."""
    from torchvision import datasets
    try:
        if name == "svhn":
            return datasets.SVHN(root=data_dir, split="test", download=download).data
        cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        return cls(root=data_dir, train=False, download=download).data.transpose(0, 3, 1, 2)
    except (OSError, RuntimeError) as error:  # absent and offline, or a checksum mismatch
        raise UserError(f"OoD set {name} not found or corrupt under {Path(data_dir).resolve()}"
                        f" ({error}); set ood.data_dir to the folder holding it, or choose "
                        f"other ood.sets") from error


def load_ood_set(name: str, like: ArrayDataset, data_dir: str, download: bool
                 ) -> ArrayDataset:
    """The OoD set `name` ('svhn', 'cifar10', 'cifar100', 'gaussian_noise' or 'npz:<path>')
    as an ArrayDataset shaped and normalised like `like` (the model's test set)."""
    if name == "gaussian_noise":
        images = gaussian_noise(like)
    elif name.startswith("npz:"):
        x_test, _ = load_test_split(Path(name[4:]))
        images = torch.from_numpy(np.ascontiguousarray(x_test)).permute(0, 3, 1, 2)
    elif name in ("svhn", "cifar10", "cifar100"):
        images = torch.from_numpy(np.ascontiguousarray(_torchvision_test(name, data_dir,
                                                                         download)))
    else:
        raise UserError(f"unknown OoD set {name!r}; known: svhn, cifar10, cifar100, "
                        f"gaussian_noise, npz:<path>")
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != like.image_shape:
        raise UserError(f"OoD set {name} has images {images.dtype} {tuple(images.shape[1:])} "
                        f"but the model takes uint8 {like.image_shape}")
    labels = torch.zeros(len(images), dtype=torch.int64)  # unused: OoD scores ignore labels
    return replace(like, images=images, labels=labels).to(like.device)
