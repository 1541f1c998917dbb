"""Sparse masks on any torch model, prune-and-grow (RigL, SET), and the hook that keeps them.

Conventions (paper Sec. 3.2.1, App. A.1 and C):
  * every nn.Conv2d / nn.Linear weight gets a boolean mask with an exact number of ones,
    allocated over layers by `distributions.layer_nonzeros` (ERK by default) and placed at
    seeded random positions; biases and normalisation layers stay dense;
  * masked weights are stored as zeros in the dense tensors and are exactly zero after every
    optimizer step, with momentum and weight decay on;
  * every `update_interval` optimizer steps (Algorithm 1, t mod ΔT = 0) each layer prunes the
    fraction p of its active weights with the smallest magnitude (Eq. 1) and regrows as many
    among the positions inactive after the prune, those just pruned included, by largest
    |dense gradient| (RigL, Eq. 2) or uniformly at random (SET); regrown weights start at
    exactly zero with their optimizer state (momentum) reset, and so do the pruned positions
    (`regrown_momentum = 'reset'`; 'carried' is the official CIFAR code's update, below);
  * p is constant (CIFAR, App. C) or cosine-annealed over the run (ImageNet, App. C), or over
    each phase of a method that restarts it (EDST, `restart_prune_rate_at`);
  * `exploration = False` turns parameter exploration off (the ablation of §5.3, Table 5):
    the initial masks are kept for the whole run, with no dense gradient computed;
  * `kernels` picks the arithmetic of the masked convs (methods/sparse/kernels.py): 'dense'
    (masked dense convs, the default), 'sparse' (direct sparse kernels between the steps that
    need the dense gradient) or 'auto' (per layer, whichever is faster here).

Unlike the official FreeTickets CIFAR code, the cosine decay really applies and a layer that
ERK made dense has nothing to prune or grow. Momentum of regrown weights (`regrown_momentum`):
§3 says "the activated weights are optimized by SGD with momentum and the non-activated weights
are forced to zero", so by default ('reset') gradients of masked weights are masked and a
regrown weight starts with zero momentum, as the official ImageNet code does too (its
`ImageNet/core.py` `apply_mask` masks the momentum buffer). The official CIFAR code
(`sparselearning/core.py` `apply_mask`, its momentum line commented out; `Masking.step`:
optimizer.step() on unmasked gradients, then weights *= mask) is 'carried': masked weights'
momentum buffers accumulate their dense gradient, and a regrown weight's first step applies it.
"""
import bisect
import math
from dataclasses import dataclass

import gin
import torch
from torch import nn

from harness.core import distributed
from harness.core.errors import UserError
from harness.engine.train import Hook, TrainState
from methods.sparse.distributions import (DISTRIBUTIONS, layer_densities, layer_nonzeros,
                                          masked_shapes, prunable_layers)
from methods.sparse.kernels import KERNEL_CHOICES, TrainingKernels

GROWTH = ("gradient", "random")
PRUNE_RATE_SCHEDULES = ("constant", "cosine")
REGROWN_MOMENTUM = ("reset", "carried")


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")
    return value


def check_sparsity(owner: str, sparsity: float) -> None:
    """The one range check of a sparsity setting: S in (0, 1) (S = 0 is the dense model, S = 1
    has no weights left)."""
    if not 0 < sparsity < 1:
        raise UserError(f"{owner}.sparsity must be in (0, 1), got {sparsity}")


def _check_settings(sparsity: float, distribution: str, update_interval: int,
                    prune_rate: float, prune_rate_schedule: str, growth: str,
                    kernels: str) -> None:
    check_sparsity("SparsitySpec", sparsity)
    _choice(kernels, KERNEL_CHOICES, "kernels")
    _choice(distribution, DISTRIBUTIONS, "distribution")
    if update_interval < 1:
        raise ValueError(f"update_interval must be >= 1, got {update_interval}")
    if not 0 <= prune_rate < 1:
        raise ValueError(f"prune_rate must be in [0, 1), got {prune_rate}")
    _choice(prune_rate_schedule, PRUNE_RATE_SCHEDULES, "prune_rate_schedule")
    _choice(growth, GROWTH, "growth")


