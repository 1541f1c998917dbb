"""What 'auto' decides (methods/sparse/kernels.py) and what a run records of its sparse kernels:
summary.json `sparse_kernels`, per stage, each conv's kernels, auto's seconds and the
rebuilds of the formats."""
import json
from pathlib import Path

import pytest
import torch

from harness.kernels import sparse_conv
from harness.models.wide_resnet import wide_resnet
from methods.sparse.kernels import AUTO_BATCHES, AUTO_MARGIN, AUTO_ROUNDS, TrainingKernels
from methods.sparse.masking import Masking, SparsitySpec

ROOT = Path(__file__).resolve().parents[2]

needs_kernels = pytest.mark.skipif(not sparse_conv.available(),
                                   reason="sparse kernels not built (no C++ compiler)")


def test_auto_measures_at_least_seven_rounds():
    assert AUTO_BATCHES * AUTO_ROUNDS >= 7


@pytest.mark.parametrize("tile_shares, runs_sparse, vectors", [
    ((1 - 2 * AUTO_MARGIN, 1.0), True, 8),  # clearly faster at tiles of 8
    ((1.0, 1 - 2 * AUTO_MARGIN), True, 12),  # at tiles of 12
    ((1 - AUTO_MARGIN / 2, 1.1), False, 8),  # faster, but within the margin: dense
    ((1.3, 1.2), False, 12),
])
def test_auto_runs_a_layer_sparse_only_where_its_kernels_win_by_the_margin(
        tile_shares, runs_sparse, vectors, monkeypatch):
    """Decided from the medians of AUTO_BATCHES batches' rounds, at the faster tile; dense
    while measuring."""
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    mask = torch.ones(4, 4, 3, 3, dtype=torch.bool)
    mask[:2] = False
    training = TrainingKernels({"conv": conv}, "auto", lambda name: mask, lambda: False)
    # One round in each batch is a burst of load on a sparse side: medians leave it alone.
    rounds = [[1.0] * AUTO_ROUNDS,
              *([share] * (AUTO_ROUNDS - 1) + [50.0] for share in tile_shares)]
    monkeypatch.setattr(training, "_measure", lambda name, layer, x: rounds)
    x = torch.zeros(1, 4, 5, 5)
    decisions = [training._sparse_wins("conv", conv, x) for _ in range(AUTO_BATCHES + 2)]
    assert decisions == [False] * (AUTO_BATCHES - 1) + [runs_sparse] * 3
    timing = training.timings["conv"]
    assert timing["rounds"] == AUTO_BATCHES * AUTO_ROUNDS
    assert timing["sparse_seconds"] == pytest.approx(min(tile_shares))
    assert timing["tile_seconds"] == dict(zip(("8", "12"), map(pytest.approx, tile_shares)))
    assert timing["dense_seconds"] == 1.0 and timing["density"] == 0.5
    assert timing["tile_vectors"] == vectors
    if sparse_conv.available():
        assert training._pattern("conv").vectors == vectors


def test_rebuild_counts_carry_through_a_resume():
    spec = SparsitySpec(0.8, kernels="sparse")
    trained = Masking(wide_resnet(10, 2), spec, seed=0)
    trained.kernels.rebuilds, trained.kernels.rebuild_seconds = 7, 0.25
    resumed = Masking(wide_resnet(10, 2), spec, seed=0)
    resumed.load_state_dict(trained.state_dict())
    assert (resumed.kernels.rebuilds, resumed.kernels.rebuild_seconds) == (7, 0.25)
    dense = Masking(wide_resnet(10, 2), SparsitySpec(0.8), seed=0)
    assert "kernels" not in dense.state_dict() and dense.record() == {}
    resumed.load_state_dict(dense.state_dict())  # a checkpoint trained on dense kernels


@needs_kernels
def test_kernels_sparse_records_every_conv_sparse_and_its_rebuilds():
    from tests.kernels.test_sparse_kernels import train

    _, masking, _ = train("sparse", steps=4, interval=2)
    record = masking.record()["sparse_kernels"]
    assert record["setting"] == "sparse" and record["available"] is True
    assert set(record["layers"]) == set(masking.kernels.layers)
    assert {entry["kernels"] for entry in record["layers"].values()} == {"sparse"}
    assert record["sparse_layers"] == len(masking.kernels.layers)
    assert record["rebuilds"] == masking.kernels.rebuilds > len(masking.kernels.layers)
    assert record["rebuild_seconds"] > 0
    json.dumps(record)  # plain values


@needs_kernels
def test_a_run_on_auto_kernels_records_them_in_its_summary(tmp_path):
    """A DST member trained on the digits with kernels = 'auto': every masked conv in
    summary.json with its kernels, auto's seconds and its decision by the margin."""
    from harness.experiment.execute import run_experiment

    run_dir, summary = run_experiment(
        [str(ROOT / "gin" / "dst.gin"), str(ROOT / "gin" / "scale" / "smoke.gin")],
        ["DSTEnsemble.num_members = 1", "epoch_factor.factor = 0.004",
         "Experiment.suites = ('test',)", "inference_timing.enabled = False",
         "SparsitySpec.update_interval = 5", "SparsitySpec.kernels = 'auto'"],
        str(tmp_path / "run"), progress=False)
    assert summary == json.loads((run_dir / "summary.json").read_text())
    record = summary["sparse_kernels"]["member_0"]
    assert record["setting"] == "auto" and record["available"] is True
    convs = {name for name, module in wide_resnet(10, 2, in_channels=1).named_modules()
             if isinstance(module, torch.nn.Conv2d)}
    assert set(record["layers"]) == convs
    for entry in record["layers"].values():
        assert entry["rounds"] == AUTO_BATCHES * AUTO_ROUNDS
        clearly_faster = entry["sparse_seconds"] < (1 - AUTO_MARGIN) * entry["dense_seconds"]
        assert entry["kernels"] == ("sparse" if clearly_faster else "dense")
        tiles = entry["tile_seconds"]
        assert set(tiles) == {str(v) for v in sparse_conv.TILE_VECTORS}
        assert entry["sparse_seconds"] == tiles[str(entry["tile_vectors"])] == min(tiles.values())
    assert record["sparse_layers"] == sum(entry["kernels"] == "sparse"
                                          for entry in record["layers"].values())
    # a format per sparse layer, then one per update of it (the measuring's are not counted)
    assert record["rebuilds"] >= record["sparse_layers"]
    assert (record["rebuild_seconds"] > 0) == (record["rebuilds"] > 0)
