"""Masks, prune-and-grow and the training hook, on models the sparse core does not know."""
import io
import math

import gin
import pytest
import torch
import torchvision
from torch import nn

from harness.data.arrays import ArrayDataset, Augment
from harness.core.errors import UserError
from harness.flops import Connectivity, counted_layer_shapes
from harness.engine.train import Hook, Trainer, TrainState
from methods.sparse.distributions import layer_nonzeros, prunable_layers
from methods.sparse.masking import Masking, SparsitySpec
from tests.training import SmallNet

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])



def masking_of(model, sparsity=0.8, seed=0, **settings) -> Masking:
    """A Masking hook of `SparsitySpec(sparsity, **settings)`."""
    return Masking(model, SparsitySpec(sparsity, **settings), seed=seed)

def small_net(seed: int = 0) -> SmallNet:
    torch.manual_seed(seed)
    return SmallNet()


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


def weights(masking: Masking) -> dict[str, torch.Tensor]:
    return {name: layer.weight for name, layer in masking.layers.items()}


def assert_masked_weights_are_zero(masking: Masking) -> None:
    for name, weight in weights(masking).items():
        assert torch.all(weight[~masking.masks[name]] == 0), name


def train_state(masking: Masking, lr: float = 0.1, total_steps: int = 100) -> TrainState:
    optimizer = torch.optim.SGD(masking.model.parameters(), lr=lr, momentum=0.9,
                                weight_decay=5e-4)
    return TrainState(model=masking.model, optimizer=optimizer, epochs=1,
                      steps_per_epoch=total_steps, batch_size=4)


def drive_step(masking: Masking, state: TrainState, images: torch.Tensor) -> None:
    """One optimizer step in harness.engine.train's documented order."""
    state.optimizer.zero_grad(set_to_none=True)
    state.model(images).square().mean().backward()
    masking.before_optimizer_step(state)
    state.optimizer.step()
    state.step += 1
    masking.after_optimizer_step(state)


def momentum(state: TrainState, weight: torch.Tensor) -> torch.Tensor:
    return state.optimizer.state[weight]["momentum_buffer"]


# Every (distribution, sparsity) on the small net; ResNet-18 (slower to mask) with ERK only,
# since test_sparse_distributions covers its counts for every distribution.
@pytest.mark.parametrize("make_model, distribution, sparsity", [
    *((small_net, d, s) for d in ("uniform", "er", "erk") for s in (0.5, 0.8, 0.9)),
    *((resnet18, "erk", s) for s in (0.5, 0.8, 0.9))])
def test_masks_have_exact_counts_and_zero_the_weights(make_model, distribution, sparsity):
    masking = masking_of(make_model(), sparsity, distribution=distribution)
    expected = layer_nonzeros(masking.layer_shapes, 1 - sparsity, distribution)
    densities = masking.densities()
    for name, mask in masking.masks.items():
        assert mask.dtype == torch.bool and mask.shape == masking.layer_shapes[name]
        assert int(mask.sum()) == expected[name]
        assert densities[name] == expected[name] / mask.numel()
    assert_masked_weights_are_zero(masking)
    total = sum(mask.numel() for mask in masking.masks.values())
    assert abs(masking.overall_density() - (1 - sparsity)) <= 1 / total


def test_masks_are_random_positions_drawn_from_the_seed():
    first, again, other = (masking_of(small_net(), 0.8, seed=seed) for seed in (1, 1, 2))
    for name in first.masks:
        assert torch.equal(first.masks[name], again.masks[name])
    assert any(not torch.equal(first.masks[name], other.masks[name]) for name in first.masks)


def test_dense_first_layer_keeps_the_first_conv_all_ones():
    model = resnet18()
    masking = masking_of(model, 0.9, dense_first_layer=True)
    assert "conv1" not in masking.masks and "fc" in masking.masks
    assert torch.count_nonzero(model.conv1.weight) == model.conv1.weight.numel()
    every_layer = prunable_layers(model)
    total = sum(layer.weight.numel() for layer in every_layer.values())
    active = model.conv1.weight.numel() + sum(int(m.sum()) for m in masking.masks.values())
    assert masking.overall_density() == active / total > 0.1


