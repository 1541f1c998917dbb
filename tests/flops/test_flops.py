"""FLOPs accounting (paper App. D, RigL App. H): layer counts, RigL's DST formula, the ledger,
and the paper's reference ratios f_S / f_D under ERK."""
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harness.data.arrays import ArrayDataset, Augment
from harness.flops import (FlopsLedger, dense_forward_flops, dst_step_flops,
                           ensemble_test_flops, layer_forward_flops, sparse_forward_flops,
                           training_flops)
from harness.models.wide_resnet import wide_resnet
from harness.engine.train import Trainer
from methods.sparse.distributions import layer_densities, prunable_layers


def _on_meta(build):
    """Big reference models are built on the meta device: shapes only, no memory, no compute."""
    with torch.device("meta"):
        return build()


def _erk_ratio(model: nn.Module, input_shape, sparsity: float, dense_first_layer=False):
    layer_flops = layer_forward_flops(model, input_shape)
    shapes = {name: tuple(module.weight.shape)
              for name, module in prunable_layers(model, dense_first_layer).items()}
    densities = layer_densities(shapes, 1 - sparsity, "erk")
    return sparse_forward_flops(layer_flops, densities) / dense_forward_flops(layer_flops)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x):
        return self.fc(self.drop(self.bn(self.conv(x)).relu()).flatten(1))


TINY_FLOPS = {"conv": 2 * 3 * 3 * 4 * 1 * 3 * 3, "fc": 2 * 36 * 3}


def _dataset(n=12):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 6, 6), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 3, (n,), generator=generator)
    return ArrayDataset(images, labels, num_classes=3, mean=(0.5,), std=(0.25,))


def _fit(ledger, epochs=2, checkpoint=None):
    """12 examples, batch 4: 3 steps per epoch."""
    trainer = Trainer(batch_size=4, augment=Augment(padding=0, hflip=False), progress=False)
    torch.manual_seed(0)
    return trainer.fit(_Tiny(), _dataset(), seed=0, hooks=[ledger], epochs=epochs,
                       checkpoint=checkpoint)


def test_layer_flops_follow_the_closed_forms():
    model = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), nn.Flatten(),
                          nn.Linear(8 * 5 * 5, 7))
    flops = layer_forward_flops(model, (4, 9, 9))
    assert flops == {"0": 2 * (5 * 5 * 8) * (4 // 2) * 3 * 3, "2": 2 * 200 * 7}
    assert layer_forward_flops(_Tiny(), (1, 6, 6)) == TINY_FLOPS


def test_linear_counts_every_position_it_is_applied_to():
    assert layer_forward_flops(nn.Linear(16, 5), (7, 16)) == {"": 2 * 7 * 16 * 5}


def test_counting_leaves_the_model_as_it_was():
    model = _Tiny().train()
    model.drop.eval()  # a mixed state must survive, not just the top-level flag
    before = {key: value.clone() for key, value in model.state_dict().items()}
    layer_forward_flops(model, (1, 6, 6))
    assert model.training and model.conv.training and not model.drop.training
    after = model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert not any(module._forward_hooks for module in model.modules())


def test_wrn_28_10_dense_forward_matches_flop_counter_and_5_24_gmacs():
    model = _on_meta(wide_resnet)
    layer_flops = layer_forward_flops(model, (3, 32, 32))
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32, device="meta"))
    dense = dense_forward_flops(layer_flops)
    assert dense == counter.get_total_flops()  # WRN has no counted op besides conv/linear
    assert dense / 2 == pytest.approx(5.24e9, rel=0.005)
    assert len(layer_flops) == 29  # 25 3x3 convs (stem included), 3 shortcuts, fc


def test_resnet50_dense_forward_is_4_1_gmacs():
    model = _on_meta(torchvision.models.resnet50)
    assert dense_forward_flops(layer_forward_flops(model, (3, 224, 224))) / 2 == \
        pytest.approx(4.1e9, rel=0.005)


@pytest.mark.parametrize("sparsity, expected", [(0.8, 0.337), (0.9, 0.167)])
def test_wrn_28_10_erk_ratio_matches_paper(sparsity, expected):
    """Paper App. D: ERK WRN-28-10 trains at 33.7% / 16.7% of the dense FLOPs; every conv
    and the fc are ERK-sparse."""
    assert _erk_ratio(_on_meta(wide_resnet), (3, 32, 32), sparsity) == \
        pytest.approx(expected, abs=0.005)


