"""The FLOPs counting of harness/flops (its conventions: the package's docstring): forward
FLOPs per layer, the training and test FLOPs built on them, and the ledger that measures a
run's."""
import contextlib
import contextvars
from typing import Callable, Iterable, Protocol, runtime_checkable

import torch
from torch import nn

from harness.engine.train import Hook, TrainState

COUNTED_LAYERS = (nn.Conv2d, nn.Linear)


@runtime_checkable
class Connectivity(Protocol):
    """What a sparse-training hook tells the ledger: the current per-layer densities, and
    whether an optimizer step computed the dense weight gradient (to grow by it)."""

    def densities(self) -> dict[str, float]:
        ...

    def computed_dense_gradient(self, step: int) -> bool:
        ...


def counted_layer_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(module.weight.shape) for name, module in model.named_modules()
            if isinstance(module, COUNTED_LAYERS)}


def weight_densities(model: nn.Module) -> dict[str, float]:
    """Nonzero fraction of each counted layer's weights: what a trained (possibly pruned)
    network costs at test time."""
    return {name: float(module.weight.count_nonzero()) / module.weight.numel()
            for name, module in model.named_modules() if isinstance(module, COUNTED_LAYERS)}


def _layer_flops(module: nn.Module, output: torch.Tensor) -> int:
    """2 x multiply-adds of one call on a batch of one example.

    Conv: 2 * out_h * out_w * out_c * (in_c / groups) * kh * kw. Linear: 2 * in * out for each
    position it is applied to (one for a [1, in] input).
    """
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return 2 * output.numel() * (module.in_channels // module.groups) * kh * kw
    return 2 * output.numel() * module.in_features


def layer_forward_flops(model: nn.Module, input_shape: tuple[int, ...], rows: int = 1
                        ) -> dict[str, int]:
    """Per-row forward FLOPs of every nn.Conv2d / nn.Linear of `model`, by qualified name.

    Counted by forward hooks that apply the closed-form 2 x MACs formulas of `_layer_flops` to
    the shapes seen in one forward pass of a batch of `rows` zero inputs of `input_shape`
    (without the batch dim), divided by `rows`: one row is one example for a plain network;
    a network that splits its batch among M members (BatchEnsemble) is probed with M rows.
    The hooks read shapes only, so a model built on the meta device
    (`with torch.device("meta"): ...`) is counted without allocating or computing anything.
    A layer called several times in one forward is counted at every call; a layer the forward
    never reaches is absent.

    The pass runs in eval mode under no_grad, so BatchNorm running statistics are untouched,
    and every module's train/eval flag is restored afterwards (a model may keep some modules,
    e.g. MC dropout, in train mode on purpose).
    """
    flops: dict[str, int] = {}

    def hook_for(name: str):
        def hook(module, inputs, output):
            flops[name] = flops.get(name, 0) + _layer_flops(module, output) // rows
        return hook

    handles = [module.register_forward_hook(hook_for(name))
               for name, module in model.named_modules() if isinstance(module, COUNTED_LAYERS)]
    modes = {module: module.training for module in model.modules()}
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else None
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((rows, *input_shape), device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return flops


def dense_forward_flops(layer_flops: dict[str, int]) -> int:
    """f_D: the dense model's forward FLOPs per example."""
    return sum(layer_flops.values())


_DENSE_KERNELS = contextvars.ContextVar("dense_kernels", default=False)


@contextlib.contextmanager
def as_executed():
    """Within it, planned FLOPs count what a GPU executes rather than the paper's convention:
    masked weights are multiplied densely (zeros included), so every density is 1 and a DST
    step costs 3 f_D. Only the compute plan (harness/tables/compute_plan.py) uses it."""
    token = _DENSE_KERNELS.set(True)
    try:
        yield
    finally:
        _DENSE_KERNELS.reset(token)


def sparse_forward_flops(layer_flops: dict[str, int], densities: dict[str, float]) -> float:
    """f_S: forward FLOPs per example with each layer scaled by its density (RigL App. H);
    layers absent from `densities` are dense (e.g. RigL's dense first layer).

    A density naming no counted layer is an error rather than ignored: it is almost always a
    naming mismatch (say a `module.` prefix) that would silently count a sparse net as dense.
    """
    unknown = sorted(set(densities) - set(layer_flops))
    if unknown:
        raise ValueError(f"densities given for layers that are not counted: {unknown}")
    for name, density in densities.items():
        if not 0 <= density <= 1:
            raise ValueError(f"density of layer {name!r} must be in [0, 1], got {density}")
    if _DENSE_KERNELS.get():
        return dense_forward_flops(layer_flops)
    return sum(flops * densities.get(name, 1.0) for name, flops in layer_flops.items())


def dst_step_flops(f_sparse: float, f_dense: float, update_interval: int | None) -> float:
    """Training FLOPs per example and step, averaged over a run (RigL App. H, paper App. D).

    `update_interval=None` (dense, static sparse, or any method without dense gradients):
    3 f_S, the forward plus a backward of twice its cost.

    With an update interval dT (RigL): a cycle is dT ordinary steps of 3 f_S each, then one
    exploration step that computes the sparse forward (f_S), the activation gradients (f_S)
    and the *dense* weight gradient (f_D) to rank the connections to grow:
    (3 f_S dT + 2 f_S + f_D) / (dT + 1). SET grows at random and needs no dense gradient:
    give it None.

    A run that explores every dT-th step (dT - 1 ordinary steps between explorations) really
    costs `dst_step_flops(f_S, f_D, dT - 1)`, which `FlopsLedger` measures; RigL's formula at
    dT differs from it by (f_D - f_S) / (dT (dT + 1)) per step, a relative 1e-6 at dT = 1000.
    """
    if update_interval is None:
        return 3 * f_sparse
    if update_interval < 1:
        raise ValueError(f"update_interval must be >= 1 or None, got {update_interval}")
    return (3 * f_sparse * update_interval + 2 * f_sparse + f_dense) / (update_interval + 1)


def training_flops(f_sparse: float, f_dense: float, steps: int, batch_size: int,
                   update_interval: int | None = None) -> float:
    """Planned training FLOPs of a run of `steps` optimizer steps on batches of `batch_size`."""
    return steps * batch_size * dst_step_flops(f_sparse, f_dense, update_interval)


def ensemble_test_flops(member_forward_flops: Iterable[float]) -> float:
    """Test FLOPs per example of an ensemble: every member runs its own forward (paper
    Table 6: a dense M-member ensemble costs M x, M sparse members M x f_S / f_D)."""
    return sum(member_forward_flops)


def ledger_for(layer_flops: dict[str, int], hooks: Iterable[Hook]) -> "FlopsLedger":
    """A ledger that follows the run's sparse-training hook, if it has one."""
    sparse = [hook for hook in hooks if isinstance(hook, Connectivity)]
    if len(sparse) > 1:
        raise ValueError("a run can have at most one sparse-connectivity hook")
    if not sparse:
        return FlopsLedger(layer_flops)
    return FlopsLedger(layer_flops, sparse[0].densities, sparse[0].computed_dense_gradient)


class FlopsLedger(Hook):
    """Counts a run's training FLOPs step by step, as they happen.

    After every optimizer step it adds rows x 3 x f(current densities), with
    f = `sparse_forward_flops(layer_flops, density_fn())` (f_D when `density_fn` is None), so
    pruning schedules (GMP) and density changes are charged as they occur. When
    `dense_gradient_fn(step)` is true, `step` being `state.step` (1-based: the step just
    done), that step also computed RigL's dense weight gradient: it costs 2 f_S + f_D instead
    of 3 f_S (see `dst_step_flops`), so rows x (f_D - f_S) is added on top. Over dT
    ordinary steps plus one such step the ledger therefore holds exactly
    rows x (3 f_S dT + 2 f_S + f_D) = rows x (dT + 1) x dst_step_flops(...).
    `rows` is what the network processed in the step (`TrainState.rows`, set by the run's
    batch format): the batch size, or e.g. M x batch size for BatchEnsemble's tiled batch;
    `layer_flops` are per row.

    `density_fn` runs once per step, so it should be cheap (e.g. return cached mask counts).
    `total_flops` stays an exact int while every step's cost is integral (dense runs). A
    ledger keeps accumulating over every `fit` it is attached to (e.g. the M runs of an
    ensemble), and its counters travel in the Trainer's checkpoints for exact resumption.
    """

    def __init__(self, layer_flops: dict[str, int],
                 density_fn: Callable[[], dict[str, float]] | None = None,
                 dense_gradient_fn: Callable[[int], bool] | None = None):
        self.layer_flops = dict(layer_flops)
        self.dense_flops = dense_forward_flops(self.layer_flops)
        self.density_fn = density_fn
        self.dense_gradient_fn = dense_gradient_fn
        self.total_flops: float = 0
        self.steps = 0
        self.examples = 0
        self.dense_gradient_steps = 0

    def forward_flops(self) -> float:
        """Per-example forward FLOPs of the model as it is now."""
        if self.density_fn is None:
            return self.dense_flops
        return sparse_forward_flops(self.layer_flops, self.density_fn())

    def after_optimizer_step(self, state: TrainState) -> None:
        forward = self.forward_flops()
        cost = 3 * forward
        if self.dense_gradient_fn is not None and self.dense_gradient_fn(state.step):
            cost += self.dense_flops - forward
            self.dense_gradient_steps += 1
        self.total_flops += state.rows * cost
        self.steps += 1
        self.examples += state.batch_size

    def state_dict(self) -> dict:
        return {"total_flops": self.total_flops, "steps": self.steps,
                "examples": self.examples, "dense_gradient_steps": self.dense_gradient_steps}

    def load_state_dict(self, state: dict) -> None:
        self.total_flops = state["total_flops"]
        self.steps = state["steps"]
        self.examples = state["examples"]
        self.dense_gradient_steps = state["dense_gradient_steps"]

    def as_dict(self) -> dict:
        """The counters plus the model's dense forward FLOPs, for `flops.json`."""
        return {**self.state_dict(), "dense_forward_flops": self.dense_flops}
