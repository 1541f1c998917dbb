"""Sparse training in sparse arithmetic: `SparsitySpec.kernels` (paper title: no overhead for
training; App. D counts a sparse step's FLOPs as the active weights' share of a dense one).

    dense   every masked conv runs F.conv2d on its masked dense weight (the default, and the
            golden reports' path)
    sparse  every masked float32 CPU conv runs the direct sparse kernels (harness/kernels/sparse_conv.py):
            forward, input gradient and the weight gradient at the active weights only
    auto    per layer, whichever of the two was faster, fwd + bwd, timed on the layer's first
            AUTO_BATCHES batches on this machine (alternating rounds on each, medians over
            all: one batch on a loaded machine picked sparse kernels where dense was faster)

Steps whose prune-and-grow needs the dense gradient (RigL growth; EDST's escape) run densely,
as the FLOPs convention counts them. The weight gradient off the mask is exactly zero either
way after Masking masks it, so masks and updates are the same; outputs differ from the dense
path only by float summation order. After each mask change the kernel's format of that layer
is rebuilt at its next forward; `rebuild_seconds` sums that cost. Without a C++ compiler the
kernels are unavailable and every layer stays dense (one log line says why).
"""
import statistics
import time
from typing import Callable

import torch
from torch import nn

from harness.kernels import sparse_conv
from harness.kernels.timing import round_seconds

KERNEL_CHOICES = ("dense", "sparse", "auto")
AUTO_BATCHES = 3
AUTO_ROUNDS = 2  # per batch


class TrainingKernels:
    """Routes the forward of `layers` (name -> conv) through the sparse kernels while attached;
    `mask_of(name)` gives a layer's current mask, `dense_step()` whether the step being
    computed needs the dense weight gradient."""

    def __init__(self, layers: dict[str, nn.Module], choice: str,
                 mask_of: Callable[[str], torch.Tensor], dense_step: Callable[[], bool]):
        self.layers = {name: layer for name, layer in layers.items()
                       if sparse_conv.supported(layer)}
        self.choice = choice
        self.mask_of = mask_of
        self.dense_step = dense_step
        self.patterns: dict[str, sparse_conv.Pattern] = {}
        self.sparse_layers: dict[str, bool] = {}  # auto's measured choice per layer
        self.timings: dict[str, dict[str, float]] = {}
        self._rounds: dict[str, tuple[list[float], list[float]]] = {}  # auto, while measuring
        self.rebuild_seconds = 0.0
        self.rebuilds = 0

    def attach(self) -> None:
        if not sparse_conv.available():
            return
        for name, layer in self.layers.items():
            layer._conv_forward = self._forward_of(name, layer)

    def detach(self) -> None:
        for layer in self.layers.values():
            layer.__dict__.pop("_conv_forward", None)
        self.patterns.clear()

    def masks_changed(self, name: str | None = None) -> None:
        """The mask of `name` (of every layer: None) changed: rebuild its format when next
        used."""
        if name is None:
            self.patterns.clear()
        else:
            self.patterns.pop(name, None)

    def _pattern(self, name: str) -> sparse_conv.Pattern:
        if name not in self.patterns:
            start = time.perf_counter()
            self.patterns[name] = sparse_conv.Pattern(self.mask_of(name).cpu())
            self.rebuild_seconds += time.perf_counter() - start
            self.rebuilds += 1
        return self.patterns[name]

    def _forward_of(self, name: str, layer: nn.Conv2d):
        dense = type(layer)._conv_forward

        def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
            grads = torch.is_grad_enabled()
            if (x.dtype != torch.float32 or (grads and self.dense_step())
                    or not self._sparse_wins(name, layer, x)):
                return dense(layer, x, weight, bias)
            return sparse_conv.sparse_conv2d(x, weight, bias, self._pattern(name),
                                             layer.stride[0], layer.padding[0])
        return forward

    def _sparse_wins(self, name: str, layer: nn.Conv2d, x: torch.Tensor) -> bool:
        if self.choice == "sparse":
            return True
        if name in self.sparse_layers:
            return self.sparse_layers[name]
        dense_s, sparse_s = self._rounds.setdefault(name, ([], []))
        dense, sparse = self._measure(name, layer, x)
        dense_s += dense
        sparse_s += sparse
        wins = statistics.median(sparse_s) < statistics.median(dense_s)
        if len(dense_s) >= AUTO_BATCHES * AUTO_ROUNDS:
            self.sparse_layers[name] = wins
            self.timings[name] = {"dense_seconds": statistics.median(dense_s),
                                  "sparse_seconds": statistics.median(sparse_s),
                                  "rounds": len(dense_s),
                                  "density": self._pattern(name).nonzeros / layer.weight.numel()}
            del self._rounds[name]
        return wins

    def _measure(self, name: str, layer: nn.Conv2d, x: torch.Tensor
                 ) -> tuple[list[float], list[float]]:
        """Seconds of this layer's forward and backward, dense conv and sparse kernels, in
        alternating rounds on a copy of this batch."""
        pattern = self._pattern(name)
        weight = layer.weight.detach().clone().requires_grad_()
        inputs = x.detach().clone().requires_grad_(x.requires_grad)
        dense = type(layer)._conv_forward

        def step(conv) -> Callable[[], None]:
            def run() -> None:
                with torch.enable_grad():
                    conv(inputs, weight).sum().backward()
            return run

        dense_s, sparse_s = round_seconds(
            [step(lambda i, w: dense(layer, i, w, None)),
             step(lambda i, w: sparse_conv.sparse_conv2d(i, w, None, pattern, layer.stride[0],
                                                         layer.padding[0]))], AUTO_ROUNDS)
        return dense_s, sparse_s
