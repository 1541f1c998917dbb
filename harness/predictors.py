"""The predictor interface between methods and evaluation.

A method's `fit` returns a `Predictor`: a module that maps a batch of model inputs [B, ...] to
per-member logits [M, B, C]. A dense model is M = 1; a dense or sparse ensemble stacks M
networks; MIMO and BatchEnsemble are one network with M outputs; MC Dropout is K stochastic
passes. Evaluation only ever sees [M, B, C].
"""
from typing import Sequence

import torch
from torch import nn


class Predictor(nn.Module):
    """Base class: subclasses set `num_members` and implement `forward(x) -> [M, B, C]`."""

    num_members: int

    def members(self) -> Sequence[nn.Module]:
        """The networks whose forward passes make one prediction (test FLOPs are summed over
        them); a shared network appears once per pass."""
        raise NotImplementedError


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
