"""MC Dropout, BatchEnsemble, MIMO and TreeNet: the variants, batch formats, parameter groups
and predictors they are made of, end to end at smoke scale, and their bad input."""
import json
from pathlib import Path

import gin
import pytest
import torch
from torch import nn

from harness.engine.batching import MimoBatch, TiledBatch, tile_members
from harness.evaluation.cached_predictions import load_predictions
from harness.data.arrays import ArrayDataset, Augment
from harness.core.errors import UserError
from harness.experiment.execute import run_experiment
from harness.models import STAGES, build_model
from harness.evaluation.suites import fgsm_batches
from harness.models.variants import (AlwaysOnDropout, BatchEnsembleLayer, fast_weights,
                                     member_biases, rank_one_factors)
from harness.evaluation.predictors import MimoPredictor, SampledPredictor, TiledPredictor
from harness.engine.train import Hook, Trainer
from methods.one_network import BatchEnsemble

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "gin" / "scale" / "smoke.gin")
FAST = ["epoch_factor.factor = 0.008", "Experiment.suites = ('test',)",
        "Experiment.train_subset = 512"]
METHODS = ("mc_dropout", "batch_ensemble", "mimo", "treenet")


def small(name="wide_resnet", **options):
    gin.bind_parameter("wide_resnet.depth", 10)  # 5 stages: first conv, 3 blocks, head
    gin.bind_parameter("wide_resnet.width", 2)
    torch.manual_seed(0)
    return build_model(name, num_classes=5, in_channels=3, **options)


def test_tiling_is_member_major():
    x = torch.arange(3)
    assert tile_members(x, 2).tolist() == [0, 1, 2, 0, 1, 2]
    images, labels = torch.randn(3, 1, 2, 2), torch.tensor([4, 5, 6])
    rows, targets = TiledBatch(2)(images, labels, torch.Generator())
    assert torch.equal(rows[3:], images) and targets.tolist() == [4, 5, 6, 4, 5, 6]