def test_biases_and_norm_layers_are_untouched():
    model = small_net()
    biases = {name: p.clone() for name, p in model.named_parameters() if "weight" not in name}
    masking_of(model, 0.9)
    for name, p in model.named_parameters():
        if name in biases:
            assert torch.equal(p, biases[name])
    assert torch.all(model.features[1].weight == 1)  # BatchNorm scale, not a prunable layer


def prepared(growth: str, seed: int = 0):
    """A masked net with nonzero momentum everywhere and a dense gradient (no ties)."""
    masking = masking_of(small_net(seed), 0.8, growth=growth, seed=seed)
    state = train_state(masking)
    masking.on_train_begin(state)
    drive_step(masking, state, torch.randn(4, 3, 8, 8))
    for weight in weights(masking).values():  # momentum everywhere, to see what gets reset
        momentum(state, weight).add_(1.0)
    generator = torch.Generator().manual_seed(seed)
    grads = {name: torch.randn(shape, generator=generator)
             for name, shape in masking.layer_shapes.items()}
    return masking, state, grads


def magnitude_pruned(mask, weight, count):
    """The `count` active positions of smallest |weight| (Eq. 1), flat."""
    magnitude = weight.detach().abs().reshape(-1).masked_fill(~mask.reshape(-1), math.inf)
    pruned = torch.zeros(mask.numel(), dtype=torch.bool)
    pruned[magnitude.topk(count, largest=False).indices] = True
    return pruned.view(mask.shape)


@pytest.mark.parametrize("growth", ["gradient", "random"])
def test_prune_and_grow_keeps_counts_and_resets_what_it_touches(growth):
    masking, state, grads = prepared(growth)
    old_masks = {name: mask.clone() for name, mask in masking.masks.items()}
    old_weights = {name: weight.detach().clone() for name, weight in weights(masking).items()}
    old_momenta = {name: momentum(state, weight).clone()
                   for name, weight in weights(masking).items()}
    stats = masking.prune_and_grow(0.5, dense_grads=grads)
    for name, weight in weights(masking).items():
        old, new = old_masks[name], masking.masks[name]
        active = int(old.sum())
        assert int(new.sum()) == active
        assert stats[name] == round(0.5 * active) > 0
        pruned = magnitude_pruned(old, old_weights[name], stats[name])
        grown = new & ~(old & ~pruned)  # regrown among all inactive after the prune
        assert int(grown.sum()) == stats[name]
        assert masking.densities()[name] == active / old.numel()
        assert torch.all(weight[grown] == 0)
        assert torch.all(momentum(state, weight)[grown | pruned] == 0)
        untouched = old & ~pruned
        assert torch.equal(momentum(state, weight)[untouched], old_momenta[name][untouched])
        assert old_weights[name][pruned].abs().max() <= old_weights[name][untouched].abs().min()
    assert_masked_weights_are_zero(masking)


def test_gradient_growth_picks_the_largest_gradients_inactive_after_the_prune():
    masking, _, grads = prepared("gradient")
    old_masks = {name: mask.clone() for name, mask in masking.masks.items()}
    old_weights = {name: weight.detach().clone() for name, weight in weights(masking).items()}
    stats = masking.prune_and_grow(0.5, dense_grads=grads)
    for name, new in masking.masks.items():
        kept = old_masks[name] & ~magnitude_pruned(old_masks[name], old_weights[name],
                                                   stats[name])
        scores = grads[name].abs().reshape(-1).masked_fill(kept.reshape(-1), -math.inf)
        expected = set(scores.topk(stats[name]).indices.tolist())
        grown = (new & ~kept).reshape(-1).nonzero().flatten().tolist()
        assert set(grown) == expected


