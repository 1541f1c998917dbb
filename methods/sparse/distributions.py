"""Layer-wise density allocation for sparse networks (paper Sec. 3.2.1 and App. A.1.1).

A sparse network at sparsity S keeps a fraction 1 - S of the weights of its masked layers.
How that budget is split over layers:

  * "uniform": every layer keeps 1 - S of its weights;
  * "er" (Erdős-Rényi, Mocanu et al. 2018): layer density proportional to
    (n_in + n_out) / (n_in * n_out), using only the channel dims;
  * "erk" (Erdős-Rényi-Kernel, Evci et al. 2020): proportional to sum(shape) / prod(shape),
    i.e. (n_in + n_out + kh + kw) / (n_in * n_out * kh * kw) for a conv; the paper's default.

ER/ERK scale the raw proportions by one factor eps so that the total matches the budget; a
layer whose density would exceed 1 is made dense and eps is re-solved over the rest (RigL's
loop), so the overall count is still exactly (1 - S) * total.

Shapes are PyTorch weight shapes: (out, in / groups, kh, kw) for convs, (out, in) for linears.
Layers kept dense outside the budget (RigL's dense first layer on ImageNet) are simply not
passed in: like RigL's custom sparsities they are left out of the ERK solve, so the masked
layers alone keep density 1 - S.
"""
import math

from torch import nn

DISTRIBUTIONS = ("uniform", "er", "erk")


def masked_shapes(shapes: dict[str, tuple[int, ...]], dense_first_layer: bool
                  ) -> dict[str, tuple[int, ...]]:
    """The conv/linear weight shapes (in model order) that get a mask: all of them, or with
    `dense_first_layer` all but the first conv's (the only 4-d weight shape that comes first;
    RigL keeps it dense on ImageNet). Layers left out count as dense in an overall density.
    The one place of that rule, for masks on a model and for plans from shapes alike."""
    shapes = dict(shapes)
    if dense_first_layer:
        shapes.pop(next((name for name, shape in shapes.items() if len(shape) == 4), None), None)
    return shapes


def prunable_layers(model: nn.Module, dense_first_layer: bool = False) -> dict[str, nn.Module]:
    """The nn.Conv2d and nn.Linear of `model` that get a mask (`masked_shapes`), by qualified
    name, in registration order."""
    layers = {name: module for name, module in model.named_modules()
              if isinstance(module, (nn.Conv2d, nn.Linear))}
    kept = masked_shapes({name: tuple(layer.weight.shape) for name, layer in layers.items()},
                         dense_first_layer)
    return {name: layers[name] for name in kept}


def _check(shapes: dict[str, tuple[int, ...]], density: float, distribution: str) -> None:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown sparsity distribution {distribution!r}; allowed: "
                         f"{', '.join(DISTRIBUTIONS)}")
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    if not shapes:
        raise ValueError("no layers to allocate a density to")
    for name, shape in shapes.items():
        if len(shape) < 2 or min(shape) < 1:
            raise ValueError(f"layer {name!r} has shape {tuple(shape)}; expected a conv or "
                             f"linear weight shape with at least 2 non-empty dims")


def _raw_density(shape: tuple[int, ...], distribution: str) -> float:
    """The unnormalised Erdős-Rényi density of one layer (App. A.1.1)."""
    if distribution == "er":
        n_out, n_in = shape[:2]
        return (n_in + n_out) / (n_in * n_out)
    return sum(shape) / math.prod(shape)


def layer_densities(shapes: dict[str, tuple[int, ...]], density: float,
                    distribution: str = "erk") -> dict[str, float]:
    """Per-layer densities whose weighted mean over `shapes` is exactly `density`."""
    _check(shapes, density, distribution)
    if distribution == "uniform" or density == 1:
        return {name: float(density) for name in shapes}
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: _raw_density(shape, distribution) for name, shape in shapes.items()}
    dense: set[str] = set()
    while True:
        free = [name for name in shapes if name not in dense]
        budget = density * sum(sizes.values()) - sum(sizes[name] for name in dense)
        eps = budget / sum(raw[name] * sizes[name] for name in free)
        # Capping a layer frees budget, which only raises eps: every layer over 1 now stays
        # over 1 after RigL's one-at-a-time capping, so capping them all at once is the same.
        over = {name for name in free if eps * raw[name] > 1}
        if not over:
            return {name: 1.0 if name in dense else eps * raw[name] for name in shapes}
        dense |= over


def layer_nonzeros(shapes: dict[str, tuple[int, ...]], density: float,
                   distribution: str = "erk") -> dict[str, int]:
    """Exact nonzero counts per layer, summing to round(density * total weights).

    Each layer gets the floor of its ideal count; the remaining units go, one each, to the
    layers with the largest fractional parts (ties: earlier layer first), so the overall
    density is 1 - S to within one weight and the result is deterministic.
    """
    densities = layer_densities(shapes, density, distribution)
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    ideal = {name: densities[name] * sizes[name] for name in shapes}
    counts = {name: min(math.floor(ideal[name]), sizes[name]) for name in shapes}
    missing = round(density * sum(sizes.values())) - sum(counts.values())
    has_room = [name for name in shapes if counts[name] < sizes[name]]
    # The floors lose less than one weight per layer and the rounding at most half a weight.
    assert 0 <= missing <= len(has_room), (missing, len(has_room))
    by_remainder = sorted(has_room, key=lambda name: counts[name] - ideal[name])
    for name in by_remainder[:missing]:
        counts[name] += 1
    return counts