@gin.configurable
@dataclass(frozen=True)
class SparsitySpec:
    """A run's sparse-training settings (§3.2.1, App. C), resolved once from gin (bind
    `SparsitySpec.<setting>`; a method passes its own `sparsity`) and read alike by the
    method's `validate`, its FLOPs plan (`configuration`) and its `Masking` hook. Bad settings
    fail when it is built: S outside (0, 1) as a UserError, the others as ValueError."""

    sparsity: float = 0.8
    distribution: str = "erk"
    dense_first_layer: bool = False  # RigL's dense first conv (ImageNet)
    update_interval: int = 1000  # dT, optimizer steps between prune-and-grow rounds
    prune_rate: float = 0.5  # p
    prune_rate_schedule: str = "constant"
    growth: str = "gradient"
    exploration: bool = True  # prune-and-grow at all (False: Table 5's ablation)
    kernels: str = "dense"  # 'dense' | 'sparse' | 'auto' (methods/sparse/kernels.py)
    regrown_momentum: str = "reset"  # 'reset' (§3) | 'carried' (official CIFAR code)

    def __post_init__(self):
        if not isinstance(self.exploration, bool):
            raise UserError(f"SparsitySpec.exploration must be True or False, got "
                            f"{self.exploration!r}")
        if self.regrown_momentum not in REGROWN_MOMENTUM:
            raise UserError(f"SparsitySpec.regrown_momentum must be one of "
                            f"{', '.join(REGROWN_MOMENTUM)}, got {self.regrown_momentum!r}")
        if self.regrown_momentum == "carried" and self.kernels != "dense":
            # sparse kernels compute no gradient of masked weights between updates
            raise UserError(f"SparsitySpec.regrown_momentum = 'carried' needs every masked "
                            f"weight's gradient at every step: set SparsitySpec.kernels = "
                            f"'dense', got {self.kernels!r}")
        try:
            _check_settings(self.sparsity, self.distribution, self.update_interval,
                            self.prune_rate, self.prune_rate_schedule, self.growth,
                            self.kernels)
        except ValueError as error:
            raise UserError(f"SparsitySpec: {error}") from error

    @property
    def dense_gradient_interval(self) -> int | None:
        """RigL's dT when growth needs the dense gradient (SET's random growth, and no
        exploration, need none)."""
        return self.update_interval if self.growth == "gradient" and self.exploration else None

    def configuration(self, layer_shapes: dict[str, tuple[int, ...]]) -> "MaskConfiguration":
        """What a `Masking` with this spec does to a model whose conv/linear weight shapes are
        `layer_shapes` (in model order), known without the model: for FLOPs plans (App. D)."""
        shapes = masked_shapes(layer_shapes, self.dense_first_layer)
        return MaskConfiguration(layer_densities(shapes, 1 - self.sparsity, self.distribution),
                                 self.dense_gradient_interval)


