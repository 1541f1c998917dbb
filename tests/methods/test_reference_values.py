"""Values that follow a method's reference code where the paper is silent: each gin file
names its source, and these tests pin the value it gives."""
from pathlib import Path

import gin
import pytest
import torch
from torch import nn

from harness.experiment import assemble as experiment  # noqa: F401  its configurables
from harness.experiment.config import parse
from methods.checkpoint_ensembles import FastGeometricEnsemble
from methods.sparse.pruned_ensembles import PFEnsemble

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def in_repository(monkeypatch):
    monkeypatch.chdir(ROOT)  # gin files include each other by repository-relative paths


def test_mc_dropout_learns_at_uncertainty_baselines_rate():
    """UB's dropout.py: base_learning_rate 0.05 per 128 images (not the dense recipe's 0.1)."""
    parse(["gin/table1/mc_dropout.gin"])
    assert gin.query_parameter("Trainer.batch_size") == 128
    assert gin.query_parameter("Trainer.lr") == 0.05


def test_pf_fine_tunes_at_the_authors_constant_rate():
    """The authors' PF command: lr 0.001 with no schedule for the whole fine-tuning run."""
    parse(["gin/table1/pf_m3_s08.gin"])
    with gin.unlock_config():
        method = PFEnsemble()
    lr = gin.query_parameter("Trainer.lr")
    schedule = method.finetune_schedule()
    assert {round(lr * schedule(progress), 12) for progress in (0.0, 0.3, 0.5, 0.7, 0.999)} \
        == {0.001}
    assert PFEnsemble().finetune_lr_factors == (0.01,)


def batchnorm_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    net(torch.randn(8, 3, 6, 6))  # moves the running statistics away from their start
    return net.eval()


def test_fge_members_predict_with_the_running_statistics_their_training_left():
    """dnn-mode-connectivity's fge.py collects predictions without utils.bn_update."""
    parse(["gin/table6/fge_m5_c10.gin"])
    assert gin.query_parameter("FastGeometricEnsemble.recompute_bn_statistics") is False
    member = batchnorm_net()
    before = {name: value.clone() for name, value in member.state_dict().items()}
    FastGeometricEnsemble().prepare_member(None, member, 0)  # needs no train set
    assert all(torch.equal(before[name], value) for name, value in member.state_dict().items())
