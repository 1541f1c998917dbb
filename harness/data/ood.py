"""Out-of-distribution sets of paper App. K, following Augustin et al. (2020) and Meinke & Hein
(2019): SVHN's test split; CIFAR-100's test split for CIFAR-10 models and CIFAR-10's for
CIFAR-100 models; Gaussian noise images. Any array dataset's test split can join as
'npz:<path>' (offline stand-ins for the downloadable sets).

Each set comes back as an `ArrayDataset` normalised like the model's own test set, so its
images enter the model exactly as in-distribution ones do.

App. K calls the third set "CIFAR-10 with random Gaussian noise (Hein et al., 2019)" and the
authors' code has no OoD evaluation, so we take uncertainty-baselines' `random_gaussian` set
(uncertainty_baselines/datasets/random.py): images shaped like the test set, every pixel drawn
from N(0, 1), each image rescaled by its own minimum and maximum to the full pixel range, then
normalised like CIFAR; ours are quantised to uint8 as every array set is.
"""
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from harness.data.arrays import ArrayDataset
from harness.data.corrupt import load_test_split
from harness.core.errors import UserError, first_line

# SVHN's and CIFAR's images, [C, H, W].
PUBLISHED_SHAPE = (3, 32, 32)


def gaussian_noise(like: ArrayDataset, seed: int = 0) -> torch.Tensor:
    """As many images as the test set `like`, shaped like it: uncertainty-baselines'
    `random_gaussian` (module docstring), uint8."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(like),) + like.image_shape, generator=generator)
    low = noise.amin(dim=(1, 2, 3), keepdim=True)
    high = noise.amax(dim=(1, 2, 3), keepdim=True)
    return ((noise - low) / (high - low) * 255).round().to(torch.uint8)


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
        raise UserError(f"OoD set {name} not found or corrupt ({first_line(error)}): "
                        f"{expected_files(name, data_dir)}, or set ood.data_dir to the folder "
                        f"holding it") from error


def expected_files(name: str, data_dir: str) -> str:
    """What to put where for torchvision's class to find the test split of `name`."""
    from torchvision import datasets
    folder = Path(data_dir).resolve()
    if name == "svhn":
        _, file, md5 = datasets.SVHN.split_list["test"]
        return f"put {file} (md5 {md5}) in {folder}/, where torchvision's SVHN reads it"
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    return (f"put {cls.filename} (md5 {cls.tgz_md5}) or its {cls.base_folder}/ in {folder}/, "
            f"where torchvision's {cls.__name__} reads it")


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
        if like.image_shape != PUBLISHED_SHAPE:  # say so before looking for the files
            raise UserError(f"OoD set {name} has images {PUBLISHED_SHAPE} but the model takes "
                            f"{like.image_shape}: it fits CIFAR models only (the smoke scale's "
                            f"digits stand in for CIFAR, not for its OoD sets)")
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