def test_a_just_pruned_weight_with_the_largest_gradient_is_regrown_at_zero():
    """Paper Eq. 2 and RigL: candidates are all positions inactive after the prune."""
    masking, state, grads = prepared("gradient")
    name = next(iter(masking.masks))
    weight = masking.layers[name].weight
    mask = masking.masks[name].reshape(-1)
    weakest = int(weight.detach().abs().reshape(-1).masked_fill(~mask, math.inf).argmin())
    grads[name].reshape(-1)[weakest] = 1e6
    masking.prune_and_grow(0.5, dense_grads=grads)
    assert bool(masking.masks[name].reshape(-1)[weakest])
    assert weight.reshape(-1)[weakest] == 0
    assert momentum(state, weight).reshape(-1)[weakest] == 0


def test_a_nearly_dense_layer_turns_over_the_full_fraction():
    """No cap at the inactive count: a layer at density 0.9 still prunes and regrows p."""
    masking = masking_of(small_net(), 0.1, distribution="uniform", growth="random")
    masking.on_train_begin(train_state(masking))
    stats = masking.prune_and_grow(0.5)
    for name, mask in masking.masks.items():
        assert stats[name] == round(0.5 * int(mask.sum())) > mask.numel() - int(mask.sum())


def test_random_growth_is_seeded_and_differs_from_gradient_growth():
    runs = []
    for growth in ("random", "random", "gradient"):
        masking, _, grads = prepared(growth)
        masking.prune_and_grow(0.5, dense_grads=grads)
        runs.append(masking.masks)
    assert all(torch.equal(runs[0][n], runs[1][n]) for n in runs[0])
    assert any(not torch.equal(runs[0][n], runs[2][n]) for n in runs[0])


def test_a_layer_made_dense_by_erk_is_left_alone():
    masking = masking_of(small_net(), 0.5, distribution="erk", growth="random")
    dense = [name for name, density in masking.densities().items() if density == 1.0]
    assert dense  # the 3->8 stem is tiny enough for ERK to cap it
    stats = masking.prune_and_grow(0.8)
    for name in dense:
        assert stats[name] == 0 and bool(masking.masks[name].all())
    assert any(stats[name] > 0 for name in masking.masks if name not in dense)


def test_gradient_growth_without_a_dense_gradient_is_refused():
    masking = masking_of(small_net(), 0.8)
    with pytest.raises(ValueError, match="dense gradient"):
        masking.prune_and_grow(0.5)


class Spy(Hook):
    """Runs after Masking and records what it saw after every optimizer step."""

    def __init__(self, masking: Masking):
        self.masking = masking
        self.previous = {name: mask.clone() for name, mask in masking.masks.items()}
        self.changed_steps, self.flips, self.dense_grad_steps = [], {}, []

    def after_optimizer_step(self, state: TrainState) -> None:
        masking = self.masking
        assert_masked_weights_are_zero(masking)
        for name, weight in weights(masking).items():
            assert torch.all(momentum(state, weight)[~masking.masks[name]] == 0)
            assert int(masking.masks[name].sum()) == int(self.previous[name].sum())
        if masking.last_update_step == state.step:
            self.dense_grad_steps.append(state.step)
        flips = sum(int((self.previous[n] ^ m).sum()) for n, m in masking.masks.items())
        if flips:
            self.changed_steps.append(state.step)
            self.flips[state.step] = flips // 2
        self.previous = {name: mask.clone() for name, mask in masking.masks.items()}


def tiny_dataset(device: str, count: int = 64) -> ArrayDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (count,), generator=generator)
    return ArrayDataset(images, labels, 10, (0.5,) * 3, (0.25,) * 3).to(device)


def expected_flips(masking: Masking, step: int, total_steps: int) -> int:
    rate = masking.current_prune_rate(step, total_steps)
    return sum(round(rate * int(mask.sum())) if int(mask.sum()) < mask.numel() else 0
               for mask in masking.masks.values())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("growth", ["gradient", "random"])
