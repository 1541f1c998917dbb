"""Training-recipe settings the official FreeTickets code decides where the paper is silent
(App. C): label smoothing of the training loss only (ImageNet/imagenet_script), no weight decay
on normalisation layers (ImageNet/main.py get_optimizer), reflection padding of the crop
(sparselearning/utils.py)."""
import gin
import pytest
import torch
import torch.nn.functional as F

from harness.core.errors import UserError
from harness.data.arrays import Augment
from harness.engine.train import classification_loss
from harness.evaluation.metrics import nll
from tests.training import SmallNet, blobs, tiny_model, trainer


def test_label_smoothing_smooths_the_training_loss_as_torch_does():
    torch.manual_seed(0)
    model, images, labels = tiny_model().eval(), torch.randn(8, 1, 4, 4), torch.arange(8) % 2
    smoothed = classification_loss(model, images, labels, 0.1)
    assert torch.allclose(smoothed, F.cross_entropy(model(images), labels, label_smoothing=0.1))
    assert not torch.allclose(smoothed, classification_loss(model, images, labels))


def test_the_trainer_gives_every_objective_its_label_smoothing():
    seen = []

    def objective(model, images, labels, label_smoothing):
        seen.append(label_smoothing)
        return classification_loss(model, images, labels, label_smoothing)

    trainer(epochs=1, label_smoothing=0.1).fit(tiny_model(), blobs(), seed=0,
                                               objective=objective)
    assert seen and set(seen) == {0.1}


def test_evaluation_nll_stays_plain_under_label_smoothing():
    gin.clear_config()
    gin.parse_config("Trainer.label_smoothing = 0.1")
    try:
        logits, labels = torch.randn(16, 5), torch.arange(16) % 5
        assert nll(logits.log_softmax(-1), labels) == pytest.approx(
            F.cross_entropy(logits, labels).item(), rel=1e-6)
    finally:
        gin.clear_config()


@pytest.mark.parametrize("value", [-0.1, 1.0, "0.1"])
def test_a_bad_label_smoothing_is_one_error_naming_the_setting(value):
    with pytest.raises(UserError, match="Trainer.label_smoothing"):
        trainer(label_smoothing=value)


def test_norm_layers_can_go_undecayed_as_the_official_imagenet_code_does():
    model = SmallNet()
    norm = {id(param) for param in model.features[1].parameters()}
    decayed = trainer(weight_decay=1e-4).make_optimizer(model)
    assert [group["weight_decay"] for group in decayed.param_groups] == [1e-4]
    optimizer = trainer(weight_decay=1e-4, decay_norm_weights=False).make_optimizer(model)
    for group in optimizer.param_groups:
        in_norm = {id(param) in norm for param in group["params"]}
        assert in_norm in ({True}, {False})
        assert group["weight_decay"] == (0.0 if in_norm == {True} else 1e-4)
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(
        list(model.parameters()))
    with pytest.raises(UserError, match="Trainer.decay_norm_weights"):
        trainer(decay_norm_weights="no")


def test_crops_pad_by_reflection_by_default_and_zeros_by_name():
    assert Augment().padding_mode == "reflect"
    images = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)
    flipless = dict(padding=1, hflip=False)
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    batch = images.expand(64, 1, 4, 4)
    # shifted crops show the border: zeros pad with 0, reflection repeats the image's pixels
    assert (Augment(**flipless)(batch, generator()) > 0).all()
    assert (Augment(**flipless, padding_mode="zeros")(batch, generator()) == 0).any()
    with pytest.raises(UserError, match="Augment.padding_mode"):
        Augment(padding_mode="circular")
