"""Loaders of the robustness sets, each on tiny files in its real layout: CIFAR-C arrays,
ImageNet-C and ImageNet-A folders, OoD sets; and one clear error for each kind of bad file."""
import gin
import numpy as np
import pytest
import torch
from PIL import Image

from harness.data import Splits
from harness.data.arrays import ArrayDataset
from harness.data.corrupt import MARKER
from harness.data.imagenet import imagenet_a_classes
from harness.data.ood import gaussian_noise
from harness.core.errors import UserError
from harness.experiment.assemble import DataContext
from harness.evaluation.predictors import Predictor
from harness.evaluation.suites import cifar10_c, generated_c, imagenet_a, imagenet_c, ood

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)


def context(image_shape=(3, 4, 4), num_classes=10, batch_size=2, count=3):
    test = ArrayDataset(torch.zeros((count,) + image_shape, dtype=torch.uint8),
                        torch.zeros(count, dtype=torch.int64), num_classes,
                        MEAN[:image_shape[0]], STD[:image_shape[0]])
    return DataContext(Splits("tiny", test, test), None, batch_size, torch.device("cpu"))


def write_cifar_c(folder, names=("fog", "snow"), block=3, height=4):
    """Image i of severity s of corruption k is filled with 50k + 10s + i; labels i % 10."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        values = [50 * k + 10 * s + i for s in range(1, 6) for i in range(block)]
        data = np.array(values, np.uint8)[:, None, None, None] * np.ones((1, height, 4, 3),
                                                                       np.uint8)
        np.save(folder / f"{name}.npy", data)
    np.save(folder / "labels.npy", np.tile(np.arange(block) % 10, 5).astype(np.uint8))
    return folder


def test_cifar_c_sets_stream_each_severity_block_normalised(tmp_path):
    folder = write_cifar_c(tmp_path / "CIFAR-10-C")
    sets = list(cifar10_c(context(), data_dir=str(tmp_path), download=False,
                          corruptions=("fog", "snow")))
    assert [(s.suite, s.corruption, s.severity) for s in sets] == [
        ("cifar10_c", name, severity) for name in ("fog", "snow") for severity in range(1, 6)]
    snow_3 = sets[7]
    batches = list(snow_3.batches())
    assert snow_3.num_batches == 2 and [len(y) for _, y in batches] == [2, 1]
    images = torch.cat([x for x, _ in batches])
    raw = torch.tensor([50 + 30 + i for i in range(3)], dtype=torch.float32)
    expected = (raw.view(3, 1) / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(images[:, :, 0, 0], expected)
    assert torch.cat([y for _, y in batches]).tolist() == [0, 1, 2]
    assert isinstance(np.load(folder / "fog.npy", mmap_mode="r"), np.memmap)


def break_file(folder, case):
    if case == "dtype":
        np.save(folder / "fog.npy", np.load(folder / "fog.npy").astype(np.float32))
    elif case == "shape":
        np.save(folder / "fog.npy", np.zeros((15, 8, 8, 3), np.uint8))
    elif case == "labels":
        np.save(folder / "labels.npy", np.zeros(20, np.int64))
    elif case == "severity":
        np.save(folder / "fog.npy", np.load(folder / "fog.npy")[:12])
    elif case == "label blocks":
        np.save(folder / "labels.npy", np.arange(15) % 10)
    elif case == "missing":
        (folder / "fog.npy").unlink()
    elif case == "garbage":
        (folder / "fog.npy").write_bytes(b"not an npy file")


@pytest.mark.parametrize("case, file, message", [
    ("dtype", "fog.npy", "expected uint8 images"),
    ("shape", "fog.npy", "[5N, 4, 4, 3]"),
    ("labels", "fog.npy", "15 images but"),
    ("severity", "fog.npy", "a severity is missing"),
    ("label blocks", "labels.npy", "severity blocks"),
    ("missing", "fog.npy", "not found"),
    ("garbage", "fog.npy", "not a readable .npy"),
])
def test_a_bad_corruption_file_is_one_error_naming_it(tmp_path, case, file, message):
    folder = write_cifar_c(tmp_path / "CIFAR-10-C")
    break_file(folder, case)
    with pytest.raises(UserError) as error:
        list(cifar10_c(context(), data_dir=str(tmp_path), download=False,
                       corruptions=("fog", "snow")))
    assert str(folder / file) in str(error.value) and message in str(error.value)


def test_published_and_generated_folders_are_never_confused(tmp_path):
    folder = write_cifar_c(tmp_path / "CIFAR-10-C")
    with pytest.raises(UserError, match="not written by harness.data.corrupt"):
        list(generated_c(context(), path=str(folder), corruptions=("fog",)))
    (folder / MARKER).write_text("{}")
    with pytest.raises(UserError, match="'generated_c' suite"):
        list(cifar10_c(context(), data_dir=str(tmp_path), download=False))
    sets = list(generated_c(context(), path=str(folder), corruptions=("fog",)))
    assert {s.suite for s in sets} == {"generated_c"} and len(sets) == 5


def test_generated_suite_is_made_once_into_the_cache(tmp_path):
    grey = context(image_shape=(1, 8, 8), count=4)
    grey.splits.test.images[:] = torch.arange(4 * 64, dtype=torch.uint8).view(4, 1, 8, 8)
    sets = list(generated_c(grey, cache_dir=str(tmp_path), corruptions=("contrast",)))
    folder = tmp_path / "tiny-c"
    assert len(sets) == 5 and np.load(folder / "contrast.npy").shape == (20, 8, 8, 1)
    stamp = (folder / "contrast.npy").stat().st_mtime_ns
    list(generated_c(grey, cache_dir=str(tmp_path), corruptions=("contrast",)))
    assert (folder / "contrast.npy").stat().st_mtime_ns == stamp  # reused
    list(generated_c(grey, cache_dir=str(tmp_path), corruptions=("contrast",), seed=1))
    assert (folder / "contrast.npy").stat().st_mtime_ns != stamp  # other seed: made again


def write_images(folder, count=1, value=(0, 0, 0), suffix="png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (10, 12), value).save(folder / f"{i}.{suffix}")


@pytest.fixture
def small_imagenet():
    gin.bind_parameter("ImageNetLoader.resize", 8)
    gin.bind_parameter("ImageNetLoader.crop", 8)
    gin.bind_parameter("ImageNetLoader.num_workers", 0)


def test_imagenet_c_reads_every_folder_and_names_a_missing_class(tmp_path, small_imagenet):
    root = tmp_path / "ImageNet-C"
    for severity in range(1, 6):
        for label, wnid in enumerate(("n01", "n02", "n03")):
            write_images(root / "fog" / str(severity) / wnid, value=(label, 0, 0))
    sets = list(imagenet_c(context(num_classes=3), data_dir=str(tmp_path), download=False,
                           corruptions=("fog",)))
    assert [(s.corruption, s.severity) for s in sets] == [("fog", s) for s in range(1, 6)]
    images, labels = next(iter(sets[0].batches()))
    assert images.shape == (2, 3, 8, 8) and labels.tolist() == [0, 1]
    for path in (root / "fog" / "4" / "n02").iterdir():
        path.unlink()
    (root / "fog" / "4" / "n02").rmdir()
    with pytest.raises(UserError, match=r"ImageNet-C/fog/4 lacks class folder\(s\) n02"):
        list(imagenet_c(context(num_classes=3), data_dir=str(tmp_path), download=False,
                        corruptions=("fog",)))


def test_imagenet_a_index_list():
    indices, wnids = imagenet_a_classes()
    assert len(indices) == len(set(wnids)) == 200
    assert indices == sorted(indices) and 0 <= indices[0] and indices[-1] < 1000
    assert wnids == sorted(wnids)  # sorted folders <-> increasing 1000-class indices
    assert (indices[0], wnids[0]) == (6, "n01498041")
    assert (indices[-1], wnids[-1]) == (988, "n12267677")


class ReadsClass(Predictor):
    """Logits from the red value k of a solid image of ImageNet-A class k: 5 at its ImageNet
    index; for odd k also 10 at class 0 (tench, not an ImageNet-A class)."""

    num_members = 1

    def __init__(self, indices):
        super().__init__()
        self.indices = torch.tensor(indices)

    def forward(self, x):
        red = x[:, 0, 0, 0] * 0.229 + 0.485
        k = torch.round(red * 255).long()
        logits = torch.zeros(x.shape[0], 1000)
        logits[torch.arange(len(k)), self.indices[k]] = 5.0
        logits[:, 0] = torch.where(k % 2 == 1, 10.0, 0.0)
        return logits[None]


def test_imagenet_a_scores_restricted_and_1000_way(tmp_path, small_imagenet):
    indices, wnids = imagenet_a_classes()
    for k, wnid in enumerate(wnids):
        write_images(tmp_path / "imagenet-a" / wnid, value=(k, 0, 0))
    (scored,) = imagenet_a(context(num_classes=1000, batch_size=64), data_dir=str(tmp_path),
                           download=False)
    rows = {(r["corruption"], r["metric"]): r["value"]
            for r in scored.score(ReadsClass(indices), False)}
    # restricted to the 200 classes, class 0's logit is gone: every image is right
    assert rows["restricted_200", "accuracy"] == 1.0
    assert rows["restricted_200", "nll"] == pytest.approx(np.log(np.exp(5) + 199) - 5)
    # 1000-way, the odd classes lose to class 0
    assert rows["full_1000", "accuracy"] == 0.5


def test_ood_sets_are_shaped_and_normalised_like_the_test_set(tmp_path):
    like = context(image_shape=(3, 6, 6), count=400)
    np.savez(tmp_path / "other.npz", x_test=np.full((5, 6, 6, 3), 9, np.uint8),
             y_test=np.zeros(5, np.int64))

    class Bright(Predictor):  # confident on bright images
        num_members = 1

        def forward(self, x):
            return torch.stack([x.mean((1, 2, 3)) * 5, torch.zeros(len(x))], dim=1)[None]

    like.splits.test.images[:] = 250
    (scored,) = ood(like, sets=("gaussian_noise", f"npz:{tmp_path / 'other.npz'}"))
    rows = {(r["corruption"], r["metric"]): r["value"] for r in scored.score(Bright(), False)}
    assert rows["gaussian_noise", "auroc_maxprob"] == 1.0
    assert rows[f"npz:{tmp_path / 'other.npz'}", "auroc_entropy"] == 1.0
    # uncertainty-baselines' random_gaussian: each image spans the whole pixel range, whatever
    # the test set looks like, and is the same on every call
    noise = gaussian_noise(like.splits.test)
    assert noise.shape == (400, 3, 6, 6) and noise.dtype == torch.uint8
    assert noise.flatten(1).amin(1).eq(0).all() and noise.flatten(1).amax(1).eq(255).all()
    assert torch.equal(noise, gaussian_noise(like.splits.test))
    with pytest.raises(UserError, match=r"OoD set npz:.* has images .* \(3, 6, 6\)"):
        list(ood(context(image_shape=(3, 4, 4)), sets=(f"npz:{tmp_path / 'other.npz'}",)))
    with pytest.raises(UserError, match="unknown OoD set 'mnist'"):
        list(ood(like, sets=("mnist",)))
