import hashlib
import pickle

import numpy as np
import pytest
import torch

from harness.data import DATASETS, PUBLISHED_GEOMETRY
from harness.data.arrays import ArrayDataset, Augment, split_holdout, take, train_batches
from harness.data.facts import class_name, dataset_family, facts
from harness.core.errors import UserError
from harness.flops.plan import reference_epochs
from harness.evaluation.suite_summary import CORRUPTED_SUITES


def toy_dataset(n=10, size=6):
    images = torch.arange(n * size * size, dtype=torch.int64).remainder(251).to(torch.uint8)
    return ArrayDataset(images.view(n, 1, size, size), torch.arange(n) % 3, 3, (0.5,), (0.25,))


def test_crop_is_a_shifted_window_of_the_zero_padded_image():
    data = toy_dataset(n=64)
    generator = torch.Generator().manual_seed(0)
    out = Augment(padding=2, hflip=False, padding_mode="zeros")(data.images, generator)
    padded = torch.nn.functional.pad(data.images, (2, 2, 2, 2))
    for index in range(len(data)):
        windows = [padded[index, :, dy:dy + 6, dx:dx + 6] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[index], window) for window in windows)
    assert not torch.equal(out, data.images)  # some crops moved


def test_reflection_padding_is_the_default_of_the_official_cifar10_loader():
    data = toy_dataset(n=64)
    assert Augment().padding_mode == "reflect"
    out = Augment(padding=2, hflip=False)(
        data.images, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(data.images.float(), (2, 2, 2, 2), mode="reflect")
    for index in range(len(data)):
        windows = [padded[index, :, dy:dy + 6, dx:dx + 6] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[index].float(), window) for window in windows)
    assert out.dtype == torch.uint8
    with pytest.raises(UserError, match="padding_mode must be one of zeros, reflect"):
        Augment(padding_mode="circular")


def test_augment_settings_in_gin_reach_the_trainer():
    """The trainer's default augmentation was built at import, before gin's bindings."""
    import gin
    import harness.experiment.assemble  # noqa: F401  registers every configurable
    from harness.engine.train import Trainer
    gin.parse_config(["Augment.padding = 1", "Augment.padding_mode = 'reflect'",
                      "MultiStep.warmup = 0.1"])
    trainer = Trainer()
    assert trainer.augment == Augment(padding=1, hflip=True, padding_mode="reflect")
    assert trainer.lr_schedule.warmup == 0.1


def test_flip_mirrors_about_half_the_batch():
    data = toy_dataset(n=400)
    out = Augment(padding=0, hflip=True)(data.images, torch.Generator().manual_seed(1))
    flipped = (out == data.images.flip(3)).flatten(1).all(1)
    unchanged = (out == data.images).flatten(1).all(1)
    assert bool((flipped | unchanged).all())
    assert 150 < int(flipped.sum()) < 250


def test_an_epoch_is_a_permutation_without_the_incomplete_batch():
    data = toy_dataset(n=10)
    batches = list(train_batches(data, 4, Augment(0, False), torch.Generator().manual_seed(0)))
    assert [len(labels) for _, labels in batches] == [4, 4]
    seen = torch.cat([labels for _, labels in batches])
    assert len(seen) == 8 and batches[0][0].dtype == torch.float32
    # Normalisation: (x / 255 - mean) / std.
    first = batches[0][0]
    assert first.min() >= (0 - 0.5) / 0.25 - 1e-6 and first.max() <= (1 - 0.5) / 0.25 + 1e-6


def test_holdout_and_subset_are_disjoint_and_seeded():
    data = toy_dataset(n=100)
    train, held = split_holdout(data, 0.2, seed=3)
    assert len(train) == 80 and len(held) == 20
    key = lambda d: {bytes(img.numpy()) for img in d.images}
    assert not key(train) & key(held)
    assert torch.equal(take(data, 30, seed=1).images, take(data, 30, seed=1).images)
    assert split_holdout(data, 0.0, seed=0) == (data, None)


