"""Sparse inference (harness/kernels/inference.py) and its export (harness/experiment/export.py): equal
outputs to the masked dense network, the zeros really gone from storage, a dense run refused,
a damaged export one clear error; and the wall-clock row every run records (harness/evaluation/inference_timing.py).
"""
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.experiment import export
from harness.core.errors import UserError
from harness.experiment.execute import run_experiment
from harness.models.resnet import resnet18
from harness.models.wide_resnet import wide_resnet
from harness.kernels.inference import KERNELS, conv_names, sparsify
from methods.sparse.masking import Masking, SparsitySpec

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "gin" / "scale" / "smoke.gin")
FAST = ["epoch_factor.factor = 0.004", "Experiment.suites = ('test',)",
        "inference_timing.batch_size = 8", "inference_timing.rounds = 1"]


def smoke_run(method, tmp_path, *bindings):
    return run_experiment([str(ROOT / "gin" / f"{method}.gin"), SMOKE], [*FAST, *bindings],
                          str(tmp_path / method), progress=False)


@pytest.fixture(scope="module")
def static_run(tmp_path_factory):
    run_dir, summary = smoke_run("static", tmp_path_factory.mktemp("static"),
                                 "StaticSparseEnsemble.num_members = 2",
                                 "StaticSparseEnsemble.sparsity = 0.9")
    return run_dir, summary


def masked_members(run_dir: Path) -> list[torch.nn.Module]:
    return export.load_run_members(run_dir)


def test_every_run_records_its_inference_time(static_run):
    run_dir, summary = static_run
    metrics = pd.read_parquet(run_dir / "metrics.parquet")
    timing = metrics[metrics.suite == "timing"].set_index("metric").value
    assert sorted(timing.index) == ["inference_seconds_per_image",
                                    "sparse_inference_seconds_per_image"]
    assert (timing > 0).all()
    assert summary["inference_timing"]["batch_size"] == 8
    assert summary["inference_timing"]["device"] == "cpu"


def randomised(model: torch.nn.Module, sparsity: float) -> torch.nn.Module:
    """`model` with ERK-masked weights and non-trivial batch-norm statistics, in eval mode."""
    torch.manual_seed(0)
    Masking(model, SparsitySpec(sparsity), seed=0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("build", [lambda: wide_resnet(10, 2), lambda: resnet18(num_classes=10)],
                         ids=["wrn10_2", "resnet18"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_each_kernel_equals_the_masked_dense_network(build, kernel):
    model = randomised(build(), 0.9)
    converted = sparsify(model, {name: {1: kernel} for name in conv_names(model)})
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        expected, got = model(x), converted(x)
    assert (got - expected).abs().max().item() < 1e-4
    assert not any(isinstance(m, torch.nn.Conv2d) for m in converted.modules())


def test_export_round_trip_gives_equal_outputs_and_drops_the_zeros(static_run, tmp_path):
    run_dir, _ = static_run
    out = tmp_path / "export"
    manifest = export.export(run_dir, out, batch_sizes=(1, 16), rounds=1)
    assert sorted(path.name for path in out.iterdir()) == ["export.json", "member_0.pt",
                                                           "member_1.pt"]
    assert not out.with_name("export.partial").exists()
    assert manifest["members"][0]["density"] == pytest.approx(0.1, abs=0.01)
    predictor = export.load_export(out)
    dense = masked_members(run_dir)
    x = torch.randn(5, 1, 8, 8)
    with torch.inference_mode():
        expected = torch.stack([member(x) for member in dense])
        got = predictor(x)
    assert got.shape == expected.shape == (2, 5, 10)
    assert (got - expected).abs().max().item() < 1e-4
    saved = torch.load(out / "member_0.pt", weights_only=True)
    weights = dense[0].state_dict()
    for name, parts in saved["csr"].items():
        assert parts["values"].numel() == int(weights[f"{name}.weight"].count_nonzero())
        assert f"{name}.weight" not in saved["state_dict"]


def test_cli_prints_speedups(static_run, tmp_path, capsys):
    assert export.main([str(static_run[0]), "--output_dir", str(tmp_path / "e"), "--batch_sizes",
                        "2", "--rounds", "1"]) == 0
    printed = capsys.readouterr().out
    assert "member 1: density" in printed and "speed-up" in printed


def test_an_existing_folder_is_never_replaced(static_run, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert export.main([str(static_run[0]), "--output_dir", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [path.name for path in out.iterdir()] == ["notes.txt"]


def test_a_dense_run_is_refused_with_a_clear_message(tmp_path, capsys):
    run_dir, _ = smoke_run("dense", tmp_path)
    capsys.readouterr()  # the run's log lines
    out = tmp_path / "export"
    assert export.main([str(run_dir), "--output_dir", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "dense run" in error and "no masks" in error
    assert not out.exists() and not out.with_name("export.partial").exists()


def damage(out: Path, how: str) -> None:
    if how == "no manifest":
        (out / "export.json").unlink()
    elif how == "garbled manifest":
        (out / "export.json").write_text("{not json")
    elif how == "other format":
        (out / "export.json").write_text(json.dumps({"format": "something else"}))
    elif how == "missing member":
        (out / "member_1.pt").unlink()
    elif how == "flipped byte":
        data = bytearray((out / "member_0.pt").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (out / "member_0.pt").write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["no manifest", "garbled manifest", "other format",
                                 "missing member", "flipped byte"])
def test_a_damaged_export_is_one_clear_error(static_run, tmp_path, how):
    out = tmp_path / "export"
    export.export(static_run[0], out, kernels="csr")
    damage(out, how)
    with pytest.raises(UserError, match="is not a usable sparse export: .*export the run again"):
        export.load_export(out)
