"""Sparse inference: a trained network whose zero weights are skipped instead of multiplied.

A sparse member (static, DST, EDST ticket) keeps its zeros as stored zeros in dense tensors, so
a forward pass costs as much as a dense network's. `sparsify` returns a copy in which every
conv computes im2col followed by a sparse (CSR) x dense matrix product, `torch.sparse.mm`, and
batch norms are per-channel affine maps with their running statistics folded in. Which kernel
each conv uses is measured, not assumed (`choose_kernels`): ERK leaves small layers (the first
conv, 1x1 shortcuts) dense or nearly so, and a CSR product only wins where the layer is sparse
enough for its batch size; the alternatives are

    direct direct sparse convolution, harness/kernels/sparse_conv.py          (skips the zeros; needs
           the compiled kernels, else it runs as dense and is never chosen)
    csr    im2col, then CSR weight [C_out, C_in*k*k] @ columns       (skips the zeros)
    gemm   im2col, then dense weight @ columns                       (same layout, MKL GEMM)
    dense  torch's own conv2d (oneDNN)

Layout: a CSR product yields [C_out, B*H*W], i.e. channel-major. Each replaced layer returns
that buffer as a transposed view [B, C, H, W] without copying, element-wise layers (affine,
ReLU, residual sums) keep the view's layout, and the next layer's im2col reads it as a
contiguous [C, B, H, W]: no layout conversion between sparse layers. Outputs equal the masked
dense network's up to float summation order (within 1e-4, tests/experiment/test_export.py).

Fusion, in the pre-activation blocks of the WRNs (`FusedPreActBlock`): the batch-norm after a
block's first conv is folded into that conv's weights and bias (torch's fuse_conv_bn_eval;
zeros stay zeros), and where both convs run the direct kernels the block is one pass over each
activation besides the convs themselves: the first batch-norm and its ReLU applied as the input
is laid out for the kernels, the first conv writing its ReLU'd output straight into the second
conv's layout, the second adding the shortcut as it writes. Unfused, a block read and wrote
each activation six more times (affine, ReLU and layout copy twice, the residual sum), which at
batch 1 took as long as the sparse convs themselves.

Zeros are found from the weights themselves (a masked weight is exactly zero, and skipping a
weight that is exactly zero is exact whatever its mask), so any network converts.
"""
import copy
import math
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from torch.nn.utils.fusion import fuse_conv_bn_eval

from harness.kernels import KERNELS, sparse_conv
from harness.kernels.timing import call_seconds, median_seconds

IM2COL_GIVE_UP = 3.0

# torch marks CSR tensors as beta; the product used here is stable since torch 2.0.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


def supported_conv(module: nn.Module) -> bool:
    """Convs im2col covers: no groups or dilation, symmetric zero padding."""
    return (isinstance(module, nn.Conv2d) and module.groups == 1
            and module.dilation == (1, 1) and module.padding_mode == "zeros"
            and isinstance(module.padding, tuple) and len(set(module.padding)) == 1
            and module.kernel_size[0] == module.kernel_size[1]
            and module.stride[0] == module.stride[1])


