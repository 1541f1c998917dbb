"""Direct sparse convolution (Park et al. 2017) for training and inference on the CPU.

A conv whose weight is mostly zero costs, with these kernels, one multiply-add of a shifted
input plane per non-zero weight (harness/kernels/sparse_conv.cpp): the forward pass, the input
gradient (the same kernel, flipped, on the output gradient: for stride 2 one stride-1 conv per
input phase, `_GradientLayout`) and the weight gradient at the non-zero weights only (a sampled
product of the output gradient and the input). `sparse_conv2d` is differentiable in the input, the weight and
the bias, and equals F.conv2d of the masked weight within float32 summation order; the weight
gradient is exactly zero off the pattern, where the dense gradient (RigL's growth signal) is not
computed.

The kernels are C++ (this package's data file sparse_conv.cpp, so an installed wheel has it)
compiled once per source, flags and torch version into the user's cache,
`$FREETICKETS_CACHE` or `$XDG_CACHE_HOME/freetickets-bench` (default ~/.cache/freetickets-bench),
under kernels/ (g++ or $CXX, -O3 -march=native: AVX-512 or AVX2), never into the source tree.
Without a compiler, or when the build fails, `available()` is False, one log line says why, and
callers keep the masked dense path (F.conv2d), which gives the same numbers.
"""
import hashlib
import logging
import math
import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from harness.kernels.timing import median_seconds

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("sparse_conv.cpp")