class Masking(Hook):
    """Keeps `model` sparse at `sparsity` and explores its connectivity (dynamic sparse
    training); attach it to `Trainer.fit` as a hook.

    `computed_dense_gradient(step)` says whether optimizer step `step` (1-based) needs the dense
    gradient (a FLOPs ledger counts a dense backward pass there); `last_update_step` is the
    last step whose dense gradient this hook kept.
    """

    def __init__(self, model: nn.Module, spec: SparsitySpec, seed: int = 0,
                 masks: dict[str, torch.Tensor] | None = None):
        self.model = model
        self.spec = spec
        self.sparsity = spec.sparsity
        self.update_interval = spec.update_interval
        self.prune_rate = spec.prune_rate
        self.prune_rate_schedule = spec.prune_rate_schedule
        self.growth = spec.growth
        self.explores = spec.exploration
        self.carries_momentum = spec.regrown_momentum == "carried"
        self.layers = prunable_layers(model, spec.dense_first_layer)
        if not self.layers:
            raise ValueError(f"{type(model).__name__} has no nn.Conv2d or nn.Linear to mask")
        self.layer_shapes = {name: tuple(layer.weight.shape)
                             for name, layer in self.layers.items()}
        self.optimizer: torch.optim.Optimizer | None = None
        self.total_steps: int | None = None
        self.last_update_step: int | None = None
        self.dense_grads: dict[str, torch.Tensor] | None = None
        self._requested_steps: set[int] = set()
        self._period_starts: list[int] = [0]
        self._next_step = 1  # the optimizer step the next forward pass computes
        self.kernels = (None if spec.kernels == "dense" else TrainingKernels(
            self.layers, spec.kernels, self._mask,
            lambda: self.computed_dense_gradient(self._next_step), model))
        # A CPU generator draws every random position, so masks do not depend on the device.
        self._generator = torch.Generator().manual_seed(seed)
        if masks is None:
            counts = layer_nonzeros(self.layer_shapes, 1.0 - spec.sparsity, spec.distribution)
            masks = {name: self._random_mask(name, counts[name]) for name in self.layers}
        self._set_masks(masks)
        self.apply_masks()

    def _random_mask(self, name: str, count: int) -> torch.Tensor:
        """Exactly `count` ones at seeded random positions (not Bernoulli: exact counts)."""
        weight = self.layers[name].weight
        flat = torch.zeros(weight.numel(), dtype=torch.bool)
        flat[torch.randperm(weight.numel(), generator=self._generator)[:count]] = True
        return flat.view(weight.shape).to(weight.device)

    def _mask(self, name: str) -> torch.Tensor:
        """The mask of `name` on its weight's device (the model may have moved since)."""
        weight, mask = self.layers[name].weight, self.masks[name]
        if mask.device != weight.device:
            mask = self.masks[name] = mask.to(weight.device)
        return mask

    @torch.no_grad()
    def apply_masks(self) -> None:
        """weights *= mask, for every masked layer."""
        for name, layer in self.layers.items():
            layer.weight.mul_(self._mask(name))

    def _count_nonzeros(self) -> None:
        # Prune-and-grow keeps every count, so they are counted only when masks are replaced:
        # the FLOPs ledger asks for densities after every step and a count syncs a GPU.
        self._nonzeros = {name: int(mask.count_nonzero()) for name, mask in self.masks.items()}

    def densities(self) -> dict[str, float]:
        """Fraction of active weights in each masked layer."""
        return {name: count / self.masks[name].numel() for name, count in self._nonzeros.items()}

    def overall_density(self) -> float:
        """Active fraction of all conv/linear weights; layers without a mask count as dense
        (RigL's convention for its dense first layer)."""
        every_layer = prunable_layers(self.model)
        total = sum(layer.weight.numel() for layer in every_layer.values())
        active = sum(self._nonzeros.get(name, layer.weight.numel())
                     for name, layer in every_layer.items())
        return active / total

    def freeze(self) -> None:
        """Stop exploring: the masks stay as they are for the rest of training (Static Sparse
        Ensemble, App. C)."""
        self.explores = False

    def is_update_step(self, step: int, total_steps: int | None = None) -> bool:
        """Whether optimizer step `step` (1-based) ends with a prune-and-grow: every
        `update_interval` steps (Algorithm 1), never at step 0 nor at the last step of the run
        (`total_steps`, by default the one seen at on_train_begin), whose regrown zeros would
        never be trained."""
        total_steps = self.total_steps if total_steps is None else total_steps
        return (self.explores and step > 0 and step % self.update_interval == 0
                and (total_steps is None or step < total_steps))

    def restart_prune_rate_at(self, steps) -> None:
        """Anneal a cosine prune rate over each span between these optimizer steps (and the
        run's end) instead of over the whole run (EDST's phases)."""
        self._period_starts = sorted({0, *steps})

    def current_prune_rate(self, step: int, total_steps: int) -> float:
        """p, constant or cosine-annealed over the current period [start, end) (the whole run
        unless restarted): p * (1 + cos(pi * (step - start) / (end - start))) / 2."""
        if self.prune_rate_schedule == "constant":
            return self.prune_rate
        period = bisect.bisect_right(self._period_starts, step) - 1
        start = self._period_starts[period]
        end = (self._period_starts[period + 1] if period + 1 < len(self._period_starts)
               else total_steps)
        return self.prune_rate * 0.5 * (1 + math.cos(math.pi * (step - start) / (end - start)))

    def request_dense_grads(self, step: int) -> None:
        """Keep the dense gradient of optimizer step `step` too, for a prune_and_grow that
        another hook calls in that step's after_optimizer_step (e.g. EDST's escape, App. B)."""
        self._requested_steps.add(step)

    def computed_dense_gradient(self, step: int, total_steps: int | None = None) -> bool:
        """Whether step `step` needs the dense gradient: an update step with gradient growth
        (RigL; SET's random growth needs none), or a step given to request_dense_grads."""
        return ((self.growth == "gradient" and self.is_update_step(step, total_steps))
                or step in self._requested_steps)

    @torch.no_grad()
    def prune_and_grow(self, fraction: float, growth: str | None = None,
                       dense_grads: dict[str, torch.Tensor] | None = None) -> dict[str, int]:
        """One round of parameter exploration (Sec. 3.2.1, Eq. 1-2) on every masked layer.

        Each layer prunes round(fraction * active) of its smallest-magnitude active weights
        and grows as many among the positions inactive after the prune, the ones just pruned
        included (Eq. 2, RigL), by largest |dense_grads| ("gradient", RigL) or at random
        ("random", SET). A dense layer is left alone. Gradient growth defaults to
        the dense gradient this hook kept at the current step. Returns, per layer, the number
        of weights pruned (= number grown).
        """
        if not 0 <= fraction <= 1:
            raise ValueError(f"prune_and_grow fraction must be in [0, 1], got {fraction}")
        growth = self.growth if growth is None else _choice(growth, GROWTH, "growth")
        if growth == "gradient":
            dense_grads = self.dense_grads if dense_grads is None else dense_grads
            if dense_grads is None:
                raise ValueError("gradient growth needs the dense gradient: pass dense_grads, "
                                 "or call it during an update step or a step given to "
                                 "request_dense_grads")
        return {name: self._rewire(name, fraction,
                                   dense_grads[name] if growth == "gradient" else None)
                for name in self.layers}

    def _rewire(self, name: str, fraction: float, grad: torch.Tensor | None) -> int:
        weight = self.layers[name].weight
        mask = self._mask(name).reshape(-1)
        active = int(mask.sum())
        count = round(fraction * active) if active < mask.numel() else 0
        if count == 0:
            return 0
        magnitude = weight.detach().abs().reshape(-1).masked_fill(~mask, math.inf)
        pruned = magnitude.topk(count, largest=False).indices
        kept = mask.clone()
        kept[pruned] = False
        # Candidates are every position inactive after the prune, the ones just pruned too
        # (Eq. 2; RigL): a pruned weight with a large gradient comes back, at zero.
        grown = self._growth_scores(weight, grad).masked_fill(kept, -math.inf).topk(count).indices
        new_mask = kept.clone()
        new_mask[grown] = True
        changed = torch.zeros_like(mask)
        changed[pruned] = True
        changed[grown] = True
        self.masks[name] = new_mask.view(weight.shape)
        if self.kernels is not None:
            self.kernels.masks_changed(name)
        changed = changed.view(weight.shape)
        weight.masked_fill_(changed, 0)
        if not self.carries_momentum:
            self._reset_optimizer_state(weight, changed)
        return count

    def _growth_scores(self, weight: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
        if grad is None:
            return torch.rand(weight.numel(), generator=self._generator).to(weight.device)
        return grad.detach().abs().reshape(-1).to(weight.device)

    def _reset_optimizer_state(self, weight: torch.Tensor, changed: torch.Tensor) -> None:
        """Zero every per-weight optimizer buffer (SGD momentum, Adam moments) at `changed`,
        so a regrown weight starts from a clean slate (the official code forgot this)."""
        if self.optimizer is None:
            return
        for value in self.optimizer.state.get(weight, {}).values():
            if torch.is_tensor(value) and value.shape == weight.shape:
                value.masked_fill_(changed, 0)

    def on_train_begin(self, state: TrainState) -> None:
        """Under torchrun every process starts from rank 0's masks; afterwards each makes the
        same prune-and-grow choices, as their scores agree: the weights are equal and the
        dense gradients already averaged over processes (harness/core/distributed.py), and random
        growth draws from a generator seeded alike."""
        self.optimizer = state.optimizer
        self.total_steps = state.total_steps
        self._next_step = state.step + 1
        if self.kernels is not None:
            self.kernels.attach()
        if distributed.active():
            for name, mask in self.masks.items():
                self.masks[name] = distributed.broadcast_(mask.to(torch.uint8)).bool()
            self._count_nonzeros()
        self.apply_masks()

    @torch.no_grad()
    def before_optimizer_step(self, state: TrainState) -> None:
        """Keep the dense gradient when this step explores, then mask the gradients so that
        neither momentum nor weight decay moves a masked weight; with 'carried' momentum the
        gradients stay dense (the official CIFAR code) and `after_optimizer_step` zeroes the
        masked weights again."""
        self.optimizer = state.optimizer
        step = state.step + 1
        self.dense_grads = None
        if self.computed_dense_gradient(step, state.total_steps):
            self.dense_grads = {name: torch.zeros_like(layer.weight)
                                if layer.weight.grad is None
                                else layer.weight.grad.detach().clone()
                                for name, layer in self.layers.items()}
            self.last_update_step = step
        if self.carries_momentum:
            return
        for name, layer in self.layers.items():
            if layer.weight.grad is not None:
                layer.weight.grad.mul_(self._mask(name))

    def after_optimizer_step(self, state: TrainState) -> None:
        self._next_step = state.step + 1
        self.apply_masks()
        if self.is_update_step(state.step, state.total_steps):
            self.prune_and_grow(self.current_prune_rate(state.step, state.total_steps))

    def on_train_end(self, state: TrainState) -> None:
        if self.kernels is not None:
            self.kernels.detach()

    def record(self) -> dict:
        """The sparse kernels this stage trained with (methods/sparse/kernels.py
        `TrainingKernels.record`), for summary.json; nothing under kernels = 'dense'."""
        return {} if self.kernels is None else {"sparse_kernels": self.kernels.record()}

    def state_dict(self) -> dict:
        return {"masks": {name: mask.cpu() for name, mask in self.masks.items()},
                "generator": self._generator.get_state(),
                "last_update_step": self.last_update_step,
                "requested_steps": sorted(self._requested_steps),
                **({} if self.kernels is None else {"kernels": self.kernels.state_dict()})}

    def _set_masks(self, masks: dict[str, torch.Tensor]) -> None:
        if masks.keys() != self.layer_shapes.keys() or any(
                tuple(masks[name].shape) != shape for name, shape in self.layer_shapes.items()):
            raise ValueError("masks do not match this model's masked layers")
        self.masks = {name: masks[name].to(device=self.layers[name].weight.device,
                                           dtype=torch.bool) for name in self.layers}
        if self.kernels is not None:
            self.kernels.masks_changed()
        self._count_nonzeros()

    def load_state_dict(self, state: dict) -> None:
        self._set_masks(state["masks"])
        self._generator.set_state(state["generator"])
        self.last_update_step = state["last_update_step"]
        self._requested_steps = set(state["requested_steps"])
        # A checkpoint of a run trained with dense kernels, or before rebuilds were counted,
        # has none.
        if self.kernels is not None and "kernels" in state:
            self.kernels.load_state_dict(state["kernels"])
        self.apply_masks()


@dataclass(frozen=True)
class MaskConfiguration:
    """What a Masking of a `SparsitySpec` would do, known without a model: for FLOPs plans
    (App. D) and for checking a configuration before training."""

    densities: dict[str, float]  # per masked layer; layers left out are dense
    dense_gradient_interval: int | None  # RigL's dT when growth needs the dense gradient