def test_resnet50_erk_ratio_matches_paper_with_dense_first_conv():
    """Paper App. D: 42% for ERK ResNet-50 at S=0.8, RigL's ImageNet setting of a dense stem
    conv (left out of the ERK solve); the final fc stays in the solve."""
    ratio = _erk_ratio(_on_meta(torchvision.models.resnet50), (3, 224, 224), 0.8,
                       dense_first_layer=True)
    assert ratio == pytest.approx(0.42, abs=0.005)


def test_sparse_forward_scales_each_layer_by_its_density():
    assert sparse_forward_flops(TINY_FLOPS, {"conv": 0.5}) == TINY_FLOPS["conv"] / 2 + 216
    assert sparse_forward_flops(TINY_FLOPS, {}) == dense_forward_flops(TINY_FLOPS) == 864
    with pytest.raises(ValueError, match="module.conv"):
        sparse_forward_flops(TINY_FLOPS, {"module.conv": 0.5})
    with pytest.raises(ValueError, match="must be in"):
        sparse_forward_flops(TINY_FLOPS, {"conv": 1.5})


def test_dst_step_flops_is_rigls_average():
    assert dst_step_flops(2.0, 10.0, None) == 6.0
    assert dst_step_flops(2.0, 10.0, 4) == (3 * 2 * 4 + 2 * 2 + 10) / 5 == 7.6
    assert dst_step_flops(2.0, 10.0, 1) == (6 + 4 + 10) / 2
    assert dst_step_flops(5.0, 5.0, 1000) == 15.0  # a dense "sparse" net pays nothing extra
    assert training_flops(2.0, 10.0, steps=10, batch_size=3, update_interval=4) == 228.0
    with pytest.raises(ValueError):
        dst_step_flops(2.0, 10.0, 0)


def test_ensemble_test_flops_sum_members():
    """Table 6: a dense 12-member snapshot ensemble costs 12x a dense forward at test time."""
    assert ensemble_test_flops([864] * 12) == 12 * 864
    assert ensemble_test_flops([0.2 * 864] * 3) == pytest.approx(0.6 * 864)


def test_ledger_of_a_dense_run_is_steps_x_batch_x_3f_exactly():
    ledger = FlopsLedger(TINY_FLOPS)
    state = _fit(ledger)
    assert state.step == ledger.steps == 6 and ledger.examples == 24
    assert ledger.total_flops == 6 * 4 * 3 * 864
    assert isinstance(ledger.total_flops, int)
    assert ledger.as_dict() == {"total_flops": 6 * 4 * 3 * 864, "steps": 6, "examples": 24,
                                "dense_gradient_steps": 0, "dense_forward_flops": 864}


def test_ledger_of_a_rigl_run_reproduces_the_formula():
    """Exploration every third step = cycles of dT=2 ordinary steps plus one dense-gradient
    step, so 6 steps hold exactly 6 x batch x dst_step_flops(f_S, f_D, 2)."""
    densities = {"conv": 0.5, "fc": 0.25}
    ledger = FlopsLedger(TINY_FLOPS, density_fn=lambda: densities,
                         dense_gradient_fn=lambda step: step % 3 == 0)
    _fit(ledger)
    f_sparse = sparse_forward_flops(TINY_FLOPS, densities)
    assert ledger.dense_gradient_steps == 2
    assert ledger.total_flops == pytest.approx(6 * 4 * dst_step_flops(f_sparse, 864, 2),
                                               rel=1e-12)


def test_ledger_charges_density_changes_as_they_happen():
    """A pruning schedule: the net is dense for 3 steps, then half dense."""
    ledger = FlopsLedger(TINY_FLOPS)
    ledger.density_fn = lambda: {} if ledger.steps < 3 else {"conv": 0.5, "fc": 0.5}
    _fit(ledger)
    assert ledger.total_flops == 3 * 4 * 3 * 864 + 3 * 4 * 3 * 432


def test_ledger_resumes_from_a_checkpoint_exactly(tmp_path):
    checkpoint = tmp_path / "run.pt"
    fresh = FlopsLedger(TINY_FLOPS, dense_gradient_fn=lambda step: step == 5)
    _fit(fresh)
    _fit(FlopsLedger(TINY_FLOPS), epochs=1, checkpoint=checkpoint)
    resumed = FlopsLedger(TINY_FLOPS, dense_gradient_fn=lambda step: step == 5)
    _fit(resumed, epochs=2, checkpoint=checkpoint)
    assert resumed.state_dict() == fresh.state_dict()
