"""Direct sparse conv kernels (harness/kernels/sparse_conv.py) and training through them
(SparsitySpec.kernels): equal to the masked dense conv, masks kept, and a dense fallback when no
compiler exists."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harness.kernels import sparse_conv
from harness.bench.parts import synthetic
from harness.models.resnet import resnet18
from harness.models.wide_resnet import wide_resnet
from harness.engine.train import Hook, Trainer
from methods.sparse.masking import Masking, SparsitySpec

ROOT = Path(__file__).resolve().parents[2]

needs_kernels = pytest.mark.skipif(not sparse_conv.available(),
                                   reason="sparse kernels not built (no C++ compiler)")


def wrn_layers():
    model = wide_resnet(16, 4)
    return {"wrn 3x3": model.get_submodule("blocks.2.conv2"),
            "wrn 3x3 stride 2": model.get_submodule("blocks.2.conv1"),
            "wrn 1x1 shortcut stride 2": model.get_submodule("blocks.4.shortcut")}


def resnet18_layers():
    stem = resnet18(num_classes=10)
    return {"resnet18 7x7 stride 2 stem": stem.conv1,
            "resnet18 3x3 stride 2": stem.layer2[0].conv1,
            "resnet18 1x1 shortcut": stem.layer2[0].downsample[0]}


LAYERS = {**wrn_layers(), **resnet18_layers()}
INPUT_SIDE = {"resnet18 7x7 stride 2 stem": 21}  # odd sides: a stride-2 conv's last row


def check_equal(conv: torch.nn.Conv2d, mask: torch.Tensor, side: int, batch: int = 2,
                pattern: sparse_conv.Pattern | None = None, seed: int = 0,
                vectors: int = sparse_conv.TILE_VECTORS[0]) -> None:
    """Outputs and the input, weight and bias gradients of the sparse kernels (through
    `pattern`, else a new one of tiles of `vectors`) against the masked dense conv, within
    1e-4 of the largest magnitude (float32)."""
    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(conv.weight.shape, generator=generator) * mask).requires_grad_()
    bias = torch.randn(conv.out_channels, generator=generator).requires_grad_()
    x = torch.randn(batch, conv.in_channels, side, side, generator=generator,
                    requires_grad=True)
    stride, padding = conv.stride[0], conv.padding[0]
    expected = F.conv2d(x, weight, bias, stride, padding)
    pattern = pattern or sparse_conv.Pattern(mask, vectors=vectors)
    got = sparse_conv.sparse_conv2d(x, weight, bias, pattern, stride, padding)
    upstream = torch.randn(expected.shape, generator=generator)
    dense_grads = torch.autograd.grad(expected, (x, weight, bias), upstream)
    sparse_grads = torch.autograd.grad(got, (x, weight, bias), upstream)
    dense_grads = (dense_grads[0], dense_grads[1] * mask, dense_grads[2])
    for name, want, have in zip(("output", "input grad", "weight grad", "bias grad"),
                                (expected, *dense_grads), (got, *sparse_grads)):
        scale = max(1.0, want.abs().max().item())
        assert (have - want).abs().max().item() <= 1e-4 * scale, name
    assert not sparse_grads[1][~mask].any()  # no gradient off the pattern


TILES = pytest.mark.parametrize("vectors", sparse_conv.TILE_VECTORS,
                                ids=[f"tile of {v}" for v in sparse_conv.TILE_VECTORS])


@needs_kernels
@TILES
@pytest.mark.parametrize("name", LAYERS)
def test_sparse_conv_equals_masked_dense_on_model_layers(name, vectors):
    conv = LAYERS[name]
    mask = torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(1)) < 0.2
    check_equal(conv, mask, INPUT_SIDE.get(name, 9), vectors=vectors)


@needs_kernels
@pytest.mark.parametrize("case", ["odd channels", "empty row", "fully dense", "bias-free 1x1"])
def test_sparse_conv_edge_cases(case):
    generator = torch.Generator().manual_seed(2)
    if case == "bias-free 1x1":
        conv = torch.nn.Conv2d(5, 3, 1)
    else:
        conv = torch.nn.Conv2d(7, 13, 3, stride=2 if case == "odd channels" else 1, padding=1)
    mask = torch.rand(conv.weight.shape, generator=generator) < 0.3
    if case == "empty row":
        mask[4] = False  # an output channel with no weights: its output is the bias
        mask[:, 2] = False  # an input channel no weight reads
    if case == "fully dense":
        mask[:] = True
    check_equal(conv, mask, 11 if case == "odd channels" else 6, batch=3)


@needs_kernels
@TILES
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("batch", [1, 64], ids=["few tiles", "many tiles"])
def test_threads_split_output_channels_or_tiles_to_the_same_numbers(threads, batch, vectors):
    """With few output tiles the forward's threads split the output channels (29 do not
    divide by 3), with many the tiles; the backward's threads split the tiles."""
    conv = torch.nn.Conv2d(7, 29, 3, padding=1)
    mask = torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(4)) < 0.3
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        check_equal(conv, mask, 8, batch=batch, vectors=vectors)
    finally:
        torch.set_num_threads(before)


