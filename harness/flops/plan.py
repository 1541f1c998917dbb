"""Planned FLOPs of a configuration, before any training (paper App. D, Tables 1-3 and 6).

A method plans its own run from a `PlanContext` (the dense model's per-layer forward FLOPs,
its layer shapes and the run's step geometry) and returns a `FlopsPlan`: total training FLOPs
and each test member's forward FLOPs. Ratios are normalised by the dense single model trained
at the paper's reference schedule (`reference_epochs`).
"""
from dataclasses import dataclass
from typing import Callable

from torch import nn

from harness.engine import scale
from harness.data.facts import facts
from harness.flops import dense_forward_flops

def reference_epochs(dataset: str) -> int:
    """Epochs of the dense single model the paper's ratios divide by (harness/data/facts.py)."""
    return facts(dataset).reference_epochs


@dataclass(frozen=True)
class PlanContext:
    layer_flops: dict[str, int]  # dense forward FLOPs per example of each conv/linear layer
    layer_shapes: dict[str, tuple[int, ...]]  # their weight shapes
    train_examples: int
    batch_size: int
    epochs: int  # the trainer's epochs at the configured scale
    paper_epochs: int  # the same at paper scale, as configured
    architecture: str = ""
    image_shape: tuple[int, ...] = ()  # one example's shape, without the batch dim
    model_factory: Callable[..., nn.Module] | None = None  # harness.models.build_model options

    @property
    def dense_forward(self) -> int:
        return dense_forward_flops(self.layer_flops)

    @property
    def steps_per_epoch(self) -> int:
        return self.train_examples // self.batch_size

    def steps(self, epochs: int | None = None) -> int:
        return (self.epochs if epochs is None else epochs) * self.steps_per_epoch


@dataclass(frozen=True)
class FlopsPlan:
    train_flops: float
    member_forward_flops: tuple[float, ...]


def reference_train_flops(context: PlanContext, dataset: str) -> float:
    """Training FLOPs of the dense single model at the reference schedule, at this scale."""
    epochs = scale.epochs(reference_epochs(dataset))
    return 3 * context.dense_forward * context.steps(epochs) * context.batch_size