def cache_dir() -> Path:
    """Where compiled kernels are kept: outside the source tree, which may be read-only (an
    installed wheel)."""
    if os.environ.get("FREETICKETS_CACHE"):
        return Path(os.environ["FREETICKETS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "freetickets-bench"


FLAGS = ["-O3", "-march=native", "-std=c++20", "-fopenmp", "-shared", "-fPIC", "-w"]
L1_FLOATS = 8192  # 32 kB: the share of the input a group of input channels may take per tile
# Nonzeros per input column (input channel and kernel position) from which the forward copies
# each tile's columns into an aligned buffer rather than reading the input unaligned: measured
# on WRN-16-4 layers (harness/kernels/sparse_conv.cpp, conv_forward). In training; a frozen
# (inference) pattern times both ways once per input size instead (`Pattern.forward_plan`).
COLUMN_REUSE = 12
READ_ROUNDS = 2  # alternating rounds, after a warm-up, of a frozen pattern's candidates
# The tile widths the kernels are compiled for, in the machine's vectors, the default first
# (sparse_conv.cpp, `with_tile`): 12 was faster on large inputs (training at batch 128) and
# slower on small ones (inference at batch 1), so 'auto' training measures both per layer and
# a frozen (inference) pattern per input size (`Pattern.geometry`).
TILE_VECTORS = (8, 12)

_state: dict = {}


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


def _build() -> str | None:
    """Path of the compiled library, building it if needed; None (and the reason logged once)
    when no compiler is found or the build fails."""
    compiler = _compiler()
    if compiler is None:
        return _unavailable("no C++ compiler on PATH (g++, c++ or $CXX)")
    # ATen and the op registry only (no Python, no torch.utils.cpp_extension and its ninja).
    torch_dir = Path(torch.__file__).parent
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    command = [compiler, *FLAGS, f"-D_GLIBCXX_USE_CXX11_ABI={abi}", f"-I{torch_dir / 'include'}",
               str(SOURCE), f"-L{torch_dir / 'lib'}", "-lc10", "-ltorch_cpu"]
    key = hashlib.sha256("\0".join([SOURCE.read_text(), torch.__version__, *command[:1],
                                    *FLAGS]).encode()).hexdigest()[:16]
    build_dir = cache_dir() / "kernels"
    library = build_dir / f"sparse_conv-{key}.so"
    if library.is_file():
        return str(library)
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return _unavailable(f"cannot create the kernel cache {build_dir} ({error.strerror}); "
                            f"set FREETICKETS_CACHE to a writable folder")
    partial = library.with_suffix(f".{os.getpid()}.partial")
    try:
        result = subprocess.run([*command, "-o", str(partial)], capture_output=True, text=True)
    except OSError as error:
        return _unavailable(f"{compiler} did not run ({error})")
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        errors = [line for line in result.stderr.splitlines() if "error" in line]
        reason = (errors or result.stderr.strip().splitlines() or ["no message"])[0]
        return _unavailable(f"{compiler} failed to build {SOURCE.name}: {reason}")
    partial.replace(library)  # atomic: concurrent builds agree on the same file
    return str(library)


def _unavailable(reason: str) -> None:
    log.warning("sparse kernels unavailable, using the masked dense conv: %s", reason)
    return None


def available() -> bool:
    """Whether the compiled kernels are loaded (built on first call)."""
    if "loaded" not in _state:
        library = _build()
        if library is not None:
            torch.ops.load_library(library)
            _state["lanes"] = torch.ops.freetickets_sparse.lanes()
        _state["loaded"] = library is not None
    return _state["loaded"]


def lanes() -> int:
    """Floats in one of the machine's vectors as the kernels were compiled (16 under AVX-512,
    8 under AVX2); needs `available()`."""
    return _state["lanes"]


@dataclass(frozen=True)
class Geometry:
    """A conv's shape arithmetic on a batch of `batch` inputs of height x width, and the flat
    layout the kernel reads: channel-major, per channel stride^2 phases (the zero-padded input
    split by row and column parity; one for stride 1), each phase the whole batch of hq x wq
    planes. Output pixel p = (b * hq + oh) * wq + ow. `channel_stride`, where not 0, spaces
    the channels wider than their phases need (`_GradientLayout.shares_planes`). The kernels
    go `tile` output pixels at a time, `vectors` of the machine's (TILE_VECTORS)."""

    kernel: int
    stride: int
    padding: int
    batch: int
    height: int
    width: int
    channel_stride: int = 0
    vectors: int = TILE_VECTORS[0]

    @property
    def tile(self) -> int:
        return self.vectors * lanes()

    @property
    def hq(self) -> int:
        return math.ceil((self.height + 2 * self.padding) / self.stride)

    @property
    def wq(self) -> int:
        return math.ceil((self.width + 2 * self.padding) / self.stride)

    @property
    def span(self) -> int:
        """Pixels of one phase of one channel, the whole batch."""
        return self.batch * self.hq * self.wq

    @property
    def padded(self) -> int:
        """`span` in whole tiles."""
        return -(-self.span // self.tile) * self.tile

    @property
    def channel_size(self) -> int:
        return self.channel_stride or self.stride * self.stride * self.span

    @property
    def slack(self) -> int:
        """Elements past the last channel that the last tile's shifted reads may touch."""
        return self.padded - self.span + self.kernel * (self.wq + 1) + self.tile

    @property
    def out_h(self) -> int:
        return (self.height + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def out_w(self) -> int:
        return (self.width + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def footprint(self) -> int:
        """Floats of one input channel that one tile of output pixels reads (direct mode)."""
        return self.stride ** 2 * (self.tile + (self.kernel - 1) // self.stride * (self.wq + 1))

    def shifts(self) -> torch.Tensor:
        """Where each kernel position (row-major) starts within an input channel."""
        position = torch.arange(self.kernel ** 2)
        return self.offsets(torch.zeros_like(position), position // self.kernel,
                            position % self.kernel)

    def flat_size(self, channels: int) -> int:
        return channels * self.channel_size + self.slack

    def offsets(self, channel, row, column) -> torch.Tensor:
        """Where the input shifted by kernel position (row, column) of `channel` starts."""
        s = self.stride
        if channel.numel() and int(channel.max() + 1) * self.channel_size >= 2 ** 31:
            raise ValueError(f"a batch of {self.batch} inputs of {self.height}x{self.width} "
                             f"is too large for the sparse kernels' 32-bit offsets")
        return (channel * self.channel_size + ((row % s) * s + column % s) * self.span
                + (row // s) * self.wq + column // s).to(torch.int32)

    def spread(self, x: torch.Tensor, flat: torch.Tensor,
               prologue: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """x [B, C, H, W] (any strides) written into `flat`, the kernel's flat layout with its
        slack (zero where nothing is written: the padding stays zero); with `prologue`
        (scale, shift), max(0, x * scale + shift) per channel instead of x."""
        return _spread(x, flat, self.stride, self.padding, self.hq, self.wq, self.channel_size,
                       *(prologue or ()))

    def interior(self, flat: torch.Tensor, channels: int) -> torch.Tensor:
        """The [B, C, H, W] view of `flat` at the image's own pixels, where `spread` writes
        (stride 1): a layer that writes its output there hands it to this conv without a copy."""
        assert self.stride == 1, "the phases of a stride-2 layout are not one strided view"
        return flat.as_strided((self.batch, channels, self.height, self.width),
                               (self.hq * self.wq, self.channel_size, self.wq, 1),
                               self.padding * (self.wq + 1))


@dataclass(frozen=True)
class Plan:
    """The weights of a conv in the order the forward kernel reads them for one input size:
    by input-channel group, then output channel (`rows`: row pointers over group * out_channels
    + output channel); `where` each weight's offset in the input (direct) or its column
    (when `shifts` is not empty); `index` its position in the flattened weight; `values` the
    weights themselves where they never change (`Pattern`'s `frozen`), else None."""

    rows: torch.Tensor
    where: torch.Tensor
    index: torch.Tensor
    shifts: torch.Tensor
    channel_size: int
    group: int
    in_channels: int
    values: torch.Tensor | None


def _reuses_columns(nonzeros: int, in_channels: int, kernel: int) -> bool:
    return nonzeros >= COLUMN_REUSE * in_channels * kernel * kernel


def _plan(out_channel, in_channel, row, column, index, channels: tuple[int, int],
          geometry: Geometry, frozen: torch.Tensor | None, columns: bool) -> Plan:
    """The forward kernel's plan for a conv with these nonzeros and (out, in) `channels`,
    reading the input through per-tile `columns` or directly."""
    out_channels, in_channels = channels
    kernel = geometry.kernel
    positions = kernel * kernel
    group = L1_FLOATS // (positions * geometry.tile if columns else geometry.footprint)
    group = min(max(group, 1), in_channels)
    part = in_channel // group
    position = row * kernel + column
    order = torch.argsort(((part * out_channels + out_channel) * in_channels + in_channel)
                          * positions + position)
    groups = -(-in_channels // group)
    rows = _row_pointers((part * out_channels + out_channel)[order], groups * out_channels)
    if columns:
        where = ((in_channel - part * group) * positions + position)[order].to(torch.int32)
        shifts = geometry.shifts()
    else:
        where = geometry.offsets(in_channel, row, column)[order]
        shifts = torch.empty(0, dtype=torch.int32)
    index = index[order]
    values = None if frozen is None else frozen.detach().reshape(-1).index_select(0, index)
    return Plan(rows, where, index, shifts, geometry.channel_size, group, in_channels, values)


class Pattern:
    """The non-zero positions of a conv weight [C_out, C_in, k, k] and, per input size, the
    orders the kernels read them in: the forward's plan (which the weight gradient follows
    too) and the input gradient's (the transposed conv: input and output channels swapped,
    the kernel flipped). Built once per mask; the plans once per input size.

    `frozen`: the weight of a layer that never changes (inference), whose values each plan
    then keeps; gathering them from the dense weight at every call read the whole weight
    (a 256 x 256 x 3 x 3 weight at density 0.06 has a nonzero in nearly every cache line):
    a batch-1 forward of WRN-16-4 at S = 0.9 through these kernels took 5.9-6.1 ms that way,
    4.7 ms with the values kept.

    `vectors`: the width of the kernels' tile for this conv (TILE_VECTORS) at every input size;
    a frozen pattern instead times each tile per input size (`geometry`)."""

    def __init__(self, nonzero: torch.Tensor, frozen: torch.Tensor | None = None,
                 vectors: int = TILE_VECTORS[0]):
        if vectors not in TILE_VECTORS:
            raise ValueError(f"vectors: one of {TILE_VECTORS}, got {vectors}")
        _, in_channels, kernel, _ = nonzero.shape
        self.shape = tuple(nonzero.shape)
        self.index = nonzero.reshape(-1).nonzero().squeeze(1)  # row-major: by output channel
        self.out_channel, rest = self.index // (in_channels * kernel * kernel), \
            self.index % (in_channels * kernel * kernel)
        self.in_channel, rest = rest // (kernel * kernel), rest % (kernel * kernel)
        self.row, self.column = rest // kernel, rest % kernel
        self.frozen = frozen
        self.vectors = vectors
        self._plans: dict[tuple, Plan] = {}
        self._geometries: dict[tuple, Geometry] = {}  # a frozen pattern's, per input size
        # Zeroed buffers kept between calls: a fresh one costs a page fault per 4 kB (as much
        # as a sparse layer's arithmetic); its zeros (the padding) are never written.
        self._workspaces: dict[tuple, torch.Tensor] = {}
        self._busy: set[tuple] = set()

    def workspace(self, key: tuple, size: int, keep: bool = False) -> torch.Tensor:
        """A zeroed float32 buffer of `size` whose zeros outside what a caller writes stay
        zero. `keep`: it is saved for a backward pass, so it is not handed out again until
        `release(key)` (a second forward before then gets a fresh buffer)."""
        if key in self._busy:
            return torch.zeros(size)
        if key not in self._workspaces:
            self._workspaces[key] = torch.zeros(size)
        if keep:
            self._busy.add(key)
        return self._workspaces[key]

    def release(self, key: tuple) -> None:
        self._busy.discard(key)

    @property
    def nonzeros(self) -> int:
        return self.index.numel()

    def geometry(self, stride: int, padding: int, batch: int, height: int,
                 width: int) -> Geometry:
        """The layout of this conv's input of that size: at the pattern's tile, or, for a
        frozen pattern, at the tile that ran faster (with its faster read, `forward_plan`) in
        READ_ROUNDS alternating rounds on this machine, once per input size: on one AVX2 core
        tiles of 12 vectors took 1.3x as long as tiles of 8 at batch 1 on 8x8 layers and
        0.85-1.0x at batch 16-64."""
        shape = (self.shape[2], stride, padding, batch, height, width)
        if self.frozen is None:
            return Geometry(*shape, vectors=self.vectors)
        if shape not in self._geometries:
            candidates = [(geometry, self._plan(geometry, columns))
                          for geometry in (Geometry(*shape, vectors=v) for v in TILE_VECTORS)
                          for columns in (True, False)]
            geometry, plan = candidates[self._fastest(candidates)]
            self._plans[("forward", geometry)] = plan
            self._geometries[shape] = geometry
        return self._geometries[shape]

    def forward_plan(self, geometry: Geometry) -> Plan:
        """The forward's plan for inputs of `geometry`. A frozen pattern's plan reads the input
        the way that ran faster in READ_ROUNDS alternating rounds on this machine: at batch 1
        and low density (WRN-16-4's 256 -> 256 conv at 8x8, density 0.06, one AVX2 core)
        reading it directly took 279 us against 337 through columns, at batch 64 22.1 ms
        against 19.8, and COLUMN_REUSE's rule does not see the batch size."""
        key = ("forward", geometry)
        if key not in self._plans:
            if self.frozen is None:
                self._plans[key] = self._plan(geometry, _reuses_columns(
                    self.nonzeros, self.shape[1], geometry.kernel))
            else:
                plans = [self._plan(geometry, True), self._plan(geometry, False)]
                self._plans[key] = plans[self._fastest([(geometry, plan) for plan in plans])]
        return self._plans[key]

    def _plan(self, geometry: Geometry, columns: bool) -> Plan:
        return _plan(self.out_channel, self.in_channel, self.row, self.column, self.index,
                     self.shape[:2], geometry, self.frozen, columns)

    def _fastest(self, candidates: list[tuple[Geometry, Plan]]) -> int:
        """Which of the (layout, plan) ran the frozen conv fastest."""
        def conv(geometry: Geometry, plan: Plan):
            flat = torch.zeros(geometry.flat_size(self.shape[1]))  # speed does not see values
            out = flat.new_empty(geometry.batch, self.shape[0], geometry.out_h, geometry.out_w)
            return lambda: _conv(flat, plan, self.frozen, _empty(), geometry, out)
        seconds = median_seconds([conv(*candidate) for candidate in candidates], READ_ROUNDS)
        return seconds.index(min(seconds))

    def input_grad_plans(self, geometry: Geometry) -> list[tuple[tuple[int, int], Plan]]:
        """Per phase (row and column parity of the input for stride 2; one for stride 1) with
        weights, the plan of its stride-1 conv on the output gradient (`_GradientLayout`)."""
        key = ("input grad", geometry)
        if key not in self._plans:
            layout = _GradientLayout.of(geometry)
            stride, padding = geometry.stride, geometry.padding
            plans = []
            for a in range(stride):
                for b in range(stride):
                    taken = ((a + padding - self.row) % stride == 0) & \
                            ((b + padding - self.column) % stride == 0)
                    if not taken.any():
                        continue  # e.g. odd rows under a 1x1 stride-2 conv: gradient zero
                    row = (a + padding - self.row[taken]) // stride - layout.low
                    column = (b + padding - self.column[taken]) // stride - layout.low
                    plans.append(((a, b), _plan(self.in_channel[taken], self.out_channel[taken],
                                                row, column, self.index[taken],
                                                self.shape[1::-1], layout.geometry,
                                                self.frozen, _reuses_columns(
                                                    int(taken.sum()), self.shape[0],
                                                    layout.geometry.kernel))))
            self._plans[key] = plans
        return self._plans[key]


def _row_pointers(rows: torch.Tensor, count: int) -> torch.Tensor:
    pointers = torch.zeros(count + 1, dtype=torch.int64)
    pointers[1:] = torch.bincount(rows, minlength=count).cumsum(0)
    return pointers


@dataclass(frozen=True)
class _GradientLayout:
    """The input gradient of a conv as stride-1 convs on its output gradient, one per phase of
    the input (rows y = stride * u + a, columns x = stride * v + b): input row y takes kernel
    row i from output row (y + padding - i) / stride where that divides, i.e. from output row
    u + d with d = (a + padding - i) / stride. Each phase is a conv whose kernel is the
    weights with i, j of that phase, at shift (d - low) from the output gradient padded by
    -low, `low` the least d of all phases. For stride 1 this is the transposed conv with the
    kernel flipped; for stride 2 it is a quarter of the multiply-adds of that conv on the
    zero-dilated gradient, three in four of which would be by zero. Output row r sits at row
    r - low (low <= 0 and the whole gradient fits wherever padding < kernel, as `supported`
    requires).

    `shares_planes`: where this layout has the forward's rows and columns (hq, wq: where the
    padding is (kernel - 1) / 2, as in every WRN and ResNet conv), it is the weight gradient's
    planes (`_LaidOutGradient`) shifted by -low rows and columns, and its channels are spaced
    as theirs, so one copy of the gradient serves both."""

    geometry: Geometry  # of the padded output gradient, as the phases' input
    low: int

    @staticmethod
    def of(forward: Geometry) -> "_GradientLayout":
        s, k, p = forward.stride, forward.kernel, forward.padding
        shifts = [(a + p - i) // s for a in range(s) for i in range(k) if (a + p - i) % s == 0]
        low, span = min(shifts), max(shifts) - min(shifts) + 1
        rows, columns = -(-forward.height // s), -(-forward.width // s)
        target = Geometry(span, 1, 0, forward.batch, rows + span - 1, columns + span - 1,
                          vectors=forward.vectors)
        if (target.hq, target.wq) == (forward.hq, forward.wq):
            target = replace(target, channel_stride=forward.padded)
        return _GradientLayout(target, low)

    @property
    def shares_planes(self) -> bool:
        return self.geometry.channel_stride != 0


class _LaidOutGradient:
    """A conv's output gradient [B, C, out_h, out_w] in the two layouts its backward reads,
    each laid out when first asked for: the input gradient's (`_GradientLayout`) and the
    weight gradient's planes [C, padded], as the forward's output pixels, zero wherever the
    forward threw its result away. Where the two coincide (`_GradientLayout.shares_planes`)
    the planes are a view into the first: one pass over the gradient instead of two."""

    def __init__(self, grad: torch.Tensor, forward: Geometry, pattern: Pattern):
        self.grad, self.forward, self.pattern = grad, forward, pattern
        self.layout = _GradientLayout.of(forward)
        self._flat: torch.Tensor | None = None

    def for_input(self) -> torch.Tensor:
        if self._flat is None:
            target = self.layout.geometry
            flat = self.pattern.workspace(("output grad", self.forward),
                                          target.flat_size(self.grad.shape[1]))
            self._flat = _spread(self.grad, flat, 1, -self.layout.low, target.height,
                                 target.width, target.channel_size)
        return self._flat

    def planes(self) -> torch.Tensor:
        forward, size = self.forward, self.grad.shape[1] * self.forward.padded
        if self.layout.shares_planes:
            return self.for_input().narrow(0, -self.layout.low * (forward.wq + 1), size)
        planes = self.pattern.workspace(("planes", forward), size)
        return _spread(self.grad, planes, 1, 0, forward.hq, forward.wq, forward.padded)


def _input_grad(laid: _LaidOutGradient, weight: torch.Tensor, pattern: Pattern,
                forward: Geometry, gate: torch.Tensor | None = None) -> torch.Tensor:
    """The gradient of the conv's input; zero wherever `gate` (the input's shape, stride 1
    only) is not above zero, the gradient through the ReLU that produced the input."""
    assert gate is None or forward.stride == 1, "a gate is for stride-1 convs"
    flat, grad = laid.for_input(), laid.grad
    target, s = laid.layout.geometry, forward.stride
    plans = pattern.input_grad_plans(forward)
    shape = (forward.batch, pattern.shape[1], forward.height, forward.width)
    if s == 1:
        return _conv(flat, plans[0][1], weight, _empty(), target, grad.new_empty(shape),
                     gate=gate) if plans else grad.new_zeros(shape)
    # Kept between calls: each phase with weights is overwritten whole, one without (odd rows
    # under a 1x1 stride-2 conv) stays zero, its gradient.
    phases = pattern.workspace(("phases", forward), 4 * math.prod(shape[:2]) * target.out_h
                               * target.out_w).view(4, *shape[:2], target.out_h, target.out_w)
    for (a, b), plan in plans:
        _conv(flat, plan, weight, _empty(), target, phases[a * 2 + b])
    grad_x = grad.new_empty(shape)
    torch.ops.freetickets_sparse.interleave(phases, grad_x)
    return grad_x


def _spread(x: torch.Tensor, flat: torch.Tensor, stride: int, padding: int, hq: int, wq: int,
            channel_size: int, scale: torch.Tensor | None = None,
            shift: torch.Tensor | None = None) -> torch.Tensor:
    torch.ops.freetickets_sparse.spread(x, flat, stride, padding, hq, wq, channel_size,
                                        _empty() if scale is None else scale,
                                        _empty() if shift is None else shift)
    return flat


def _forward(x, weight, bias, pattern: Pattern, stride: int, padding: int, keep: bool):
    """The output, and the flat input and geometry the backward reads."""
    flat, geometry = laid_out(x.detach(), pattern, stride, padding, keep=keep)
    out = _conv(flat, pattern.forward_plan(geometry), weight,
                _empty() if bias is None else bias.detach().contiguous(), geometry,
                x.new_empty(geometry.batch, pattern.shape[0], geometry.out_h, geometry.out_w))
    return out, flat, geometry


class _SparseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, pattern: Pattern, stride: int, padding: int, keep: bool):
        out, flat, geometry = _forward(x, weight, bias, pattern, stride, padding, keep)
        key = ("input", geometry)
        ctx.pattern, ctx.geometry, ctx.has_bias = pattern, geometry, bias is not None
        ctx.key = key if keep else None
        ctx.save_for_backward(flat, weight)
        return out

    @staticmethod
    def backward(ctx, grad):
        flat, weight = ctx.saved_tensors
        pattern, geometry = ctx.pattern, ctx.geometry
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        laid = _LaidOutGradient(grad, geometry, pattern)
        if ctx.needs_input_grad[0]:
            grad_x = _input_grad(laid, weight, pattern, geometry)
        if ctx.needs_input_grad[1]:
            grad_w = _weight_grad(flat, laid, weight, pattern, geometry)
        if ctx.key is not None:
            pattern.release(ctx.key)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None


def _weight_grad(flat: torch.Tensor, laid: _LaidOutGradient, weight: torch.Tensor,
                 pattern: Pattern, geometry: Geometry) -> torch.Tensor:
    """The weight gradient, at `pattern`'s weights only (zero elsewhere), from the flat input
    and the output gradient."""
    plan = pattern.forward_plan(geometry)
    grad_w = weight.new_zeros(weight.numel())
    grad_w[plan.index] = torch.ops.freetickets_sparse.weight_grad(
        flat, laid.planes(), plan.rows, plan.where, plan.shifts,
        plan.channel_size, plan.group, plan.in_channels, geometry.padded, geometry.vectors)
    return grad_w.view_as(weight)


def _conv(flat: torch.Tensor, plan: Plan, weight: torch.Tensor, bias: torch.Tensor,
          geometry: Geometry, out: torch.Tensor, residual: torch.Tensor | None = None,
          relu: bool = False, gate: torch.Tensor | None = None) -> torch.Tensor:
    """The conv of `plan` on the flat input into `out` [B, C_out, H, W] (rows contiguous; the
    pixels past H or W that the layout computes are dropped), plus `residual` (out's shape,
    rows contiguous), through a ReLU where asked, and zero where `gate` (out's shape, rows
    contiguous) is not above zero."""
    values = plan.values
    if values is None:
        values = weight.detach().reshape(-1).index_select(0, plan.index)
    torch.ops.freetickets_sparse.conv_forward(
        flat, plan.rows, plan.where, values, bias, plan.shifts, plan.channel_size, plan.group,
        plan.in_channels, geometry.batch, geometry.hq, geometry.wq,
        _empty() if residual is None else residual, relu,
        _empty() if gate is None else gate, geometry.vectors, out)
    return out


def laid_out(x: torch.Tensor, pattern: Pattern, stride: int, padding: int,
             prologue: tuple[torch.Tensor, torch.Tensor] | None = None, keep: bool = False
             ) -> tuple[torch.Tensor, Geometry]:
    """x spread into the flat layout of `pattern`'s conv (its buffer, reused call after call
    unless `keep`: `Pattern.workspace`), through `prologue` (Geometry.spread), and that
    layout's geometry."""
    geometry = pattern.geometry(stride, padding, x.shape[0], *x.shape[2:])
    flat = pattern.workspace(("input", geometry), geometry.flat_size(x.shape[1]), keep)
    return geometry.spread(x, flat, prologue), geometry


def inference_conv(flat: torch.Tensor, geometry: Geometry, pattern: Pattern,
                   bias: torch.Tensor | None, out: torch.Tensor | None = None,
                   residual: torch.Tensor | None = None, relu: bool = False) -> torch.Tensor:
    """The conv of a frozen `pattern` (inference) on its flat input, into `out` (a new tensor
    when None; or, e.g., the next conv's `Geometry.interior`), with the epilogue of `_conv`."""
    if out is None:
        out = flat.new_empty(geometry.batch, pattern.shape[0], geometry.out_h, geometry.out_w)
    return _conv(flat, pattern.forward_plan(geometry), pattern.frozen,
                 _empty() if bias is None else bias, geometry, out, residual, relu)


def _empty() -> torch.Tensor:
    return torch.empty(0)


def supported(conv: torch.nn.Module) -> bool:
    """Convs the kernels cover: float32 on the CPU, square kernel, stride 1 or 2, symmetric
    zero padding under the kernel's size, no groups or dilation."""
    return (isinstance(conv, torch.nn.Conv2d) and conv.groups == 1
            and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and len(set(conv.padding)) == 1
            and conv.padding[0] < conv.kernel_size[0]
            and conv.kernel_size[0] == conv.kernel_size[1]
            and conv.stride[0] == conv.stride[1] and conv.stride[0] in (1, 2)
            and conv.weight.dtype == torch.float32 and conv.weight.device.type == "cpu")


def sparse_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  pattern: Pattern, stride: int, padding: int) -> torch.Tensor:
    """F.conv2d(x, weight, bias, stride, padding) computed only at `pattern`'s weights (the
    others are taken as zero); needs `available()`."""
    if not torch.is_grad_enabled() or not (
            x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)):
        # No graph to record, so none of autograd.Function's bookkeeping (about 5 us a call).
        return _forward(x, weight, bias, pattern, stride, padding, False)[0]
    # Under autograd the input buffer is saved for the weight gradient: not reused until then.
    keep = weight.requires_grad
    return _SparseConv.apply(x, weight, bias, pattern, stride, padding, keep)


def normalized_conv2d(x: torch.Tensor, norm: torch.nn.BatchNorm2d, weight: torch.Tensor,
                      pattern: Pattern, padding: int, residual: torch.Tensor | None = None
                      ) -> torch.Tensor:
    """F.conv2d(relu(norm(x)), weight, None, 1, padding) (+ residual) with `norm` in training
    mode, computed only at `pattern`'s weights: a pre-activation block's batch-norm, ReLU,
    stride-1 conv and residual sum, as one pass for the batch statistics (`channel_moments`)
    and one that lays x out for the kernels normalised and rectified (Geometry.spread's
    prologue), the residual added as the conv writes. Backward: the conv's input gradient is
    gated by the ReLU's output as it is written, then torch's batch-norm backward. Neither the
    batch-norm's nor the ReLU's output is materialised or saved. `norm`'s running statistics
    and batch count move exactly as in nn.BatchNorm2d.forward. x and residual: contiguous
    [B, C, H, W]; needs `available()`."""
    count = x.numel() // x.shape[1]
    if count < 2:
        raise ValueError(f"expected more than 1 value per channel when training, got input "
                         f"of shape {tuple(x.shape)}")
    mean, variance = torch.ops.freetickets_sparse.channel_moments(x.detach())
    _update_running_statistics(norm, mean, variance, count)
    invstd = (variance + norm.eps).rsqrt()
    tracked = (x, norm.weight, norm.bias, weight, residual)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tracked):
        return _NormalizedConv.apply(x, norm.weight, norm.bias, mean, invstd, weight,
                                     residual, pattern, padding, norm.eps)
    out, _, _ = _normalized_forward(x, norm.weight, norm.bias, mean, invstd, weight, residual,
                                    pattern, padding, False)
    return out


@torch.no_grad()
def _update_running_statistics(norm: torch.nn.BatchNorm2d, mean: torch.Tensor,
                               variance: torch.Tensor, count: int) -> None:
    """nn.BatchNorm2d's training-mode update: the batch count, then the running mean and the
    unbiased running variance by `momentum` (by 1 / count where momentum is None)."""
    if not norm.track_running_stats:
        return
    norm.num_batches_tracked.add_(1)
    factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
    norm.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
    norm.running_var.mul_(1 - factor).add_(variance * (count / (count - 1)), alpha=factor)


def _normalized_forward(x, norm_weight, norm_bias, mean, invstd, weight, residual,
                        pattern: Pattern, padding: int, keep: bool):
    scale = invstd if norm_weight is None else invstd * norm_weight.detach()
    shift = -mean * scale
    if norm_bias is not None:
        shift = shift + norm_bias.detach()
    flat, geometry = laid_out(x.detach(), pattern, 1, padding, (scale, shift), keep)
    out = _conv(flat, pattern.forward_plan(geometry), weight, _empty(), geometry,
                x.new_empty(geometry.batch, pattern.shape[0], geometry.out_h, geometry.out_w),
                None if residual is None else residual.detach())
    return out, flat, geometry


class _NormalizedConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, norm_weight, norm_bias, mean, invstd, weight, residual,
                pattern: Pattern, padding: int, eps: float):
        out, flat, geometry = _normalized_forward(x, norm_weight, norm_bias, mean, invstd,
                                                  weight, residual, pattern, padding, True)
        ctx.pattern, ctx.geometry, ctx.eps = pattern, geometry, eps
        ctx.save_for_backward(x, norm_weight, mean, invstd, flat, weight)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, norm_weight, mean, invstd, flat, weight = ctx.saved_tensors
        pattern, geometry = ctx.pattern, ctx.geometry
        grad = grad.contiguous()
        needs = ctx.needs_input_grad
        grad_x = grad_norm_weight = grad_norm_bias = grad_w = None
        laid = _LaidOutGradient(grad, geometry, pattern)
        if any(needs[:3]):
            # The layout's interior holds relu(norm(x)): the ReLU's output gates the gradient.
            gated = _input_grad(laid, weight, pattern, geometry,
                                gate=geometry.interior(flat, x.shape[1]))
            grad_x, grad_norm_weight, grad_norm_bias = \
                torch.ops.aten.native_batch_norm_backward(
                    gated, x, norm_weight, None, None, mean, invstd, True, ctx.eps,
                    list(needs[:3]))  # False for an absent affine parameter
        if needs[5]:
            grad_w = _weight_grad(flat, laid, weight, pattern, geometry)
        pattern.release(("input", geometry))
        return (grad_x, grad_norm_weight, grad_norm_bias, None, None, grad_w,
                grad if needs[6] else None, None, None, None)
