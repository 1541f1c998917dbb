"""Model registry. Every builder takes `num_classes` and `in_channels` (given by the dataset)
plus its own gin-configurable arguments, e.g. `wide_resnet.depth = 28`."""
from typing import Callable

import gin
from torch import nn

from harness.models import resnet, wide_resnet as _wrn
from harness.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")

wide_resnet = MODELS.register("wide_resnet")(gin.configurable("wide_resnet")(_wrn.wide_resnet))
resnet50 = MODELS.register("resnet50")(gin.configurable("resnet50")(resnet.resnet50))
resnet18 = MODELS.register("resnet18")(gin.configurable("resnet18")(resnet.resnet18))


def build_model(name: str, num_classes: int, in_channels: int) -> nn.Module:
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels)
