import pytest
import torch

from harness.engine import scale
from harness.engine.schedules import Constant, Cosine, MultiStep, Piecewise
from harness.engine.train import Hook


from tests.training import blobs, tiny_model, trainer, weights


def test_schedules():
    assert MultiStep((0.5, 0.75), 0.1)(0.49) == 1 and MultiStep((0.5, 0.75), 0.1)(0.5) == 0.1
    assert MultiStep((0.5, 0.75), 0.1)(0.8) == pytest.approx(0.01)
    assert Cosine()(0.0) == 1 and Cosine()(0.5) == pytest.approx(0.5) and Cosine()(1.0) < 1e-12
    assert Constant(warmup=0.1)(0.05) == pytest.approx(0.5) and Constant(warmup=0.1)(0.2) == 1
    assert Piecewise((0.3, 0.6), (1.0, 0.1, 0.01))(0.45) == 0.1
    with pytest.raises(ValueError, match="increasing fractions"):
        MultiStep((0.75, 0.5))


def test_epochs_scale_by_one_factor():
    import gin
    gin.bind_parameter("epoch_factor.factor", 0.02)
    assert scale.epochs(250) == 5 and scale.epochs(10) == 1
    assert trainer(epochs=250).scaled_epochs == 5


def test_training_learns_and_is_deterministic():
    data = blobs()
    first, second = tiny_model(), tiny_model()
    state = trainer().fit(first, data, seed=7)
    trainer().fit(second, data, seed=7)
    assert torch.equal(weights(first), weights(second))
    assert state.step == 4 * (96 // 16) and state.history[-1]["loss"] < state.history[0]["loss"]
    third = tiny_model()
    trainer().fit(third, data, seed=8)
    assert not torch.equal(weights(first), weights(third))


def test_resume_continues_exactly(tmp_path):
    data = blobs()
    uninterrupted = tiny_model()
    trainer().fit(uninterrupted, data, seed=3)

    class Stop(Exception):
        pass

    class StopAfterTwoEpochs(Hook):
        def on_epoch_end(self, state):
            if state.epoch == 2:
                raise Stop

    resumed = tiny_model()
    checkpoint = tmp_path / "run.resume.pt"
    with pytest.raises(Stop):
        trainer().fit(resumed, data, seed=3, checkpoint=checkpoint,
                      hooks=[Hook(), StopAfterTwoEpochs()])
    # The hook raised before epoch 2 was saved: the checkpoint holds epoch 1, and the resumed
    # run must redo epochs 2-4 exactly as the uninterrupted one did (per-epoch seeds).
    fresh = tiny_model(seed=99)  # weights come from the checkpoint, not from this init
    state = trainer().fit(fresh, data, seed=3, checkpoint=checkpoint, hooks=[Hook(), Hook()])
    assert state.epoch == 4
    assert torch.equal(weights(fresh), weights(uninterrupted))


def test_hooks_see_steps_in_order_and_gradients():
    calls = []

    class Recorder(Hook):
        def on_train_begin(self, state):
            calls.append(("begin", state.step))

        def before_optimizer_step(self, state):
            assert all(p.grad is not None for p in state.model.parameters())
            calls.append(("before", state.step))

        def after_optimizer_step(self, state):
            calls.append(("after", state.step))

        def on_epoch_end(self, state):
            calls.append(("epoch", state.epoch))

        def on_train_end(self, state):
            calls.append(("end", state.step))

    trainer(epochs=2).fit(tiny_model(), blobs(n=32), seed=0, hooks=[Recorder()])
    assert calls == [("begin", 0), ("before", 0), ("after", 1), ("before", 1), ("after", 2),
                     ("epoch", 1), ("before", 2), ("after", 3), ("before", 3), ("after", 4),
                     ("epoch", 2), ("end", 4)]


def test_schedule_sets_the_learning_rate_per_step():
    seen = []

    class LearningRates(Hook):
        def after_optimizer_step(self, state):
            seen.append(state.optimizer.param_groups[0]["lr"])

    trainer(epochs=4, lr=0.2).fit(tiny_model(), blobs(n=32), seed=0, hooks=[LearningRates()],
                                  schedule=MultiStep((0.5,), 0.1))
    assert seen == pytest.approx([0.2] * 4 + [0.02] * 4)


def test_diverging_training_stops_with_advice():
    with pytest.raises(FloatingPointError, match="lower Trainer.lr"):
        trainer(lr=1e6, momentum=0.0).fit(tiny_model(), blobs(), seed=0)


def test_batch_larger_than_train_set_is_refused():
    with pytest.raises(ValueError, match="lower Trainer.batch_size"):
        trainer(batch_size=1000).fit(tiny_model(), blobs(), seed=0)