def test_digits_is_embedded_and_split_stratified():
    splits = DATASETS.get("digits")()
    assert splits.train.image_shape == (1, 8, 8) and len(splits.test) == 360
    assert splits.train.images.dtype == torch.uint8 and splits.train.num_classes == 10
    assert torch.bincount(splits.test.labels).min() >= 35


def write_npz(path, n_train=20, n_test=10, **overrides):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 8, 8, 3), dtype=np.uint8),
              "y_train": rng.integers(0, 4, n_train), "x_test": rng.integers(
                  0, 256, (n_test, 8, 8, 3), dtype=np.uint8),
              "y_test": rng.integers(0, 4, n_test)}
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def test_npz_roundtrip(tmp_path):
    arrays = write_npz(tmp_path / "set.npz", classes=np.array(list("abcde")))
    splits = DATASETS.get("npz")(path=str(tmp_path / "set.npz"))
    assert splits.train.image_shape == (3, 8, 8) and splits.train.num_classes == 5
    assert torch.equal(splits.test.images[0].permute(1, 2, 0),
                       torch.from_numpy(arrays["x_test"][0]))


@pytest.mark.parametrize("change,message", [
    ({"x_train": None}, "lacks x_train"),
    ({"x_train": np.zeros((20, 8, 8, 3), np.float32)}, "must be uint8"),
    ({"y_test": np.zeros(3, np.int64)}, "y_test must be 10 integer labels"),
])
def test_npz_errors_name_the_problem(tmp_path, change, message):
    write_npz(tmp_path / "set.npz", **change)
    with pytest.raises(UserError, match=message):
        DATASETS.get("npz")(path=str(tmp_path / "set.npz"))


def test_missing_and_corrupt_npz(tmp_path):
    with pytest.raises(UserError, match="not found"):
        DATASETS.get("npz")(path=str(tmp_path / "absent.npz"))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable .npz"):
        DATASETS.get("npz")(path=str(tmp_path / "bad.npz"))


def write_cifar10_batches(root, rng):
    """Tiny CIFAR-10 in its published python-pickle layout."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, 4).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": [f"class{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return {name: hashlib.md5((folder / name).read_bytes()).hexdigest()
            for name in names + ["batches.meta"]}


def test_cifar10_reads_the_published_layout_and_checks_md5(tmp_path, monkeypatch):
    import torchvision
    md5 = write_cifar10_batches(tmp_path, np.random.default_rng(0))
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]]
                                            for i in range(1, 6)])
    monkeypatch.setattr(cls, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(cls, "meta", {"filename": "batches.meta", "key": "label_names",
                                      "md5": md5["batches.meta"]})
    splits = DATASETS.get("cifar10")(data_dir=str(tmp_path), download=False)
    assert len(splits.train) == 20 and len(splits.test) == 4
    assert splits.train.image_shape == (3, 32, 32) and splits.train.num_classes == 10

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"corrupted")
    with pytest.raises(UserError, match="not found or corrupt"):
        DATASETS.get("cifar10")(data_dir=str(tmp_path), download=False)


def test_missing_cifar_offline_names_the_setting(tmp_path):
    with pytest.raises(UserError, match="cifar100.data_dir"):
        DATASETS.get("cifar100")(data_dir=str(tmp_path / "none"), download=False)


def test_a_datasets_facts_are_read_through_its_family():
    # an array copy stands in for the paper's data set by its file name (gin/scale/cpu.gin)
    assert dataset_family("data/cifar10.npz") == "cifar10"
    assert facts("cifar100.npz").ood_sets == ("svhn", "cifar10", "gaussian_noise")  # App. K
    assert facts("digits").ood_sets == ("gaussian_noise",) and facts("npz").geometry is None
    assert (reference_epochs("imagenet"), reference_epochs("cifar10"),
            reference_epochs("npz")) == (150, 250, 250)
    assert CORRUPTED_SUITES == ("cifar10_c", "cifar100_c", "imagenet_c", "generated_c")
    assert (class_name("cifar100", 2), class_name("digits.npz", 7),
            class_name("svhn", 4)) == ("baby", "7", "4")
    assert PUBLISHED_GEOMETRY["imagenet"].num_classes == 1000 and "digits" not in \
        PUBLISHED_GEOMETRY
