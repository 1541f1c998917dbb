"""Sparse inference with the layer passes fused (harness/kernels/inference.py, FusedPreActBlock):
the kernels' prologue (batch-norm and ReLU as the input is laid out) and epilogue (ReLU,
residual sum, output written into the next conv's layout) against plain torch, and whole WRNs
against the masked dense network whatever kernel each conv runs."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from harness.kernels import sparse_conv
from harness.kernels.inference import FusedPreActBlock, conv_names, sparsify
from harness.models.variants import add_mc_dropout
from harness.models.wide_resnet import wide_resnet
from tests.experiment.test_export import randomised

needs_kernels = pytest.mark.skipif(not sparse_conv.available(),
                                   reason="sparse kernels not built (no C++ compiler)")


def masked_conv(in_channels: int, out_channels: int, density: float, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(out_channels, in_channels, 3, 3, generator=generator) < density
    return torch.randn(mask.shape, generator=generator) * mask, generator


@needs_kernels
@pytest.mark.parametrize("stride", [1, 2])
def test_the_prologue_applies_batch_norm_and_relu_as_the_input_is_laid_out(stride):
    weight, generator = masked_conv(5, 6, 0.5)
    scale, shift = torch.rand(5, generator=generator) + 0.5, torch.randn(5, generator=generator)
    x = torch.randn(3, 5, 9, 9, generator=generator).transpose(2, 3)  # any strides
    pattern = sparse_conv.Pattern(weight != 0, frozen=weight)
    flat, geometry = sparse_conv.laid_out(x, pattern, stride, 1, (scale, shift))
    got = sparse_conv.inference_conv(flat, geometry, pattern, None)
    activated = (x * scale[:, None, None] + shift[:, None, None]).relu()
    torch.testing.assert_close(got, F.conv2d(activated, weight, None, stride, 1),
                               atol=1e-5, rtol=1e-5)


@needs_kernels
@pytest.mark.parametrize("batch", [1, 4])
def test_the_epilogue_adds_the_residual_and_writes_into_the_next_convs_layout(batch):
    first, generator = masked_conv(4, 7, 0.4)
    second, _ = masked_conv(7, 7, 0.4, seed=1)
    bias = torch.randn(7, generator=generator)
    x = torch.randn(batch, 4, 10, 10, generator=generator)
    residual = torch.randn(batch, 7, 10, 10, generator=generator)
    patterns = [sparse_conv.Pattern(w != 0, frozen=w) for w in (first, second)]
    flat, geometry = sparse_conv.laid_out(x, patterns[0], 1, 1)
    following = sparse_conv.Geometry(3, 1, 1, batch, 10, 10)
    hidden = patterns[1].workspace(("input", following), following.flat_size(7))
    sparse_conv.inference_conv(flat, geometry, patterns[0], bias,
                               out=following.interior(hidden, 7), relu=True)
    got = sparse_conv.inference_conv(hidden, following, patterns[1], None, residual=residual)
    expected = F.conv2d(F.conv2d(x, first, bias, 1, 1).relu(), second, None, 1, 1) + residual
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert hidden[-following.slack:].abs().max() == 0  # the padding and slack stay zero


def masked_wrn() -> torch.nn.Module:
    return randomised(wide_resnet(10, 2), 0.8)


@needs_kernels
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("plan", ["every conv direct", "shortcuts dense", "second conv gemm",
                                  "direct at batch 1 only"])
def test_a_wrn_with_fused_blocks_equals_the_masked_dense_network(plan, batch):
    model = masked_wrn()
    kernels = {"every conv direct": lambda name: {1: "direct"},
               "shortcuts dense": lambda name: {1: "dense" if "shortcut" in name else "direct"},
               "second conv gemm": lambda name: {1: "gemm" if name.endswith("conv2") else
                                                 "direct"},
               "direct at batch 1 only": lambda name: {1: "direct", 3: "csr"}}[plan]
    converted = sparsify(model, {name: kernels(name) for name in conv_names(model)})
    blocks = [module for module in converted.modules() if isinstance(module, FusedPreActBlock)]
    assert len(blocks) == 3
    x = torch.randn(batch, 3, 32, 32)
    with torch.inference_mode():
        expected = model(x)
        for _ in range(2):  # the buffers kept between calls give the same numbers again
            assert (converted(x) - expected).abs().max().item() < 1e-4


@needs_kernels
def test_a_block_left_out_of_the_plans_stays_unfused_and_its_batch_norms_affine():
    model = masked_wrn()
    names = [name for name in conv_names(model) if not name.startswith("blocks.1.")]
    converted = sparsify(model, {name: {1: "direct"} for name in names})
    assert not isinstance(converted.blocks[1], FusedPreActBlock)
    assert all(isinstance(block, FusedPreActBlock) for block in itertools.islice(
        converted.blocks, 0, 3, 2))
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert (converted(x) - model(x)).abs().max().item() < 1e-4


@needs_kernels
def test_a_block_whose_first_conv_carries_mc_dropout_is_not_fused():
    model = masked_wrn()
    add_mc_dropout(model, list(model.blocks), 0.0)  # rate 0: the same function, a new shape
    converted = sparsify(model, {name: {1: "direct"} for name in conv_names(model)})
    assert not any(isinstance(module, FusedPreActBlock) for module in converted.modules())
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert (converted(x) - model(x)).abs().max().item() < 1e-4


@needs_kernels
@pytest.mark.parametrize("vectors", sparse_conv.TILE_VECTORS)
@pytest.mark.parametrize("faster", ["columns", "direct"])
def test_a_frozen_pattern_lays_out_and_reads_its_input_the_way_that_timed_faster(
        faster, vectors, monkeypatch):
    """Inference times each tile with both ways of reading the input once per input size
    (training keeps the pattern's tile and COLUMN_REUSE's rule); either way the conv is the
    same."""
    candidates = [(v, read) for v in sparse_conv.TILE_VECTORS for read in ("columns", "direct")]
    timings = [1.0 if candidate == (vectors, faster) else 2.0 for candidate in candidates]
    monkeypatch.setattr(sparse_conv, "median_seconds", lambda functions, rounds: timings)
    weight, generator = masked_conv(6, 5, 0.5)
    pattern = sparse_conv.Pattern(weight != 0, frozen=weight)
    x = torch.randn(2, 6, 9, 9, generator=generator)
    flat, geometry = sparse_conv.laid_out(x, pattern, 1, 1)
    got = sparse_conv.inference_conv(flat, geometry, pattern, None)
    assert geometry.vectors == vectors
    assert (pattern.forward_plan(geometry).shifts.numel() > 0) == (faster == "columns")
    torch.testing.assert_close(got, F.conv2d(x, weight, None, 1, 1), atol=1e-5, rtol=1e-5)