def test_batch_ensemble_members_differ_and_share_the_slow_weights():
    dense, ensemble = small(), small(batch_ensemble=4)
    layers = [module for module in ensemble.modules() if isinstance(module, BatchEnsembleLayer)]
    dense_layers = [m for m in dense.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == len(dense_layers)  # every conv and the final linear layer
    for layer in layers:  # one slow weight per layer; fast weights per member
        assert layer.r.shape[0] == layer.s.shape[0] == 4
        assert layer.r.mean().item() == pytest.approx(1, abs=0.5)
    assert [layer.bias is not None for layer in layers] == [False] * (len(layers) - 1) + [True]
    slow = sum(p.numel() for p in ensemble.parameters()) - sum(
        p.numel() for p in fast_weights(ensemble))
    assert slow == sum(p.numel() for p in dense.parameters()) - dense.fc.bias.numel()
    predictor = TiledPredictor(ensemble, 4).eval()
    x = torch.randn(2, 3, 8, 8)
    logits = predictor(x)
    assert logits.shape == (4, 2, 5)
    assert not torch.allclose(logits[0], logits[1])
    # test-time tiling is member-major too: member m is rows [m B, (m + 1) B) of the network
    with torch.no_grad():
        rows = ensemble(tile_members(x, 4))
    assert torch.allclose(logits[2], rows[4:6])


def test_batch_ensemble_works_on_resnet():
    predictor = TiledPredictor(small("resnet18", batch_ensemble=2), 2).eval()
    assert predictor(torch.randn(3, 3, 16, 16)).shape == (2, 3, 5)


class StepRecorder(Hook):
    def before_optimizer_step(self, state):
        self.before = {name: (p.detach().clone(), p.grad.detach().clone())
                       for name, p in state.model.named_parameters()}

    def after_optimizer_step(self, state):
        self.after = {name: p.detach().clone() for name, p in state.model.named_parameters()}
        self.lr = state.lr


def test_fast_weights_have_a_gradient_multiplier_and_only_the_member_bias_is_decayed():
    model = small(batch_ensemble=2)
    dataset = ArrayDataset(torch.randint(0, 255, (8, 3, 8, 8), dtype=torch.uint8),
                           torch.randint(0, 5, (8,)), 5, (0.5,) * 3, (0.25,) * 3)
    recorder = StepRecorder()
    trainer = Trainer(epochs=1, batch_size=8, lr=0.1, weight_decay=0.1,
                      augment=Augment(padding=0, hflip=False), progress=False)
    method = BatchEnsemble(num_members=2, fast_weight_lr_multiplier=0.5)
    trainer.fit(model, dataset, seed=0, hooks=[recorder], epochs=1,
                batch_format=method.batch_format(), param_groups=method.param_groups())
    rank_one = {id(p) for p in rank_one_factors(model)}
    biases = {id(p) for p in member_biases(model)}
    checked = {"rank_one": 0, "bias": 0, "slow": 0}
    for name, param in model.named_parameters():
        weight, grad = recorder.before[name]
        step = recorder.after[name] - weight  # first SGD step: momentum buffer = gradient
        if id(param) in rank_one:
            expected, kind = -recorder.lr * 0.5 * grad, "rank_one"
        elif id(param) in biases:  # uncertainty-baselines' bias_regularizer: the same l2
            expected, kind = -recorder.lr * 0.5 * (grad + 0.1 * weight), "bias"
        else:
            expected, kind = -recorder.lr * (grad + 0.1 * weight), "slow"
        assert torch.allclose(step, expected, atol=1e-6), name
        checked[kind] += 1
    assert all(checked.values()), checked


def test_mimo_members_see_independent_images_in_training_and_the_same_at_test():
    images = torch.arange(64.).view(64, 1, 1, 1)
    labels = torch.arange(64)
    rows, targets = MimoBatch(3, 4, 0.0)(images, labels, torch.Generator().manual_seed(0))
    assert rows.shape == (256, 3, 1, 1, 1) and targets.shape == (256, 3)
    assert torch.equal(rows.flatten(1).long(), targets)  # labels travel with their images
    for member in range(3):  # each member sees every image 4 times
        assert torch.bincount(targets[:, member], minlength=64).tolist() == [4] * 64
    same = (targets[:, 0] == targets[:, 1]).float().mean().item()
    assert same < 0.1  # independent shuffles agree on ~1/64 of the rows
    repeated, _ = MimoBatch(3, 2, 1.0)(images, labels, torch.Generator().manual_seed(0))
    assert torch.equal(repeated[:, 0], repeated[:, 2])  # p = 1: the same image for all

    seen = []
    network = small(mimo=3)
    network.backbone.conv1.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    logits = MimoPredictor(network, 3).eval()(torch.randn(2, 3, 8, 8))
    assert logits.shape == (3, 2, 5)
    members = seen[0].view(2, 3, 3, 8, 8)
    assert torch.equal(members[:, 0], members[:, 1]) and torch.equal(members[:, 0],
                                                                      members[:, 2])


def test_mc_dropout_passes_differ_at_test_in_eval_mode():
    model = small(mc_dropout=0.3)
    blocks = STAGES["wide_resnet"](model)[1:-1]
    # one dropout right after each block's first 3x3 conv (uncertainty-baselines)
    assert all(isinstance(block.conv1, nn.Sequential) and isinstance(block.conv1[1],
                                                                     AlwaysOnDropout)
               for block in blocks)
    assert sum(isinstance(m, AlwaysOnDropout) for m in model.modules()) == len(blocks)
    predictor = SampledPredictor(model, 2).eval()
    logits = predictor(torch.randn(4, 3, 8, 8))
    assert not torch.allclose(logits[0], logits[1])
    resnet = small("resnet50", mc_dropout=0.1)  # the first 3x3 conv of a bottleneck is conv2
    assert isinstance(resnet.layer1[0].conv2[1], AlwaysOnDropout)


def test_treenet_trunk_exists_once_and_branches_start_different():
    dense = small()
    stages = STAGES["wide_resnet"](dense)
    tree = small(tree_branches=3, tree_split=3)
    count = lambda modules: sum(p.numel() for m in modules for p in m.parameters())
    assert count(tree.trunk) == count(stages[:3])
    assert sum(p.numel() for p in tree.parameters()) == count(stages[:3]) + 3 * count(
        stages[3:])
    first, second = tree.branches[0][0].conv1.weight, tree.branches[1][0].conv1.weight
    assert not torch.equal(first, second)  # independently initialised, not copies
    assert tree(torch.randn(2, 3, 8, 8)).shape == (3, 2, 5)


@pytest.mark.parametrize("options,message", [
    ({"batch_ensemble": 0, "mimo": -1}, "num_members >= 1"),
    ({"mc_dropout": 1.0}, "dropout rate must be in [0, 1)"),
    ({"tree_branches": 2, "tree_split": 5}, "TreeNet.split = 5 is outside the network"),
    ({"tree_branches": 2, "tree_split": 0}, "outside the network"),
])
def test_bad_variants_are_user_errors(options, message):
    with pytest.raises(UserError) as error:
        small(**options)
    assert message in str(error.value)


@pytest.mark.parametrize("method", METHODS)
def test_one_network_methods_train_and_measured_flops_match_the_plan(method, tmp_path):
    run_dir, summary = run_experiment([str(ROOT / "gin" / f"{method}.gin"), SMOKE], FAST,
                                      str(tmp_path / method), progress=False)
    flops = json.loads((run_dir / "flops.json").read_text())
    assert flops["train_flops"] == pytest.approx(flops["planned_train_flops"], rel=1e-12)
    assert flops["test_flops_ratio"] == pytest.approx(flops["planned_test_flops_ratio"])
    assert summary["metrics"]["test/accuracy"] > 0.1
    log_probs, labels = load_predictions(run_dir)  # sub-ensembles re-score from these
    assert log_probs.shape[:2] == (summary["num_members"], labels.shape[0])
    # every row the network processes: BatchEnsemble 4 tiled rows of a dense forward per
    # image, MIMO 4 repetitions of its (slightly wider) forward, TreeNet trunk + 3 branches
    rows = {"batch_ensemble": 4, "mimo": 4}.get(method, 1)
    per_row = flops["dense_forward_flops"] * {"batch_ensemble": 1, "mc_dropout": 1}.get(
        method, flops["test_flops_ratio"])
    images = flops["epochs"] * (flops["train_examples"] // flops["batch_size"]) * 64
    assert flops["train_flops"] == pytest.approx(3 * images * rows * per_row)


@pytest.mark.parametrize("method,bindings,message", [
    ("batch_ensemble", ["BatchEnsemble.num_members = 0"], "num_members must be >= 1"),
    ("mimo", ["MIMO.num_members = 0"], "num_members must be >= 1"),
    ("treenet", ["TreeNet.num_members = 0"], "num_members must be >= 1"),
    ("mc_dropout", ["MCDropout.dropout_rate = 1.0"], "dropout_rate must be in [0, 1)"),
    ("mc_dropout", ["MCDropout.num_samples = 0"], "num_samples must be >= 1"),
    ("treenet", ["TreeNet.split = 9"], "outside the network"),
    ("mimo", ["MIMO.batch_repetitions = 0"], "batch_repetitions >= 1"),
])
def test_bad_settings_fail_before_training(method, bindings, message, tmp_path):
    with pytest.raises(UserError) as error:
        run_experiment([str(ROOT / "gin" / f"{method}.gin"), SMOKE], [*FAST, *bindings],
                       str(tmp_path / "run"), progress=False)
    assert message in str(error.value)
    assert not (tmp_path / "run").exists()


def test_fgsm_attacks_one_member_of_a_one_network_predictor():
    dataset = ArrayDataset(torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8),
                           torch.randint(0, 5, (4,)), 5, (0.5,) * 3, (0.25,) * 3)
    predictor = TiledPredictor(small(batch_ensemble=2), 2).eval()
    attacks = [next(fgsm_batches(predictor, member, dataset, 4, 8 / 255))[0]
               for member in range(2)]
    clean = dataset.standardize(dataset.images.to(torch.get_default_dtype()) / 255)
    assert not torch.allclose(attacks[0], clean)
    assert not torch.allclose(attacks[0], attacks[1])  # each crafted on its own member


def test_mimo_and_treenet_losses_smooth_labels_as_torch_does():
    """Every training cross-entropy takes Trainer.label_smoothing (gin/table3/)."""
    import torch.nn.functional as F
    from methods.one_network import mimo_loss, tree_loss
    torch.manual_seed(0)
    logits, targets = torch.randn(6, 3, 5), torch.randint(0, 5, (6, 3))
    expected = sum(F.cross_entropy(logits[:, m], targets[:, m], label_smoothing=0.1)
                   for m in range(3))
    assert torch.allclose(mimo_loss(lambda _: logits, None, targets, 0.1), expected)
    branches, labels = torch.randn(3, 6, 5), torch.randint(0, 5, (6,))
    expected = sum(F.cross_entropy(branch, labels, label_smoothing=0.1) for branch in branches)
    assert torch.allclose(tree_loss(lambda _: branches, None, labels, 0.1), expected)