def test_training_keeps_masked_weights_zero_and_updates_on_schedule(device, growth):
    model = small_net()
    masking = masking_of(model, 0.8, update_interval=3, growth=growth)
    spy = Spy(masking)
    initial = {name: weight.detach().clone() for name, weight in weights(masking).items()}
    trainer = Trainer(batch_size=8, momentum=0.9, weight_decay=5e-4,
                      augment=Augment(padding=0, hflip=False), progress=False)
    state = trainer.fit(model, tiny_dataset(device), seed=0, hooks=[masking, spy], epochs=2)
    assert state.total_steps == 16
    assert spy.changed_steps == [3, 6, 9, 12, 15]  # never at 0 nor at the final step 16
    assert [s for s in range(20) if masking.is_update_step(s)] == [3, 6, 9, 12, 15]
    dense_grad_steps = [3, 6, 9, 12, 15] if growth == "gradient" else []  # SET needs none
    assert spy.dense_grad_steps == dense_grad_steps
    assert [s for s in range(20) if masking.computed_dense_gradient(s)] == dense_grad_steps
    # Weights just pruned may be regrown (Eq. 2), so the mask moves by at most the turnover.
    assert all(0 < flips <= expected_flips(masking, step, 16)
               for step, flips in spy.flips.items())
    assert all(mask.device.type == device for mask in masking.masks.values())
    trained = [name for name, w in weights(masking).items()
               if not torch.equal(w[masking.masks[name]].cpu(), initial[name].cpu()[
                   masking.masks[name].cpu()])]
    assert trained  # active weights do learn


@pytest.mark.parametrize("growth", ["gradient", "random"])
def test_without_exploration_the_masks_never_change(growth):
    """SparsitySpec.exploration = False (Table 5's ablation): no prune-and-grow, no dense
    gradient, the initial masks to the end, masked weights still zero."""
    model = small_net()
    masking = masking_of(model, 0.8, update_interval=3, growth=growth, exploration=False)
    initial = {name: mask.clone() for name, mask in masking.masks.items()}
    spy = Spy(masking)
    trainer = Trainer(batch_size=8, momentum=0.9, weight_decay=5e-4,
                      augment=Augment(padding=0, hflip=False), progress=False)
    trainer.fit(model, tiny_dataset("cpu"), seed=0, hooks=[masking, spy], epochs=2)
    assert spy.changed_steps == [] and spy.dense_grad_steps == []
    assert all(torch.equal(masking.masks[name], mask) for name, mask in initial.items())
    assert masking.spec.dense_gradient_interval is None


def test_grads_are_masked_before_the_update_and_the_dense_gradient_kept_only_when_needed():
    masking = masking_of(small_net(), 0.8, update_interval=2)
    state = train_state(masking, total_steps=10)
    masking.on_train_begin(state)
    images = torch.randn(4, 3, 8, 8)
    for step in range(1, 5):
        state.optimizer.zero_grad(set_to_none=True)
        state.model(images).square().mean().backward()
        dense = {name: w.grad.clone() for name, w in weights(masking).items()}
        masking.before_optimizer_step(state)
        for name, weight in weights(masking).items():
            assert torch.all(weight.grad[~masking.masks[name]] == 0)
            assert torch.equal(weight.grad[masking.masks[name]], dense[name][masking.masks[name]])
        if step % 2 == 0:
            assert masking.last_update_step == step
            assert all(torch.equal(masking.dense_grads[n], dense[n]) for n in dense)
        else:
            assert masking.dense_grads is None
        state.optimizer.step()
        state.step += 1
        masking.after_optimizer_step(state)


def test_requested_step_keeps_its_dense_gradient_for_a_callers_prune_and_grow():
    masking = masking_of(small_net(), 0.8, update_interval=1000)
    state = train_state(masking, total_steps=10)
    masking.on_train_begin(state)
    masking.request_dense_grads(2)
    assert [s for s in range(1, 10) if masking.computed_dense_gradient(s)] == [2]
    images = torch.randn(4, 3, 8, 8)
    drive_step(masking, state, images)
    assert masking.dense_grads is None and masking.last_update_step is None
    drive_step(masking, state, images)
    assert masking.last_update_step == 2 and masking.dense_grads is not None
    counts = {name: int(mask.sum()) for name, mask in masking.masks.items()}
    stats = masking.prune_and_grow(0.8)  # EDST's escape (App. C: q = 0.8)
    assert stats == {name: round(0.8 * count) if count < masking.masks[name].numel() else 0
                     for name, count in counts.items()}  # a dense layer is left alone
    assert sum(stats.values()) > 0
    assert counts == {name: int(mask.sum()) for name, mask in masking.masks.items()}


