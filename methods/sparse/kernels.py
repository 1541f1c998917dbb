"""Sparse training in sparse arithmetic: `SparsitySpec.kernels` (paper title: no overhead for
training; App. D counts a sparse step's FLOPs as the active weights' share of a dense one).

    dense   every masked conv runs F.conv2d on its masked dense weight (the default, and the
            golden reports' path)
    sparse  every masked float32 CPU conv runs the direct sparse kernels (harness/kernels/sparse_conv.py):
            forward, input gradient and the weight gradient at the active weights only
    auto    per layer, measured on this machine: forward + backward of the dense conv and
            of the sparse kernels at each tile width (sparse_conv.TILE_VECTORS) in
            alternating rounds on the layer's first AUTO_BATCHES batches (AUTO_ROUNDS each, 9
            in all); the layer runs sparse, at its faster tile, only when that tile's median
            round is more than AUTO_MARGIN (8%) below the dense conv's median round: where the
            two are within a few percent, or dense is faster, it runs dense

Why 'auto' decides so: masked dense is the cheaper choice to be wrong about. It computes
exactly the dense path's numbers and rebuilds nothing after a mask update, while a sparse layer
pays its format's rebuild after every update (`rebuild_seconds`), which the rounds do not
time; so the sparse kernels must win by more than two medians of the same kernel differ under
load (AUTO_MARGIN). Medians over nine rounds are what a burst of load from another process
leaves alone (harness/kernels/timing.py). The measuring stays bounded: each layer runs its
forward and backward AUTO_BATCHES x (1 warm-up + AUTO_ROUNDS) = 12 times each way, on the
run's first batches only (again after a resume, on the machine that continues it), and runs
dense while it is measured.

Pre-activation blocks (harness/kernels/inference.py `pre_activation_block`: the WRNs'), where a
stride-1 conv runs sparse: the batch-norm and ReLU before it and the residual sum after it run
with it (sparse_conv.normalized_conv2d): the batch statistics in one pass, normalisation and
ReLU applied as the kernels lay the input out, the residual added as the conv writes, the
input gradient gated by the ReLU as it is written. That is every block's conv2 and, in blocks
whose shortcut is the identity, conv1. Neither the batch-norm's nor the ReLU's output is kept
for the backward pass. Measured on one core (Zen 3, AVX2), batch 128: a 128 -> 128 conv at
16x16, density 0.1, took 223 ms fused against 267 ms op by op for forward and backward (torch's
batch-norm forward alone 19 ms, mostly its statistics pass); the WRN-16-4 step at S = 0.9,
3.32 s against 3.45 s. The numbers agree with the op-by-op path within float summation order.
Blocks run op by op while a conv is measured, on dense-gradient steps, in eval mode and where a
hook watches the layers.

Steps whose prune-and-grow needs the dense gradient (RigL growth; EDST's escape) run densely,
as the FLOPs convention counts them. The weight gradient off the mask is exactly zero either
way after Masking masks it, so masks and updates are the same; outputs differ from the dense
path only by float summation order. After each mask change the kernel's format of that layer
is rebuilt at its next forward; `rebuilds` and `rebuild_seconds` count that cost over the
whole training, resumes included. `record()` is what the run keeps of it (summary.json
`sparse_kernels`, per stage). Without a C++ compiler the kernels are unavailable and every
layer stays dense (one log line says why).
"""
import statistics
import time
from typing import Callable

import torch
from torch import nn

from harness.kernels import sparse_conv
from harness.kernels.inference import pre_activation_block
from harness.kernels.timing import round_seconds

KERNEL_CHOICES = ("dense", "sparse", "auto")
AUTO_BATCHES = 3
AUTO_ROUNDS = 3  # per batch: AUTO_BATCHES x AUTO_ROUNDS = 9 rounds, at least 7 for a median
# Two medians of the same dense conv's forward and backward, measured as above (9 rounds on 3
# batches), differed by 3.5% at the median and by 7.8% at most over 16 repeats (WRN-10-2's
# 64->64 conv at 16x16 and 128->128 at 8x8, batch 128 as at the cpu scale, one thread, on a
# 2-core machine with a test run on the other core): a smaller lead is noise.
AUTO_MARGIN = 0.08


