"""Training through the sparse kernels with a pre-activation block's batch-norm, ReLU and
residual sum fused to its conv (sparse_conv.normalized_conv2d, methods/sparse/kernels.py):
the same outputs, gradients and running statistics as the layers op by op, and the blocks that
must run op by op do."""
import copy

import pytest
import torch
import torch.nn.functional as F

from harness.kernels import sparse_conv
from harness.models.wide_resnet import wide_resnet
from methods.sparse.kernels import TrainingKernels
from methods.sparse.masking import Masking, SparsitySpec

needs_kernels = pytest.mark.skipif(not sparse_conv.available(),
                                   reason="sparse kernels not built (no C++ compiler)")


def assert_near(have: torch.Tensor, want: torch.Tensor, what: str) -> None:
    scale = max(1.0, want.abs().max().item())
    assert (have - want).abs().max().item() <= 1e-4 * scale, what


def randomised_norm(channels: int, momentum: float | None,
                    generator: torch.Generator) -> torch.nn.BatchNorm2d:
    norm = torch.nn.BatchNorm2d(channels, momentum=momentum)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=generator)
        norm.bias.uniform_(-0.5, 0.5, generator=generator)
    return norm


@needs_kernels
@pytest.mark.parametrize("vectors", sparse_conv.TILE_VECTORS)
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("with_residual", [False, True])
def test_normalized_conv_equals_batch_norm_relu_conv_and_sum(momentum, with_residual,
                                                             vectors):
    """Twice, as the kernels' buffers are reused; an input whose mean is large against its
    spread, where a one-pass variance could cancel."""
    generator = torch.Generator().manual_seed(0)
    norm = randomised_norm(8, momentum, generator)
    reference = copy.deepcopy(norm)
    mask = torch.rand(6, 8, 3, 3, generator=generator) < 0.4
    weight = (torch.randn(mask.shape, generator=generator) * mask).requires_grad_()
    pattern = sparse_conv.Pattern(mask, vectors=vectors)
    for _ in range(2):
        x = (torch.randn(3, 8, 7, 5, generator=generator) * 2 + 30).requires_grad_()
        residual = (torch.randn(3, 6, 7, 5, generator=generator).requires_grad_()
                    if with_residual else None)
        upstream = torch.randn(3, 6, 7, 5, generator=generator)
        inputs = [x, weight, norm.weight, norm.bias, *([residual] if with_residual else [])]
        got = sparse_conv.normalized_conv2d(x, norm, weight, pattern, 1, residual)
        grads = torch.autograd.grad(got, inputs, upstream)
        expected = F.conv2d(reference(x).relu(), weight, None, 1, 1)
        if with_residual:
            expected = expected + residual
        reference_inputs = [x, weight, reference.weight, reference.bias, *inputs[4:]]
        expected_grads = torch.autograd.grad(expected, reference_inputs, upstream)
        assert_near(got, expected, "output")
        for name, have, want in zip(("x", "weight", "norm weight", "norm bias", "residual"),
                                    grads, expected_grads):
            assert_near(have, want * mask if name == "weight" else want, name)
        assert not grads[1][~mask].any()
    assert int(norm.num_batches_tracked) == int(reference.num_batches_tracked) == 2
    torch.testing.assert_close(norm.running_mean, reference.running_mean)
    torch.testing.assert_close(norm.running_var, reference.running_var)


@needs_kernels
def test_without_autograd_the_running_statistics_still_move():
    generator = torch.Generator().manual_seed(1)
    norm = randomised_norm(4, 0.1, generator)
    reference = copy.deepcopy(norm)
    mask = torch.rand(5, 4, 3, 3, generator=generator) < 0.5
    weight = torch.randn(mask.shape, generator=generator) * mask
    x = torch.randn(2, 4, 6, 6, generator=generator)
    with torch.no_grad():
        got = sparse_conv.normalized_conv2d(x, norm, weight, sparse_conv.Pattern(mask), 1)
        expected = F.conv2d(reference(x).relu(), weight, None, 1, 1)
    assert_near(got, expected, "output")
    torch.testing.assert_close(norm.running_var, reference.running_var)


@needs_kernels
def test_one_value_per_channel_is_refused_as_batch_norm_refuses_it():
    mask = torch.ones(2, 3, 3, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        sparse_conv.normalized_conv2d(torch.randn(1, 3, 1, 1), torch.nn.BatchNorm2d(3),
                                      torch.randn(2, 3, 3, 3), sparse_conv.Pattern(mask), 1)


def masked_pair(depth: int = 16, width: int = 2):
    """A masked WRN, an identical copy, the copy's kernels (choice 'sparse') and the masks."""
    torch.manual_seed(0)
    model = wide_resnet(depth, width)
    masking = Masking(model, SparsitySpec(0.8), seed=0)
    fused = copy.deepcopy(model)
    layers = {name: fused.get_submodule(name) for name in masking.layers}
    kernels = TrainingKernels(layers, "sparse", lambda name: masking.masks[name], lambda: False,
                              fused)
    return model, fused, kernels, masking.masks


@needs_kernels
def test_a_training_step_fuses_every_stride_one_block_conv_and_matches_op_by_op():
    """WRN-16-2: each block's conv2, and conv1 where the shortcut is the identity (blocks 1,
    3 and 5); the step's loss, gradients and running statistics as without the kernels."""
    model, fused, kernels, masks = masked_pair()
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(6) % 10
    kernels.attach()
    try:
        loss = F.cross_entropy(fused(x), labels)
        loss.backward()
    finally:
        kernels.detach()
    expected = F.cross_entropy(model(x), labels)
    expected.backward()
    assert kernels.fused_layers == {*(f"blocks.{i}.conv2" for i in range(6)),
                                    "blocks.1.conv1", "blocks.3.conv1", "blocks.5.conv1"}
    assert kernels.record()["fused_batch_norm"] == sorted(kernels.fused_layers)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    for (name, have), want in zip(fused.named_parameters(), model.parameters()):
        layer = name.removesuffix(".weight")  # the kernels' weight gradient: on the mask only
        mask = masks[layer] if layer in kernels.layers else True
        assert_near(have.grad, want.grad * mask, name)
    for (name, have), want in zip(fused.named_buffers(), model.buffers()):
        assert_near(have.float(), want.float(), name)
    assert not any("forward" in block.__dict__ for block in fused.blocks)


@needs_kernels
def test_blocks_run_op_by_op_in_eval_mode_on_dense_steps_and_where_a_hook_watches():
    _, fused, kernels, _ = masked_pair(10, 2)
    x = torch.randn(2, 3, 32, 32)
    kernels.attach()
    try:
        fused.eval()
        with torch.no_grad():
            fused(x)
        assert not kernels.fused_layers
        fused.train()
        kernels.dense_step = lambda: True
        fused(x).sum().backward()
        assert not kernels.fused_layers
        kernels.dense_step = lambda: False
        seen = []
        fused.blocks[1].bn2.register_forward_hook(lambda *args: seen.append(1))
        fused(x).sum().backward()
    finally:
        kernels.detach()
    assert seen and kernels.fused_layers == {"blocks.0.conv2", "blocks.2.conv2"}