@needs_kernels
@TILES
@pytest.mark.parametrize("columns", [True, False], ids=["columns", "direct"])
def test_both_ways_of_reading_the_input_in_channel_groups_that_do_not_divide_evenly(
        columns, vectors, monkeypatch):
    """The forward kernel reads a weight's shifted input straight from the input or from a
    per-tile copy of the columns (chosen by how many weights share a column), in groups of
    input channels; here each is forced, with groups that do not divide the channels."""
    monkeypatch.setattr(sparse_conv, "COLUMN_REUSE", 0 if columns else 10 ** 9)
    tile = vectors * sparse_conv.lanes()
    monkeypatch.setattr(sparse_conv, "L1_FLOATS", 3 * 9 * tile if columns else 5 * tile)
    generator = torch.Generator().manual_seed(3)
    for conv in (torch.nn.Conv2d(7, 13, 3, stride=2, padding=1),
                 torch.nn.Conv2d(11, 5, 3, padding=1), torch.nn.Conv2d(7, 6, 1)):
        mask = torch.rand(conv.weight.shape, generator=generator) < 0.4
        pattern = sparse_conv.Pattern(mask, vectors=vectors)
        geometry = sparse_conv.Geometry(conv.kernel_size[0], conv.stride[0], conv.padding[0],
                                        3, 9, 9, vectors=vectors)
        plan = pattern.forward_plan(geometry)
        assert (plan.shifts.numel() > 0) == columns
        assert plan.group < plan.in_channels or conv.kernel_size[0] == 1  # several groups
        check_equal(conv, mask, 9, batch=3, pattern=pattern)


@needs_kernels
@TILES
@pytest.mark.parametrize("kernel, stride, padding, side, shared", [
    (3, 1, 1, 8, True), (3, 2, 1, 9, True), (1, 2, 0, 9, True), (7, 2, 3, 21, True),
    (3, 1, 0, 8, False), (3, 2, 0, 8, False)])
def test_the_output_gradient_is_laid_out_once_where_its_two_layouts_coincide(
        kernel, stride, padding, side, shared, vectors):
    """The input gradient's layout and the weight gradient's planes are one buffer where the
    padding is (kernel - 1) / 2; both gradients as the masked dense conv's either way."""
    geometry = sparse_conv.Geometry(kernel, stride, padding, 2, side, side, vectors=vectors)
    assert sparse_conv._GradientLayout.of(geometry).shares_planes == shared
    mask = torch.rand(6, 5, kernel, kernel, generator=torch.Generator().manual_seed(5)) < 0.5
    pattern = sparse_conv.Pattern(mask, vectors=vectors)
    for seed in range(2):  # the buffers reused: the zeros between the gradient's pixels kept
        check_equal(torch.nn.Conv2d(5, 6, kernel, stride, padding), mask, side, 3, pattern,
                    seed)


@needs_kernels
@pytest.mark.parametrize("stride", [1, 2])
def test_a_channel_major_input_reads_as_its_contiguous_copy(stride):
    """What a CSR layer of sparse inference hands on: [C, B, H, W] memory seen as [B, C, H, W]."""
    generator = torch.Generator().manual_seed(4)
    mask = torch.rand(6, 5, 3, 3, generator=generator) < 0.5
    weight = torch.randn(mask.shape, generator=generator) * mask
    x = torch.randn(5, 3, 7, 7, generator=generator).transpose(0, 1)
    got = sparse_conv.sparse_conv2d(x, weight, None, sparse_conv.Pattern(mask), stride, 1)
    torch.testing.assert_close(got, F.conv2d(x.contiguous(), weight, None, stride, 1),
                               atol=1e-5, rtol=1e-5)


def train(kernels: str, steps: int = 6, interval: int = 2, hooks=lambda masking: []):
    torch.manual_seed(0)
    model = wide_resnet(10, 2)
    masking = Masking(model, SparsitySpec(0.8, update_interval=interval, kernels=kernels), seed=0)
    counts = {name: int(mask.sum()) for name, mask in masking.masks.items()}
    Trainer(batch_size=32, lr=0.05, progress=False).fit(
        model, synthetic(32 * steps), seed=0, hooks=[masking, *hooks(masking)], epochs=1)
    return model, masking, counts