def im2col(x: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """[B, C, H, W] (any strides) -> columns [C * k * k, B * H_out * W_out], row index
    c * k * k + i * k + j as in a conv weight reshaped to [C_out, C_in * k * k]."""
    planes = x.transpose(0, 1)  # [C, B, H, W]; contiguous when x came from a sparse layer
    if padding:
        planes = F.pad(planes, (padding,) * 4)
    channels, batch, height, width = planes.shape
    rows, cols = (height - kernel) // stride + 1, (width - kernel) // stride + 1
    if kernel == 1:
        return planes[:, :, ::stride, ::stride].reshape(channels, batch * rows * cols)
    shifts = [planes[:, :, i:i + stride * (rows - 1) + 1:stride,
                     j:j + stride * (cols - 1) + 1:stride]
              for i in range(kernel) for j in range(kernel)]
    return torch.stack(shifts, 1).reshape(channels * kernel * kernel, batch * rows * cols)


class SparseConv2d(nn.Module):
    """A conv computed by `kernel` per batch size: `plan` maps batch sizes to kernels, and a
    batch uses the kernel of the nearest planned size (in log scale)."""

    def __init__(self, conv: nn.Conv2d, plan: dict[int, str]):
        super().__init__()
        if not supported_conv(conv):
            raise ValueError(f"unsupported conv {conv}")
        unknown = set(plan.values()) - set(KERNELS)
        if unknown or not plan:
            raise ValueError(f"kernel plan {plan} must map batch sizes to {KERNELS}")
        self.plan = dict(sorted(plan.items()))
        self.out_channels = conv.out_channels
        self.kernel_size = conv.kernel_size[0]
        self.stride = conv.stride[0]
        self.padding = conv.padding[0]
        weight = conv.weight.detach()
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        kernels = set(self.plan.values())
        self.register_buffer("weight", weight.clone() if kernels & {"direct", "gemm", "dense"}
                             else None)
        if "direct" in kernels and sparse_conv.available():
            self.pattern = sparse_conv.Pattern(weight != 0, frozen=self.weight)
        if "csr" in kernels:
            csr = weight.reshape(weight.shape[0], -1).to_sparse_csr()
            self.register_buffer("crow_indices", csr.crow_indices())
            self.register_buffer("col_indices", csr.col_indices())
            self.register_buffer("values", csr.values())
            self.columns = weight[0].numel()

    def kernel_for(self, batch: int) -> str:
        kernel = min(self.plan.items(), key=lambda item: abs(math.log(item[0] / batch)))[1]
        # An export planned on a machine with the compiled kernels, loaded on one without.
        return "dense" if kernel == "direct" and not hasattr(self, "pattern") else kernel

    def direct(self, x: torch.Tensor, prologue: tuple[torch.Tensor, torch.Tensor] | None
               ) -> torch.Tensor:
        """The direct kernels' conv of max(0, x * scale + shift) per channel, `prologue`
        (scale, shift), applied as x is laid out for them."""
        flat, geometry = sparse_conv.laid_out(x, self.pattern, self.stride, self.padding,
                                                     prologue)
        return sparse_conv.inference_conv(flat, geometry, self.pattern, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel_for(x.shape[0])
        if kernel == "direct":
            return sparse_conv.sparse_conv2d(x, self.weight, self.bias, self.pattern,
                                             self.stride, self.padding)
        if kernel == "dense":
            # oneDNN needs a contiguous input: on a channel-major view conv2d falls back to
            # its slow im2col path (torch.profiler: aten::_slow_conv2d_forward).
            return F.conv2d(x.contiguous(), self.weight, self.bias, self.stride, self.padding)
        columns = im2col(x, self.kernel_size, self.stride, self.padding)
        if kernel == "csr":
            weight = torch.sparse_csr_tensor(self.crow_indices, self.col_indices, self.values,
                                             (self.out_channels, self.columns),
                                             check_invariants=False)
            out = torch.sparse.mm(weight, columns)
        else:
            out = self.weight.reshape(self.out_channels, -1) @ columns
        batch = x.shape[0]
        side = (x.shape[2] + 2 * self.padding - self.kernel_size) // self.stride + 1
        width = (x.shape[3] + 2 * self.padding - self.kernel_size) // self.stride + 1
        if self.bias is not None:
            out += self.bias[:, None]
        return out.view(self.out_channels, batch, side, width).transpose(0, 1)


class ChannelAffine(nn.Module):
    """An eval-mode BatchNorm2d as y = x * scale + shift, element-wise, so that it keeps the
    memory layout of its input (F.batch_norm would copy a channel-major view)."""

    def __init__(self, norm: nn.BatchNorm2d):
        super().__init__()
        scale = norm.running_var.detach().add(norm.eps).rsqrt()
        shift = -norm.running_mean.detach() * scale
        if norm.affine:
            scale = scale * norm.weight.detach()
            shift = shift * norm.weight.detach() + norm.bias.detach()
        self.register_buffer("scale", scale.view(1, -1, 1, 1))
        self.register_buffer("shift", shift.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x, self.scale)


def pre_activation_block(module: nn.Module) -> bool:
    """Whether `module` computes conv2(relu(bn2(conv1(a)))) + (x or shortcut(a)), a =
    relu(bn1(x)): its class says so (`pre_activation_residual`, as the WRN's PreActBlock in
    harness/models/wide_resnet.py does) and its parts are still those plain layers (MC dropout
    puts a Sequential in conv1's place)."""
    norms = (getattr(module, "bn1", None), getattr(module, "bn2", None))
    convs = (getattr(module, "conv1", None), getattr(module, "conv2", None))
    shortcut = getattr(module, "shortcut", None)
    return (getattr(type(module), "pre_activation_residual", False)
            and all(type(norm) is nn.BatchNorm2d and norm.track_running_stats
                    for norm in norms)
            and all(type(conv) is nn.Conv2d and supported_conv(conv)
                    for conv in (*convs, *([shortcut] if shortcut is not None else []))))


class FusedPreActBlock(nn.Module):
    """A pre-activation block (`pre_activation_block`) in inference form (the module
    docstring's fusion): `plans` maps its convs' names (conv1, conv2, shortcut) to their kernel
    plans. At a batch size where conv1 or conv2 does not run the direct kernels, the block runs
    op by op, bn2 still folded."""

    def __init__(self, block: nn.Module, plans: dict[str, dict[int, str]]):
        super().__init__()
        self.bn1 = ChannelAffine(block.bn1)
        self.conv1 = SparseConv2d(fuse_conv_bn_eval(block.conv1.eval(), block.bn2.eval()),
                                  plans["conv1"])
        self.conv2 = SparseConv2d(block.conv2, plans["conv2"])
        self.shortcut = None if block.shortcut is None else SparseConv2d(block.shortcut,
                                                                         plans["shortcut"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        if self.conv1.kernel_for(batch) == self.conv2.kernel_for(batch) == "direct":
            return self._fused(x)
        out = self.bn1(x).relu()
        shortcut = x if self.shortcut is None else self.shortcut(out)
        return self.conv2(self.conv1(out).relu()) + shortcut

    def _fused(self, x: torch.Tensor) -> torch.Tensor:
        prologue = (self.bn1.scale.view(-1), self.bn1.shift.view(-1))
        shortcut = x
        if self.shortcut is not None:
            shortcut = (self.shortcut.direct(x, prologue)
                        if self.shortcut.kernel_for(x.shape[0]) == "direct"
                        else self.shortcut(self.bn1(x).relu()))
        flat, first = sparse_conv.laid_out(x, self.conv1.pattern, self.conv1.stride,
                                                  self.conv1.padding, prologue)
        second = self.conv2.pattern.geometry(1, self.conv2.padding, x.shape[0], first.out_h,
                                             first.out_w)
        hidden = self.conv2.pattern.workspace(("input", second),
                                              second.flat_size(self.conv1.out_channels))
        sparse_conv.inference_conv(flat, first, self.conv1.pattern, self.conv1.bias,
                                   out=second.interior(hidden, self.conv1.out_channels),
                                   relu=True)
        return sparse_conv.inference_conv(hidden, second, self.conv2.pattern, self.conv2.bias,
                                          residual=shortcut)


def conv_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if supported_conv(module)]


def density(weight: torch.Tensor) -> float:
    return float(weight.count_nonzero()) / weight.numel()


def sparsify(model: nn.Module, plans: dict[str, dict[int, str]]) -> nn.Module:
    """An eval-mode copy of `model` with each pre-activation block whose convs are all named
    in `plans` replaced by a FusedPreActBlock, each other conv named in `plans` by a SparseConv2d
    following its plan and every other BatchNorm2d by a ChannelAffine."""
    converted = copy.deepcopy(model).eval()
    fused: list[str] = []
    for name, module in list(converted.named_modules()):
        if any(name.startswith(f"{block}.") for block in fused):
            continue
        if pre_activation_block(module) and all(
                f"{name}.{conv}" in plans for conv in conv_names(module)):
            _replace(converted, name, FusedPreActBlock(
                module, {conv: plans[f"{name}.{conv}"] for conv in conv_names(module)}))
            fused.append(name)
        elif name in plans:
            _replace(converted, name, SparseConv2d(module, plans[name]))
        elif isinstance(module, nn.BatchNorm2d) and module.track_running_stats:
            _replace(converted, name, ChannelAffine(module))
    return converted


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def available_kernels(conv: nn.Conv2d) -> tuple[str, ...]:
    """The kernels that can run `conv` here: direct only with the compiled kernels and a
    float32 CPU weight."""
    direct = sparse_conv.supported(conv) and sparse_conv.available()
    return tuple(kernel for kernel in KERNELS if kernel != "direct" or direct)


def layer_inputs(model: nn.Module, image_shape: Sequence[int], batch: int
                 ) -> dict[str, tuple[int, ...]]:
    """The input shape of every supported conv for a batch of `batch` images."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(module, args, out) -> None:
            shapes[name] = tuple(args[0].shape)
        return hook

    handles = [module.register_forward_hook(record(name))
               for name, module in model.named_modules() if supported_conv(module)]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, *image_shape, device=_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    return {name: (batch, *shape[1:]) for name, shape in shapes.items()}


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def layer_timings(model: nn.Module, image_shape: Sequence[int], batch: int, rounds: int = 3
                  ) -> dict[str, dict]:
    """Per conv: shape, density and the median seconds of every kernel at batch size `batch`
    on a channel-major input (what a layer after a sparse layer receives)."""
    device = _device(model)
    timings = {}
    for name, shape in layer_inputs(model, image_shape, batch).items():
        conv = model.get_submodule(name)
        x = torch.randn(shape[1], shape[0], *shape[2:], device=device).transpose(0, 1)
        runs = {kernel: lambda c=SparseConv2d(conv, {batch: kernel}): c(x)
                for kernel in available_kernels(conv)}
        first = {kernel: call_seconds(run) for kernel, run in runs.items()}
        # An im2col kernel (no one-time cost in its first call, unlike a direct plan or a
        # oneDNN primitive) that took IM2COL_GIVE_UP times as long as dense is not timed further:
        # a CSR product of a WRN-28-10 layer at batch 64 takes seconds a call.
        candidates = [kernel for kernel in runs if kernel not in ("csr", "gemm")
                      or first[kernel] <= IM2COL_GIVE_UP * first["dense"]]
        seconds = median_seconds([runs[kernel] for kernel in candidates], rounds)
        timings[name] = {"shape": list(conv.weight.shape), "input": list(shape),
                         "density": density(conv.weight),
                         "seconds": dict(zip(candidates, seconds)),
                         "given_up": {kernel: first[kernel] for kernel in runs
                                      if kernel not in candidates}}
    return timings


def choose_kernels(model: nn.Module, image_shape: Sequence[int], batch_sizes: Sequence[int],
                   rounds: int = 3, forced: str | None = None
                   ) -> tuple[dict[str, dict[int, str]], dict[int, dict]]:
    """Per conv, the fastest kernel at each batch size (or `forced` everywhere), and the
    timings it was chosen from."""
    names = conv_names(model)
    if forced is not None:
        return {name: {batch: forced for batch in batch_sizes} for name in names}, {}
    timings = {batch: layer_timings(model, image_shape, batch, rounds) for batch in batch_sizes}
    plans = {name: {batch: min(timings[batch][name]["seconds"],
                               key=timings[batch][name]["seconds"].get)
                    for batch in batch_sizes} for name in names}
    return plans, timings