class TrainingKernels:
    """Routes the forward of `layers` (name -> conv) through the sparse kernels while attached;
    `mask_of(name)` gives a layer's current mask, `dense_step()` whether the step being
    computed needs the dense weight gradient; the pre-activation blocks of `model` whose convs
    are among `layers` run fused (module docstring)."""

    def __init__(self, layers: dict[str, nn.Module], choice: str,
                 mask_of: Callable[[str], torch.Tensor], dense_step: Callable[[], bool],
                 model: nn.Module | None = None):
        self.layers = {name: layer for name, layer in layers.items()
                       if sparse_conv.supported(layer)}
        self.blocks = {} if model is None else {
            name: block for name, block in model.named_modules()
            if pre_activation_block(block)
            and {f"{name}.conv1", f"{name}.conv2"} <= self.layers.keys()}
        self.fused_layers: set[str] = set()  # convs that ran with their batch-norm fused
        self.choice = choice
        self.mask_of = mask_of
        self.dense_step = dense_step
        self.patterns: dict[str, sparse_conv.Pattern] = {}
        self.sparse_layers: dict[str, bool] = {}  # auto's decision per layer, once measured
        self.timings: dict[str, dict[str, float]] = {}
        self._rounds: dict[str, list[list[float]]] = {}  # auto, while measuring: dense, tiles
        self.rebuild_seconds = 0.0
        self.rebuilds = 0

    def attach(self) -> None:
        if not sparse_conv.available():
            return
        for name, layer in self.layers.items():
            layer._conv_forward = self._forward_of(name, layer)
        for name, block in self.blocks.items():
            block.forward = self._block_forward_of(name, block)

    def detach(self) -> None:
        for layer in self.layers.values():
            layer.__dict__.pop("_conv_forward", None)
        for block in self.blocks.values():
            block.__dict__.pop("forward", None)
        self.patterns.clear()

    def masks_changed(self, name: str | None = None) -> None:
        """The mask of `name` (of every layer: None) changed: rebuild its format when next
        used."""
        if name is None:
            self.patterns.clear()
        else:
            self.patterns.pop(name, None)

    def record(self) -> dict:
        """What a run keeps of its kernels (summary.json `sparse_kernels`, per stage): the
        setting, per layer the kernels its training steps ran on ('sparse' or 'dense') with
        auto's median seconds of each, and the format rebuilds after mask updates."""
        available = sparse_conv.available()
        layers = {}
        for name, layer in self.layers.items():
            runs_sparse = (available and layer.weight.dtype == torch.float32
                           and (self.choice == "sparse" or self.sparse_layers.get(name, False)))
            layers[name] = {"kernels": "sparse" if runs_sparse else "dense",
                            **self.timings.get(name, {})}
        return {"setting": self.choice, "available": available, "layers": layers,
                "sparse_layers": sum(entry["kernels"] == "sparse" for entry in layers.values()),
                "fused_batch_norm": sorted(self.fused_layers),
                "rebuilds": self.rebuilds, "rebuild_seconds": round(self.rebuild_seconds, 6)}

    def state_dict(self) -> dict:
        """The rebuild counts, carried through a resume like the stage's seconds."""
        return {"rebuilds": self.rebuilds, "rebuild_seconds": self.rebuild_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.rebuilds = state["rebuilds"]
        self.rebuild_seconds = state["rebuild_seconds"]

    def _vectors(self, name: str) -> int:
        """The layer's tile: auto's faster one once measured (no format is built before, as
        the layer runs dense until then), else TILE_VECTORS[0]."""
        return self.timings.get(name, {}).get("tile_vectors", sparse_conv.TILE_VECTORS[0])

    def _pattern(self, name: str) -> sparse_conv.Pattern:
        if name not in self.patterns:
            start = time.perf_counter()
            self.patterns[name] = sparse_conv.Pattern(self.mask_of(name).cpu(),
                                                      vectors=self._vectors(name))
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

    def _block_forward_of(self, name: str, block: nn.Module):
        """The block's forward (`pre_activation_block`'s conv2(relu(bn2(conv1(a)))) + (x or
        shortcut(a)), a = relu(bn1(x))) with each of its stride-1 convs that runs sparse
        fused to the batch-norm before it and the sum after it."""
        plain = type(block).forward
        first, second = f"{name}.conv1", f"{name}.conv2"

        def forward(x: torch.Tensor) -> torch.Tensor:
            if not (block.training and x.dtype == torch.float32 and x.is_contiguous()
                    and not (torch.is_grad_enabled() and self.dense_step())):
                return plain(block, x)
            identity = block.shortcut is None
            if identity and self._fuses(first, block.bn1, block.conv1):
                hidden, shortcut = self._normalized(first, block.bn1, block.conv1, x), x
            else:
                out = block.bn1(x).relu()
                shortcut = x if identity else block.shortcut(out)
                hidden = block.conv1(out)
            if self._fuses(second, block.bn2, block.conv2) and shortcut.is_contiguous():
                return self._normalized(second, block.bn2, block.conv2, hidden, shortcut)
            return block.conv2(block.bn2(hidden).relu()) + shortcut
        return forward

    def _fuses(self, name: str, norm: nn.BatchNorm2d, conv: nn.Conv2d) -> bool:
        """Whether `conv` runs sparse on this step (decided, when 'auto') with its batch-norm
        fused: stride 1, no bias, no hook on either layer."""
        decided = self.choice == "sparse" or self.sparse_layers.get(name, False)
        hooked = any(hooks for layer in (norm, conv)
                     for hooks in (layer._forward_hooks, layer._forward_pre_hooks))
        return (decided and not hooked and conv.stride == (1, 1) and conv.bias is None
                and conv.weight.dtype == torch.float32)

    def _normalized(self, name: str, norm: nn.BatchNorm2d, conv: nn.Conv2d, x: torch.Tensor,
                    residual: torch.Tensor | None = None) -> torch.Tensor:
        self.fused_layers.add(name)
        return sparse_conv.normalized_conv2d(x, norm, conv.weight, self._pattern(name),
                                             conv.padding[0], residual)

    def _sparse_wins(self, name: str, layer: nn.Conv2d, x: torch.Tensor) -> bool:
        if self.choice == "sparse":
            return True
        if name not in self.sparse_layers:
            self._measure_batch(name, layer, x)
        return self.sparse_layers.get(name, False)  # dense until decided

    def _measure_batch(self, name: str, layer: nn.Conv2d, x: torch.Tensor) -> None:
        """Adds this batch's rounds to the layer's; with AUTO_BATCHES batches measured, decides
        (the rule of the module docstring)."""
        tiles = sparse_conv.TILE_VECTORS
        rounds = self._rounds.setdefault(name, [[] for _ in range(1 + len(tiles))])
        for series, measured in zip(rounds, self._measure(name, layer, x)):
            series += measured
        if len(rounds[0]) < AUTO_BATCHES * AUTO_ROUNDS:
            return
        dense_median, *tile_medians = map(statistics.median, rounds)
        sparse_median = min(tile_medians)
        vectors = tiles[tile_medians.index(sparse_median)]
        self.sparse_layers[name] = sparse_median < (1 - AUTO_MARGIN) * dense_median
        self.timings[name] = {
            "dense_seconds": dense_median, "sparse_seconds": sparse_median,
            "tile_vectors": vectors,
            "tile_seconds": {str(v): median for v, median in zip(tiles, tile_medians)},
            "rounds": len(rounds[0]),
            "density": float(self.mask_of(name).sum()) / layer.weight.numel()}
        del self._rounds[name]

    def _measure(self, name: str, layer: nn.Conv2d, x: torch.Tensor) -> list[list[float]]:
        """Seconds of this layer's forward and backward, the dense conv's and the sparse
        kernels' at each tile width, in alternating rounds on a copy of this batch."""
        mask = self.mask_of(name).cpu()
        patterns = [sparse_conv.Pattern(mask, vectors=v) for v in sparse_conv.TILE_VECTORS]
        weight = layer.weight.detach().clone().requires_grad_()
        inputs = x.detach().clone().requires_grad_(x.requires_grad)
        dense = type(layer)._conv_forward

        def step(conv) -> Callable[[], None]:
            def run() -> None:
                with torch.enable_grad():
                    conv(inputs, weight).sum().backward()
            return run

        def sparse(pattern: sparse_conv.Pattern) -> Callable[[], None]:
            return step(lambda i, w: sparse_conv.sparse_conv2d(i, w, None, pattern,
                                                               layer.stride[0], layer.padding[0]))

        return round_seconds([step(lambda i, w: dense(layer, i, w, None)),
                              *map(sparse, patterns)], AUTO_ROUNDS)