def test_resnet18_steps_keep_counts_and_zeros():
    masking = masking_of(resnet18(), 0.9, update_interval=1, growth="gradient")
    counts = {name: int(mask.sum()) for name, mask in masking.masks.items()}
    state = train_state(masking, lr=0.01, total_steps=2)
    masking.on_train_begin(state)
    before = {name: mask.clone() for name, mask in masking.masks.items()}
    drive_step(masking, state, torch.randn(2, 3, 32, 32))
    assert masking.last_update_step == 1
    assert counts == {name: int(mask.sum()) for name, mask in masking.masks.items()}
    assert all(not torch.equal(before[name], masking.masks[name])
               for name, density in masking.densities().items() if density < 1)
    assert_masked_weights_are_zero(masking)


def test_a_frozen_mask_never_changes_and_needs_no_dense_gradient():
    model = small_net()
    masking = masking_of(model, 0.8, update_interval=3)
    masking.freeze()
    spy = Spy(masking)
    trainer = Trainer(batch_size=8, augment=Augment(padding=0, hflip=False), progress=False)
    trainer.fit(model, tiny_dataset("cpu"), seed=0, hooks=[masking, spy], epochs=2)
    assert spy.changed_steps == [] and spy.dense_grad_steps == []
    assert not any(masking.computed_dense_gradient(step) for step in range(20))


def test_the_flops_ledger_sees_masking_as_a_sparse_connectivity():
    masking = masking_of(small_net(), 0.8, update_interval=3)
    assert isinstance(masking, Connectivity)


def test_one_spec_from_gin_drives_the_plan_and_the_masking_alike():
    gin.parse_config("SparsitySpec.dense_first_layer = True\nSparsitySpec.distribution = 'er'\n"
                     "SparsitySpec.update_interval = 7")
    model = resnet18()
    spec = SparsitySpec(0.8)
    configuration = spec.configuration(counted_layer_shapes(model))
    masking = Masking(model, spec)
    assert configuration.densities.keys() == masking.densities().keys()
    assert "conv1" not in configuration.densities
    for name, density in masking.densities().items():
        assert abs(configuration.densities[name] - density) < 1 / masking.masks[name].numel()
    assert configuration.dense_gradient_interval == 7 == masking.update_interval
    gin.parse_config("SparsitySpec.growth = 'random'")
    assert SparsitySpec(0.8).dense_gradient_interval is None  # SET: no dense grads
    gin.parse_config("SparsitySpec.distribution = 'erk_plus'")
    with pytest.raises(UserError, match="uniform, er, erk"):
        SparsitySpec(0.8)


def test_cosine_schedule_decays_the_prune_rate_and_constant_does_not():
    cosine = masking_of(small_net(), 0.8, prune_rate=0.5, prune_rate_schedule="cosine")
    rates = [cosine.current_prune_rate(step, 100) for step in range(0, 101, 10)]
    assert rates[0] == 0.5 and rates[5] == pytest.approx(0.25) and rates[-1] == pytest.approx(0)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    constant = masking_of(small_net(), 0.8, prune_rate=0.5)
    assert {constant.current_prune_rate(step, 100) for step in range(0, 101, 10)} == {0.5}


