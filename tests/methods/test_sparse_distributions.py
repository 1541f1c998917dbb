"""Layer-wise density allocation: exact counts, ER/ERK proportions, RigL's capping."""
import math

import pytest
import torchvision
from torch import nn

from methods.sparse.distributions import layer_densities, layer_nonzeros, prunable_layers
from tests.training import SmallNet


def shapes_of(model: nn.Module, dense_first_layer: bool = False) -> dict[str, tuple[int, ...]]:
    return {name: tuple(layer.weight.shape)
            for name, layer in prunable_layers(model, dense_first_layer).items()}


SHAPES = {"resnet18": shapes_of(torchvision.models.resnet18(num_classes=10)),
          "small": shapes_of(SmallNet())}


def erk_raw(shape):
    return sum(shape) / math.prod(shape)


def test_prunable_layers_are_every_conv_and_linear_in_order():
    model = torchvision.models.resnet18(num_classes=10)
    names = list(prunable_layers(model))
    assert names[0] == "conv1" and names[-1] == "fc"
    assert "layer2.0.downsample.0" in names
    assert len(names) == 21  # 20 convs (17 + 3 downsample) and the classifier
    assert list(prunable_layers(model, dense_first_layer=True)) == names[1:]
    assert list(prunable_layers(SmallNet())) == ["features.0", "features.3", "head.0", "head.2"]
    assert list(prunable_layers(SmallNet(), dense_first_layer=True)) == [
        "features.3", "head.0", "head.2"]


@pytest.mark.parametrize("model", sorted(SHAPES))
@pytest.mark.parametrize("distribution", ["uniform", "er", "erk"])
@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.9])
def test_nonzeros_are_exact_and_overall_density_is_one_minus_s(model, distribution, sparsity):
    shapes = SHAPES[model]
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    total = sum(sizes.values())
    counts = layer_nonzeros(shapes, 1 - sparsity, distribution)
    assert list(counts) == list(shapes)
    assert all(isinstance(count, int) and 0 <= count <= sizes[name]
               for name, count in counts.items())
    assert sum(counts.values()) == round((1 - sparsity) * total)
    assert abs(sum(counts.values()) / total - (1 - sparsity)) <= 1 / total
    densities = layer_densities(shapes, 1 - sparsity, distribution)
    for name, count in counts.items():  # each count is its density's count, up to rounding
        assert abs(count - densities[name] * sizes[name]) < 1


def test_uniform_gives_every_layer_the_same_density():
    densities = layer_densities(SHAPES["resnet18"], 0.2, "uniform")
    assert set(densities.values()) == {0.2}


def test_erk_follows_the_kernel_formula_and_er_ignores_kernel_dims():
    shapes = {"a": (64, 32, 3, 3), "b": (64, 32, 1, 1), "c": (128, 64, 3, 3), "fc": (100, 512)}
    erk = layer_densities(shapes, 0.1, "erk")
    ratios = {name: erk[name] / erk_raw(shape) for name, shape in shapes.items()}
    assert max(ratios.values()) == pytest.approx(min(ratios.values()))
    assert erk["b"] == pytest.approx(erk["a"] * erk_raw(shapes["b"]) / erk_raw(shapes["a"]))
    er = layer_densities(shapes, 0.1, "er")
    assert er["a"] == pytest.approx(er["b"])  # same channels, different kernels
    assert er["a"] / er["fc"] == pytest.approx(((64 + 32) / (64 * 32)) / ((100 + 512) / 51200))


def test_erk_caps_a_tiny_layer_and_the_total_still_matches():
    shapes = {"tiny": (4, 3, 3, 3), "big": (256, 256, 3, 3)}
    total = 108 + 589824
    densities = layer_densities(shapes, 0.5, "erk")
    assert densities["tiny"] == 1.0
    assert densities["big"] == pytest.approx((0.5 * total - 108) / 589824)
    counts = layer_nonzeros(shapes, 0.5, "erk")
    assert counts == {"tiny": 108, "big": round(0.5 * total) - 108}


def test_erk_capping_reaches_rigls_fixed_point():
    """Several layers get capped: capped ones would exceed density 1 at the final scale, the
    others all share it, and no layer exceeds 1."""
    shapes = {"stem": (16, 3, 3, 3), "a": (16, 16, 3, 3), "b": (32, 16, 3, 3),
              "c": (256, 256, 3, 3), "fc": (10, 256)}
    densities = layer_densities(shapes, 0.6, "erk")
    capped = {name for name, density in densities.items() if density == 1.0}
    assert len(capped) >= 2 and "c" not in capped
    free = [name for name in shapes if name not in capped]
    scale = densities[free[0]] / erk_raw(shapes[free[0]])
    assert all(densities[name] / erk_raw(shapes[name]) == pytest.approx(scale) for name in free)
    assert all(scale * erk_raw(shapes[name]) >= 1 for name in capped)
    assert all(densities[name] < 1 for name in free)
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    assert sum(densities[n] * sizes[n] for n in shapes) == pytest.approx(0.6 * sum(sizes.values()))


def test_density_one_is_dense_for_every_distribution():
    shapes = SHAPES["small"]
    for distribution in ("uniform", "er", "erk"):
        counts = layer_nonzeros(shapes, 1.0, distribution)
        assert counts == {name: math.prod(shape) for name, shape in shapes.items()}


def test_rounding_remainders_go_to_the_largest_fractions_then_earlier_layers():
    shapes = {"a": (2, 5), "b": (2, 5), "c": (2, 5)}
    # ideal 3.5 each; round(10.5) == 10 (round half to even), so one layer gets the extra unit
    assert layer_nonzeros(shapes, 0.35, "uniform") == {"a": 4, "b": 3, "c": 3}
    shapes = {"a": (2, 5), "b": (4, 5), "c": (2, 5)}
    # ideal 3.6, 7.2, 3.6: total 14.4 -> 14; floors 13; the first of the two .6 wins
    assert layer_nonzeros(shapes, 0.36, "uniform") == {"a": 4, "b": 7, "c": 3}


@pytest.mark.parametrize("density, distribution", [
    (0.0, "erk"), (-0.1, "erk"), (1.5, "erk"), (0.5, "erdos_renyi"), (0.5, "ERK")])
def test_bad_arguments_raise_value_error(density, distribution):
    with pytest.raises(ValueError, match="allowed|density"):
        layer_nonzeros(SHAPES["small"], density, distribution)


def test_unknown_distribution_message_names_the_allowed_values():
    with pytest.raises(ValueError, match="uniform, er, erk"):
        layer_densities(SHAPES["small"], 0.5, "random")

