"""What the harness knows of a dataset family before reading its files, in one place: its
published geometry (FLOPs are planned without the data on disk), the reference schedule the
paper's FLOPs ratios divide by (App. D), its published corrupted suite (Tables 1-3's cAcc,
cNLL, cECE), the out-of-distribution sets of App. K, and its class names (Table 7).

A family is the paper's name for a data set ('cifar10'); an array copy stands in for it by its
file name ('data/cifar10.npz', gin/scale/cpu.gin). Digits (smoke scale) stand in for none: a
family of their own. A dataset of no known family gets `DatasetFacts`' defaults.
"""
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Geometry:
    train_examples: int
    image_shape: tuple[int, int, int]
    num_classes: int


@dataclass(frozen=True)
class DatasetFacts:
    name: str
    geometry: Geometry | None = None  # published sizes; None: read from the data
    # Epochs of the dense single model that the paper's FLOPs ratios divide by, at the batch
    # size and scale of the run being normalised (so a ratio means the same at every scale):
    #  * CIFAR (WRN-28-10): 250 epochs, the paper's DST recipe (App. C). It reproduces the
    #    tables' ratios (DST M=3 S=0.8: 3 x 250 x 0.34 / 250 = 1.01; EDST M=3: 450 x 0.34 / 250
    #    = 0.61) and gives 3.9e17 FLOPs against the quoted 3.6e17 (within 10%).
    #  * ImageNet (ResNet-50): 150 epochs. The paper's ratios imply it (EDST M=2, 170 epochs
    #    at f_S/f_D = 0.42: 0.48 -> 149 epochs; DST M=2 at 200 epochs: 1.12 -> 150) and it
    #    gives 4.7e18 against the quoted 4.8e18, RigL's dense ResNet-50 at 1.5x its 100-epoch
    #    budget.
    reference_epochs: int = 250
    corrupted_suite: str | None = None  # the published one (harness/evaluation/suites.py SUITES)
    # App. K's OoD sets for a model trained on it (harness/data/ood.py); Gaussian noise alone
    # where the paper names none.
    ood_sets: tuple[str, ...] = ("gaussian_noise",)
    class_names: tuple[str, ...] = ()  # in label order; CIFAR-100's first ten (Table 7's)


FAMILIES = {facts.name: facts for facts in (
    DatasetFacts("cifar10", Geometry(50_000, (3, 32, 32), 10), corrupted_suite="cifar10_c",
                 ood_sets=("svhn", "cifar100", "gaussian_noise"),
                 class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                              "horse", "ship", "truck")),
    DatasetFacts("cifar100", Geometry(50_000, (3, 32, 32), 100), corrupted_suite="cifar100_c",
                 ood_sets=("svhn", "cifar10", "gaussian_noise"),
                 class_names=("apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee",
                              "beetle", "bicycle", "bottle")),
    DatasetFacts("imagenet", Geometry(1_281_167, (3, 224, 224), 1000), reference_epochs=150,
                 corrupted_suite="imagenet_c"),
    DatasetFacts("digits", class_names=tuple(str(digit) for digit in range(10))),
)}


def dataset_family(dataset: str) -> str:
    """The family a dataset name or array file stands in for ('data/cifar10.npz' ->
    'cifar10')."""
    return Path(dataset).name.removesuffix(".npz")


def facts(dataset: str) -> DatasetFacts:
    family = dataset_family(dataset)
    return FAMILIES.get(family, DatasetFacts(family))


def class_name(dataset: str, index: int) -> str:
    """Class `index`'s name ('baby'), its number where the family names none."""
    names = facts(dataset).class_names
    return names[index] if index < len(names) else str(index)
