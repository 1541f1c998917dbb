"""`make bench`'s data-path figure: images/s that one DataLoader worker of the ImageNet training
stream (harness/data/folders.py: JPEG decode, RandomResizedCrop(224) + flip, to uint8) gives,
and how many workers one GPU needs at the GPU check's step rate.

A worker does exactly what `FolderDataset`'s dataset does per image, one image after another,
so its rate is timed here in this process on the same code: on the tiny ImageNet-layout folder
(harness/data/tiny_imagenet.py, 40x48 px), and on a folder of the same layout with images of
ImageNet's most common size (500x375). Those are noise JPEGs, which compress worse and decode
slower than photographs: the count of workers errs on the safe side.
"""
import statistics
import tempfile
import time
from pathlib import Path

from harness.store import readers
from harness.tables.compute_plan import ASSUMED_FLOPS_PER_S, GPU_CHECK_JSON

IMAGENET_SIZE = (375, 500)  # height x width, ImageNet's most common
RESNET50_TRAIN_FLOPS = 3 * 8.18e9  # per 224 px image: 3 x forward (harness/flops convention)


def gpu_images_per_s(path: Path = GPU_CHECK_JSON) -> tuple[float, str]:
    """The ResNet-50 training rate one GPU needs fed: the GPU check's best, else the compute
    plan's assumed FLOP/s turned into images/s."""
    check = readers.gpu_check(path) if path.is_file() else {}
    if not check.get("reduced", True):
        rates = [row["images_per_s"] for key, row in check.get("throughput", {}).items()
                 if key.startswith("resnet50/") and isinstance(row, dict)
                 and "images_per_s" in row]
        if rates:
            return max(rates), f"the GPU check's best ResNet-50 rate ({path})"
    return (ASSUMED_FLOPS_PER_S / RESNET50_TRAIN_FLOPS,
            f"the compute plan's assumed {ASSUMED_FLOPS_PER_S / 1e12:.0f} TFLOP/s (no GPU check "
            f"at full size at {path})")


def per_worker_rate(root: Path, images: int, rounds: int) -> float:
    """Median images/s of the training transform over `rounds` passes of `images` images."""
    from harness.data.folders import FolderTransform, _Images

    samples = tuple((str(path), 0) for path in sorted(root.rglob("*.JPEG")))[:images]
    dataset = _Images(samples, FolderTransform(224, 256, train=True))
    dataset[(0, 0)]  # builds the transform
    rates = []
    for round_ in range(rounds):
        start = time.perf_counter()
        for index in range(len(samples)):
            dataset[(index, round_)]
        rates.append(len(samples) / (time.perf_counter() - start))
    return statistics.median(rates)


def bench_imagenet_loader(rounds: int = 3, images: int = 80):
    """Result: images/s per worker on ImageNet-sized JPEGs; detail: the tiny folder's rate and
    the workers one GPU needs."""
    from harness.bench.parts import Result
    from harness.data.tiny_imagenet import write_tiny_imagenet

    with tempfile.TemporaryDirectory() as scratch:
        tiny = per_worker_rate(write_tiny_imagenet(Path(scratch) / "tiny"), images, rounds)
        full = per_worker_rate(write_tiny_imagenet(Path(scratch) / "full", size=IMAGENET_SIZE),
                               images, rounds)
    needed, source = gpu_images_per_s()
    workers = needed / full
    return Result("imagenet_loader", full, "images/s/worker", None,
                  f"one GPU at {needed:.0f} images/s needs {workers:.1f} workers ({source}); "
                  f"tiny 40x48 folder: {tiny:.0f} images/s/worker",
                  {"images_per_s_per_worker_500x375": full,
                   "images_per_s_per_worker_tiny": tiny, "gpu_images_per_s": needed,
                   "gpu_rate_source": source, "workers_per_gpu": workers})
