"""Architecture variants of any registered backbone, built through `build_model`'s options
(harness/models/__init__.py) the way timm's `create_model(name, **kwargs)` passes options on:

  * MC dropout (Gal & Ghahramani 2016): dropout that stays on at test, after the first 3x3
    convolution of every residual block, where uncertainty-baselines' WRN puts it
    (`baselines/cifar/dropout.py`: conv1 -> dropout -> BN -> ReLU -> conv2).
  * BatchEnsemble (Wen et al. 2020): every conv and linear layer keeps its weight as the
    shared slow weight and gains per-member rank-1 fast weights r (input side) and s (output
    side); the final linear layer's bias becomes per-member. The network's batch holds M
    member-major blocks (harness/engine/batching.py `tile_members`); BatchNorm is shared.
  * MIMO (Havasi et al. 2021): the backbone with M x input channels and an M x C head; input
    [B, M, c, H, W] (member m's images on channels [m c, (m + 1) c)), output [B, M, C].
  * TreeNet (Lee et al. 2015): the backbone's first `split` stages as one shared trunk and the
    rest as M branches, each taken from its own freshly initialised backbone (copies of one
    tail would see identical inputs and gradients and never become different members).

A backbone is cut into stages by its module's `stages(model)` (the first conv or stem, each
residual block, the head), registered beside the builder.
"""
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.core.errors import UserError
from harness.flops import COUNTED_LAYERS


class AlwaysOnDropout(nn.Dropout):
    """Dropout that is active in eval mode too: each forward is one posterior sample."""

    def forward(self, x):
        return F.dropout(x, self.p, training=True)


def add_mc_dropout(model: nn.Module, blocks: Sequence[nn.Module], rate: float) -> nn.Module:
    if not 0 <= rate < 1:
        raise UserError(f"the dropout rate must be in [0, 1), got {rate}")
    for block in blocks:
        parent, name, conv = next((parent, name, child) for parent in block.modules()
                                  for name, child in parent.named_children()
                                  if isinstance(child, nn.Conv2d)
                                  and child.kernel_size == (3, 3))
        setattr(parent, name, nn.Sequential(conv, AlwaysOnDropout(rate)))
    return model


class BatchEnsembleLayer(nn.Module):
    """A conv or linear layer `layer` (the slow weight W, shared) for M members: member m
    computes ((x * r_m) W) * s_m (+ b_m), i.e. W o (s_m r_m^T), on its block of rows. r and s
    start at N(1, 0.5) (uncertainty-baselines' random_sign_init = -0.5)."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, num_members: int,
                 init_std: float = 0.5):
        super().__init__()
        self.layer = layer
        self.num_members = num_members
        conv = isinstance(layer, nn.Conv2d)
        sizes = ((layer.in_channels, layer.out_channels) if conv
                 else (layer.in_features, layer.out_features))
        like = {"device": layer.weight.device, "dtype": layer.weight.dtype}
        self.r = nn.Parameter(torch.empty(num_members, sizes[0], **like))
        self.s = nn.Parameter(torch.empty(num_members, sizes[1], **like))
        nn.init.normal_(self.r, 1.0, init_std)
        nn.init.normal_(self.s, 1.0, init_std)
        self.bias = None
        if layer.bias is not None:
            self.bias = nn.Parameter(layer.bias.detach().repeat(num_members, 1))
            layer.bias = None

    def _per_member(self, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0] // self.num_members
        blocks = x.view(self.num_members, rows, *x.shape[1:])
        return blocks * factor.view(self.num_members, 1, -1, *([1] * (x.ndim - 2)))

    def forward(self, x):
        if x.shape[0] % self.num_members:
            raise ValueError(f"BatchEnsemble with M={self.num_members} got {x.shape[0]} rows; "
                             f"its batch holds M member-major blocks (harness/engine/batching.py)")
        out = self.layer(self._per_member(x, self.r).flatten(0, 1))
        out = self._per_member(out, self.s)
        if self.bias is not None:
            out = out + self.bias.view(self.num_members, 1, -1, *([1] * (out.ndim - 3)))
        return out.flatten(0, 1)


def fast_weights(model: nn.Module) -> list[nn.Parameter]:
    """BatchEnsemble's per-member parameters (r, s and the per-member bias)."""
    return [*rank_one_factors(model), *member_biases(model)]


def rank_one_factors(model: nn.Module) -> list[nn.Parameter]:
    """BatchEnsemble's rank-1 fast weights r and s."""
    return [param for module in model.modules() if isinstance(module, BatchEnsembleLayer)
            for param in (module.r, module.s)]


def member_biases(model: nn.Module) -> list[nn.Parameter]:
    """BatchEnsemble's per-member biases (the final linear layer's)."""
    return [module.bias for module in model.modules()
            if isinstance(module, BatchEnsembleLayer) and module.bias is not None]


def batch_ensemble(model: nn.Module, num_members: int) -> nn.Module:
    if num_members < 1:
        raise UserError(f"BatchEnsemble needs num_members >= 1, got {num_members}")
    targets = [(parent, name, child) for parent in model.modules()
               for name, child in parent.named_children() if isinstance(child, COUNTED_LAYERS)]
    for parent, name, child in targets:
        setattr(parent, name, BatchEnsembleLayer(child, num_members))
    return model


class MimoNetwork(nn.Module):
    def __init__(self, backbone: nn.Module, num_members: int):
        super().__init__()
        self.backbone = backbone
        self.num_members = num_members
        self.architecture = getattr(backbone, "architecture", "")

    def forward(self, x):  # [B, M, c, H, W] -> [B, M, C]
        return self.backbone(x.flatten(1, 2)).unflatten(1, (self.num_members, -1))


class TreeNetwork(nn.Module):
    def __init__(self, trunk: nn.Module, branches: Sequence[nn.Module]):
        super().__init__()
        self.trunk = trunk
        self.branches = nn.ModuleList(branches)

    def forward(self, x):  # [B, ...] -> [M, B, C]
        shared = self.trunk(x)
        return torch.stack([branch(shared) for branch in self.branches])


def tree(build: Callable[[], nn.Module], stages: Callable[[nn.Module], list[nn.Module]],
         num_branches: int, split: int) -> TreeNetwork:
    if num_branches < 1:
        raise UserError(f"TreeNet needs num_members >= 1, got {num_branches}")
    backbones = [build() for _ in range(num_branches)]
    chains = [stages(backbone) for backbone in backbones]
    if not 1 <= split < len(chains[0]):
        raise UserError(f"TreeNet.split = {split} is outside the network: it has "
                        f"{len(chains[0])} stages (first conv, residual blocks, head), so the "
                        f"trunk takes 1 to {len(chains[0]) - 1} of them")
    network = TreeNetwork(nn.Sequential(*chains[0][:split]),
                          [nn.Sequential(*chain[split:]) for chain in chains])
    network.architecture = getattr(backbones[0], "architecture", "")
    return network