def test_cosine_schedule_shrinks_the_updates_of_a_run():
    model = small_net()
    masking = masking_of(model, 0.8, update_interval=3, growth="random",
                      prune_rate_schedule="cosine")
    turnovers = []
    prune_and_grow = masking.prune_and_grow
    masking.prune_and_grow = lambda *args: turnovers.append(
        sum(prune_and_grow(*args).values()))
    trainer = Trainer(batch_size=8, augment=Augment(padding=0, hflip=False), progress=False)
    trainer.fit(model, tiny_dataset("cpu"), seed=0, hooks=[masking], epochs=2)
    assert turnovers == [expected_flips(masking, step, 16) for step in (3, 6, 9, 12, 15)]
    assert turnovers[0] > turnovers[2] > turnovers[-1]


def test_prune_rate_cosine_restarts_in_each_period():
    masking = masking_of(small_net(), 0.8, prune_rate=0.5, prune_rate_schedule="cosine")
    masking.restart_prune_rate_at([40, 70])
    rate = lambda step: masking.current_prune_rate(step, 100)
    assert [rate(0), rate(20), rate(40), rate(55), rate(70), rate(85)] == pytest.approx(
        [0.5, 0.25, 0.5, 0.25, 0.5, 0.25])


def test_state_dict_round_trip_restores_masks_and_random_stream():
    source = masking_of(small_net(), 0.8, growth="random", seed=3)
    source.prune_and_grow(0.5)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    target = masking_of(small_net(), 0.8, growth="random", seed=4)
    target.load_state_dict(torch.load(buffer, weights_only=True))
    for name in source.masks:
        assert torch.equal(source.masks[name], target.masks[name])
    assert_masked_weights_are_zero(target)
    target.model.load_state_dict(source.model.state_dict())
    source.prune_and_grow(0.5)
    target.prune_and_grow(0.5)
    assert all(torch.equal(source.masks[name], target.masks[name]) for name in source.masks)


class CrashAt(Hook):
    def __init__(self, step: int | None):
        self.step = step

    def after_optimizer_step(self, state: TrainState) -> None:
        if state.step == self.step:
            raise KeyboardInterrupt


def test_a_resumed_run_ends_with_the_masks_of_an_uninterrupted_one(tmp_path):
    def run(seed: int, crash_at: int | None, checkpoint=None) -> Masking:
        model = small_net(0)
        masking = masking_of(model, 0.8, update_interval=3, growth="random", seed=seed)
        trainer = Trainer(batch_size=8, augment=Augment(padding=0, hflip=False), progress=False)
        trainer.fit(model, tiny_dataset("cpu"), seed=0, hooks=[masking, CrashAt(crash_at)],
                    epochs=2, checkpoint=checkpoint)
        return masking

    uninterrupted = run(seed=0, crash_at=None)
    with pytest.raises(KeyboardInterrupt):  # dies in epoch 2, after update steps 3 and 6
        run(seed=0, crash_at=11, checkpoint=tmp_path / "ckpt.pt")
    resumed = run(seed=5, crash_at=None, checkpoint=tmp_path / "ckpt.pt")
    for name, mask in uninterrupted.masks.items():
        assert torch.equal(resumed.masks[name], mask)
        assert torch.equal(resumed.layers[name].weight, uninterrupted.layers[name].weight)


def test_loading_masks_of_another_model_is_refused():
    state = masking_of(small_net(), 0.8).state_dict()
    with pytest.raises(ValueError, match="do not match"):
        masking_of(resnet18(), 0.8).load_state_dict(state)


def test_masking_is_configured_through_gin():
    gin.parse_config("SparsitySpec.sparsity = 0.9\nSparsitySpec.growth = 'random'\n"
                     "SparsitySpec.distribution = 'uniform'")
    masking = Masking(small_net(), SparsitySpec())
    assert masking.growth == "random"
    assert all(density == pytest.approx(0.1, abs=0.01)
               for density in masking.densities().values())


@pytest.mark.parametrize("kwargs", [
    {"sparsity": 1.0}, {"sparsity": 0.0}, {"sparsity": -0.1}, {"update_interval": 0},
    {"prune_rate": 1.0}, {"prune_rate": -0.1}, {"growth": "magnitude"},
    {"prune_rate_schedule": "linear"}, {"distribution": "erdos_renyi_kernel"}])
