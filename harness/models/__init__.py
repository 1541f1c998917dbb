"""Model registry. Every builder takes `num_classes` and `in_channels` (given by the dataset)
plus its own gin-configurable arguments, e.g. `wide_resnet.depth = 28`. `build_model` also
builds the variants of harness/models/variants.py from any registered backbone."""
from typing import Callable

import gin
from torch import nn

from harness.core.errors import UserError
from harness.models import resnet, variants, wide_resnet as _wrn
from harness.core.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
# How each backbone is cut into a chain of stages (first conv or stem, residual blocks, head).
STAGES: dict[str, Callable[[nn.Module], list[nn.Module]]] = {}


def register(name: str, builder: Callable[..., nn.Module],
             stages: Callable[[nn.Module], list[nn.Module]]) -> Callable[..., nn.Module]:
    STAGES[name] = stages
    return MODELS.register(name)(gin.configurable(name)(builder))


wide_resnet = register("wide_resnet", _wrn.wide_resnet, _wrn.stages)
resnet50 = register("resnet50", resnet.resnet50, resnet.stages)
resnet18 = register("resnet18", resnet.resnet18, resnet.stages)


def build_model(name: str, num_classes: int, in_channels: int, *, mc_dropout: float = 0.0,
                batch_ensemble: int = 0, mimo: int = 0, tree_branches: int = 0,
                tree_split: int = 0) -> nn.Module:
    """The backbone `name`, or one variant of it: `mc_dropout` (a rate), `batch_ensemble`,
    `mimo` or `tree_branches` (a number of members M; `tree_split` stages in the trunk)."""
    builder = MODELS.get(name)
    chosen = [option for option, value in (("mc_dropout", mc_dropout),
                                            ("batch_ensemble", batch_ensemble), ("mimo", mimo),
                                            ("tree_branches", tree_branches)) if value]
    if len(chosen) > 1:
        raise ValueError(f"build_model takes one variant at a time, got {chosen}")
    if mimo:
        if mimo < 1:
            raise UserError(f"MIMO needs num_members >= 1, got {mimo}")
        backbone = builder(num_classes=num_classes * mimo, in_channels=in_channels * mimo)
        return variants.MimoNetwork(backbone, mimo)
    if tree_branches:
        return variants.tree(lambda: builder(num_classes=num_classes, in_channels=in_channels),
                             STAGES[name], tree_branches, tree_split)
    model = builder(num_classes=num_classes, in_channels=in_channels)
    if mc_dropout:
        return variants.add_mc_dropout(model, STAGES[name](model)[1:-1], mc_dropout)
    if batch_ensemble:
        return variants.batch_ensemble(model, batch_ensemble)
    return model
