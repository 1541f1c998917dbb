"""Masks from trained weights: magnitude pruning, one-shot (Han et al. 2015) or gradual (Zhu &
Gupta 2017), for the pruning ensembles (paper §4, footnote 2, App. C: LTR and PF).

  * `magnitude_masks` keeps the largest |w|: with scope "global" one threshold over all masked
    layers (the k = round((1 - S) N) largest of all N weights), so layers end at different
    densities; with "layerwise" every layer keeps round((1 - S) n_l) of its own n_l weights.
    Counts are exact (top-k, not a threshold test that ties could overshoot).
  * `GradualPruning` is a training hook that prunes by magnitude every dt steps from step t0
    to t0 + n dt along Zhu & Gupta's cubic schedule
        s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3,   s_i = 0,
    keeps masked weights at exactly zero afterwards (gradients and momentum masked), and tells
    the FLOPs ledger its falling densities step by step (`harness.flops.Connectivity`).
"""
import math

import torch
from torch import nn

from harness.flops import sparse_forward_flops
from harness.engine.train import Hook, TrainState

SCOPES = ("global", "layerwise")


def magnitude_masks(layers: dict[str, nn.Module], sparsity: float,
                    scope: str = "global") -> dict[str, torch.Tensor]:
    """Boolean masks keeping the largest-magnitude weights of `layers` at `sparsity`."""
    if scope not in SCOPES:
        raise ValueError(f"unknown pruning scope {scope!r}; allowed: {', '.join(SCOPES)}")
    magnitudes = {name: layer.weight.detach().abs().reshape(-1) for name, layer in layers.items()}
    if scope == "layerwise":
        return {name: _keep_largest(magnitude, round((1 - sparsity) * magnitude.numel()))
                .view(layers[name].weight.shape) for name, magnitude in magnitudes.items()}
    every = torch.cat(list(magnitudes.values()))
    kept = _keep_largest(every, round((1 - sparsity) * every.numel())).split(
        [magnitude.numel() for magnitude in magnitudes.values()])
    return {name: mask.view(layers[name].weight.shape) for name, mask in zip(layers, kept)}


def _keep_largest(magnitude: torch.Tensor, count: int) -> torch.Tensor:
    mask = torch.zeros_like(magnitude, dtype=torch.bool)
    mask[magnitude.topk(count).indices] = True
    return mask


def pruning_steps(start: float, end: float, prunings: int, total_steps: int) -> list[int]:
    """The optimizer steps t0 + k dt (k = 1..n) after which GMP prunes: t0 = start x total,
    dt = floor((end - start) x total / n). Empty when dt < 1 (a schedule that does not fit)."""
    first = round(start * total_steps)
    interval = (round(end * total_steps) - first) // prunings
    return [first + k * interval for k in range(1, prunings + 1)] if interval >= 1 else []


def cubic_sparsity(final: float, pruning: int, prunings: int) -> float:
    """Zhu & Gupta's s_t after the `pruning`-th of n prunings (s_i = 0): s_f (1 - (1 - k/n)^3)."""
    return final * (1 - (1 - pruning / prunings) ** 3)


class GradualPruning(Hook):
    """Gradual magnitude pruning of `layers` (Zhu & Gupta 2017) to `sparsity`: `prunings` = n
    prunings evenly spread from `start` to `end` (fractions of the run); see the module text."""

    def __init__(self, layers: dict[str, nn.Module], sparsity: float, start: float, end: float,
                 prunings: int, scope: str = "layerwise"):
        self.layers = layers
        self.sparsity = sparsity
        self.start, self.end, self.prunings = start, end, prunings
        self.scope = scope
        self.masks = {name: torch.ones_like(layer.weight, dtype=torch.bool)
                      for name, layer in layers.items()}
        self.steps: list[int] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self._count_nonzeros()

    def _count_nonzeros(self) -> None:
        self._nonzeros = {name: int(mask.count_nonzero()) for name, mask in self.masks.items()}

    def densities(self) -> dict[str, float]:
        return {name: count / self.masks[name].numel() for name, count in self._nonzeros.items()}

    def computed_dense_gradient(self, step: int) -> bool:
        return False  # magnitude pruning needs no dense gradient

    @torch.no_grad()
    def apply_masks(self) -> None:
        for name, layer in self.layers.items():
            layer.weight.mul_(self.masks[name])

    def on_train_begin(self, state: TrainState) -> None:
        self.steps = pruning_steps(self.start, self.end, self.prunings, state.total_steps)
        self.optimizer = state.optimizer
        self.apply_masks()

    @torch.no_grad()
    def before_optimizer_step(self, state: TrainState) -> None:
        for name, layer in self.layers.items():
            if layer.weight.grad is not None:
                layer.weight.grad.mul_(self.masks[name])

    @torch.no_grad()
    def after_optimizer_step(self, state: TrainState) -> None:
        self.optimizer = state.optimizer
        self.apply_masks()
        if state.step in self.steps:
            sparsity = cubic_sparsity(self.sparsity, self.steps.index(state.step) + 1,
                                      self.prunings)
            self.masks = magnitude_masks(self.layers, sparsity, self.scope)
            self._count_nonzeros()
            self.apply_masks()
            for name, layer in self.layers.items():  # a pruned weight keeps no momentum
                for value in self.optimizer.state.get(layer.weight, {}).values():
                    if torch.is_tensor(value) and value.shape == layer.weight.shape:
                        value.mul_(self.masks[name])

    def state_dict(self) -> dict:
        return {"masks": {name: mask.cpu() for name, mask in self.masks.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.masks = {name: state["masks"][name].to(self.layers[name].weight.device)
                      for name in self.layers}
        self._count_nonzeros()
        self.apply_masks()


def planned_pruning_flops(layer_flops: dict[str, int], layer_shapes: dict[str, tuple],
                          sparsity: float, start: float, end: float, prunings: int,
                          total_steps: int, batch_size: int) -> float:
    """Training FLOPs of a dense run under layer-wise `GradualPruning`, summed step by step in
    the order `FlopsLedger` adds them (the same densities, the same float sums)."""
    steps = pruning_steps(start, end, prunings, total_steps)
    forward = sparse_forward_flops(layer_flops, {name: 1.0 for name in layer_shapes})
    total: float = 0
    for step in range(1, total_steps + 1):
        if step in steps:
            level = cubic_sparsity(sparsity, steps.index(step) + 1, prunings)
            forward = sparse_forward_flops(layer_flops, {
                name: round((1 - level) * math.prod(shape)) / math.prod(shape)
                for name, shape in layer_shapes.items()})
        total += batch_size * (3 * forward)
    return total
