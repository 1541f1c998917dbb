"""Per-layer KL divergence between members' feature maps (paper §5.1, Fig. 2 left)."""
import copy

import pytest
import torch
from torch import nn

from harness.evaluation.feature_maps import feature_map_kl, layer_outputs


def tiny(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3),
                         nn.Flatten(), nn.Linear(12, 5))


INPUTS = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))


def test_every_conv_and_linear_layer_in_order():
    outputs = layer_outputs(tiny(0), INPUTS)
    assert list(outputs) == ["0", "2", "4"]
    assert outputs["0"].shape == (8, 4, 4, 4) and outputs["4"].shape == (8, 5)


def test_identical_members_have_zero_kl_at_every_layer():
    member = tiny(0)
    kl = feature_map_kl([member, copy.deepcopy(member), copy.deepcopy(member)], INPUTS)
    assert kl == {"0": 0.0, "2": 0.0, "4": 0.0}


def test_different_members_have_positive_kl():
    kl = feature_map_kl([tiny(0), tiny(1), tiny(2)], INPUTS)
    assert all(value > 0 for value in kl.values())


def test_the_convention_softmax_over_channels_summed_over_positions():
    first, second = tiny(0), tiny(1)
    a = layer_outputs(first, INPUTS)["0"].double().log_softmax(1)
    b = layer_outputs(second, INPUTS)["0"].double().log_softmax(1)
    one_way = (a.exp() * (a - b)).sum() / 8
    other_way = (b.exp() * (b - a)).sum() / 8
    kl = feature_map_kl([first, second], INPUTS)["0"]
    assert kl == pytest.approx(float(one_way + other_way) / 2)
    assert one_way != pytest.approx(float(other_way))  # the mean of both directions matters
    classifier = feature_map_kl([first, second], INPUTS)["4"]  # the predictions' KL
    with torch.no_grad():
        p, q = first(INPUTS).double().log_softmax(1), second(INPUTS).double().log_softmax(1)
    assert classifier == pytest.approx(float(((p.exp() * (p - q)).sum(1).mean()
                                              + (q.exp() * (q - p)).sum(1).mean()) / 2))


def test_one_member_is_refused():
    with pytest.raises(ValueError, match="at least two members"):
        feature_map_kl([tiny(0)], INPUTS)