@needs_kernels
def test_training_with_sparse_kernels_keeps_exact_masks_and_follows_the_dense_path():
    dense_model, dense_masking, _ = train("dense")
    model, masking, counts = train("sparse")
    assert masking.kernels.rebuilds > len(masking.layers)  # rebuilt after the mask updates
    for name, mask in masking.masks.items():
        assert int(mask.sum()) == counts[name]
        assert not masking.layers[name].weight[~mask].any()
    # The same steps up to float summation order, which moves a few near-ties of
    # prune-and-grow (as running the dense path on 2 threads instead of 1 does).
    moved = sum(int((mask != dense_masking.masks[name]).sum())
                for name, mask in masking.masks.items())
    assert moved < 0.02 * sum(counts.values())
    assert not any("_conv_forward" in layer.__dict__ for layer in masking.layers.values())


class KeptGradients(Hook):
    """Per step, whether the gradient was nonzero anywhere off the mask."""

    def __init__(self, masking: Masking):
        self.masking = masking
        self.off_mask: dict[int, bool] = {}

    def before_optimizer_step(self, state) -> None:
        grads = self.masking.dense_grads
        if grads is not None:
            self.off_mask[state.step + 1] = any(bool(grad[~self.masking.masks[name]].any())
                                                for name, grad in grads.items())


@needs_kernels
def test_a_step_that_grows_by_gradient_runs_densely():
    """RigL's update step (here step 2) keeps the dense gradient, nonzero off the mask, which
    the sparse kernels never compute."""
    kept = []
    train("sparse", steps=3, interval=2, hooks=lambda masking: kept.append(
        KeptGradients(masking)) or kept)
    assert kept[0].off_mask == {2: True}


@needs_kernels
def test_auto_chooses_each_layer_from_its_first_batches_then_keeps_the_choice():
    from methods.sparse.kernels import AUTO_BATCHES, AUTO_ROUNDS

    _, masking, _ = train("auto", steps=AUTO_BATCHES + 2, interval=100)
    assert set(masking.kernels.timings) == set(masking.kernels.layers)
    assert {timing["rounds"] for timing in masking.kernels.timings.values()} == \
        {AUTO_BATCHES * AUTO_ROUNDS}


def test_bad_kernels_setting_is_one_clear_error():
    from harness.core.errors import UserError

    with pytest.raises(UserError, match="kernels"):
        SparsitySpec(0.8, kernels="fast")


def test_without_a_compiler_training_falls_back_to_the_dense_path(tmp_path):
    """With no compiler on PATH (and no $CXX) the kernels are unavailable, one log line says
    why, and kernels='sparse' trains exactly as kernels='dense'."""
    script = (
        "import torch, sys\n"
        "sys.path.insert(0, %r)\n"
        "import harness.kernels.sparse_conv as sc\n"
        "from tests.kernels.test_sparse_kernels import train\n"
        "assert not sc.available()\n"
        "a, b = train('dense', 3, 2)[0], train('sparse', 3, 2)[0]\n"
        "assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))\n"
        "print('fallback ok')\n") % str(ROOT)
    env = {**os.environ, "PATH": str(tmp_path), "CXX": "no-such-compiler",
           "OMP_NUM_THREADS": "1",
           "FREETICKETS_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "fallback ok" in result.stdout
    assert result.stderr.count("sparse kernels unavailable") == 1
    assert "no C++ compiler" in result.stderr
    assert not (tmp_path / "cache").exists()


@needs_kernels
def test_edst_smoke_run_with_sparse_kernels_matches_the_dense_kernels_run(tmp_path):
    """A smoke EDST ensemble trained through the sparse kernels: exactly sparse tickets and
    the dense-kernel run's accuracy within seed noise (smoke test set: 360 digits)."""
    import pandas as pd

    from harness.experiment.execute import run_experiment

    fast = ["epoch_factor.factor = 0.02", "Experiment.suites = ('test',)",
            "inference_timing.enabled = False", "SparsitySpec.update_interval = 10"]
    accuracy = {}
    for kernels in ("dense", "sparse"):
        run_dir, _ = run_experiment(
            [str(ROOT / "gin" / "edst.gin"), str(ROOT / "gin" / "scale" / "smoke.gin")],
            [*fast, f"SparsitySpec.kernels = '{kernels}'"], str(tmp_path / kernels),
            progress=False)
        metrics = pd.read_parquet(run_dir / "metrics.parquet")
        accuracy[kernels] = metrics[(metrics.member == "ensemble") & (metrics.suite == "test")
                                    & (metrics.metric == "accuracy")].value.item()
        for index in range(3):
            saved = torch.load(run_dir / "checkpoints" / f"member_{index}.pt",
                               weights_only=False)
            total = sum(mask.numel() for mask in saved["masks"].values())
            assert sum(int(mask.sum()) for mask in saved["masks"].values()) / total == \
                pytest.approx(0.2, abs=0.01)
            for name, mask in saved["masks"].items():
                assert bool(((saved["model"][f"{name}.weight"] != 0) <= mask).all())
    assert accuracy["sparse"] == pytest.approx(accuracy["dense"], abs=0.03)
