"""The predictor interface between methods and evaluation.

A method's `fit` returns a `Predictor`: a module that maps a batch of model inputs [B, ...] to
per-member logits [M, B, C]. A dense model is M = 1; a dense or sparse ensemble stacks M
networks; BatchEnsemble, MIMO and TreeNet are one network with M outputs; MC Dropout is K
stochastic passes of one network. Evaluation only ever sees [M, B, C].

Everything that needs one member (FGSM crafts its attack on one member) goes through
`member_logits`; test FLOPs are measured by probing the whole predictor with one example
(harness/experiment/execute.py), so a shared network is charged for every row it really processes.
"""
from typing import Sequence

import torch
from torch import nn

from harness.engine.batching import tile_members


class Predictor(nn.Module):
    """Base class: subclasses set `num_members` and implement `forward(x) -> [M, B, C]`."""

    num_members: int

    def members(self) -> Sequence[nn.Module]:
        """The stored networks the prediction is made of (their weights and connectivity are
        what the 'structure' rows describe); a one-network method has one."""
        raise NotImplementedError

    def member_logits(self, x: torch.Tensor, member: int) -> torch.Tensor:
        """Member `member`'s logits [B, C], differentiable with respect to `x`."""
        return self(x)[member]


class MemberEnsemble(Predictor):
    """M separately stored networks, e.g. independently trained models or EDST tickets."""

    def __init__(self, networks: Sequence[nn.Module]):
        super().__init__()
        if not networks:
            raise ValueError("an ensemble needs at least one member")
        self.networks = nn.ModuleList(networks)
        self.num_members = len(networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([network(x) for network in self.networks])

    def members(self) -> Sequence[nn.Module]:
        return list(self.networks)

    def member_logits(self, x: torch.Tensor, member: int) -> torch.Tensor:
        return self.networks[member](x)


class OneNetwork(Predictor):
    """One network that makes all M members' predictions."""

    def __init__(self, network: nn.Module, num_members: int):
        super().__init__()
        self.network = network
        self.num_members = num_members

    def members(self) -> Sequence[nn.Module]:
        return [self.network]


class SampledPredictor(OneNetwork):
    """K forward passes of a stochastic network (MC dropout): K samples act as K members."""

    def forward(self, x):
        return torch.stack([self.network(x) for _ in range(self.num_members)])


class TiledPredictor(OneNetwork):
    """BatchEnsemble: the batch tiled M times member-major, as in training."""

    def forward(self, x):
        logits = self.network(tile_members(x, self.num_members))
        return logits.unflatten(0, (self.num_members, x.shape[0]))


class MimoPredictor(OneNetwork):
    """MIMO at test: the same image goes to all M inputs."""

    def forward(self, x):
        inputs = x.unsqueeze(1).expand(-1, self.num_members, *x.shape[1:])
        return self.network(inputs).transpose(0, 1)


class MultiHeadPredictor(OneNetwork):
    """A network that already returns [M, B, C] (TreeNet's branches)."""

    def forward(self, x):
        return self.network(x)
