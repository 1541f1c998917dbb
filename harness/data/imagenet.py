"""ImageNet evaluation sets in their published folder layouts, streamed from disk by a
DataLoader (they are far too large to live on the device):

    validation  <dir>/<wnid>/*.JPEG                                  1000 classes
    ImageNet-C  <dir>/<corruption>/<severity>/<wnid>/*.JPEG          (Hendrycks & Dietterich 2019)
    ImageNet-A  <dir>/<wnid>/*.jpg                                   200 classes (Hendrycks et al.)

Labels follow torchvision's ImageFolder: the index of the class folder in sorted-wnid order,
which is the standard 1000-class order. Evaluation transform: resize the short side to 256,
centre-crop 224, normalise with the ImageNet mean and std (the ResNet-50 evaluation of
uncertainty-baselines and of Hendrycks' eval scripts); ImageNet-C images are already 224x224
crops of resized validation images, so they are only centre-cropped, as in his test script.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import gin
import torch

from harness.data.cifar_c import Archive
from harness.core.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INDEX_FILE = Path(__file__).with_name("imagenet_a_indices.txt")

IMAGENET_A = Archive("ImageNet-A", "imagenet-a",
                     "https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",
                     "c3e55429088dc681f30d81f4726b6595")
# Zenodo record 2235448: which archive holds each ImageNet-C corruption, and its MD5.
IMAGENET_C_ARCHIVES = {
    "noise": ("e80562d7f6c3f8834afb1ecf27252745",
              ("gaussian_noise", "shot_noise", "impulse_noise")),
    "blur": ("2d8e81fdd8e07fef67b9334fa635e45c",
             ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur")),
    "weather": ("33ffea4db4d93fe4a428c40a6ce0c25d", ("snow", "frost", "fog", "brightness")),
    "digital": ("89157860d7b10d5797849337ca2e5c03",
                ("contrast", "elastic_transform", "pixelate", "jpeg_compression")),
    "extra": ("d492dfba5fc162d8ec2c3cd8ee672984",
              ("speckle_noise", "spatter", "gaussian_blur", "saturate")),
}


def imagenet_a_classes() -> tuple[list[int], list[str]]:
    """The 200 ImageNet-A classes: their indices among the 1000 ImageNet classes and their
    wnids, in the order of ImageNet-A's sorted class folders (shipped data, from
    hendrycks/natural-adv-examples)."""
    indices, wnids = [], []
    for line in INDEX_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            index, wnid = line.split()
            indices.append(int(index))
            wnids.append(wnid)
    return indices, wnids


@gin.configurable
@dataclass(frozen=True)
class ImageNetLoader:
    """How ImageNet folders are decoded and batched."""

    resize: int = 256
    crop: int = 224
    num_workers: int = 4

    def batches(self, root: Path, batch_size: int, device: torch.device, *,
                crop_only: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image of the class folders under `root`, in order; `crop_only` skips the
        resize (ImageNet-C's images are already 224x224)."""
        from torchvision import datasets, transforms

        steps = [] if crop_only else [transforms.Resize(self.resize)]
        steps += [transforms.CenterCrop(self.crop), transforms.ToTensor(),
                  transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        dataset = datasets.ImageFolder(str(root), transforms.Compose(steps))
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                             num_workers=self.num_workers,
                                             pin_memory=device.type == "cuda")
        for images, labels in loader:
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def class_folders(root: Path) -> list[str]:
    """The class folders of `root`, sorted (ImageFolder's label order)."""
    if not root.is_dir():
        raise UserError(f"{root} not found (expected class folders <wnid>/ inside)")
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir())


def check_classes(root: Path, expected: Sequence[str]) -> None:
    """`root` holds exactly the class folders `expected`, none of them empty; otherwise one
    error naming the folder and the classes at fault."""
    classes = class_folders(root)
    missing = sorted(set(expected) - set(classes))
    extra = sorted(set(classes) - set(expected))
    if missing or extra:
        parts = [f"lacks class folder(s) {', '.join(missing[:5])}"] if missing else []
        parts += [f"has unexpected folder(s) {', '.join(extra[:5])}"] if extra else []
        raise UserError(f"{root} {' and '.join(parts)} ({len(classes)} class folders, "
                        f"{len(expected)} expected)")
    for name in classes:
        if not any(path.is_file() for path in (root / name).iterdir()):
            raise UserError(f"{root / name} holds no images")


def download_imagenet_a(data_dir: str) -> Path:
    """`<data_dir>/imagenet-a`, downloaded and MD5-checked when absent."""
    folder = Path(data_dir) / IMAGENET_A.folder
    if not folder.is_dir():
        _download(IMAGENET_A.url, folder.parent, IMAGENET_A.md5, IMAGENET_A.title, "imagenet_a")
    return folder


def download_imagenet_c(data_dir: str, corruptions: Sequence[str]) -> Path:
    """`<data_dir>/ImageNet-C`; the Zenodo archives of absent corruptions are downloaded."""
    folder = Path(data_dir) / "ImageNet-C"
    for archive, (md5, members) in IMAGENET_C_ARCHIVES.items():
        if any(name in corruptions and not (folder / name).is_dir() for name in members):
            _download(f"https://zenodo.org/record/2235448/files/{archive}.tar", folder, md5,
                      f"ImageNet-C ({archive})", "imagenet_c")
    return folder


def _download(url: str, into: Path, md5: str, title: str, setting: str) -> None:
    from torchvision.datasets.utils import download_and_extract_archive
    try:
        download_and_extract_archive(url, download_root=str(into), md5=md5,
                                     remove_finished=True)
    except (OSError, RuntimeError) as error:  # offline, or a checksum mismatch
        raise UserError(f"{title} is not under {into.resolve()} and could not be downloaded "
                        f"({error}); set {setting}.data_dir to the folder holding it") from error
