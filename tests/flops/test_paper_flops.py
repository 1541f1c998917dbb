"""Planned FLOPs of every paper row against the paper's columns (issue: FLOPs accounting)
and against an independent count of a real masked network."""
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from harness.experiment.config import parse
from harness.experiment.assemble import Experiment
from harness.models import build_model
from methods.sparse.masking import Masking, SparsitySpec

ROOT = Path(__file__).resolve().parents[2]

# (gin file, train FLOPs ratio, test FLOPs ratio or None): paper Tables 1, 3 and 6.
PAPER = [
    ("gin/table1/edst_m3_s08.gin", 0.61, 1.01),
    ("gin/table1/edst_m7_s09.gin", 0.57, 1.17),
    ("gin/table1/dst_m3_s08.gin", 1.01, 1.01),
    ("gin/table1/static_m3_s08.gin", 1.01, None),
    ("gin/table1/dense_ensemble.gin", 4.00, None),
    ("gin/table1/dense.gin", 1.00, None),
    ("gin/table3/edst_m2_s08.gin", 0.48, None),
    ("gin/table3/edst_m4_s08.gin", 0.87, None),
    ("gin/table3/dst_m2_s08.gin", 1.12, None),
]


def plan(gin_file):
    parse([str(ROOT / gin_file)])
    return Experiment().plan_flops()


@pytest.mark.parametrize("gin_file,train_ratio,test_ratio", PAPER)
def test_planned_ratios_reproduce_the_paper(gin_file, train_ratio, test_ratio):
    report = plan(gin_file)
    assert report["train_flops_ratio"] == pytest.approx(train_ratio, abs=0.015)
    if test_ratio is not None:
        assert report["test_flops_ratio"] == pytest.approx(test_ratio, abs=0.015)


@pytest.mark.parametrize("gin_file,ratio", [("gin/table1/edst_m3_s08.gin", 0.337),
                                            ("gin/table1/edst_m7_s09.gin", 0.167),
                                            ("gin/table3/edst_m2_s08.gin", 0.42)])
def test_erk_forward_ratios_of_the_paper(gin_file, ratio):
    assert plan(gin_file)["forward_ratio"] == pytest.approx(ratio, abs=0.005)


def test_imagenet_reference_matches_the_papers_absolute_figure():
    assert plan("gin/table3/dense.gin")["train_flops"] == pytest.approx(4.8e18, rel=0.10)


def test_forward_ratio_agrees_with_an_independent_count_of_a_masked_wrn():
    """FlopCounterMode on the real WRN-28-10, each layer weighted by the nonzero fraction of
    the weights a real Masking left: no code shared with the planner but the masks."""
    report = plan("gin/table1/edst_m3_s08.gin")
    torch.manual_seed(0)
    model = build_model("wide_resnet", num_classes=10, in_channels=3)
    Masking(model, SparsitySpec(0.8), seed=0)
    total = sparse = 0.0
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, 32, 32))
    by_module = counter.get_flop_counts()
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            flops = sum(by_module[f"WideResNet.{name}"].values())
            total += flops
            sparse += flops * float((module.weight != 0).float().mean())
    assert report["dense_forward_flops"] == pytest.approx(total, rel=1e-9)
    assert report["forward_ratio"] == pytest.approx(sparse / total, abs=1e-3)
