"""Sparse ensembles of independently trained members (paper §4, App. C): Static Sparse
Ensemble (fixed random ERK masks) and DST Ensemble (Algorithm 2: M RigL runs with different
seeds). EDST, which collects its tickets within one run, is in `edst.py`."""
from typing import Sequence

import gin
from torch import nn

from harness.core.errors import UserError
from harness.flops import sparse_forward_flops
from harness.flops.plan import PlanContext
from harness.engine.train import Hook
from methods.base import METHODS, FitContext, IndependentEnsemble
from methods.sparse.masking import Masking, SparsitySpec, check_sparsity


class SparseMembers(IndependentEnsemble):
    """M members, each sparse from initialisation with its own seeded mask."""

    explores = True

    def __init__(self, num_members: int, sparsity: float):
        super().__init__(num_members)
        check_sparsity(type(self).__name__, sparsity)
        self.sparsity = sparsity
        self.spec = SparsitySpec(sparsity)

    def validate(self, context: PlanContext) -> None:
        try:
            self.spec.configuration(context.layer_shapes)
        except ValueError as error:
            raise UserError(str(error)) from error

    def member_hooks(self, context: FitContext, model: nn.Module, seed: int) -> list[Hook]:
        masking = Masking(model, self.spec, seed=seed)
        if not self.explores:
            masking.freeze()
        return [masking]

    def member_extra(self, hooks: Sequence[Hook]) -> dict:
        return {"masks": hooks[0].state_dict()["masks"]}

    def member_forward_flops(self, context: PlanContext) -> float:
        densities = self.spec.configuration(context.layer_shapes).densities
        return sparse_forward_flops(context.layer_flops, densities)

    def member_dense_gradient_interval(self) -> int | None:
        return self.spec.dense_gradient_interval if self.explores else None


@METHODS.register("static")
@gin.configurable
class StaticSparseEnsemble(SparseMembers):
    """M sparse networks trained from scratch on fixed random ERK masks (App. C)."""

    name = "static"
    display_name = "Static Sparse Ensemble"
    explores = False

    def __init__(self, num_members: int = 3, sparsity: float = 0.8):
        super().__init__(num_members, sparsity)


@METHODS.register("dst")
@gin.configurable
class DSTEnsemble(SparseMembers):
    """M independent dynamic sparse training runs (RigL) with different seeds (Algorithm 2);
    diversity comes from the initialisations and from the different connectivities each run
    converges to (§3.2.1)."""

    name = "dst"
    display_name = "DST Ensemble"

    def __init__(self, num_members: int = 3, sparsity: float = 0.8):
        super().__init__(num_members, sparsity)