def test_bad_settings_are_one_user_error(kwargs):
    kwargs = {"sparsity": 0.8, **kwargs}
    with pytest.raises(UserError, match="allowed|must be"):
        masking_of(small_net(), **kwargs)


def test_bad_prune_and_grow_arguments_raise_value_error():
    masking = masking_of(small_net(), 0.8)
    with pytest.raises(ValueError, match="fraction"):
        masking.prune_and_grow(1.5, growth="random")
    with pytest.raises(ValueError, match="gradient, random"):
        masking.prune_and_grow(0.5, growth="set")


def regrowth_round(regrown_momentum: str):
    """Two steps of the official update order (a prune-and-grow at step 2), then step 3 by hand:
    returns the masking, the regrown positions per layer, their momentum after the update, and
    step 3's dense gradient and resulting weights."""
    masking = masking_of(small_net(), update_interval=2, regrown_momentum=regrown_momentum)
    state = train_state(masking)
    masking.on_train_begin(state)
    images = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    drive_step(masking, state, images)
    before = {name: mask.clone() for name, mask in masking.masks.items()}
    drive_step(masking, state, images)  # step 2 prunes and grows
    regrown = {name: masking.masks[name] & ~before[name] for name in masking.masks}
    buffers = {name: momentum(state, weight).clone() for name, weight in weights(masking).items()}
    state.optimizer.zero_grad(set_to_none=True)
    state.model(images).square().mean().backward()
    grads = {name: weight.grad.clone() for name, weight in weights(masking).items()}
    masking.before_optimizer_step(state)
    state.optimizer.step()
    state.step += 1
    masking.after_optimizer_step(state)
    return masking, regrown, buffers, grads


def test_carried_momentum_is_the_official_cifar_update_and_reset_zeroes_it():
    carried, regrown, buffers, grads = regrowth_round("carried")
    assert any(positions.any() for positions in regrown.values())
    for name, weight in weights(carried).items():
        at = regrown[name]
        # the buffer accumulated the dense gradient while masked, and survived the regrowth
        assert buffers[name][at].abs().sum() > 0
        # the regrown weight's first step (lr 0.1, momentum 0.9; it was 0, so no decay term)
        expected = -0.1 * (0.9 * buffers[name][at] + grads[name][at])
        assert torch.allclose(weight.detach()[at], expected, atol=1e-7), name
    assert_masked_weights_are_zero(carried)
    reset, regrown, buffers, grads = regrowth_round("reset")
    for name, weight in weights(reset).items():
        at = regrown[name]
        assert (buffers[name][at] == 0).all()
        assert torch.allclose(weight.detach()[at], -0.1 * grads[name][at], atol=1e-7), name


def test_regrown_momentum_names_its_setting_on_bad_values():
    assert SparsitySpec().regrown_momentum == "reset"
    with pytest.raises(UserError, match="SparsitySpec.regrown_momentum"):
        SparsitySpec(regrown_momentum="kept")
    with pytest.raises(UserError, match="SparsitySpec.regrown_momentum"):
        SparsitySpec(regrown_momentum="carried", kernels="sparse")


def test_edst_restarts_a_cosine_prune_rate_at_escapes_as_the_official_imagenet_code():
    from methods.sparse.edst import EDSTEnsemble
    assert EDSTEnsemble().prune_rate_restarts == "escapes"
    with pytest.raises(UserError, match="EDSTEnsemble.prune_rate_restarts"):
        EDSTEnsemble(prune_rate_restarts="never")


def test_edst_phase_restarts_fall_where_each_refinement_phase_starts():
    """'phases' restarts the prune rate at each refinement start, as fractions of the run
    (the old code subtracted an epoch count from fractions: every restart fell before 0)."""
    from methods.sparse.edst import EDSTEnsemble
    edst = EDSTEnsemble(num_members=3, exploration_epochs=150, refinement_epochs=100,
                        prune_rate_restarts="phases")
    assert edst.refinement_starts() == pytest.approx([150 / 450, 250 / 450, 350 / 450])
