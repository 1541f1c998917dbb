import pytest
import torch

from harness.core.errors import UserError
from harness.models import build_model


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


def test_wrn_28_10_has_the_published_parameter_count():
    with torch.device("meta"):  # no memory, no init cost
        model = build_model("wide_resnet", num_classes=10, in_channels=3)
    assert parameter_count(model) == 36_479_194  # "36.5M" (Zagoruyko & Komodakis 2016)
    assert model.architecture == "wrn28_10"


def test_resnet50_is_torchvisions():
    with torch.device("meta"):
        model = build_model("resnet50", num_classes=1000, in_channels=3)
    assert parameter_count(model) == 25_557_032


@pytest.mark.parametrize("name,shape", [("wide_resnet", (2, 1, 8, 8)),
                                        ("resnet18", (2, 3, 32, 32))])
def test_small_inputs_and_channels(name, shape):
    import gin
    gin.bind_parameter("wide_resnet.depth", 10)
    gin.bind_parameter("wide_resnet.width", 1)
    model = build_model(name, num_classes=7, in_channels=shape[1]).eval()
    assert model(torch.zeros(shape)).shape == (2, 7)


def test_bad_wrn_depth_is_a_clear_error():
    import gin
    gin.bind_parameter("wide_resnet.depth", 12)
    with pytest.raises(ValueError, match="6n\\+4"):
        build_model("wide_resnet", num_classes=10, in_channels=3)


def test_unknown_model_lists_known_ones():
    with pytest.raises(UserError, match="unknown model 'vgg'.*wide_resnet"):
        build_model("vgg", num_classes=10, in_channels=3)
